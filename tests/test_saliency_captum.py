"""Captum attribution objects as methods (mlmyths.saliency.captum_adapter): outputs, derivatives, attacks."""
from __future__ import annotations

import doctest

import pytest
import torch
from torch import nn

from _saliency_nets import conv_net, image_batch
from mlmyths.errors import UserError
from mlmyths.saliency import attack, attribute, captum_adapter, sensitivity_max

captum_attr = pytest.importorskip("captum.attr", reason="captum (a dev dependency) is the test oracle")


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    return image_batch()


def test_docstring_examples_run():
    failures, attempted = doctest.testmod(captum_adapter, optionflags=doctest.ELLIPSIS)
    assert attempted > 0 and failures == 0


# -- outputs: a Captum object given as the method returns Captum's own attribution ------------------------


def test_captum_objects_give_captums_attributions_and_equal_ours(batch):
    x, t = batch
    net = conv_net()
    cases = [  # (Captum object, its options, our method, our options)
        (captum_attr.Saliency(net), {"abs": False}, "gradient", {}),
        (captum_attr.InputXGradient(net), {}, "gradient_x_input", {}),
        (captum_attr.IntegratedGradients(net), {"n_steps": 12, "baselines": 0.2}, "integrated_gradients",
         {"n_steps": 12, "baseline": 0.2}),
        (captum_attr.IntegratedGradients(net), {"n_steps": 10, "integration": "riemann_right"},
         "integrated_gradients", {"n_steps": 10, "integration": "riemann_right"}),
    ]
    for method, options, ours, our_options in cases:
        theirs = attribute(net, x, t, method, raw=True, **options)
        captum_options = {("method" if k == "integration" else k): v for k, v in options.items()}  # Captum's name
        torch.testing.assert_close(theirs, method.attribute(x, target=t, **captum_options))  # Captum's own output
        torch.testing.assert_close(theirs, attribute(net, x, t, ours, raw=True, **our_options),
                                   rtol=1e-6, atol=1e-12)  # IG: Captum keeps its quadrature weights in float32
    # Saliency's default abs=True gives |gradient|: the same map (|.| summed over channels) as ours
    torch.testing.assert_close(attribute(net, x, t, captum_attr.Saliency(net)), attribute(net, x, t, "gradient"))


def test_methods_that_cannot_be_attacked_still_explain(batch):
    """Where no derivative is needed, any Captum method attributing to the input works."""
    x, t = batch
    net = conv_net(nn.Tanh)
    torch.testing.assert_close(attribute(net, x, t, captum_attr.DeepLift(net), raw=True),
                               attribute(net, x, t, "deeplift", raw=True), rtol=1e-8, atol=1e-12)
    torch.manual_seed(3)
    noise = torch.normal(0, torch.full((6 * 4, 1, 8, 8), 0.2)).view(6, 4, 1, 8, 8)
    torch.manual_seed(3)  # NoiseTunnel draws the same float32 normal tensor, sample index inner
    smooth = attribute(net, x, t, captum_attr.NoiseTunnel(captum_attr.Saliency(net)), raw=True,
                       nt_type="smoothgrad", nt_samples=4, stdevs=0.2, abs=False)
    torch.testing.assert_close(smooth, attribute(net, x, t, "smoothgrad", raw=True, noise=noise), rtol=1e-9,
                               atol=1e-12)
    ours = sensitivity_max(net, x, t, "gradient", perturb_radius=0.05, n_perturb_samples=3,
                           generator=torch.Generator().manual_seed(0))
    theirs = sensitivity_max(net, x, t, captum_attr.Saliency(net), perturb_radius=0.05, n_perturb_samples=3,
                             generator=torch.Generator().manual_seed(0), abs=False)
    torch.testing.assert_close(theirs, ours)
    assert float(ours.min()) > 0


# -- derivatives: the differentiable ones differentiate like ours ------------------------------------------


