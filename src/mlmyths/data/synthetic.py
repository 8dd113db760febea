"""Synthetic image sets that need no download: digits rendered from fonts.

:func:`font_digits` renders the digits 0-9 from the TrueType fonts that ship with
matplotlib (DejaVu, STIX, Computer Modern), white on black like MNIST, and
applies a random affine jitter (rotation, scale, aspect, shear, translation) to
every image. It is a third "collection process" for digits next to UCI's
scanned 8x8 digits and MNIST's NIST forms, used by the dataset-bias experiment
(Torralba & Efros 2011) as a source whose bias is known by construction:
typeset glyphs, centred by their bounding box.

Rendering happens once per (font, digit) at ``supersample`` times the output
size (cached); the jitter is one batched ``grid_sample`` followed by average
pooling (anti-aliasing), with no per-image Python loop.

>>> import numpy as np
>>> images, labels = font_digits(20, size=28, seed=0)
>>> images.dtype, images.shape, np.bincount(labels).tolist()
(dtype('uint8'), (20, 1, 28, 28), [2, 2, 2, 2, 2, 2, 2, 2, 2, 2])
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mlmyths.errors import DataError

__all__ = ["Jitter", "digit_fonts", "render_glyphs", "font_digits"]

#: matplotlib's bundled fonts whose ASCII digits are real digit glyphs (cmsy/cmex map them
#: to symbols, the Display/NonUni/Siz files have no digits, LastResort draws boxes).
_DIGIT_FONTS = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf", "DejaVuSansMono-BoldOblique.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
    "cmr10.ttf", "cmb10.ttf", "cmss10.ttf", "cmti10.ttf", "cmtt10.ttf",
)
DIGITS = "0123456789"


@dataclass(frozen=True)
class Jitter:
    """Ranges of the random affine transform applied to every rendered glyph (uniform draws)."""

    rotation: float = 12.0  # max |rotation| in degrees
    scale: tuple[float, float] = (0.85, 1.1)  # range of the isotropic scale factor
    aspect: float = 0.12  # max |relative stretch| of the width against the height
    shear: float = 0.2  # max |horizontal shear| (tangent of the shear angle)
    translate: float = 0.06  # max |shift| along each axis, as a fraction of the image side

    def __post_init__(self) -> None:
        lo, hi = self.scale
        if not (0 < lo <= hi) or self.rotation < 0 or not (0 <= self.aspect < 1) or self.shear < 0 \
                or self.translate < 0:
            raise DataError(f"invalid Jitter {self}: need 0 < scale[0] <= scale[1], 0 <= aspect < 1 and "
                            "non-negative rotation, shear and translate")


def digit_fonts() -> tuple[Path, ...]:
    """The matplotlib-bundled font files used for digits (those present in this install)."""
    import matplotlib

    root = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    found = tuple(root / name for name in _DIGIT_FONTS if (root / name).is_file())
    if not found:
        raise DataError(f"no digit fonts found in {root}; font-rendered digits need matplotlib's bundled fonts")
    return found


@functools.lru_cache(maxsize=8)
def render_glyphs(chars: str = DIGITS, fonts: tuple[Path, ...] | None = None, size: int = 112,
                  height: float = 0.7) -> np.ndarray:
    """Every character of ``chars`` in every font, white on black, centred by its bounding box.

    The font size is chosen per font so that the tallest of ``chars`` is ``height * size``
    pixels high. Returns uint8 ``(F, len(chars), size, size)``. A font that renders an
    empty glyph, or two identical glyphs, is rejected with a :class:`DataError`.
    """
    from PIL import Image, ImageDraw, ImageFont

    fonts = digit_fonts() if fonts is None else fonts
    out = np.zeros((len(fonts), len(chars), size, size), dtype=np.uint8)
    for f, path in enumerate(fonts):
        try:
            probe = ImageFont.truetype(str(path), 100)
        except OSError as exc:
            raise DataError(f"{path}: cannot be read as a TrueType font ({exc})") from None
        tallest = max(probe.getbbox(c)[3] - probe.getbbox(c)[1] for c in chars)
        font = ImageFont.truetype(str(path), max(4, round(100 * height * size / max(tallest, 1))))
        for c, char in enumerate(chars):
            canvas = Image.new("L", (size, size), 0)
            left, top, right, bottom = font.getbbox(char)
            # put the glyph's bounding-box centre on the canvas centre
            origin = (size / 2 - (left + right) / 2, size / 2 - (top + bottom) / 2)
            ImageDraw.Draw(canvas).text(origin, char, font=font, fill=255)
            out[f, c] = np.asarray(canvas)
        glyphs = out[f].reshape(len(chars), -1)
        if (glyphs.max(axis=1) == 0).any() or len(np.unique(glyphs, axis=0)) < len(chars):
            raise DataError(f"{path}: font lacks distinct glyphs for {chars!r}; pass fonts with real digits")
    return out


def _affine_inverses(rng: np.random.Generator, n: int, jitter: Jitter) -> np.ndarray:
    """``(n, 2, 3)`` matrices mapping output to input coordinates (affine_grid's theta)."""
    angle = np.deg2rad(rng.uniform(-jitter.rotation, jitter.rotation, n))
    scale = rng.uniform(*jitter.scale, n)
    stretch = 1.0 + rng.uniform(-jitter.aspect, jitter.aspect, n)
    shear = rng.uniform(-jitter.shear, jitter.shear, n)
    shift = rng.uniform(-jitter.translate, jitter.translate, (n, 2)) * 2.0  # normalized coords span 2
    cos, sin = np.cos(angle), np.sin(angle)
    rotate = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)  # (n, 2, 2)
    shear_m = np.zeros((n, 2, 2))
    shear_m[:, 0, 0], shear_m[:, 0, 1], shear_m[:, 1, 1] = 1.0, shear, 1.0
    stretch_m = np.zeros((n, 2, 2))
    stretch_m[:, 0, 0], stretch_m[:, 1, 1] = scale * stretch, scale
    forward = rotate @ shear_m @ stretch_m  # glyph -> output, (n, 2, 2)
    inverse = np.linalg.inv(forward)
    # output = forward @ input + shift  =>  input = inverse @ (output - shift)
    offset = -(inverse @ shift[:, :, None])[:, :, 0]  # (n, 2)
    return np.concatenate([inverse, offset[:, :, None]], axis=2)


