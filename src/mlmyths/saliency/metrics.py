"""How much two saliency maps differ: the measures of Ghorbani et al. (2019, Sec. 3.1).

All functions are batched: maps are ``(B, H, W)`` (or ``(B, D)`` where no geometry is needed)
and the result is one number per pair, ``(B,)``. Maps are compared by magnitude ranking or by
their normalized mass, so the scale of an attribution does not matter.

- :func:`topk_intersection`: the fraction of the k most salient pixels of ``a`` that are still
  among the k most salient of ``b`` (the paper's headline measure, k = 1000 on ImageNet).
- :func:`rank_correlation`: Spearman's rank correlation of the two maps (ties get average ranks,
  as in ``scipy.stats.spearmanr``).
- :func:`center_of_mass_shift`: the L2 distance in pixels between the maps' centers of mass.
- :func:`mass_in_region`: the fraction of a map's mass inside a region (the targeted attack).
- :func:`sensitivity_max`: the largest relative change of an explanation under random
  perturbations in an L∞ ball (Yeh et al., NeurIPS 2019), Captum's ``sensitivity_max``.

>>> import torch
>>> a = torch.tensor([[[4.0, 3.0], [2.0, 1.0]]])
>>> b = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
>>> topk_intersection(a, b, k=2).item(), rank_correlation(a, b).item()
(0.0, -1.0)
>>> center_of_mass(b)                 # (row, column), weighted by the map
tensor([[0.7000, 0.6000]])
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mlmyths.errors import UserError
from mlmyths.saliency.attributions import attribute, check_inputs, check_target


def _pair(a: Tensor, b: Tensor, name: str) -> tuple[Tensor, Tensor]:
    if a.shape != b.shape or a.ndim < 2:
        raise UserError(f"{name}: maps must have the same shape (B, H, W) or (B, D), "
                        f"got {tuple(a.shape)} and {tuple(b.shape)}")
    return a.reshape(len(a), -1), b.reshape(len(b), -1)  # (B, D)


def topk_mask(maps: Tensor, k: int) -> Tensor:
    """Boolean mask of the ``k`` largest entries of each map, (B, ...) -> (B, D)."""
    flat = maps.reshape(len(maps), -1)  # (B, D)
    if not 1 <= k <= flat.shape[1]:
        raise UserError(f"k must be between 1 and the number of pixels {flat.shape[1]}, got {k}")
    mask = torch.zeros_like(flat, dtype=torch.bool)
    return mask.scatter_(1, flat.topk(k, dim=1).indices, True)


def topk_intersection(a: Tensor, b: Tensor, k: int) -> Tensor:
    """|top-k(a) ∩ top-k(b)| / k per pair of maps, (B, H, W) x2 -> (B,) in [0, 1].

    Ties at the k-th value are broken by ``torch.topk``'s order, as ``argsort`` does in the
    paper's code.

    >>> import torch
    >>> a = torch.arange(6.0).view(1, 2, 3)
    >>> topk_intersection(a, a.flip(-1), k=3).item()    # top 3 of a: 3, 4, 5; of b: 3, 4, 5 too
    1.0
    """
    fa, fb = _pair(a, b, "topk_intersection")
    return (topk_mask(fa, k) & topk_mask(fb, k)).sum(1).to(fa.dtype) / k


def average_ranks(x: Tensor) -> Tensor:
    """Ranks 1..D of each row of ``x`` (B, D), ties sharing their average rank (as scipy's ``rankdata``)."""
    B, D = x.shape
    values, order = x.sort(dim=1)  # (B, D)
    new_group = torch.ones_like(values, dtype=torch.bool)
    new_group[:, 1:] = values[:, 1:] != values[:, :-1]
    group = new_group.cumsum(1) - 1 + torch.arange(B, device=x.device)[:, None] * D  # (B, D), unique per row
    position = torch.arange(1, D + 1, dtype=torch.float64, device=x.device).expand(B, D).reshape(-1)
    first = torch.full((B * D,), float(D + 1), dtype=torch.float64, device=x.device)
    first = first.scatter_reduce(0, group.reshape(-1), position, reduce="amin")
    last = torch.zeros(B * D, dtype=torch.float64, device=x.device).scatter_reduce(
        0, group.reshape(-1), position, reduce="amax")
    sorted_ranks = ((first + last) / 2)[group.reshape(-1)].view(B, D)
    return torch.empty_like(sorted_ranks).scatter_(1, order, sorted_ranks)


def rank_correlation(a: Tensor, b: Tensor) -> Tensor:
    """Spearman's rank correlation per pair of maps, (B, H, W) x2 -> (B,) in [-1, 1].

    The Pearson correlation of average ranks; NaN when a map is constant (as scipy).

    >>> import torch
    >>> rank_correlation(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[10.0, 20.0, 15.0]])).item()
    0.5
    """
    fa, fb = _pair(a, b, "rank_correlation")
    ra, rb = average_ranks(fa), average_ranks(fb)
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    corr = (ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1))
    return corr.clamp(-1.0, 1.0).to(a.dtype if a.is_floating_point() else torch.float32)