@pytest.mark.parametrize("captum_class, options, ours, our_options", [
    ("Saliency", {"abs": False}, "gradient", {}),
    ("Saliency", {}, "gradient", {}),  # abs=True: the derivative of |gradient|
    ("InputXGradient", {}, "gradient_x_input", {}),
    ("IntegratedGradients", {"n_steps": 8}, "integrated_gradients", {"n_steps": 8}),
])
def test_differentiable_captum_attributions_have_our_input_derivative(batch, captum_class, options, ours,
                                                                      our_options):
    x, t = batch
    net = conv_net(nn.Tanh)  # smooth: the explanation has a nonzero derivative in the input
    weights = torch.rand(x.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def derivative(method: object, opts: dict, absolute: bool) -> torch.Tensor:
        leaf = x.clone().requires_grad_(True)
        a = attribute(net, leaf, t, method, raw=True, create_graph=True, **opts)
        a = a.abs() if absolute else a
        (g,) = torch.autograd.grad((weights * a).sum(), leaf)
        return g

    absolute = captum_class == "Saliency" and "abs" not in options
    theirs = derivative(getattr(captum_attr, captum_class)(net), options, absolute=False)
    expected = derivative(ours, our_options, absolute=absolute)
    assert float(expected.abs().max()) > 1e-3  # not vacuous
    torch.testing.assert_close(theirs, expected, rtol=1e-6, atol=1e-10)
    # the object is left as it was: its gradient function is Captum's again
    from captum._utils.gradient import compute_gradients

    method = getattr(captum_attr, captum_class)(net)
    attribute(net, x.clone().requires_grad_(True), t, method, create_graph=True, **options)
    assert method.gradient_func is compute_gradients


@pytest.mark.parametrize("make, reason, instead", [
    (lambda net: captum_attr.NoiseTunnel(captum_attr.Saliency(net)), "under torch.no_grad", "smoothgrad"),
    (lambda net: captum_attr.GradientShap(net), "random baselines", "smoothgrad"),
    (lambda net: captum_attr.DeepLift(net), "fail under create_graph", "deeplift"),
    (lambda net: captum_attr.DeepLiftShap(net), "fail under create_graph", "deeplift"),
    (lambda net: captum_attr.GuidedBackprop(net), "replace the ReLU's gradient rule", None),
    (lambda net: captum_attr.Occlusion(net), "perturbation method", None),
    (lambda net: captum_attr.FeatureAblation(net), "perturbation method", None),
    (lambda net: captum_attr.LayerIntegratedGradients(net, net[0]), "attributes to a layer", None),
])
def test_non_differentiable_captum_methods_are_refused_with_the_reason(batch, make, reason, instead):
    x, _ = batch
    net = conv_net()
    method = make(net)
    with pytest.raises(UserError, match="cannot be attacked") as info:
        attack(net, x, method, "topk", epsilon=0.05, steps=1, k=4)
    message = str(info.value)
    assert reason in message and "Saliency, InputXGradient, IntegratedGradients" in message
    if instead:
        assert f'method="{instead}"' in message
    with pytest.raises(UserError, match="cannot be attacked"):  # the same refusal wherever a derivative is asked
        attribute(net, x, 0, method, create_graph=True)


def test_integrated_gradients_with_internal_batch_size_is_refused(batch):
    """Captum's batching adds detached partial sums: the derivative would be silently wrong."""
    x, t = batch
    net = conv_net(nn.Tanh)
    with pytest.raises(UserError, match="internal_batch_size=6 is not differentiable"):
        attack(net, x, captum_attr.IntegratedGradients(net), epsilon=0.05, steps=1, surrogate_beta=None,
               n_steps=4, internal_batch_size=6)
    # without a derivative it is fine, and equals ours
    torch.testing.assert_close(
        attribute(net, x, t, captum_attr.IntegratedGradients(net), raw=True, n_steps=4, internal_batch_size=6),
        attribute(net, x, t, "integrated_gradients", raw=True, n_steps=4, internal_batch_size=6), rtol=1e-6, atol=0)


# -- attacks: a Captum object gives the same attack as our equivalent method ---------------------------------


@pytest.mark.parametrize("name", ["topk", "mass_center"])
def test_attack_with_captum_saliency_equals_attack_with_our_gradient(batch, name):
    x, _ = batch
    net = conv_net()
    common = dict(epsilon=0.1, step_size=0.02, steps=6, k=4)
    ours = attack(net, x, "gradient", name, **common)
    theirs = attack(net, x, captum_attr.Saliency(net), name, **common)
    assert int((ours.best_step >= 0).sum()) > 0 and float((ours.inputs - x).abs().max()) > 0.05  # it moved
    torch.testing.assert_close(theirs.inputs, ours.inputs, rtol=0, atol=1e-12)
    torch.testing.assert_close(theirs.criterion, ours.criterion)
    torch.testing.assert_close(theirs.trace, ours.trace, equal_nan=True)
    assert theirs.best_step.tolist() == ours.best_step.tolist()


def test_attack_with_captum_integrated_gradients_equals_ours(batch):
    x, _ = batch
    net = conv_net()
    common = dict(epsilon=0.1, step_size=0.02, steps=5, k=4)
    ours = attack(net, x, "integrated_gradients", "topk", n_steps=6, **common)
    theirs = attack(net, x, captum_attr.IntegratedGradients(net), "topk", n_steps=6, **common)
    assert float(ours.criterion.mean()) < 1.0  # the attack moved the top-k
    # Captum's float32 quadrature weights perturb the maps at 1e-7: the same iterates, metrics within 1e-6
    torch.testing.assert_close(theirs.inputs, ours.inputs, rtol=0, atol=1e-9)
    torch.testing.assert_close(theirs.criterion, ours.criterion)
    torch.testing.assert_close(theirs.perturbed_map, ours.perturbed_map, rtol=1e-5, atol=1e-9)


def test_random_attack_takes_any_captum_method(batch):
    """The random-sign baseline differentiates nothing: Captum's DeepLift works and equals ours."""
    x, _ = batch
    net = conv_net()
    common = dict(epsilon=0.1, k=4)
    ours = attack(net, x, "deeplift", "random", generator=torch.Generator().manual_seed(4), **common)
    theirs = attack(net, x, captum_attr.DeepLift(net), "random", generator=torch.Generator().manual_seed(4), **common)
    torch.testing.assert_close(theirs.inputs, ours.inputs)
    torch.testing.assert_close(theirs.criterion, ours.criterion)
    torch.testing.assert_close(theirs.perturbed_map, ours.perturbed_map, rtol=1e-8, atol=1e-12)


def test_attack_explains_the_target_given(batch):
    x, t = batch
    net = conv_net()
    r = attack(net, x, captum_attr.Saliency(net), epsilon=0.05, steps=2, k=4, target=t)
    torch.testing.assert_close(r.original_map, attribute(net, x, t))
    assert r.targets.tolist() == t.tolist()
    with torch.no_grad():
        assert r.labels.tolist() == net(x).argmax(1).tolist()  # the label kept is still the predicted one
    with pytest.raises(UserError, match="class index in 0..4"):
        attack(net, x, epsilon=0.05, steps=1, target=7)


def test_captum_misuse_is_refused(batch):
    x, t = batch
    net = conv_net()
    with pytest.raises(UserError, match="explains a Sequential that is not the model given"):
        attack(net, x, captum_attr.Saliency(conv_net(seed=1)), epsilon=0.05, steps=1)
    with pytest.raises(UserError, match=r"unknown option\(s\) n_step for IntegratedGradients.attribute; its options "
                                        r"are baselines, integration \(Captum's method\), internal_batch_size, n_steps$"):
        attack(net, x, captum_attr.IntegratedGradients(net), epsilon=0.05, steps=1, n_step=4)
    with pytest.raises(UserError, match="additional_forward_args= .* not supported"):
        attribute(net, x, t, captum_attr.Saliency(net), additional_forward_args=(1,))
    with pytest.raises(UserError, match="return_convergence_delta= .* not supported"):
        attribute(net, x, t, captum_attr.IntegratedGradients(net), return_convergence_delta=True)
    with pytest.raises(UserError, match="method must be one of gradient, .* or a Captum attribution object"):
        attack(net, x, lambda model, inputs: inputs, epsilon=0.05, steps=1)
    with pytest.raises(UserError, match="not an attribution of the inputs' shape"):
        attribute(net, x, t, captum_attr.LayerIntegratedGradients(net, net[5]))
    with pytest.raises(UserError, match="unknown option\\(s\\) baselines for method 'gradient'"):
        attribute(net, x, t, "gradient", baselines=0.0)
