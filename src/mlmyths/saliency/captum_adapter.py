"""Captum attribution objects wherever :mod:`mlmyths.saliency` takes an attribution method.

Every function here that takes ``method`` -- :func:`~mlmyths.saliency.attribute`,
:func:`~mlmyths.saliency.attack`, :func:`~mlmyths.saliency.sensitivity_max` and the metrics of
:mod:`~mlmyths.saliency.robustness` -- takes, besides a method name, a Captum attribution object
such as ``IntegratedGradients(model)``. The options are then the keyword arguments of its
``.attribute(inputs, target=..., **options)`` (``n_steps=``, ``baselines=``, ``abs=``...), and
the object is called as Captum documents, on one tensor of images ``(B, C, H, W)``. One name
differs: the integration rule of ``IntegratedGradients``, Captum's ``method=``, is passed as
``integration=`` (``method`` is the argument that takes the object).

**Which Captum methods can be attacked.** An interpretation attack (Ghorbani et al. 2019,
Sec. 3) follows the derivative of the explanation with respect to the input, so the explanation
must be computed with ``create_graph=True``. Captum's gradient methods take their input gradients
through ``GradientAttribution.gradient_func``, which calls ``torch.autograd.grad`` without
``create_graph``; for the duration of a differentiable call the object's ``gradient_func`` is
replaced by one that keeps the graph (and restored afterwards). Checked against our own methods
(the derivatives agree to rounding, ``tests/test_saliency_captum.py``), with Captum 0.9:

- ``Saliency`` (with ``abs=True`` or not): yes; equals ``method="gradient"``.
- ``InputXGradient``: yes; equals ``"gradient_x_input"``.
- ``IntegratedGradients``: yes, without ``internal_batch_size`` (Captum's batching adds the
  chunks' detached sums, so the derivative would be silently wrong); equals
  ``"integrated_gradients"``.
- ``NoiseTunnel`` (SmoothGrad, SmoothGrad², VarGrad) and ``GradientShap``: no, the noisy copies
  are made and the attributions averaged under ``torch.no_grad``; use ``"smoothgrad"``.
- ``DeepLift``, ``DeepLiftShap``: no, their module hooks fail under ``create_graph`` and keep
  detached activations; use ``"deeplift"``.
- ``GuidedBackprop``, ``Deconvolution``, ``GuidedGradCam``, ``LRP``: no, backward hooks replace
  the ReLU's gradient rule, which is not the derivative of the explanation.
- ``Occlusion``, ``FeatureAblation``, ``ShapleyValueSampling``, ``Lime``, ``KernelShap``,
  ``FeaturePermutation``: no, perturbation methods compute no gradient.
- ``Layer*`` and ``Neuron*`` methods: they attribute to a layer or a neuron, not to the input.

The others are refused by the attacks with a :class:`~mlmyths.errors.UserError` that says why
and what to use; where no derivative is needed (:func:`~mlmyths.saliency.attribute` without
``create_graph``, :func:`~mlmyths.saliency.sensitivity_max`) any Captum method that attributes to
the input works. Captum stays optional (``pip install mlmyths[captum]``; the ``dev`` extra has it too):
this module imports it only when it is handed a Captum object, which means Captum is there.

The object must explain the model that is attacked: its ``forward_func`` is ``model`` (or a
method of it) or a function that calls ``model``. The softplus surrogate of the attacks and
``beta``-smoothing replace the ``nn.ReLU`` modules of ``model`` during the call, so they act
on a Captum object too. ``NoiseTunnel`` and ``GradientShap`` draw their noise from torch's
global generator (seed it with ``torch.manual_seed``).

>>> import torch
>>> from torch import nn
>>> from captum.attr import IntegratedGradients
>>> from mlmyths.saliency import attribute
>>> net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3)).double()
>>> x = torch.rand(2, 1, 4, 4, dtype=torch.float64)
>>> theirs = attribute(net, x, 0, IntegratedGradients(net), raw=True, n_steps=16)
>>> ours = attribute(net, x, 0, "integrated_gradients", raw=True, n_steps=16)
>>> torch.allclose(theirs, ours, rtol=1e-5)      # Captum keeps its quadrature weights in float32
True
"""
from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from mlmyths.errors import UserError

