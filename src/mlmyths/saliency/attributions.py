"""Attribution methods (saliency maps), batched and differentiable.

One call signature for every method, in the spirit of Captum's ``Attribution.attribute``::

    maps = attribute(model, x, target, method="integrated_gradients", n_steps=32)   # (B, H, W)
    raw = attribute(model, x, target, method="deeplift", raw=True)                   # (B, C, H, W)

``method`` is one of :data:`METHODS`:

- ``"gradient"``: simple gradient ∂f_target/∂x (Simonyan et al. 2014), the "simple gradient"
  of Ghorbani et al. (2019), Sec. 2.
- ``"gradient_x_input"``: x ⊙ ∂f/∂x (Shrikumar et al. 2016).
- ``"integrated_gradients"``: (x − x₀) ⊙ ∫₀¹ ∂f/∂x(x₀ + α(x − x₀)) dα (Sundararajan et al.
  2017, Eq. 1), the integral by Gauss–Legendre quadrature or a Riemann sum.
- ``"smoothgrad"``: the mean gradient at x + N(0, σ²) (Smilkov et al. 2017).
- ``"deeplift"``: DeepLIFT's Rescale rule (Shrikumar et al. 2017, Sec. 3.3): every elementwise
  activation's local derivative is replaced by the secant (f(z) − f(z₀)) / (z − z₀) between the
  input and the reference x₀, max-pooling by Captum's summation-to-delta rule, and the
  attribution is (x − x₀) ⊙ multipliers. Sum over pixels = f(x) − f(x₀) ("summation to delta").

The default output is the per-pixel map of Ghorbani et al.: absolute values summed over
channels, ``(B, H, W)``; ``raw=True`` gives the signed attribution ``(B, C, H, W)``. The score
differentiated is the model's output (logit) for ``target``, as in the paper.

With ``create_graph=True`` the attribution stays differentiable with respect to the input, so
that it can be attacked (:mod:`mlmyths.saliency.attacks`). For a piecewise-linear (ReLU)
network the second derivative of the gradient vanishes almost everywhere: ``beta=β`` computes
the explanation through the same network with every ``nn.ReLU`` replaced by
``softplus_β(z) = log(1 + exp(βz)) / β`` (:func:`smoothed`), which is both the attack surrogate
of Ghorbani et al. (Sec. 3) and the β-smoothing defence of Dombrowski et al. (NeurIPS 2019,
Sec. 4). Activations must be ``nn.Module`` instances (as in Captum) for ``beta`` and DeepLIFT.

>>> import torch
>>> from torch import nn
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<torch._C.Generator object at ...>
>>> model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
>>> x = torch.rand(2, 1, 4, 4)
>>> attribute(model, x, target=1).shape
torch.Size([2, 4, 4])
>>> ig = attribute(model, x, target=1, method="integrated_gradients", raw=True, n_steps=64)
>>> gap = model(x)[:, 1] - model(torch.zeros_like(x))[:, 1]
>>> torch.allclose(ig.sum((1, 2, 3)), gap, atol=1e-2)    # completeness (ReLU kinks: O(1/n_steps))
True
"""
from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlmyths.errors import UserError
from mlmyths.saliency import captum_adapter
from mlmyths.saliency.captum_adapter import is_captum_attribution

METHODS = ("gradient", "gradient_x_input", "integrated_gradients", "smoothgrad", "deeplift")
INTEGRATION_RULES = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")
Method = Literal["gradient", "gradient_x_input", "integrated_gradients", "smoothgrad", "deeplift"]

