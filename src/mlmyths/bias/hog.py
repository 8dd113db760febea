"""Histograms of oriented gradients (HOG), batched and vectorized in torch.

Dalal & Triggs, "Histograms of Oriented Gradients for Human Detection", CVPR 2005
(Sec. 6: centred [-1, 0, 1] gradients, unsigned orientation bins over 0-180 degrees,
cells, overlapping blocks with L2-Hys normalization). The conventions follow
scikit-image's ``skimage.feature.hog`` so that it serves as the test oracle: gradients
are zero on the image border, each pixel votes its gradient magnitude into one
orientation bin (no interpolation between bins or cells), a cell histogram is the
*mean* over its pixels, and for colour images each pixel uses the channel with the
largest gradient magnitude. The output order is
``(blocks_row, blocks_col, cells_row, cells_col, orientations)``, flattened.

Torralba & Efros (CVPR 2011, "Name That Dataset!") classify datasets from such
global gradient features with a linear SVM.

>>> import torch
>>> hog(torch.rand(5, 1, 16, 16), pixels_per_cell=4, cells_per_block=2).shape
torch.Size([5, 324])
"""
from __future__ import annotations

import torch
from torch import Tensor

from mlmyths.errors import UserError

__all__ = ["hog", "hog_size", "BLOCK_NORMS"]

BLOCK_NORMS = ("L1", "L1-sqrt", "L2", "L2-Hys")


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or min(pair) < 1:
        raise UserError(f"hog: {name} must be a positive int or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def hog_size(image_shape: tuple[int, int], orientations: int = 9, pixels_per_cell: int | tuple[int, int] = 8,
             cells_per_block: int | tuple[int, int] = 3) -> int:
    """Length of the HOG vector of an ``(H, W)`` image."""
    (ch, cw), (bh, bw) = _pair(pixels_per_cell, "pixels_per_cell"), _pair(cells_per_block, "cells_per_block")
    nbr, nbc = image_shape[0] // ch - bh + 1, image_shape[1] // cw - bw + 1
    return max(nbr, 0) * max(nbc, 0) * bh * bw * orientations


def _gradients(x: Tensor) -> tuple[Tensor, Tensor]:
    """Centred differences ``x[i+1] - x[i-1]`` along rows and columns, zero on the border."""
    g_row = torch.zeros_like(x)
    g_col = torch.zeros_like(x)
    g_row[..., 1:-1, :] = x[..., 2:, :] - x[..., :-2, :]
    g_col[..., :, 1:-1] = x[..., :, 2:] - x[..., :, :-2]
    return g_row, g_col


def _normalize_blocks(blocks: Tensor, method: str, eps: float = 1e-5) -> Tensor:
    """Normalize each block (last dim) as Dalal & Triggs Sec. 6.4 (scikit-image's eps)."""
    if method == "L1":
        return blocks / (blocks.abs().sum(-1, keepdim=True) + eps)
    if method == "L1-sqrt":
        return torch.sqrt(blocks / (blocks.abs().sum(-1, keepdim=True) + eps))
    out = blocks / torch.sqrt(blocks.square().sum(-1, keepdim=True) + eps ** 2)
    if method == "L2-Hys":  # clip at 0.2, renormalize (Lowe 2004)
        out = out.clamp_max(0.2)
        out = out / torch.sqrt(out.square().sum(-1, keepdim=True) + eps ** 2)
    return out


