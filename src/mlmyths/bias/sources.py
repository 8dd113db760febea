"""Image sources for dataset-bias studies: loading, and bringing them to one size and layout.

A :class:`Source` is a named set of uint8 images ``(N, C, H, W)`` with optional class
labels. :func:`as_source` accepts what users have at hand -- an array, an
``(images, labels)`` pair, a :class:`mlmyths.data.ImageDataset`, an image folder
``root/CLASS/*.png|jpg``, IDX files -- and :func:`load_source` reads the experiment's
source specifications (``digits``, ``mnist``, ``fonts``, ``NAME=PATH``).

Image folders are decoded with Pillow; a file that cannot be decoded (corrupt,
truncated, not an image) is skipped, counted in :attr:`Source.skipped` and never
crashes the load.

:func:`harmonize` brings sources to a common size and channel layout (Torralba &
Efros 2011 compare all datasets as same-size thumbnails): float32 in [0, 1],
``(N, C, size, size)``, grey unless every source is colour. With
``resolution=r`` every image is first reduced to ``r x r`` pixels, so that no source
keeps more detail than the coarsest one (resolution is a trivial signature).

>>> import numpy as np
>>> a = as_source("a", np.zeros((3, 8, 8), dtype=np.uint8))
>>> [tuple(x.shape) for x in harmonize([a], size=16)]
[(3, 1, 16, 16)]
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mlmyths.errors import DataError, UserError

__all__ = ["Source", "as_source", "load_source", "is_image_dataset", "load_image_folder", "load_idx", "harmonize", "subsample",
           "IMAGE_EXTENSIONS", "FONTS"]

#: File endings read from image folders (case-insensitive).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
#: Source name of the font-rendered digits (:func:`mlmyths.data.synthetic.font_digits`).
FONTS = "fonts"
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights for colour -> grey


@dataclass(frozen=True)
class Source:
    """One dataset: images, optional labels, and where they came from."""

    name: str  # short name used in tables and figures
    images: Tensor  # uint8 (N, C, H, W), C in {1, 3}
    labels: Tensor | None = None  # int64 (N,) indexing ``classes``, or None when unlabeled
    classes: tuple[str, ...] = ()  # class names (empty when unlabeled)
    origin: str = ""  # where the images were read from
    native_size: tuple[int, int] = (0, 0)  # smallest (H, W) before any resize at load time
    skipped: tuple[str, ...] = ()  # files that could not be decoded (corrupt images)

    def __post_init__(self) -> None:
        if self.native_size == (0, 0):
            object.__setattr__(self, "native_size", tuple(self.images.shape[2:]))

    def __len__(self) -> int:
        return len(self.images)

    @property
    def labeled(self) -> bool:
        return self.labels is not None


def _to_nchw(images: Any, name: str) -> Tensor:
    """uint8 ``(N, C, H, W)`` from ``(N, H, W)``, ``(N, C, H, W)`` or channels-last ``(N, H, W, C)``."""
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, Tensor) else images)
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = x.permute(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise UserError(f"source {name!r}: images must be (N, H, W), (N, C, H, W) or (N, H, W, C) with 1 or 3 "
                        f"channels, got shape {tuple(x.shape)}")
    if x.dtype != torch.uint8:
        raise UserError(f"source {name!r}: images must be uint8 (0-255), got {x.dtype}; convert with "
                        "(x * 255).round().astype(np.uint8)")
    return x.contiguous()


def as_source(name: str, obj: Any) -> Source:
    """A :class:`Source` from an array, ``(images, labels)``, an ImageDataset, a Source or a path.

    Paths are image folders (:func:`load_image_folder`) or IDX files/folders (:func:`load_idx`).
    An :class:`~mlmyths.data.ImageDataset` contributes its training and test images together.
    """
    from mlmyths.data import ImageDataset

    if isinstance(obj, Source):
        return obj if obj.name == name else replace(obj, name=name)
    if isinstance(obj, (str, Path)):
        return _load_path(name, Path(obj))
    if isinstance(obj, ImageDataset):
        return Source(name, torch.cat([obj.x_train, obj.x_test]), torch.cat([obj.y_train, obj.y_test]),
                      obj.classes, obj.source)
    if isinstance(obj, tuple) and len(obj) == 2:
        images = _to_nchw(obj[0], name)
        labels = torch.as_tensor(np.asarray(obj[1])).to(torch.int64).reshape(-1)
        if len(labels) != len(images):
            raise UserError(f"source {name!r}: {len(images)} images but {len(labels)} labels")
        if len(labels) and labels.min() < 0:
            raise UserError(f"source {name!r}: labels must be >= 0, got {int(labels.min())}")
        classes = tuple(str(c) for c in range(int(labels.max()) + 1)) if len(labels) else ()
        return Source(name, images, labels, classes, "arrays")
    return Source(name, _to_nchw(obj, name), origin="array")


def subsample(source: Source, limit: int | None, seed: int = 0) -> Source:
    """At most ``limit`` images of ``source``, drawn at random (seeded), in random order."""
    if limit is None or len(source) <= limit:
        return source
    keep = torch.from_numpy(np.random.default_rng(seed).permutation(len(source))[:limit])
    labels = source.labels[keep] if source.labels is not None else None
    return replace(source, images=source.images[keep], labels=labels)


# -- specifications and files ----------------------------------------------------------------


def load_source(spec: str, *, limit: int | None = None, seed: int = 0, size: int | None = None,
                font_size: int = 28) -> Source:
    """Load a source from a specification string.

    ``spec`` is a registered image dataset (``digits``, ``mnist``, ``fashion-mnist``,
    ``cifar10``, also with a ``rehearsal-`` or ``permuted-`` prefix; train and test splits
    together), ``fonts`` (font-rendered digits,
    ``limit`` images, default 2000), or ``NAME=PATH`` where PATH is an image folder
    ``PATH/CLASS/*.png|jpg``, an IDX images file, or a folder of IDX files. ``limit``
    keeps at most that many images (random, seeded); ``size`` resizes folder images
    on load (needed when a folder mixes image sizes).
    """
    from mlmyths import data
    from mlmyths.data.synthetic import font_digits

    name, sep, path = spec.partition("=")
    name = name.strip()
    if not name:
        raise UserError(f"source specification {spec!r} has no name; write NAME or NAME=PATH")
    if sep:
        source = _load_path(name, Path(path.strip()).expanduser(), size=size, limit=limit, seed=seed)
    elif name == FONTS:
        images, labels = font_digits(limit or 2000, size=font_size, seed=seed)
        return Source(FONTS, torch.from_numpy(images), torch.from_numpy(labels), tuple(str(d) for d in range(10)),
                      "font-rendered digits (matplotlib's bundled fonts, random affine jitter)")
    elif is_image_dataset(name):
        source = as_source(name, data.load(name))
    else:
        raise UserError(f"unknown source {name!r}: use one of {', '.join(data.dataset_names('images'))}, "
                        f"{FONTS}, or NAME=PATH for an image folder (PATH/CLASS/*.png) or IDX files")
    return subsample(source, limit, seed)


def is_image_dataset(name: str) -> bool:
    """Whether ``name`` is a registered image dataset (a ``rehearsal-`` or ``permuted-`` prefix allowed)."""
    from mlmyths import data

    try:
        return data.spec(name).kind == "images"
    except DataError:
        return False


def _load_path(name: str, path: Path, *, size: int | None = None, limit: int | None = None,
               seed: int = 0) -> Source:
    if not path.exists():
        raise DataError(f"source {name!r}: {path} does not exist; give an image folder (PATH/CLASS/*.png) "
                        "or IDX files")
    if path.is_file() or any("idx3-ubyte" in p.name for p in path.iterdir()):
        return load_idx(path, name=name)
    return load_image_folder(path, name=name, size=size, limit=limit, seed=seed)


def load_idx(path: str | Path, *, name: str | None = None) -> Source:
    """Images (and labels, when found beside them) from IDX files, the MNIST format.

    ``path`` is an images file (``*images-idx3-ubyte[.gz]``; its labels file is the same
    name with ``labels-idx1``) or a folder: every images file in it is read and joined.
    Labels are named ``"0"`` ... ``"9"`` (digits).
    """
    from mlmyths.data.readers import read_idx

    path = Path(path)
    name = name or path.name
    files = sorted(p for p in path.iterdir() if "images-idx3-ubyte" in p.name) if path.is_dir() else [path]
    if not files:
        raise DataError(f"source {name!r}: no *images-idx3-ubyte files in {path}")
    images, labels = [], []
    for f in files:
        x = read_idx(f)
        if x.ndim != 3:
            raise DataError(f"{f}: expected an IDX file of images (N, H, W), got shape {x.shape}")
        images.append(torch.from_numpy(x.copy())[:, None])
        label_file = f.with_name(f.name.replace("images-idx3", "labels-idx1"))
        if label_file != f and label_file.exists():
            y = read_idx(label_file)
            if y.ndim != 1 or len(y) != len(x):
                raise DataError(f"{label_file}: {len(y)} labels do not match {len(x)} images in {f}")
            labels.append(torch.from_numpy(y.astype(np.int64)))
    x = torch.cat(images)
    if len(labels) != len(images):
        return Source(name, x, origin=str(path))
    y = torch.cat(labels)
    return Source(name, x, y, tuple(str(c) for c in range(int(y.max()) + 1)), str(path))


def _image_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def load_image_folder(root: str | Path, *, name: str | None = None, size: int | None = None,
                      limit: int | None = None, seed: int = 0) -> Source:
    """Images from ``root/CLASS/*.png|jpg`` (labels from the sub-folder names) or ``root/*.png|jpg``.

    Parameters
    ----------
    size : resize every image to ``size x size`` on load (Pillow, antialiased). Without it all
        images must share one size.
    limit : decode at most this many images, drawn at random (seeded) from the folder.

    Files that cannot be decoded are skipped and listed in ``Source.skipped``. Colour
    images load as 3 channels unless every image is grey (then 1 channel).
    """
    from PIL import Image

    root = Path(root)
    name = name or root.name
    if not root.is_dir():
        raise DataError(f"source {name!r}: {root} is not a folder of images (expected {root}/CLASS/*.png)")
    class_dirs = [d for d in sorted(root.iterdir()) if d.is_dir() and _image_files(d)]
    if class_dirs:
        files = [(f, c) for c, d in enumerate(class_dirs) for f in _image_files(d)]
        classes: tuple[str, ...] = tuple(d.name for d in class_dirs)
    else:
        files = [(f, -1) for f in _image_files(root)]
        classes = ()
    if not files:
        raise DataError(f"source {name!r}: no {'/'.join(IMAGE_EXTENSIONS)} files in {root} or its sub-folders")
    if limit is not None:
        files = [files[i] for i in np.random.default_rng(seed).permutation(len(files))]
    arrays: list[np.ndarray] = []
    labels: list[int] = []
    skipped: list[str] = []
    native = [np.inf, np.inf]
    for path, label in files:
        if limit is not None and len(arrays) >= limit:
            break
        try:
            with Image.open(path) as img:
                img.load()
                native = [min(native[0], img.height), min(native[1], img.width)]
                rgb = img.convert("RGB")
                if size is not None and rgb.size != (size, size):
                    rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
                arrays.append(np.asarray(rgb, dtype=np.uint8))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            skipped.append(str(path))
            continue
        labels.append(label)
    if not arrays:
        raise DataError(f"source {name!r}: none of the {len(files)} image files in {root} could be decoded")
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise DataError(f"source {name!r}: images in {root} have different sizes ({len(shapes)} shapes, e.g. "
                        f"{sorted(shapes)[:2]}); pass size=... to resize them on load")
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)  # (N, H, W, 3) -> (N, 3, H, W)
    if bool((x[:, 0] == x[:, 1]).all() and (x[:, 1] == x[:, 2]).all()):
        x = x[:, :1]  # every image is grey
    y = torch.tensor(labels, dtype=torch.int64) if classes else None
    return Source(name, x.contiguous(), y, classes, str(root), (int(native[0]), int(native[1])), tuple(skipped))


# -- common size and layout -----------------------------------------------------------------


def _resize(x: Tensor, size: int) -> Tensor:
    if tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def _channels(x: Tensor, channels: int) -> Tensor:
    if x.shape[1] == channels:
        return x
    if channels == 1:  # colour -> grey (luma)
        weights = torch.tensor(_LUMA, dtype=x.dtype).view(1, 3, 1, 1)
        return (x * weights).sum(1, keepdim=True)
    return x.expand(-1, 3, -1, -1).contiguous()


def harmonize(sources: Sequence[Source], *, size: int, channels: int | str = "auto",
              resolution: int | None = None, batch_size: int = 4096) -> list[Tensor]:
    """Bring every source to float32 ``(N, C, size, size)`` in [0, 1].

    Parameters
    ----------
    size : common side in pixels (bilinear, antialiased resizing; non-square images are
        stretched).
    channels : 1, 3 or ``"auto"`` (3 when every source is colour, else 1: a mix of grey and
        colour sources would otherwise be told apart by colour alone).
    resolution : if given, every image is first reduced to ``resolution x resolution``
        (never enlarged beyond its stored size), then resized to ``size``: the
        resolution signature removed (use the smallest native size of the sources).
    """
    if size < 1 or (resolution is not None and resolution < 1):
        raise UserError(f"harmonize: size and resolution must be positive, got size={size}, resolution={resolution}")
    if channels == "auto":
        channels = 3 if all(s.images.shape[1] == 3 for s in sources) else 1
    if channels not in (1, 3):
        raise UserError(f"harmonize: channels must be 1, 3 or 'auto', got {channels!r}")
    out = []
    for s in sources:
        parts = []
        for start in range(0, len(s), batch_size):
            x = s.images[start:start + batch_size].to(torch.float32).div_(255.0)  # (B, C, H, W)
            x = _channels(x, int(channels))
            if resolution is not None and min(x.shape[-2:]) > resolution:
                x = _resize(x, resolution)
            parts.append(_resize(x, size).clamp_(0.0, 1.0))
        out.append(torch.cat(parts) if parts else torch.zeros(0, int(channels), size, size))
    return out