#: Elementwise activations DeepLIFT's Rescale rule applies to (Captum's list, plus SiLU), with
#: the local derivative used where the input equals its reference (|z − z₀| < eps).
_DERIVATIVES: dict[type[nn.Module], Callable[[nn.Module, Tensor], Tensor]] = {
    nn.ReLU: lambda m, z: (z > 0).to(z.dtype),
    nn.LeakyReLU: lambda m, z: torch.where(z > 0, 1.0, m.negative_slope).to(z.dtype),  # type: ignore[attr-defined]
    nn.ELU: lambda m, z: torch.where(z > 0, torch.ones_like(z), m.alpha * torch.exp(z)),  # type: ignore[attr-defined]
    nn.Softplus: lambda m, z: torch.where(m.beta * z > m.threshold, torch.ones_like(z),  # type: ignore[attr-defined]
                                          torch.sigmoid(m.beta * z)),  # type: ignore[attr-defined]
    nn.Sigmoid: lambda m, z: torch.sigmoid(z) * (1 - torch.sigmoid(z)),
    nn.Tanh: lambda m, z: 1 - torch.tanh(z) ** 2,
    nn.SiLU: lambda m, z: torch.sigmoid(z) * (1 + z * (1 - torch.sigmoid(z))),
}
_DEEPLIFT_EPS = 1e-10  # Captum's threshold below which the secant becomes the derivative


# -- shared input handling ----------------------------------------------------------------------


def check_inputs(inputs: object, name: str = "inputs") -> Tensor:
    """``inputs`` must be a floating tensor of images ``(B, C, H, W)``."""
    if not isinstance(inputs, Tensor) or inputs.ndim != 4 or not inputs.is_floating_point():
        got = (f"shape {tuple(inputs.shape)}, dtype {inputs.dtype}" if isinstance(inputs, Tensor)
               else type(inputs).__name__)
        raise UserError(f"{name} must be a float tensor of images (B, C, H, W), got {got}; "
                        "add a batch dimension with x[None] and convert uint8 images with data.to_float")
    return inputs


def check_target(target: int | Tensor, batch: int, num_classes: int | None = None) -> Tensor:
    """``target`` (an int, or one class per image) as an int64 tensor ``(B,)``."""
    t = torch.as_tensor(target)
    if t.is_floating_point() or t.ndim > 1 or (t.ndim == 1 and len(t) != batch):
        raise UserError(f"target must be an int or {batch} integer class indices (one per image), "
                        f"got {tuple(t.shape) if t.ndim else target!r}")
    t = t.to(torch.int64).expand(batch) if t.ndim == 0 else t.to(torch.int64)
    if num_classes is not None and len(t) and (int(t.min()) < 0 or int(t.max()) >= num_classes):
        raise UserError(f"target must be a class index in 0..{num_classes - 1}, got {t.tolist()}")
    return t


def _baseline(baseline: float | Tensor | None, inputs: Tensor) -> Tensor:
    """The reference x₀, broadcast to ``inputs`` (batch dimension 1 kept when shared)."""
    if baseline is None:
        return torch.zeros((1, *inputs.shape[1:]), dtype=inputs.dtype, device=inputs.device)
    b = torch.as_tensor(baseline, dtype=inputs.dtype, device=inputs.device)
    try:
        b = torch.broadcast_to(b, inputs.shape) if b.ndim == 4 and len(b) == len(inputs) else \
            torch.broadcast_to(b, (1, *inputs.shape[1:]))
    except RuntimeError:
        raise UserError(f"baseline of shape {tuple(b.shape)} does not broadcast to inputs {tuple(inputs.shape)}; "
                        "give a number, one image (C, H, W) or one per input (B, C, H, W)") from None
    return b.detach()


def saliency_map(raw: Tensor) -> Tensor:
    """Per-pixel map of Ghorbani et al. (2019): |attribution| summed over channels, (B, C, H, W) -> (B, H, W)."""
    return raw.abs().sum(1)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode for the duration (dropout off, batch-norm statistics frozen)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


# -- activation hooks: beta-smoothing and DeepLIFT -------------------------------------------------


