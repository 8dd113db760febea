"""mlmyths.saliency: attributions (Captum as oracle), metrics, attacks."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch
from torch import nn

from mlmyths.errors import UserError
from mlmyths.models import SmallCNN
from mlmyths.saliency import (
    attack,
    attribute,
    center_of_mass,
    center_of_mass_shift,
    integration_points,
    mass_in_region,
    rank_correlation,
    sensitivity_max,
    smoothed,
    topk_intersection,
)

captum_attr = pytest.importorskip("captum.attr", reason="captum (a dev dependency) is the test oracle")


def conv_net(activation: type[nn.Module] = nn.ReLU, seed: int = 0, pool: bool = False) -> nn.Module:
    """A small conv net on 1x8x8 inputs, float64, eval mode."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Conv2d(1, 4, 3, padding=1), activation()]
    if pool:
        layers += [nn.MaxPool2d(2), nn.Conv2d(4, 6, 3, padding=1), activation(), nn.Flatten(), nn.Linear(96, 12)]
    else:
        layers += [nn.Conv2d(4, 6, 3, padding=1), activation(), nn.Flatten(), nn.Linear(384, 12)]
    layers += [activation(), nn.Linear(12, 5)]
    return nn.Sequential(*layers).double().eval()


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(6, 1, 8, 8, generator=g, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 4, 0])


# -- attributions -------------------------------------------------------------------------------


def test_gradient_and_gradient_x_input_match_captum(batch):
    x, t = batch
    net = conv_net()
    ours = attribute(net, x, t, "gradient", raw=True)
    theirs = captum_attr.Saliency(net).attribute(x, target=t, abs=False)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(attribute(net, x, t), ours.abs().sum(1))  # the map: |grad| summed over channels
    torch.testing.assert_close(attribute(net, x, t, "gradient_x_input", raw=True),
                               captum_attr.InputXGradient(net).attribute(x, target=t), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_right", "riemann_middle", "riemann_left"])
def test_integrated_gradients_matches_captum(batch, rule):
    x, t = batch
    net = conv_net()
    baseline = torch.full((1, 1, 8, 8), 0.2, dtype=torch.float64)
    ours = attribute(net, x, t, "integrated_gradients", raw=True, n_steps=12, integration=rule, baseline=baseline,
                     internal_batch_size=20)
    theirs = captum_attr.IntegratedGradients(net).attribute(x, baselines=baseline, target=t, n_steps=12, method=rule)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-12)  # Captum keeps its step sizes in float32