def hog(images: Tensor, *, orientations: int = 9, pixels_per_cell: int | tuple[int, int] = 8,
        cells_per_block: int | tuple[int, int] = 3, block_norm: str = "L2-Hys",
        batch_size: int = 2048) -> Tensor:
    """HOG descriptors of a batch of images.

    Parameters
    ----------
    images : ``(N, C, H, W)`` or ``(N, H, W)`` float tensor (uint8 is converted to float32
        without rescaling, like scikit-image). The result has the same float dtype.
    orientations : number of unsigned orientation bins over [0, 180) degrees (default 9).
    pixels_per_cell : cell size in pixels (default 8, as scikit-image).
    cells_per_block : block size in cells (default 3, as scikit-image).
    block_norm : one of ``L1``, ``L1-sqrt``, ``L2``, ``L2-Hys`` (default).
    batch_size : images processed at once (bounds memory).

    Returns
    -------
    ``(N, n_blocks_row * n_blocks_col * cells_per_block**2 * orientations)``
    """
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        raise UserError(f"hog: images must be (N, C, H, W) or (N, H, W), got shape {tuple(images.shape)}")
    if block_norm not in BLOCK_NORMS:
        raise UserError(f"hog: block_norm must be one of {', '.join(BLOCK_NORMS)}, got {block_norm!r}")
    if orientations < 1:
        raise UserError(f"hog: orientations must be >= 1, got {orientations}")
    (ch, cw), (bh, bw) = _pair(pixels_per_cell, "pixels_per_cell"), _pair(cells_per_block, "cells_per_block")
    n, _, h, w = images.shape
    ncr, ncc = h // ch, w // cw
    if ncr - bh + 1 < 1 or ncc - bw + 1 < 1:
        raise UserError(f"hog: images of {h}x{w} pixels are too small for cells of {ch}x{cw} and blocks of "
                        f"{bh}x{bw} cells; need at least {bh * ch}x{bw * cw}")
    if not images.is_floating_point():
        images = images.float()
    # Bin i holds angles in [lower[i], upper[i]); the edges are rounded to single precision, as
    # scikit-image computes them, so that bins agree exactly.
    edges = torch.tensor([180.0 / orientations * i for i in range(1, orientations)], dtype=torch.float32)
    edges = edges.to(images.dtype)
    infinity = torch.tensor([torch.inf], dtype=images.dtype)
    bounds = (torch.cat([-infinity, edges]), torch.cat([edges, infinity]))
    outs = [_hog_batch(images[s:s + batch_size], orientations, ch, cw, bh, bw, block_norm, bounds)
            for s in range(0, n, batch_size)]
    return torch.cat(outs) if outs else images.new_zeros(0, hog_size((h, w), orientations, (ch, cw), (bh, bw)))


def _orientation_bins(angle: Tensor, orientations: int, bounds: tuple[Tensor, Tensor]) -> Tensor:
    """Bin index of each angle in [0, 180): a division, then a +-1 correction where rounding put
    an angle on the wrong side of an edge."""
    lower, upper = bounds
    bins = (angle * (orientations / 180.0)).floor().long().clamp_(0, orientations - 1)
    bins -= (angle < lower[bins]).long()
    bins += (angle >= upper[bins]).long()
    return bins


def _hog_batch(x: Tensor, orientations: int, ch: int, cw: int, bh: int, bw: int, block_norm: str,
               bounds: tuple[Tensor, Tensor]) -> Tensor:
    b, c, h, w = x.shape
    ncr, ncc = h // ch, w // cw
    g_row, g_col = _gradients(x)  # (B, C, H, W) each
    magnitude = torch.hypot(g_row, g_col)
    if c > 1:  # per pixel, the channel with the largest gradient magnitude
        best = magnitude.argmax(1, keepdim=True)  # (B, 1, H, W)
        g_row, g_col = g_row.gather(1, best), g_col.gather(1, best)
        magnitude = magnitude.gather(1, best)
    g_row, g_col, magnitude = g_row[:, 0], g_col[:, 0], magnitude[:, 0]  # (B, H, W)
    angle = torch.rad2deg(torch.atan2(g_row, g_col)) % 180.0
    bins = _orientation_bins(angle, orientations, bounds)  # (B, H, W)
    # Cells tile the image from the top-left corner; leftover rows/columns are ignored.
    magnitude = magnitude[:, :ncr * ch, :ncc * cw]
    bins = bins[:, :ncr * ch, :ncc * cw]
    cell_row = torch.arange(ncr * ch, device=x.device) // ch  # (H',)
    cell_col = torch.arange(ncc * cw, device=x.device) // cw  # (W',)
    slot = ((cell_row[:, None] * ncc + cell_col[None, :]) * orientations)[None] + bins  # (B, H', W')
    hist = magnitude.new_zeros(b, ncr * ncc * orientations)
    hist.scatter_add_(1, slot.reshape(b, -1), magnitude.reshape(b, -1))
    hist = hist.reshape(b, ncr, ncc, orientations) / (ch * cw)  # (B, ncr, ncc, O): mean per cell
    # Overlapping blocks of bh x bw cells, stride one cell.
    blocks = hist.unfold(1, bh, 1).unfold(2, bw, 1)  # (B, nbr, nbc, O, bh, bw)
    blocks = blocks.permute(0, 1, 2, 4, 5, 3)  # (B, nbr, nbc, bh, bw, O)
    nbr, nbc = blocks.shape[1], blocks.shape[2]
    flat = blocks.reshape(b, nbr, nbc, bh * bw * orientations)
    return _normalize_blocks(flat, block_norm).reshape(b, -1)