def font_digits(n: int, *, size: int = 28, seed: int = 0, jitter: Jitter = Jitter(),
                fonts: tuple[Path, ...] | None = None, supersample: int = 2,
                batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """``n`` digits rendered from fonts with random affine jitter, white on black.

    Parameters
    ----------
    n : number of images; labels are balanced (each digit ``n // 10`` or one more times)
        and shuffled; the font of each image is drawn uniformly.
    size : output side in pixels (default 28, MNIST's).
    seed : seeds the labels, fonts and transforms (same seed, same images).
    jitter : ranges of the random affine transform.
    fonts : font files (default :func:`digit_fonts`).
    supersample : glyphs are rendered and warped at ``supersample * size`` and average-pooled
        down, which anti-aliases the strokes.

    Returns
    -------
    images : uint8 ``(n, 1, size, size)``; labels : int64 ``(n,)`` in 0..9.
    """
    if n < 0 or size < 4 or supersample < 1:
        raise DataError(f"font_digits needs n >= 0, size >= 4 and supersample >= 1; got n={n}, size={size}, "
                        f"supersample={supersample}")
    rng = np.random.default_rng(seed)
    fonts = digit_fonts() if fonts is None else tuple(fonts)
    big = size * supersample
    templates = torch.from_numpy(render_glyphs(DIGITS, fonts, big)).float().div_(255.0)  # (F, 10, big, big)
    labels = rng.permutation(np.arange(n) % 10).astype(np.int64)
    font_of = rng.integers(0, len(fonts), n)
    theta = torch.from_numpy(_affine_inverses(rng, n, jitter)).float()  # (n, 2, 3)
    images = np.empty((n, 1, size, size), dtype=np.uint8)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        glyphs = templates[font_of[start:stop], labels[start:stop]][:, None]  # (B, 1, big, big)
        grid = F.affine_grid(theta[start:stop], [stop - start, 1, big, big], align_corners=False)
        warped = F.grid_sample(glyphs, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        small = F.avg_pool2d(warped, supersample)  # (B, 1, size, size)
        images[start:stop] = small.mul_(255.0).round_().clamp_(0, 255).to(torch.uint8).numpy()
    return images, labels