def test_smoothgrad_matches_captum_noise_tunnel(batch):
    x, t = batch
    net = conv_net()
    torch.manual_seed(3)
    noise = torch.normal(0, torch.full((6 * 5, 1, 8, 8), 0.2)).view(6, 5, 1, 8, 8)
    torch.manual_seed(3)  # NoiseTunnel draws the same (float32) normal tensor, sample index inner
    theirs = captum_attr.NoiseTunnel(captum_attr.Saliency(net)).attribute(
        x, nt_type="smoothgrad", nt_samples=5, stdevs=0.2, target=t, abs=False)
    torch.testing.assert_close(attribute(net, x, t, "smoothgrad", raw=True, noise=noise), theirs, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("activation", [nn.ReLU, nn.Tanh, nn.Sigmoid, nn.ELU, nn.LeakyReLU, nn.Softplus])
def test_deeplift_matches_captum_without_maxpool(batch, activation):
    x, t = batch
    net = conv_net(activation)
    baseline = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 0.3
    for b in (None, baseline):
        ours = attribute(net, x, t, "deeplift", raw=True, baseline=b)
        theirs = captum_attr.DeepLift(net).attribute(x, target=t, baselines=b if b is not None else 0.0)
        torch.testing.assert_close(ours, theirs, rtol=1e-8, atol=1e-12)


def test_deeplift_summation_to_delta_with_maxpool(batch):
    """DeepLIFT: Σ attributions = f(x) − f(x₀) exactly, through max-pooling too (Shrikumar et al., Eq. 1).

    Captum 0.9's max-pool rule breaks this (captum issue #1276), so here it is checked directly.
    """
    x, t = batch
    net = SmallCNN(1, 5, 8, width=0.3).double().eval()
    baseline = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 0.5
    for beta in (None, 2.0):
        dl = attribute(net, x, t, "deeplift", raw=True, baseline=baseline, beta=beta)
        with smoothed(net, beta), torch.no_grad():
            delta = (net(x) - net(baseline))[torch.arange(6), t]
        torch.testing.assert_close(dl.sum((1, 2, 3)), delta, rtol=1e-9, atol=1e-12)


def test_deeplift_maxpool_rule_closed_form():
    """One max-pool layer then a linear read-out: pixel i gets Σ_j w_j (M_j − y0_j) over windows whose
    argmax at x is i, plus Σ_j w_j (y_j − M_j) over windows whose argmax at x₀ is i (M = max(y, y0))."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4, 1)).double().eval()
    x = torch.rand(3, 1, 4, 4, dtype=torch.float64)
    x0 = torch.rand(3, 1, 4, 4, dtype=torch.float64)
    w = net[2].weight.detach()[0].numpy()
    expected = np.zeros((3, 4, 4))
    for b in range(3):
        for j, (r, c) in enumerate([(0, 0), (0, 2), (2, 0), (2, 2)]):
            win, win0 = x[b, 0, r:r + 2, c:c + 2].numpy(), x0[b, 0, r:r + 2, c:c + 2].numpy()
            i, i0 = np.unravel_index(win.argmax(), (2, 2)), np.unravel_index(win0.argmax(), (2, 2))
            y, y0 = win.max(), win0.max()
            top = max(y, y0)
            expected[b, r + i[0], c + i[1]] += w[j] * (top - y0)
            expected[b, r + i0[0], c + i0[1]] += w[j] * (y - top)
    ours = attribute(net, x, 0, "deeplift", raw=True, baseline=x0)[:, 0]
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("activation, n_steps, tol", [(nn.Tanh, 64, 1e-7), (nn.ReLU, 512, 3e-3)])
def test_integrated_gradients_completeness(batch, activation, n_steps, tol):
    """Σ IG = f(x) − f(x₀) (Sundararajan et al., Prop. 1): to quadrature accuracy, which is spectral
    for a smooth network and O(1/n) across ReLU kinks."""
    x, t = batch
    net = conv_net(activation)
    ig = attribute(net, x, t, "integrated_gradients", raw=True, n_steps=n_steps)
    with torch.no_grad():
        gap = (net(x) - net(torch.zeros_like(x)))[torch.arange(6), t]
    assert (ig.sum((1, 2, 3)) - gap).abs().max() < tol * gap.abs().max()


def test_integration_points_integrate_polynomials():
    for rule, n, degree in [("gausslegendre", 5, 9), ("riemann_trapezoid", 3, 1), ("riemann_middle", 4, 1)]:
        alphas, weights = integration_points(n, rule)
        assert float(weights.sum()) == pytest.approx(1.0)
        assert float((weights * alphas ** degree).sum()) == pytest.approx(1 / (degree + 1), abs=1e-12)


@pytest.mark.parametrize("method", ["gradient", "gradient_x_input", "integrated_gradients", "smoothgrad", "deeplift"])
def test_batched_equals_one_by_one(batch, method):
    x, t = batch
    net = SmallCNN(1, 5, 8, width=0.3).double().eval()
    noise = torch.randn(6, 3, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.1
    options = {"noise": noise} if method == "smoothgrad" else {}
    whole = attribute(net, x, t, method, n_steps=8, **options)
    single = torch.cat([attribute(net, x[i:i + 1], int(t[i]), method, n_steps=8,
                                  **({"noise": noise[i:i + 1]} if method == "smoothgrad" else {})) for i in range(6)])
    torch.testing.assert_close(whole, single, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("method", ["gradient", "integrated_gradients", "deeplift"])
def test_attributions_are_differentiable(method):
    """create_graph=True: the attribution's derivative in x agrees with finite differences (smooth net)."""
    net = conv_net(nn.Tanh)
    x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64).requires_grad_(True)
    def fn(z):
        return attribute(net, z, 3, method, raw=True, n_steps=4, create_graph=True)

    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-6)


