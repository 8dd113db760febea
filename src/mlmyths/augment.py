"""Batch data augmentation on tensors, vectorized (no per-image Python loops).

Functions take a float batch ``(B, C, H, W)`` and a CPU ``torch.Generator`` so that
they plug into :func:`mlmyths.train.fit` as ``augment=...`` and repeat under a seed.

>>> import torch
>>> x = torch.rand(4, 3, 32, 32)
>>> crop_flip(x, torch.Generator().manual_seed(0)).shape
torch.Size([4, 3, 32, 32])
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def random_crop(x: Tensor, generator: torch.Generator, padding: int = 4) -> Tensor:
    """Zero-pad by ``padding`` and take a random crop of the original size per image."""
    b, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))  # (B, C, H+2p, W+2p)
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None, :])  # (B, H)
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None, :])  # (B, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    # gather (B, H, W, C) then back to (B, C, H, W)
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def random_flip(x: Tensor, generator: torch.Generator, p: float = 0.5) -> Tensor:
    """Flip each image left-right with probability ``p``."""
    flip = (torch.rand(x.shape[0], generator=generator) < p).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def crop_flip(x: Tensor, generator: torch.Generator, padding: int = 4) -> Tensor:
    """The standard CIFAR augmentation: random crop with zero padding, then random flip."""
    return random_flip(random_crop(x, generator, padding), generator)


def cutout(x: Tensor, generator: torch.Generator, size: int = 16) -> Tensor:
    """Zero one ``size x size`` square per image at a random centre (DeVries & Taylor 2017)."""
    b, _, h, w = x.shape
    cy = torch.randint(0, h, (b,), generator=generator).to(x.device)
    cx = torch.randint(0, w, (b,), generator=generator).to(x.device)
    ys = torch.arange(h, device=x.device)[None, :]
    xs = torch.arange(w, device=x.device)[None, :]
    in_y = (ys - cy[:, None]).abs() <= size // 2  # (B, H)
    in_x = (xs - cx[:, None]).abs() <= size // 2  # (B, W)
    mask = ~(in_y[:, :, None] & in_x[:, None, :])  # (B, H, W)
    return x * mask[:, None].to(x.dtype)


class Mixup:
    """mixup (Zhang, Cisse, Dauphin & Lopez-Paz, ICLR 2018) for :func:`mlmyths.train.fit`.

    ``fit(..., augment=mix, loss_fn=mix.loss)``: ``mix(batch, generator)`` replaces each
    training batch by ``lam * x + (1 - lam) * x[perm]`` with ``lam ~ Beta(alpha, alpha)``
    (one per batch, as the Fixup CIFAR code) and remembers ``(perm, lam)``; the next
    ``mix.loss(logits, targets)`` is ``lam * CE(logits, y) + (1 - lam) * CE(logits, y[perm])``.
    A loss call without a pending mix (evaluation) is the plain cross-entropy.

    >>> mix = Mixup(alpha=1.0)
    >>> g = torch.Generator().manual_seed(0)
    >>> x, y = torch.rand(8, 1, 4, 4), torch.arange(8)
    >>> mixed = mix(x, g)
    >>> float(mix.loss(torch.zeros(8, 10), y)) == float(F.cross_entropy(torch.zeros(8, 10), y))
    True
    """

    def __init__(self, alpha: float = 1.0):
        if alpha <= 0:
            raise ValueError(f"mixup alpha must be > 0; got {alpha!r}")
        self.alpha = alpha
        self._pending: tuple[Tensor, float] | None = None

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        perm = torch.randperm(x.shape[0], generator=generator)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))  # Beta draw tied to the generator
        lam = float(np.random.default_rng(seed).beta(self.alpha, self.alpha))
        perm = perm.to(x.device)
        self._pending = (perm, lam)
        return lam * x + (1.0 - lam) * x[perm]

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        pending, self._pending = self._pending, None
        flat = logits.reshape(-1, logits.shape[-1]).float()
        if pending is None or pending[0].shape[0] != targets.shape[0]:
            return F.cross_entropy(flat, targets.reshape(-1))
        perm, lam = pending
        return lam * F.cross_entropy(flat, targets) + (1.0 - lam) * F.cross_entropy(flat, targets[perm])