def _normalized(maps: Tensor) -> Tensor:
    mass = maps.abs()
    total = mass.sum(tuple(range(1, maps.ndim)), keepdim=True)
    return mass / total.clamp_min(torch.finfo(mass.dtype).tiny)


def center_of_mass(maps: Tensor) -> Tensor:
    """Center of mass (row, column) of |map| in pixel coordinates, (B, H, W) -> (B, 2).

    The center of the image for an all-zero map. Differentiable (the mass-center attack).
    """
    if maps.ndim != 3:
        raise UserError(f"center_of_mass needs maps of shape (B, H, W), got {tuple(maps.shape)}")
    B, H, W = maps.shape
    p = _normalized(maps)
    empty = p.sum((1, 2)) == 0
    rows = torch.arange(H, dtype=p.dtype, device=p.device)
    cols = torch.arange(W, dtype=p.dtype, device=p.device)
    center = torch.stack([(p.sum(2) * rows).sum(1), (p.sum(1) * cols).sum(1)], dim=1)  # (B, 2)
    middle = torch.tensor([(H - 1) / 2, (W - 1) / 2], dtype=p.dtype, device=p.device)
    return torch.where(empty[:, None], middle, center)


def center_of_mass_shift(a: Tensor, b: Tensor) -> Tensor:
    """L2 distance in pixels between the centers of mass of ``a`` and ``b``, (B, H, W) x2 -> (B,).

    >>> import torch
    >>> a, b = torch.zeros(1, 5, 5), torch.zeros(1, 5, 5)
    >>> a[0, 0, 0], b[0, 3, 4] = 1.0, 1.0
    >>> center_of_mass_shift(a, b).item()
    5.0
    """
    if a.shape != b.shape:
        raise UserError(f"center_of_mass_shift: maps must have the same shape, "
                        f"got {tuple(a.shape)} and {tuple(b.shape)}")
    return (center_of_mass(a) - center_of_mass(b)).norm(dim=1)


def mass_in_region(maps: Tensor, region: Tensor) -> Tensor:
    """Fraction of each map's |mass| inside ``region`` (bool (H, W) or (B, H, W)), -> (B,)."""
    region = torch.as_tensor(region, device=maps.device)
    if region.dtype != torch.bool or region.shape[-2:] != maps.shape[-2:]:
        raise UserError(f"region must be a boolean mask of shape (H, W) = {tuple(maps.shape[-2:])} or (B, H, W), "
                        f"got dtype {region.dtype}, shape {tuple(region.shape)}")
    return (_normalized(maps) * region).sum((-2, -1))


def sensitivity_max(model: nn.Module, inputs: Tensor, target: int | Tensor, method: object = "gradient", *,
                    perturb_radius: float = 0.02, n_perturb_samples: int = 10, raw: bool = False,
                    generator: torch.Generator | None = None, **options: object) -> Tensor:
    """Max-sensitivity of an explanation (Yeh et al., "On the (In)fidelity and Sensitivity of
    Explanations", NeurIPS 2019, Def. 3.1), normalized as in Captum's ``sensitivity_max``:

        max over n_perturb_samples draws δ ~ U[−r, r]^d of ‖Φ(x + δ) − Φ(x)‖_F / ‖Φ(x)‖_F

    where r is ``perturb_radius`` and Φ is :func:`attribute` with ``method`` and ``options``
    (parameter names as Captum's); ``method`` may be any Captum attribution object that attributes
    to the input (no derivative of the explanation is needed here). Returns (B,). The noise is drawn in one float32 tensor
    (B·n_perturb_samples, C, H, W), sample index inner; with ``generator=None``
    from the global RNG, in the same order as Captum, so the two agree under one seed.
    Unlike the attacks, random perturbations estimate typical, not worst-case, fragility.

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    >>> sensitivity_max(net, torch.rand(3, 1, 2, 2), target=0).tolist()    # linear: gradient constant
    [0.0, 0.0, 0.0]
    """
    x = check_inputs(inputs)
    B = len(x)
    t = check_target(target, B)
    n, radius = n_perturb_samples, perturb_radius
    if n < 1 or radius < 0:
        raise UserError(f"sensitivity_max needs n_perturb_samples >= 1 and perturb_radius >= 0, got {n} and {radius}")
    with torch.no_grad():
        reference = attribute(model, x, t, method, raw=raw, **options)  # type: ignore[arg-type]
        expanded = x.repeat_interleave(n, dim=0)  # (B*n, C, H, W)
        noise = torch.empty(expanded.shape, dtype=torch.float32,  # float32 draws, as Captum's
                            device="cpu" if generator is None else generator.device).uniform_(
            -radius, radius, generator=generator).to(device=x.device, dtype=x.dtype)
        perturbed = attribute(model, expanded + noise, t.repeat_interleave(n), method, raw=raw,
                              **options)  # type: ignore[arg-type]
    change = (perturbed - reference.repeat_interleave(n, dim=0)).reshape(B, n, -1).norm(dim=2)
    norm = reference.reshape(B, -1).norm(dim=1)
    return (change / torch.where(norm == 0, torch.ones_like(norm), norm)[:, None]).max(1).values