def test_relu_gradient_map_has_zero_input_derivative_but_smoothed_does_not():
    """Why the attack needs a surrogate (Ghorbani et al., Sec. 3): for a ReLU net ∇ₓ‖∇ₓf‖ = 0 a.e."""
    net = conv_net(nn.ReLU)
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    for beta, expect_zero in ((None, True), (5.0, False)):
        maps = attribute(net, x, 1, "gradient", create_graph=True, beta=beta)
        (g,) = torch.autograd.grad(maps[:, :4, :4].sum(), x, allow_unused=True)
        assert (g is None or bool((g == 0).all())) == expect_zero


def test_softplus_surrogate_converges_to_relu_network(batch):
    x, t = batch
    net = conv_net(nn.ReLU)
    with torch.no_grad():
        logits = net(x)
    reference = attribute(net, x, t)
    logit_gaps, map_gaps = [], []
    for beta in (1.0, 10.0, 100.0, 1000.0, 1e5):
        with smoothed(net, beta), torch.no_grad():
            logit_gaps.append(float((net(x) - logits).abs().max()))
        map_gaps.append(float((attribute(net, x, t, beta=beta) - reference).abs().mean() / reference.abs().mean()))
    assert all(a > b for a, b in zip(logit_gaps, logit_gaps[1:])) and logit_gaps[-1] < 1e-4  # <= log(2)/beta per unit
    assert all(a > b for a, b in zip(map_gaps, map_gaps[1:])) and map_gaps[-1] < 1e-3
    with torch.no_grad():  # hooks are gone after the context
        torch.testing.assert_close(net(x), logits)


def test_inplace_relu_gives_the_same_attributions(batch):
    x, t = batch
    net = conv_net(nn.ReLU)
    inplace = conv_net(lambda: nn.ReLU(inplace=True))  # type: ignore[arg-type,return-value]
    for method, beta in (("deeplift", None), ("gradient", 3.0), ("deeplift", 3.0)):
        torch.testing.assert_close(attribute(inplace, x, t, method, beta=beta), attribute(net, x, t, method, beta=beta))


def test_attribute_rejects_bad_input(batch):
    x, t = batch
    net = conv_net()
    with pytest.raises(UserError, match=r"images \(B, C, H, W\)"):
        attribute(net, x[0], 0)
    with pytest.raises(UserError, match="unknown attribution method 'lime'"):
        attribute(net, x, t, "lime")
    with pytest.raises(UserError, match="class index in 0..4"):
        attribute(net, x, 7)
    with pytest.raises(UserError, match="one per image"):
        attribute(net, x, torch.tensor([0, 1]))
    with pytest.raises(UserError, match="no.*nn.ReLU|has none"):
        attribute(conv_net(nn.Tanh), x, t, beta=2.0)
    with pytest.raises(UserError, match="beta must be a positive number"):
        attribute(net, x, t, beta=-1.0)


# -- metrics ------------------------------------------------------------------------------------


def test_topk_intersection_on_hand_made_maps():
    a = torch.tensor([[[9.0, 8.0, 7.0], [1.0, 2.0, 3.0]]])
    b = torch.tensor([[[9.0, 1.0, 7.0], [8.0, 2.0, 3.0]]])  # top-3 of a: 9, 8, 7; of b: 9, 8, 7 at other places
    assert topk_intersection(a, b, 3).tolist() == [pytest.approx(2 / 3)]
    assert topk_intersection(a, a, 3).tolist() == [1.0]
    assert topk_intersection(a, -a, 3).tolist() == [0.0]
    with pytest.raises(UserError, match="k must be between 1 and the number of pixels 6"):
        topk_intersection(a, b, 7)