class _ActivationHooks:
    """Forward hooks on every elementwise activation module of ``model``.

    Each call of an activation sees its input ``z`` and its output ``y`` (``softplus_β(z)``
    instead of ``relu(z)`` when ``beta`` is set) and may replace the output: ``transform(index,
    module, z, y)``, where ``index`` counts activation calls within one forward pass. In-place
    activations get a copy of their input, so that ``z`` is still the pre-activation.
    """

    def __init__(self, model: nn.Module, beta: float | None, types: tuple[type[nn.Module], ...]):
        self.modules = [m for m in model.modules() if isinstance(m, types)]
        self.beta = beta
        self.transform: Callable[[int, nn.Module, Tensor, Tensor], Tensor] = lambda i, m, z, y: y
        self.calls = 0
        self._inputs: dict[int, list[Tensor]] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> _ActivationHooks:
        for m in self.modules:
            self._handles.append(m.register_forward_pre_hook(self._pre))
            self._handles.append(m.register_forward_hook(self._post))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _pre(self, module: nn.Module, args: tuple[Tensor, ...]) -> tuple[Tensor, ...] | None:
        self._inputs.setdefault(id(module), []).append(args[0])
        if getattr(module, "inplace", False):
            return (args[0].clone(), *args[1:])
        return None

    def _post(self, module: nn.Module, args: tuple[Tensor, ...], out: Tensor) -> Tensor:
        z = self._inputs[id(module)].pop()
        if self.beta is not None and isinstance(module, nn.ReLU):
            out = F.softplus(z, beta=self.beta)
        index, self.calls = self.calls, self.calls + 1
        return self.transform(index, module, z, out)

    def derivative(self, module: nn.Module, z: Tensor) -> Tensor:
        """The activation's local derivative at ``z`` (of softplus_β for a smoothed ReLU)."""
        if self.beta is not None and isinstance(module, nn.ReLU):
            return torch.sigmoid(self.beta * z)
        kind = next(k for k in type(module).__mro__ if k in _DERIVATIVES)  # subclasses use their base's rule
        return _DERIVATIVES[kind](module, z)


@contextlib.contextmanager
def smoothed(model: nn.Module, beta: float | None) -> Iterator[nn.Module]:
    """``model`` with every ``nn.ReLU`` computing ``softplus_β(z) = log(1 + e^{βz}) / β`` instead.

    softplus_β → ReLU as β → ∞ (the gap is at most log 2 / β), and its second derivative is
    nonzero, so that gradient-based explanations become differentiable in the input: the
    attack surrogate of Ghorbani et al. (2019, Sec. 3) and the β-smoothing of Dombrowski et al.
    (2019, Sec. 4, Theorem 2). ``beta=None`` leaves the model unchanged.

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(1, 1), nn.ReLU())
    >>> with torch.no_grad():
    ...     _ = net[0].weight.fill_(1.0), net[0].bias.fill_(0.0)
    >>> with smoothed(net, beta=1.0), torch.no_grad():
    ...     round(float(net(torch.zeros(1, 1))), 4)          # log 2
    0.6931
    """
    if beta is None:
        yield model
        return
    _check_beta(model, beta)
    with _ActivationHooks(model, beta, (nn.ReLU,)):
        yield model


def _check_beta(model: nn.Module, beta: float | None) -> None:
    if beta is None:
        return
    if not (isinstance(beta, (int, float)) and beta > 0):
        raise UserError(f"beta must be a positive number (the softplus sharpness), got {beta!r}")
    if not any(isinstance(m, nn.ReLU) for m in model.modules()):
        raise UserError("beta-smoothing replaces nn.ReLU modules, and this model has none; "
                        "write activations as nn.ReLU() modules rather than F.relu calls")


# -- the methods ------------------------------------------------------------------------------------


def _input_gradient(model: nn.Module, points: Tensor, target: Tensor, create_graph: bool,
                    chunk: int | None = None) -> tuple[Tensor, Tensor]:
    """∂ model(points)[target] / ∂ points and the logits, ``points`` (N, C, H, W), ``target`` (N,).

    ``points`` may be part of a graph (then the gradient is differentiable with respect to what
    it came from when ``create_graph``); otherwise a fresh leaf is made.
    """
    grads, logits = [], []
    chunk = chunk or len(points)
    for start in range(0, len(points), chunk):
        p = points[start:start + chunk]
        if not p.requires_grad:
            p = p.detach().requires_grad_(True)
        with torch.enable_grad():
            out = model(p)
            t = check_target(target[start:start + chunk], len(p), out.shape[-1])
            score = out.gather(1, t[:, None]).sum()
            (g,) = torch.autograd.grad(score, p, create_graph=create_graph)
        grads.append(g)
        logits.append(out if create_graph else out.detach())
    return torch.cat(grads), torch.cat(logits)


