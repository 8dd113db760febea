"""Removing trivial dataset signatures, so that what a classifier still finds is real bias.

A dataset classifier can win on signatures nobody would call "the kind of images a
dataset contains": overall brightness and contrast, the grey-level histogram,
resolution, where and how large the object sits in the frame. Before asking whether
datasets are distinguishable (Torralba & Efros 2011, "Name That Dataset!"; Liu & He
2025, Sec. 4 on low-level signatures), each of these can be equalized across sources:

``resolution``  every image passes through the smallest native resolution
                (:func:`mlmyths.bias.sources.harmonize`, ``resolution=``).
``framing``     the object's bounding box (pixels brighter than ``threshold`` of the
                image's range) is scaled and centred to fill ``fill`` of the frame, keeping
                its aspect ratio: MNIST's size normalization, applied to every source.
                Meant for objects on a dark background (digits); a no-op for blank images.
``moments``     per image and channel: mean and standard deviation set to the reference
                (the average over sources of the per-image means and standard deviations).
``histogram``   per image and channel: exact histogram matching to a reference quantile
                function (the average over sources of each source's mean sorted pixel
                values). Pixel values of equal rank receive the reference value of that
                rank; tied pixels receive the mean of the reference over their ranks, so the
                result is deterministic and every image's mean equals the reference mean.

Steps apply in the order resolution, framing, moments, histogram (spatial before
intensity), whatever order they are given in. Each source counts equally in a
reference, however many images it has.

>>> import torch
>>> a, b = torch.rand(10, 1, 8, 8), torch.rand(10, 1, 8, 8) * 0.5 + 0.5
>>> a2, b2 = remove_signatures([a, b], ("moments",))
>>> bool(torch.allclose(a2.mean((1, 2, 3)), b2.mean((1, 2, 3)), atol=1e-5))
True
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mlmyths.errors import UserError

__all__ = ["STEPS", "check_steps", "remove_signatures", "match_moments", "reference_quantiles",
           "match_histograms", "normalize_framing"]

#: The signature-removal steps, in the order they are applied.
STEPS = ("resolution", "framing", "moments", "histogram")


def check_steps(steps: Sequence[str]) -> tuple[str, ...]:
    """``steps`` validated and put in application order."""
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise UserError(f"unknown signature-removal step(s) {', '.join(map(repr, unknown))}; "
                        f"choose from {', '.join(STEPS)}")
    return tuple(s for s in STEPS if s in steps)


def match_moments(images: Sequence[Tensor], eps: float = 1e-6) -> list[Tensor]:
    """Per image and channel, shift and scale pixel values to the reference mean and std.

    ``images``: one float tensor ``(N, C, H, W)`` per source. The reference mean (std)
    is the average over sources of each source's mean per-image mean (std).
    """
    means = [x.mean((2, 3), keepdim=True) for x in images]  # (N, C, 1, 1) each
    stds = [x.std((2, 3), keepdim=True, correction=0) for x in images]
    ref_mean = torch.stack([m.mean(0) for m in means]).mean(0)  # (C, 1, 1)
    ref_std = torch.stack([s.mean(0) for s in stds]).mean(0)
    return [(x - m) / (s + eps) * ref_std + ref_mean for x, m, s in zip(images, means, stds)]


def reference_quantiles(images: Sequence[Tensor]) -> Tensor:
    """The reference quantile function ``(C, H*W)``: per source the mean of its images' sorted
    pixel values, then the average over sources."""
    per_source = [x.flatten(2).sort(-1).values.mean(0) for x in images]  # (C, P) each
    return torch.stack(per_source).mean(0)


def match_histograms(images: Tensor, reference: Tensor) -> Tensor:
    """Give every image (per channel) the grey-level histogram of ``reference``.

    ``images`` ``(N, C, H, W)`` float; ``reference`` ``(C, H*W)`` sorted values (see
    :func:`reference_quantiles`). The pixel of rank r gets ``reference[c, r]``; a group of
    tied pixels gets the mean of the reference over the group's ranks.
    """
    n, c, h, w = images.shape
    if reference.shape != (c, h * w):
        raise UserError(f"match_histograms: reference must be ({c}, {h * w}) for images {tuple(images.shape)}, "
                        f"got {tuple(reference.shape)}")
    rows = images.reshape(n * c, h * w)  # (R, P), one row per image and channel
    ref = reference.to(images.dtype).repeat(n, 1)  # (R, P)
    values, order = rows.sort(-1)
    first = torch.searchsorted(values, values, right=False)  # (R, P) first rank of each tie group
    last = torch.searchsorted(values, values, right=True)  # one past its last rank
    cumulative = F.pad(ref.to(torch.float64).cumsum(-1), (1, 0))  # (R, P + 1)
    group_mean = (cumulative.gather(1, last) - cumulative.gather(1, first)) / (last - first)
    out = torch.empty_like(rows).scatter_(1, order, group_mean.to(rows.dtype))
    return out.reshape(n, c, h, w)


def normalize_framing(images: Tensor, *, threshold: float = 0.3, fill: float = 0.8) -> Tensor:
    """Scale and centre each image's object box to fill ``fill`` of the frame (aspect kept).

    The box holds the pixels whose (channel-mean) value exceeds ``min + threshold *
    (max - min)`` of that image. Bilinear resampling; the background (the image's
    minimum) fills in from outside.
    """
    n, _, h, w = images.shape
    grey = images.mean(1)  # (N, H, W)
    low = grey.amin((1, 2), keepdim=True)
    high = grey.amax((1, 2), keepdim=True)
    mask = grey > low + threshold * (high - low)  # (N, H, W)
    blank = ~mask.flatten(1).any(1)  # (N,)

    def extent(hit: Tensor, length: int) -> tuple[Tensor, Tensor]:  # hit: (N, L) -> box centre, half size
        index = torch.arange(length, dtype=images.dtype)
        first = torch.where(hit, index, float(length)).amin(1)
        last = torch.where(hit, index, -1.0).amax(1)
        lo, hi = 2 * first / length - 1, 2 * (last + 1) / length - 1  # pixel edges in [-1, 1]
        return (lo + hi) / 2, (hi - lo) / 2

    cy, hy = extent(mask.any(2), h)
    cx, hx = extent(mask.any(1), w)
    scale = torch.maximum(hy, hx) / fill
    scale = torch.where(blank, torch.ones_like(scale), scale)
    cx, cy = torch.where(blank, 0.0, cx), torch.where(blank, 0.0, cy)
    theta = torch.zeros(n, 2, 3, dtype=images.dtype)
    theta[:, 0, 0], theta[:, 0, 2] = scale, cx  # input x = scale * output x + cx
    theta[:, 1, 1], theta[:, 1, 2] = scale, cy
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    background = images.amin((2, 3), keepdim=True)  # (N, C, 1, 1)
    moved = F.grid_sample(images - background, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return moved + background


def remove_signatures(images: Sequence[Tensor], steps: Sequence[str]) -> list[Tensor]:
    """Apply the intensity and framing steps of ``steps`` to every source's images.

    ``images``: one float tensor ``(N, C, H, W)`` per source, all the same size. The
    ``resolution`` step is handled by :func:`mlmyths.bias.sources.harmonize` and ignored
    here.
    """
    steps = check_steps(steps)
    out = list(images)
    if "framing" in steps:
        out = [normalize_framing(x) for x in out]
    if "moments" in steps:
        out = match_moments(out)
    if "histogram" in steps:
        reference = reference_quantiles(out)
        out = [match_histograms(x, reference) for x in out]
    return out