def test_rank_correlation_matches_scipy_with_ties():
    g = np.random.default_rng(0)
    a = g.integers(0, 5, size=(7, 30)).astype(np.float64)  # many ties
    b = a + g.integers(0, 3, size=(7, 30))
    ours = rank_correlation(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    expected = [scipy.stats.spearmanr(a[i], b[i])[0] for i in range(7)]
    np.testing.assert_allclose(ours, expected, rtol=1e-12)
    assert rank_correlation(torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.tensor([[4.0, 3.0, 2.0, 1.0]])).item() == -1.0


def test_center_of_mass_and_shift():
    a = torch.zeros(2, 5, 7)
    a[0, 0, 0] = a[0, 4, 6] = 1.0  # center (2, 3)
    a[1, 1, 2] = -3.0  # sign does not matter: |map|
    torch.testing.assert_close(center_of_mass(a), torch.tensor([[2.0, 3.0], [1.0, 2.0]]))
    b = torch.zeros(2, 5, 7)
    b[0, 2, 3] = 1.0
    b[1, 4, 6] = 1.0
    torch.testing.assert_close(center_of_mass_shift(a, b), torch.tensor([0.0, 5.0]))
    torch.testing.assert_close(center_of_mass(torch.zeros(1, 5, 7)), torch.tensor([[2.0, 3.0]]))  # empty: middle


def test_mass_in_region():
    maps = torch.tensor([[[1.0, 3.0], [0.0, -4.0]]])
    region = torch.tensor([[True, False], [False, True]])
    torch.testing.assert_close(mass_in_region(maps, region), torch.tensor([5 / 8]))
    with pytest.raises(UserError, match="boolean mask"):
        mass_in_region(maps, region.float())


def test_sensitivity_max_matches_captum(batch):
    from captum.metrics import sensitivity_max as captum_sensitivity_max

    x, t = batch
    net = conv_net()
    torch.manual_seed(7)
    ours = sensitivity_max(net, x, t, "gradient", perturb_radius=0.05, n_perturb_samples=6)
    torch.manual_seed(7)  # same draws from the global generator, in the same order
    theirs = captum_sensitivity_max(captum_attr.Saliency(net).attribute, x, perturb_radius=0.05, target=t,
                                    n_perturb_samples=6)  # Saliency's default abs=True: |grad|, one channel
    torch.testing.assert_close(ours, theirs.to(ours.dtype), rtol=1e-6, atol=1e-9)


# -- attacks --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_digits() -> tuple[nn.Module, torch.Tensor]:
    """A SmallCNN trained briefly on digits and 24 test images it classifies correctly."""
    from mlmyths import data
    from mlmyths.train import TrainConfig, fit

    ds = data.load("digits")
    torch.manual_seed(0)
    net = SmallCNN(1, 10, 8, width=0.5)
    fit(net, ds.x_train, ds.y_train, TrainConfig(epochs=6, batch_size=32, lr=0.05, schedule="cosine"),
        transform=data.to_float, seed=0)
    net.eval()
    x = data.to_float(ds.x_test)
    with torch.no_grad():
        correct = net(x).argmax(1) == ds.y_test
    return net, x[correct][:24]


@pytest.mark.parametrize("name", ["topk", "mass_center", "targeted", "random"])
def test_attacks_stay_in_the_ball_and_pixel_range(trained_digits, name):
    net, x = trained_digits
    x = x.clone()
    x[:, :, 0, 0] = 0.0  # pixels at both ends of the range
    x[:, :, 0, 1] = 1.0
    region = torch.zeros(8, 8, dtype=torch.bool)
    region[:2, :2] = True
    eps = 0.1
    r = attack(net, x, "gradient", name, epsilon=eps, step_size=0.04, steps=6, k=4, target_region=region,
               generator=torch.Generator().manual_seed(0))
    assert float((r.inputs - x).abs().max()) <= eps + 1e-6
    assert float(r.inputs.min()) >= 0.0 and float(r.inputs.max()) <= 1.0
    assert r.trace.shape == ((1 if name == "random" else 6), len(x))
    with torch.no_grad():  # honest labels: every returned input marked kept has the original prediction
        preds = net(r.inputs).argmax(1)
    assert bool((preds[r.label_kept] == r.labels[r.label_kept]).all())
    torch.testing.assert_close(r.inputs[~r.label_kept], x[~r.label_kept])
    assert r.label_changes.tolist() == torch.isnan(r.trace).sum(0).tolist()


def test_random_attack_reports_label_changes_honestly(trained_digits):
    """At a large ε some random sign perturbations flip the label; exactly those are reported."""
    net, x = trained_digits
    eps = 0.5
    r = attack(net, x, "gradient", "random", epsilon=eps, k=4, generator=torch.Generator().manual_seed(3))
    signs = torch.randint(0, 2, x.shape, generator=torch.Generator().manual_seed(3)).to(x) * 2 - 1
    with torch.no_grad():
        kept = net((x + eps * signs).clamp(0, 1)).argmax(1) == net(x).argmax(1)
    assert 0 < int(kept.sum()) < len(x)  # the case is not vacuous
    assert r.label_kept.tolist() == kept.tolist()


def test_iterative_attack_returns_best_label_preserving_iterate(trained_digits):
    net, x = trained_digits
    r = attack(net, x, "gradient", "topk", epsilon=0.25, step_size=0.05, steps=8, k=4)
    found = r.best_step >= 0
    assert bool(found.all())
    best_in_trace = r.trace[r.best_step, torch.arange(len(x))]
    torch.testing.assert_close(best_in_trace, r.criterion)  # the returned iterate is the one measured
    torch.testing.assert_close(r.criterion, torch.nan_to_num(r.trace, nan=2.0).min(0).values)  # and the best
    torch.testing.assert_close(topk_intersection(r.original_map, r.perturbed_map, 4), r.criterion)
    torch.testing.assert_close(attribute(net, r.inputs, r.labels), r.perturbed_map)


def test_attacks_change_maps_more_than_random(trained_digits):
    net, x = trained_digits
    eps, common = 0.12, dict(steps=15, k=4, generator=torch.Generator().manual_seed(0))
    rand = attack(net, x, "gradient", "random", epsilon=eps, **common)
    topk = attack(net, x, "gradient", "topk", epsilon=eps, step_size=eps / 8, **common)
    center = attack(net, x, "gradient", "mass_center", epsilon=eps, step_size=eps / 8, **common)
    kept = rand.label_kept
    assert float(topk.criterion.mean()) < float(rand.criterion[kept].mean()) - 0.1
    random_shift = center_of_mass_shift(rand.original_map, rand.perturbed_map)[kept].mean()
    assert float(center.criterion.mean()) > 2 * float(random_shift)
    region = torch.zeros(8, 8, dtype=torch.bool)
    region[:2, :2] = True
    targeted = attack(net, x, "gradient", "targeted", epsilon=eps, step_size=eps / 8, target_region=region, **common)
    before = mass_in_region(targeted.original_map, region)
    assert float((targeted.criterion - before).mean()) > 0.02


def test_without_surrogate_relu_gradient_attack_cannot_move(trained_digits):
    net, x = trained_digits
    r = attack(net, x[:6], "gradient", "topk", epsilon=0.1, steps=3, k=4, surrogate_beta=None)
    torch.testing.assert_close(r.inputs, x[:6])
    assert r.criterion.tolist() == [1.0] * 6


def test_attacks_work_for_every_method(trained_digits):
    net, x = trained_digits
    for method in ("gradient_x_input", "integrated_gradients", "smoothgrad", "deeplift"):
        r = attack(net, x[:8], method, "topk", epsilon=0.12, steps=4, k=4, n_steps=4, n_samples=2,
                   generator=torch.Generator().manual_seed(0))
        assert float(r.criterion.mean()) < 1.0, method
    smooth = attack(net, x[:8], "gradient", "topk", epsilon=0.12, steps=4, k=4, beta=3.0)
    torch.testing.assert_close(smooth.original_map, attribute(net, x[:8], smooth.labels, beta=3.0))


def test_attack_rejects_bad_arguments(trained_digits):
    net, x = trained_digits
    with pytest.raises(UserError, match="unknown attack 'fgsm'"):
        attack(net, x, attack="fgsm", epsilon=0.1)
    with pytest.raises(UserError, match="epsilon must be >= 0"):
        attack(net, x, epsilon=-0.1)
    with pytest.raises(UserError, match="outside clip"):
        attack(net, x * 255, epsilon=0.1)
    with pytest.raises(UserError, match="needs target_region"):
        attack(net, x, attack="targeted", epsilon=0.1)
    with pytest.raises(UserError, match="k must be between 1 and the number of pixels 64"):
        attack(net, x, epsilon=0.1, k=65)
    with pytest.raises(UserError, match="unknown option.*n_step\\b"):
        attack(net, x, "integrated_gradients", epsilon=0.1, n_step=4)