def integration_points(n_steps: int, rule: str = "gausslegendre") -> tuple[Tensor, Tensor]:
    """Nodes α ∈ [0, 1] and weights of a quadrature rule for ∫₀¹ g(α) dα, each (n_steps,).

    Gauss–Legendre is exact for polynomials of degree 2n−1; the Riemann rules follow Captum,
    except ``riemann_trapezoid``, which here is the composite trapezoid rule (weights sum to 1).

    >>> a, w = integration_points(4, "riemann_right")
    >>> a.tolist(), w.tolist()
    ([0.25, 0.5, 0.75, 1.0], [0.25, 0.25, 0.25, 0.25])
    """
    if rule not in INTEGRATION_RULES:
        raise UserError(f"unknown integration rule {rule!r}; choose one of {', '.join(INTEGRATION_RULES)}")
    if n_steps < (2 if rule == "riemann_trapezoid" else 1):
        raise UserError(f"n_steps must be >= {2 if rule == 'riemann_trapezoid' else 1} for {rule}, got {n_steps}")
    n = n_steps
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n)
        return torch.from_numpy(0.5 * (nodes + 1)), torch.from_numpy(0.5 * weights)
    if rule == "riemann_trapezoid":
        alphas = torch.linspace(0, 1, n, dtype=torch.float64)
        weights = torch.full((n,), 1 / (n - 1), dtype=torch.float64)
        weights[[0, -1]] /= 2
        return alphas, weights
    offset = {"riemann_left": 0.0, "riemann_middle": 0.5, "riemann_right": 1.0}[rule]
    return (torch.arange(n, dtype=torch.float64) + offset) / n, torch.full((n,), 1 / n, dtype=torch.float64)


def _integrated_gradients(model: nn.Module, x: Tensor, x0: Tensor, target: Tensor, create_graph: bool,
                          n_steps: int, rule: str, chunk: int | None) -> tuple[Tensor, Tensor | None]:
    alphas, weights = (t.to(x.dtype).to(x.device) for t in integration_points(n_steps, rule))
    B = len(x)
    delta = x - x0  # (B, C, H, W)
    points = (x0 + alphas.view(-1, 1, 1, 1, 1) * delta).reshape(n_steps * B, *x.shape[1:])  # (S*B, C, H, W)
    grads, _ = _input_gradient(model, points, target.repeat(n_steps), create_graph, chunk)
    mean_grad = torch.einsum("s,sbchw->bchw", weights, grads.view(n_steps, *x.shape))
    return delta * mean_grad, None


def _smoothgrad(model: nn.Module, x: Tensor, target: Tensor, create_graph: bool, n_samples: int,
                stdev: float, noise: Tensor | None, generator: torch.Generator | None,
                chunk: int | None) -> tuple[Tensor, Tensor | None]:
    B = len(x)
    if noise is None:
        if n_samples < 1 or stdev < 0:
            raise UserError(f"smoothgrad needs n_samples >= 1 and stdev >= 0, got n_samples={n_samples}, stdev={stdev}")
        noise = torch.randn((B, n_samples, *x.shape[1:]), generator=generator, dtype=x.dtype,
                            device="cpu" if generator is None else generator.device).to(x.device) * stdev
    elif noise.ndim != 5 or noise.shape[0] != B or noise.shape[2:] != x.shape[1:]:
        expected = ", ".join(map(str, x.shape[1:]))
        raise UserError(f"noise must have shape (B, n_samples, C, H, W) = ({B}, n, {expected}), "
                        f"got {tuple(noise.shape)}")
    n = noise.shape[1]
    points = (x[:, None] + noise.to(x.dtype)).reshape(B * n, *x.shape[1:])  # (B*n, C, H, W), sample index inner
    grads, _ = _input_gradient(model, points, target.repeat_interleave(n), create_graph, chunk)
    return grads.view(B, n, *x.shape[1:]).mean(1), None


