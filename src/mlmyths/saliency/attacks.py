"""Interpretation attacks: perturbations that keep the label and change the saliency map.

Ghorbani, Abid & Zou, "Interpretation of Neural Networks is Fragile", AAAI 2019, Sec. 3,
Algorithm 1 (iterative feature-importance attack)::

    result = attack(model, x, method="gradient", attack="topk", epsilon=8/255, step_size=0.5/255,
                    steps=300, k=1000)
    result.inputs, result.label_kept, result.criterion, result.trace

Each step moves every image of the batch by ``step_size · sign(∇ₓ D)``, where D is a
dissimilarity between the current explanation and the original one, then projects onto the
L∞ ball of radius ``epsilon`` around the original image and onto the pixel range ``clip``:

- ``"topk"``: minimize the (normalized) saliency mass on the original top-k pixels;
- ``"mass_center"``: maximize the squared displacement of the map's center of mass;
- ``"targeted"``: maximize the saliency mass inside ``target_region`` (a boolean (H, W) mask);
- ``"random"``: the baseline, one random sign perturbation ±epsilon of every pixel.

For ReLU networks the gradient of an explanation with respect to the input is zero almost
everywhere, so the direction is computed through a softplus copy of the network
(``surrogate_beta``; :func:`mlmyths.saliency.smoothed`), while the explanation that is measured
is the original network's (Sec. 3, "we replace ReLU with softplus"). The surrogate is used for
every method by default; DeepLIFT's multipliers are secants, not derivatives, so they already
vary with x and ``surrogate_beta=None`` (the paper's choice for DeepLIFT) attacks the
explanation itself, about as strongly on Fashion-MNIST. After every step the explanation of the real network is computed and,
per image, the iterate with the best criterion among those that keep the predicted label is
kept (the paper's ``check_measure``/``iterative_attack``). An image for which no perturbed input
kept the label is reported with ``label_kept = False`` and returned unperturbed.

``method`` is one of :data:`~mlmyths.saliency.METHODS` or a Captum attribution object whose
attribution is differentiable in the input (``Saliency``, ``InputXGradient``,
``IntegratedGradients``; see :mod:`mlmyths.saliency.captum_adapter` for why the others are not);
the surrogate replaces the ``nn.ReLU`` modules of ``model`` for it too.

With ``beta`` set, the explanation itself is β-smoothed (Dombrowski et al., NeurIPS 2019): the
attack then measures, and differentiates, the softplus_β network's explanation.

>>> import torch
>>> from torch import nn
>>> _ = torch.manual_seed(0)
>>> net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3))
>>> x = torch.rand(4, 1, 4, 4)
>>> r = attack(net, x, attack="topk", epsilon=0.1, step_size=0.02, steps=10, k=3)
>>> bool(((r.inputs - x).abs() <= 0.1 + 1e-6).all()), bool(r.inputs.min() >= 0), bool(r.inputs.max() <= 1)
(True, True, True)
>>> r.criterion.shape, r.trace.shape
(torch.Size([4]), torch.Size([10, 4]))
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mlmyths.errors import UserError
from mlmyths.saliency.attributions import (
    attribute,
    check_inputs,
    check_method,
    check_target,
    eval_mode,
    explain,
    saliency_map,
)
from mlmyths.saliency.captum_adapter import check_differentiable, is_captum_attribution
from mlmyths.saliency.metrics import center_of_mass, center_of_mass_shift, mass_in_region, topk_intersection, topk_mask

ATTACKS = ("topk", "mass_center", "targeted", "random")

@dataclass(frozen=True)
class AttackResult:
    """What :func:`attack` returns (all tensors detached, batch first)."""

    inputs: Tensor  #: (B, C, H, W) the best label-preserving perturbed inputs (the original where none)
    label_kept: Tensor  #: (B,) bool: a perturbed input with the original predicted label was found
    labels: Tensor  #: (B,) the predicted labels of the original inputs (kept by the attack)
    original_map: Tensor  #: (B, H, W) explanation of the original inputs
    perturbed_map: Tensor  #: (B, H, W) explanation of ``inputs``
    criterion: Tensor  #: (B,) the attack's measure at ``inputs`` (see :func:`attack`)
    trace: Tensor  #: (steps, B) the measure at every iterate; NaN where the label changed
    label_changes: Tensor  #: (B,) how many iterates changed the predicted label
    best_step: Tensor  #: (B,) 0-based iterate returned in ``inputs``; -1 when none kept the label
    targets: Tensor  #: (B,) the classes whose explanation is attacked (``labels`` unless ``target`` was given)


def default_k(height: int, width: int) -> int:
    """The top-k size when none is given: 2% of the pixels (the paper's 1000 of 227 x 227)."""
    return max(1, round(0.02 * height * width))


def _criterion(name: str, original: Tensor, maps: Tensor, k: int, region: Tensor | None) -> Tensor:
    """The measure the attack optimizes, larger = more successful (B,)."""
    if name in ("topk", "random"):
        return 1.0 - topk_intersection(original, maps, k)
    if name == "mass_center":
        return center_of_mass_shift(original, maps)
    return mass_in_region(maps, region)  # type: ignore[arg-type]


def _report(name: str, value: Tensor) -> Tensor:
    """The measure as reported: top-k intersection, center shift (px) or mass in the region."""
    return 1.0 - value if name in ("topk", "random") else value


def _loss(name: str, maps: Tensor, original_topk: Tensor, original_center: Tensor,
          region: Tensor | None) -> Tensor:
    """Differentiable dissimilarity D per image (B,), to maximize (Ghorbani et al., Sec. 3)."""
    B = len(maps)
    p = maps / maps.sum((1, 2), keepdim=True).clamp_min(1e-12)  # (B, H, W), sums to 1
    if name == "topk":
        return -(p.reshape(B, -1) * original_topk).sum(1)
    if name == "mass_center":
        return ((center_of_mass(maps) - original_center) ** 2).sum(1)
    return (p * region).sum((1, 2))  # type: ignore[operator]


def _project(x: Tensor, x_orig: Tensor, epsilon: float, clip: tuple[float, float]) -> Tensor:
    """Onto the L∞ ball of radius epsilon around ``x_orig``, then the pixel range (still in the ball)."""
    return torch.minimum(torch.maximum(x, x_orig - epsilon), x_orig + epsilon).clamp(*clip)


def attack(model: nn.Module, inputs: Tensor, method: object = "gradient", attack: str = "topk", *,
           epsilon: float, step_size: float | None = None, steps: int = 100, k: int | None = None,
           target_region: Tensor | None = None, beta: float | None = None, surrogate_beta: float | None = 10.0,
           clip: tuple[float, float] = (0.0, 1.0), generator: torch.Generator | None = None,
           target: int | Tensor | None = None, progress: Callable[[int], None] | None = None,
           **options: object) -> AttackResult:
    """Perturb ``inputs`` within an L∞ ball so that their explanations change, labels kept.

    Parameters
    ----------
    model : classifier, images (B, C, H, W) -> logits; attacked in eval mode.
    inputs : float images (B, C, H, W) inside ``clip``.
    method : attribution method (:data:`mlmyths.saliency.METHODS`); ``options`` (e.g. ``n_steps``,
        ``baseline``) go to :func:`mlmyths.saliency.attribute`. Or a Captum attribution object built
        on ``model`` whose attribution is differentiable (``Saliency``, ``InputXGradient``,
        ``IntegratedGradients``; :mod:`mlmyths.saliency.captum_adapter`), ``options`` then going to
        its ``.attribute`` (e.g. ``n_steps``, ``baselines``); the ``"random"`` attack differentiates
        nothing and takes any Captum method.
    attack : ``"topk"``, ``"mass_center"``, ``"targeted"`` or ``"random"``.
    epsilon : L∞ radius in input units (the paper: 8 on the 0-255 scale, i.e. 8/255 here).
    step_size : per-step change (default epsilon / 10; the paper's code: 0.5 on 0-255 = ε/16).
    steps : iterations (the paper's notebooks: 300).
    k : top-k size for the top-k attack and the criterion of ``"random"`` (default: 2% of the
        pixels, the paper's 1000 of 227 x 227).
    target_region : boolean mask (H, W) or (B, H, W) for ``"targeted"``.
    beta : β-smooth the explanation that is attacked and measured (None: the network's own).
    surrogate_beta : softplus β of the copy through which the attack direction is computed when
        ``beta`` is None (default 10; None: differentiate the explanation itself).
    clip : pixel range (default [0, 1]).
    generator : draws the ``"random"`` perturbation and SmoothGrad's noise.
    target : the class whose explanation is attacked, an int or one per image (default: the
        predicted label, as in the paper); the predicted label is what the attack keeps.
    progress : called with 1 after every step (e.g. a progress bar's ``advance``).

    Returns
    -------
    :class:`AttackResult`. ``criterion``: top-k intersection (``"topk"``, ``"random"``), center
    of mass shift in pixels (``"mass_center"``), or saliency mass in the target region
    (``"targeted"``), between the original and the returned explanation.
    """
    x = check_inputs(inputs).detach()
    B, _, H, W = x.shape
    if attack not in ATTACKS:
        raise UserError(f"unknown attack {attack!r}; choose one of {', '.join(ATTACKS)}")
    check_method(method, options, model)
    if is_captum_attribution(method) and attack != "random":
        check_differentiable(method, options)
    if not epsilon >= 0:
        raise UserError(f"epsilon must be >= 0 (an L-infinity radius in input units), got {epsilon!r}")
    lo, hi = clip
    if not lo < hi:
        raise UserError(f"clip must be a pixel range (low, high) with low < high, got {clip!r}")
    if x.numel() and (x.min() < lo or x.max() > hi):
        raise UserError(f"inputs lie in [{float(x.min()):.4g}, {float(x.max()):.4g}], outside clip={clip}; "
                        "pass the pixel range of your inputs as clip=(low, high)")
    step_size = epsilon / 10 if step_size is None else step_size
    if attack != "random" and (steps < 1 or not step_size > 0):
        raise UserError(f"steps must be >= 1 and step_size > 0, got steps={steps}, step_size={step_size}")
    k = default_k(H, W) if k is None else k
    if not 1 <= k <= H * W:
        raise UserError(f"k must be between 1 and the number of pixels {H * W}, got {k}")
    region = None
    if attack == "targeted":
        if target_region is None:
            raise UserError("the targeted attack needs target_region, a boolean (H, W) or (B, H, W) mask")
        region = torch.as_tensor(target_region, device=x.device)
        if region.dtype != torch.bool or region.shape[-2:] != (H, W) or region.ndim not in (2, 3):
            raise UserError(f"target_region must be a boolean mask (H, W) = ({H}, {W}) or (B, H, W), got "
                            f"dtype {region.dtype}, shape {tuple(region.shape)}")

    if method == "smoothgrad":
        options["generator"] = generator

    def measured(z: Tensor) -> tuple[Tensor, Tensor]:
        """The measured explanation (B, H, W) and the logits it came with."""
        raw, logits = explain(model, z, targets, method, beta=beta, options=options)
        return saliency_map(raw), logits  # type: ignore[return-value]

    def predict(z: Tensor, logits: Tensor) -> Tensor:
        """The real network's labels (the smoothed network only explains, it does not classify)."""
        if beta is None:
            return logits.argmax(1)
        with torch.no_grad():
            return model(z).argmax(1)

    with eval_mode(model):
        with torch.no_grad():
            logits = model(x)
            labels = logits.argmax(1)
            targets = labels if target is None else check_target(target, B, logits.shape[-1]).to(x.device)
            original, _ = measured(x)
        best_x, best_map = x.clone(), original.clone()
        best = torch.full((B,), -float("inf"), dtype=x.dtype, device=x.device)
        best_step = torch.full((B,), -1, dtype=torch.int64, device=x.device)
        changes = torch.zeros(B, dtype=torch.int64, device=x.device)

        def consider(candidate: Tensor, step: int) -> Tensor:
            """Measure ``candidate`` with the real explanation; keep it where better and label kept."""
            with torch.no_grad():
                maps, cand_logits = measured(candidate)
                kept = predict(candidate, cand_logits) == labels
            value = _criterion(attack, original, maps, k, region)
            better = kept & (value > best)
            best_x[better], best_map[better] = candidate[better], maps[better]
            best[better], best_step[better] = value[better], step
            changes.add_((~kept).to(torch.int64))
            return torch.where(kept, _report(attack, value), torch.full_like(value, float("nan")))

        if attack == "random":
            signs = torch.randint(0, 2, x.shape, generator=generator,
                                  device="cpu" if generator is None else generator.device).to(x) * 2 - 1
            trace = consider(_project(x + epsilon * signs, x, epsilon, clip), 0)[None]
        else:
            top = topk_mask(original, k).to(x.dtype)  # (B, H*W)
            center = center_of_mass(original)
            direction_beta = beta if beta is not None else surrogate_beta
            current = x.clone()
            rows = []
            for step in range(steps):
                current.requires_grad_(True)
                maps = attribute(model, current, targets, method, beta=direction_beta, create_graph=True,
                                 **options)
                loss = _loss(attack, maps, top, center, region)
                # an explanation that does not depend on the input (a linear model) gives no direction
                (grad,) = (torch.autograd.grad(loss.sum(), current, allow_unused=True) if loss.requires_grad
                           else (None,))
                grad = torch.zeros_like(current) if grad is None else grad
                current = _project(current.detach() + step_size * grad.sign(), x, epsilon, clip)
                rows.append(consider(current, step))
                if progress is not None:
                    progress(1)
            trace = torch.stack(rows)
    found = best_step >= 0
    criterion = _report(attack, torch.where(found, best, _criterion(attack, original, original, k, region)))
    return AttackResult(inputs=best_x, label_kept=found, labels=labels, original_map=original,
                        perturbed_map=best_map, criterion=criterion.detach(), trace=trace.detach(),
                        label_changes=changes, best_step=best_step, targets=targets)
