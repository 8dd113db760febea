"""Shared plot helpers: figures without pyplot (no GUI backend needed), one style.

>>> fig, ax = new_figure()
>>> _ = ax.plot([1, 2, 3], [1, 4, 9])
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from mlmyths.files import atomic_write_bytes

#: Colours by role, so that the same variant has the same colour in every figure.
COLORS = {
    "paper": "#7f7f7f", "ours": "#1f77b4", "baseline": "#d62728", "random": "#ff7f0e",
    "alt": "#2ca02c", "alt2": "#9467bd", "alt3": "#8c564b", "alt4": "#e377c2",
}
CYCLE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def new_figure(nrows: int = 1, ncols: int = 1, *, width: float = 5.0, height: float = 3.6,
               squeeze: bool = True, **kwargs: Any) -> tuple[Figure, Any]:
    """A figure of ``nrows x ncols`` panels, each ``width x height`` inches."""
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=squeeze, **kwargs)
    for ax in np.ravel(axes):
        ax.grid(True, alpha=0.3, linewidth=0.6)
        ax.spines[["top", "right"]].set_visible(False)
        ax.set_prop_cycle(color=CYCLE)
    return fig, axes


def save(fig: Figure, path: Path, dpi: int = 130) -> None:
    """Write ``fig`` as PNG (atomically) and free it."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    atomic_write_bytes(Path(path), buf.getvalue())
    fig.clear()


def band(ax: Any, x: Any, mean: Any, std: Any, label: str | None = None, **kwargs: Any) -> None:
    """A line with a shaded ±std band (mean ± std over seeds)."""
    x, mean, std = np.asarray(x), np.asarray(mean, dtype=float), np.asarray(std, dtype=float)
    (line,) = ax.plot(x, mean, marker="o", markersize=3, label=label, **kwargs)
    ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)


def image_grid(images: Any, titles: list[str] | None = None, *, ncols: int = 8, size: float = 1.2,
               cmap: str = "gray") -> Figure:
    """A grid of images given as an array ``(N, C, H, W)`` or ``(N, H, W)`` (uint8 or float)."""
    arr = np.asarray(images)
    if arr.ndim == 4:
        arr = arr.transpose(0, 2, 3, 1)
        if arr.shape[-1] == 1:
            arr = arr[..., 0]
    n = len(arr)
    nrows = max(1, -(-n // ncols))
    fig = Figure(figsize=(size * ncols, size * nrows * (1.25 if titles else 1.0)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for i, ax in enumerate(axes):
        ax.axis("off")
        if i < n:
            ax.imshow(arr[i], cmap=cmap if arr[i].ndim == 2 else None)
            if titles:
                ax.set_title(titles[i], fontsize=7)
    return fig