#: Captum classes whose attribution is differentiable in the input (with the graph kept).
DIFFERENTIABLE = ("Saliency", "InputXGradient", "IntegratedGradients")

#: Why the other Captum classes are refused where a derivative is needed, and what to use instead.
_REFUSED = {
    "NoiseTunnel": ("it makes the noisy copies and averages their attributions under torch.no_grad, "
                    "so the result is detached from the input", 'method="smoothgrad"'),
    "GradientShap": ("it is a NoiseTunnel over random baselines, computed under torch.no_grad", 'method="smoothgrad"'),
    "DeepLiftShap": ("its module hooks keep detached activations and fail under create_graph", 'method="deeplift"'),
    "DeepLift": ("its module hooks keep detached activations and fail under create_graph", 'method="deeplift"'),
    "GuidedBackprop": ("its backward hooks replace the ReLU's gradient rule, which is not the derivative "
                       "of the explanation", None),
    "Deconvolution": ("its backward hooks replace the ReLU's gradient rule, which is not the derivative "
                      "of the explanation", None),
    "GuidedGradCam": ("it combines a layer attribution with guided backpropagation's hooks", None),
    "LRP": ("its propagation rules are backward hooks, not the derivative of the explanation", None),
    "PerturbationAttribution": ("it is a perturbation method and computes no gradient", None),
    "LayerAttribution": ("it attributes to a layer, not to the input pixels", None),
    "NeuronAttribution": ("it attributes a neuron, not the output class", None),
}

#: ``.attribute`` options the adapter cannot pass on (it calls ``model(inputs)`` itself and wants one tensor).
_UNSUPPORTED_OPTIONS = {
    "additional_forward_args": "the labels are checked with model(inputs); wrap the model so it takes the "
                               "images alone",
    "return_convergence_delta": "an attribution tensor is expected, not (attribution, delta)",
    "inputs": "the inputs are given by the caller", "target": "the target is given by the caller",
}


def is_captum_attribution(method: object) -> bool:
    """Whether ``method`` is an instance of a Captum attribution class (Captum is not imported)."""
    return (any(cls.__module__.split(".")[0] == "captum" for cls in type(method).__mro__)
            and callable(getattr(method, "attribute", None)))


def method_name(method: object) -> str:
    """A name for messages: the method's string, or the Captum class with what it wraps."""
    if isinstance(method, str):
        return method
    inner = getattr(method, "attribution_method", None)
    return f"{type(method).__name__}({type(inner).__name__})" if inner is not None else type(method).__name__


def _renamed(method: Any, options: dict[str, object]) -> dict[str, object]:
    """``options`` with ``integration`` renamed to Captum's ``method`` (which our argument's name hides)."""
    if "integration" not in options:
        return options
    if "method" not in inspect.signature(method.attribute).parameters:
        raise UserError(f"{method_name(method)}.attribute has no integration rule (integration= is passed as "
                        "Captum's method= to IntegratedGradients)")
    options = dict(options)
    options["method"] = options.pop("integration")
    return options


def check_options(method: Any, options: dict[str, object]) -> None:
    """``options`` must be keyword arguments of ``method.attribute`` that the adapter can pass on."""
    options = _renamed(method, options)
    for name in options:
        if name in _UNSUPPORTED_OPTIONS:
            raise UserError(f"option {name}= of {method_name(method)}.attribute is not supported here: "
                            f"{_UNSUPPORTED_OPTIONS[name]}")
    params = inspect.signature(method.attribute).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return  # e.g. NoiseTunnel passes the rest on to the method it wraps, which checks them
    allowed = {n for n, p in params.items() if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                          inspect.Parameter.KEYWORD_ONLY)}
    allowed -= set(_UNSUPPORTED_OPTIONS)
    unknown = sorted(set(options) - allowed)
    if unknown:
        shown = sorted("integration (Captum's method)" if a == "method" else a for a in allowed)
        raise UserError(f"unknown option(s) {', '.join(unknown)} for {method_name(method)}.attribute; "
                        f"its options are {', '.join(shown) or 'none'}")