def _maxpool_linearized(m: nn.MaxPool2d, u: Tensor, ref: tuple[Tensor, Tensor, Tensor],
                        act: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    """Captum's DeepLIFT rule for max-pooling, written as a map that is linear in ``u``.

    With y = pool(x) (argmax i*), y₀ = pool(x₀) (argmax i₀) and M = max(y, y₀), output j is
    y₀ + (M − y₀)·(u − x₀)[i*]/(x − x₀)[i*] + (y − M)·(u − x₀)[i₀]/(x − x₀)[i₀]:
    its gradient routes Δy = (M − y₀) + (y − M) to the two argmaxes, so Σ multipliers·Δx = Σ Δy; where
    |Δx| < eps it is the ordinary max-pool gradient. At u = x the output equals y.
    """
    z0, y0, idx0 = ref
    z, y, idx = act
    B, C = u.shape[:2]
    def flat(t: Tensor) -> Tensor:  # (B, C, H*W)
        return t.expand(B, *t.shape[1:]).reshape(B, C, -1)

    out_shape = y.shape
    idx, idx0 = flat(idx), flat(idx0)
    du, dz = flat(u) - flat(z0), flat(z) - flat(z0)
    y, y0 = flat(y), flat(y0)
    top = torch.maximum(y, y0)

    def term(index: Tensor, gain: Tensor, fallback: float) -> Tensor:
        d = dz.gather(2, index)
        safe = d.abs() >= _DEEPLIFT_EPS
        coeff = torch.where(safe, gain / torch.where(safe, d, torch.ones_like(d)), torch.full_like(d, fallback))
        return coeff * du.gather(2, index)

    out = y0 + term(idx, top - y0, 1.0) + term(idx0, y - top, 0.0)  # (B, C, Hout*Wout)
    return out.view(out_shape)


def _pool(m: nn.MaxPool2d, z: Tensor) -> tuple[Tensor, Tensor]:
    return F.max_pool2d(z, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, return_indices=True)


def _deeplift(model: nn.Module, x: Tensor, x0: Tensor, target: Tensor, create_graph: bool,
              beta: float | None) -> tuple[Tensor, Tensor]:
    """DeepLIFT Rescale as the gradient of a linearized copy of the forward pass.

    Three forward passes: the reference x₀ (records z₀, f(z₀) at every activation), the input x
    (records z, f(z), differentiable in x when ``create_graph``), and a pass on a fresh leaf
    u = x in which every activation is the affine map f(z₀) + s·(z − z₀) with the secant slope
    s = (f(z) − f(z₀)) / (z − z₀) from the first two passes (max-pooling likewise, see
    :func:`_maxpool_linearized`). ∂/∂u of that pass is DeepLIFT's multiplier, and since s is a
    function of x it stays differentiable in x, as the attack needs.
    """
    hooks = _ActivationHooks(model, beta, (*_DERIVATIVES, nn.MaxPool2d))
    records: dict[str, list[tuple[Tensor, ...]]] = {"ref": [], "act": []}

    def record(key: str) -> Callable[[int, nn.Module, Tensor, Tensor], Tensor]:
        def fn(i: int, m: nn.Module, z: Tensor, y: Tensor) -> Tensor:
            if isinstance(m, nn.MaxPool2d):
                y, idx = _pool(m, z)
                records[key].append((z, y, idx))
            else:
                records[key].append((z, y))
            return y
        return fn

    with hooks:
        hooks.calls, hooks.transform = 0, record("ref")
        with torch.no_grad():
            model(x0)
        hooks.calls, hooks.transform = 0, record("act")
        with torch.enable_grad() if create_graph else torch.no_grad():
            logits = model(x)
        if len(records["ref"]) != len(records["act"]):
            raise RuntimeError("the model called its activations a different number of times for the input "
                               "and the reference; DeepLIFT needs a deterministic forward pass")
        slopes: dict[int, Tensor] = {}

        def linearize(i: int, m: nn.Module, z: Tensor, y: Tensor) -> Tensor:
            if isinstance(m, nn.MaxPool2d):
                return _maxpool_linearized(m, z, records["ref"][i], records["act"][i])  # type: ignore[arg-type]
            (za, ya), (z0, y0) = records["act"][i], records["ref"][i]
            if i not in slopes:  # the secant slope, computed once per activation call
                dz = za - z0
                safe = dz.abs() >= _DEEPLIFT_EPS
                slopes[i] = torch.where(safe, (ya - y0) / torch.where(safe, dz, torch.ones_like(dz)),
                                        hooks.derivative(m, za))
            return y0 + slopes[i] * (z - z0)

        hooks.calls, hooks.transform = 0, linearize
        u = x.detach().requires_grad_(True)
        with torch.enable_grad():
            out = model(u)
            t = check_target(target, len(x), out.shape[-1])
            (multipliers,) = torch.autograd.grad(out.gather(1, t[:, None]).sum(), u, create_graph=create_graph)
    return (x - x0) * multipliers, logits


def attribute_with_logits(model: nn.Module, inputs: Tensor, target: int | Tensor, method: str = "gradient", *,
                          baseline: float | Tensor | None = None, n_steps: int = 32,
                          integration: str = "gausslegendre", n_samples: int = 16, stdev: float = 0.15,
                          noise: Tensor | None = None, generator: torch.Generator | None = None,
                          beta: float | None = None, create_graph: bool = False,
                          internal_batch_size: int | None = None,
                          _want_logits: bool = True) -> tuple[Tensor, Tensor]:
    """:func:`attribute` (``raw=True``) and the model's logits at ``inputs`` (B, num_classes).

    The logits come from the same forward pass when the method has one at x (gradient,
    gradient × input, DeepLIFT), else from one extra forward pass; they are those of the
    smoothed network when ``beta`` is set.
    """
    if method not in METHODS:
        raise UserError(f"unknown attribution method {method!r}; choose one of {', '.join(METHODS)}")
    x = check_inputs(inputs)
    t = check_target(target, len(x))
    logits: Tensor | None
    with eval_mode(model), smoothed(model, beta if method != "deeplift" else None):
        if method in ("gradient", "gradient_x_input"):
            grad, logits = _input_gradient(model, x, t, create_graph)
            raw = grad * x if method == "gradient_x_input" else grad
        elif method == "integrated_gradients":
            raw, logits = _integrated_gradients(model, x, _baseline(baseline, x), t, create_graph, n_steps,
                                                integration, internal_batch_size)
        elif method == "smoothgrad":
            raw, logits = _smoothgrad(model, x, t, create_graph, n_samples, stdev, noise, generator,
                                      internal_batch_size)
        else:
            _check_beta(model, beta)
            raw, logits = _deeplift(model, x, _baseline(baseline, x), t, create_graph, beta)
        if logits is None and _want_logits:
            with torch.enable_grad() if create_graph else torch.no_grad():
                logits = model(x)
    return raw, logits  # type: ignore[return-value]


#: Keyword options of mlmyths' own methods (a Captum object takes those of its ``.attribute``).
METHOD_OPTIONS = frozenset(
    name for name, p in inspect.signature(attribute_with_logits).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY and not name.startswith("_") and name not in ("beta", "create_graph")
)


def check_method(method: object, options: dict[str, object], model: nn.Module | None = None) -> None:
    """``method`` is a name of :data:`METHODS` or a Captum attribution object, ``options`` are its own,
    and a Captum object explains ``model``."""
    if isinstance(method, str):
        if method not in METHODS:
            raise UserError(f"unknown attribution method {method!r}; choose one of {', '.join(METHODS)}, "
                            "or pass a Captum attribution object such as captum.attr.IntegratedGradients(model)")
        unknown = sorted(set(options) - METHOD_OPTIONS)
        if unknown:
            raise UserError(f"unknown option(s) {', '.join(unknown)} for method {method!r}; attribution options are "
                            f"{', '.join(sorted(METHOD_OPTIONS))}")
    elif is_captum_attribution(method):
        captum_adapter.check_options(method, options)
        if model is not None:
            captum_adapter.check_model(method, model)
    else:
        raise UserError(f"method must be one of {', '.join(METHODS)} or a Captum attribution object (e.g. "
                        f"captum.attr.IntegratedGradients(model)), got a {type(method).__name__}")


def explain(model: nn.Module, inputs: Tensor, target: int | Tensor, method: object = "gradient", *,
            beta: float | None = None, create_graph: bool = False, want_logits: bool = True,
            options: dict[str, object] | None = None) -> tuple[Tensor, Tensor | None]:
    """The raw attribution (B, C, H, W) by ``method`` -- a name of :data:`METHODS` with
    ``options`` of :func:`attribute_with_logits`, or a Captum attribution object with options of its
    ``.attribute`` (:mod:`mlmyths.saliency.captum_adapter`) -- and, with ``want_logits``, the model's
    logits at ``inputs`` (B, num_classes); the one entry point of every function that takes a method.
    """
    options = dict(options or {})
    check_method(method, options, model)
    if isinstance(method, str):
        return attribute_with_logits(model, inputs, target, method, beta=beta, create_graph=create_graph,
                                     _want_logits=want_logits, **options)  # type: ignore[arg-type]
    x = check_inputs(inputs)
    t = check_target(target, len(x))
    logits = None
    with eval_mode(model), smoothed(model, beta):
        if want_logits:
            with torch.enable_grad() if create_graph else torch.no_grad():
                logits = model(x)
            check_target(t, len(x), logits.shape[-1])
        raw = captum_adapter.captum_attribute(method, x, t, create_graph=create_graph, options=options)
    return raw, logits


def attribute(model: nn.Module, inputs: Tensor, target: int | Tensor, method: object = "gradient", *,
              raw: bool = False, beta: float | None = None, create_graph: bool = False,
              **options: object) -> Tensor:
    """Attribution of ``model``'s output for ``target`` to the pixels of ``inputs``.

    Parameters
    ----------
    model : an ``nn.Module`` mapping images (B, C, H, W) to logits (B, num_classes); it is put
        in eval mode for the call and restored afterwards.
    inputs : float tensor (B, C, H, W).
    target : class index (int) or one per image, int tensor (B,).
    method : one of :data:`METHODS` (default ``"gradient"``), or a Captum attribution object built
        on ``model`` (e.g. ``captum.attr.IntegratedGradients(model)``; see
        :mod:`mlmyths.saliency.captum_adapter` for which are differentiable).
    raw : return the signed attribution (B, C, H, W) instead of the map (B, H, W) of
        |attribution| summed over channels (Ghorbani et al. 2019, Sec. 2).
    beta : explain through the softplus_β network instead (:func:`smoothed`): β-smoothing.
    create_graph : keep the result differentiable with respect to ``inputs`` (for attacks).
    **options : the method's options. For a Captum object, the keyword arguments of its
        ``.attribute`` (``n_steps``, ``baselines``, ...). For our methods:

        - ``baseline``: reference x₀ of integrated gradients and DeepLIFT: a number, one image or
          one per input (default: zeros, the black image);
        - ``n_steps``, ``integration``: quadrature of integrated gradients (default 32-point
          Gauss–Legendre; ``"riemann_right"`` is the sum of the paper's code);
        - ``n_samples``, ``stdev``, ``noise``, ``generator``: SmoothGrad's number of noisy copies,
          noise standard deviation in input units (default 16 and 0.15), an explicit noise tensor
          (B, n_samples, C, H, W) instead, and the generator that draws it;
        - ``internal_batch_size``: evaluate integration points / noisy copies in chunks of this
          many images (default: all at once).

    Returns
    -------
    Tensor (B, H, W), or (B, C, H, W) with ``raw=True``.

    Example
    -------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(32, 3))
    >>> x = torch.rand(5, 1, 4, 4)
    >>> dl = attribute(net, x, target=torch.tensor([0, 1, 2, 0, 1]), method="deeplift", raw=True)
    >>> delta = net(x) - net(torch.zeros_like(x))
    >>> torch.allclose(dl.sum((1, 2, 3)), delta[range(5), [0, 1, 2, 0, 1]], atol=1e-5)   # summation to delta
    True
    """
    attributions, _ = explain(model, inputs, target, method, beta=beta, create_graph=create_graph,
                              want_logits=False, options=options)
    return attributions if raw else saliency_map(attributions)