def check_model(method: Any, model: nn.Module) -> None:
    """The Captum object must explain ``model`` (when its ``forward_func`` shows which model it calls)."""
    forward = getattr(method, "forward_func", None)
    owner = forward if isinstance(forward, nn.Module) else getattr(forward, "__self__", None)
    if isinstance(owner, nn.Module) and owner is not model:
        raise UserError(f"{method_name(method)} explains a {type(owner).__name__} that is not the model given "
                        f"({type(model).__name__}); build it on the same model, e.g. "
                        f"{type(method).__name__}(model)")


def check_differentiable(method: Any, options: dict[str, object]) -> None:
    """Refuse a Captum object whose attribution is not differentiable in the input, saying why."""
    import captum.attr as ca

    name = method_name(method)
    if isinstance(method, tuple(getattr(ca, c) for c in DIFFERENTIABLE)):
        if isinstance(method, ca.IntegratedGradients) and options.get("internal_batch_size") is not None:
            raise UserError(f"{name} with internal_batch_size={options['internal_batch_size']!r} is not "
                            "differentiable in the input (Captum adds the chunks' detached sums); drop "
                            'internal_batch_size, or use method="integrated_gradients" whose '
                            "internal_batch_size keeps the graph")
        return
    reason, instead = next(((r, i) for cls in type(method).__mro__ for c, (r, i) in _REFUSED.items()
                            if cls.__name__ == c),
                           ("it is not known to give an attribution differentiable in the input", None))
    use = f"Captum's {', '.join(DIFFERENTIABLE)}" + (f", or {instead}" if instead else "")
    raise UserError(f"{name} cannot be attacked: {reason}; an attack differentiates the explanation with "
                    f"respect to the input. Use {use}")


def _gradients_with_graph(forward_fn: Any, inputs: tuple[Tensor, ...], target_ind: Any = None,
                          additional_forward_args: Any = None) -> tuple[Tensor, ...]:
    """Captum's ``compute_gradients`` (same arguments and target selection), keeping the graph."""
    from captum._utils.common import _run_forward

    with torch.enable_grad():
        outputs = _run_forward(forward_fn, inputs, target_ind, additional_forward_args)
        if outputs[0].numel() != 1:
            raise UserError("the model's output has more than one number per example; pass target=")
        return torch.autograd.grad(torch.unbind(outputs), inputs, create_graph=True)


@contextlib.contextmanager
def _keeping_graph(method: Any) -> Iterator[None]:
    """``method``'s input gradients keep their graph for the duration."""
    original = method.gradient_func
    method.gradient_func = _gradients_with_graph
    try:
        yield
    finally:
        method.gradient_func = original


def captum_attribute(method: Any, inputs: Tensor, target: Tensor, *, create_graph: bool,
                     options: dict[str, object]) -> Tensor:
    """``method.attribute(inputs, target=target, **options)``, (B, C, H, W) -> (B, C, H, W).

    With ``create_graph`` the result is differentiable with respect to ``inputs`` (refused with a
    :class:`UserError` for the Captum classes where it cannot be, see the module docstring).
    """
    check_options(method, options)
    options = _renamed(method, options)
    if create_graph:
        check_differentiable(method, options)
    x = inputs if (create_graph and inputs.requires_grad) else inputs.detach().requires_grad_(True)
    with _keeping_graph(method) if create_graph else contextlib.nullcontext():
        out = method.attribute(x, target=target, **options)
    if not isinstance(out, Tensor) or out.shape != inputs.shape:
        got = f"shape {tuple(out.shape)}" if isinstance(out, Tensor) else type(out).__name__
        raise UserError(f"{method_name(method)}.attribute returned {got}, not an attribution of the inputs' shape "
                        f"{tuple(inputs.shape)}; use a method that attributes to the input pixels")
    return out if create_graph else out.detach()
