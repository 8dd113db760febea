"""Datasets: a registry, local search paths, verified downloads, uint8 tensors.

>>> from mlmyths import data
>>> ds = data.load("digits")                 # always available (scikit-learn)
>>> ds.x_train.dtype, tuple(ds.x_train.shape[1:]), ds.num_classes
(torch.uint8, (1, 8, 8), 10)

Image datasets load as :class:`ImageDataset`: uint8 images ``(N, C, H, W)`` and
int64 labels with the dataset's fixed train/test split. ``permuted-NAME`` is
NAME with one fixed permutation of pixel positions applied to every image
(the permuted-MNIST of Toneva et al. 2019). ``rehearsal-NAME`` is synthetic data of NAME's
shape and classes (:func:`rehearsal`), so a ``paper`` preset can be rehearsed on a laptop
without the real files. Lookup order and downloads are described in :mod:`mlmyths.data.store`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from mlmyths.data import readers, store
from mlmyths.data.registry import DATASETS, PERMUTED_PREFIX, REHEARSAL_PREFIX, DatasetSpec, RemoteFile
from mlmyths.data.store import cache_dir, fetch, find, missing_message, search_dirs, spec
from mlmyths.errors import DataError

__all__ = [
    "DATASETS", "DatasetSpec", "RemoteFile", "ImageDataset", "load", "load_text", "find", "fetch",
    "available", "first_available", "permute_pixels", "to_float", "normalize", "dataset_names",
    "cache_dir", "search_dirs", "missing_message", "spec", "check_name", "rehearsal", "rehearsal_text", "REHEARSAL_PREFIX",
]


@dataclass(frozen=True)
class ImageDataset:
    """An image classification dataset held in memory as tensors."""

    name: str
    x_train: torch.Tensor  #: uint8 (N, C, H, W)
    y_train: torch.Tensor  #: int64 (N,)
    x_test: torch.Tensor  #: uint8 (M, C, H, W)
    y_test: torch.Tensor  #: int64 (M,)
    classes: tuple[str, ...]
    source: str  #: where the files were read from

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]


def dataset_names(kind: str | None = None) -> list[str]:
    """Registered dataset names, optionally only those of ``kind`` ("images", "text", "files")."""
    return [n for n, s in DATASETS.items() if kind is None or s.kind == kind]


def available(name: str) -> bool:
    """True when ``name`` can be loaded without a download (``rehearsal-`` data always can)."""
    return name.startswith(REHEARSAL_PREFIX) or find(name) is not None


def check_name(name: str, kind: str = "images", *, key: str = "dataset", extra: tuple[str, ...] = ()) -> str:
    """``name`` itself if it names a dataset of ``kind`` (with an optional ``permuted-`` or
    ``rehearsal-`` prefix, or one of ``extra`` such as ``"auto"``); a ConfigError naming the config
    ``key``, the value and the choices otherwise. For experiments' ``__post_init__`` checks."""
    from mlmyths.errors import ConfigError

    if name in extra:
        return name
    try:
        ok = spec(name).kind == kind
    except DataError:
        ok = False
    if not ok:
        choices = ", ".join([*extra, *dataset_names(kind)])
        prefixes = " (images may be prefixed permuted- or rehearsal-)" if kind == "images" else \
            " (or rehearsal-NAME)"
        what = {"images": "an image dataset", "text": "a text corpus"}.get(kind, f"a {kind} dataset")
        raise ConfigError(f"config key {key!r}: {name!r} is not {what}; choose one of {choices}{prefixes}")
    return name


def first_available(candidates: tuple[str, ...] = ("fashion-mnist", "digits")) -> str:
    """The first of ``candidates`` present locally (experiments' ``dataset="auto"``;
    for text, e.g. ``("fortunes", "python-docs")``)."""
    for name in candidates:
        if available(name):
            return name
    raise DataError(missing_message(candidates[0]))


def load(name: str) -> ImageDataset:
    """Load an image dataset by name (``digits``, ``mnist``, ``fashion-mnist``, ``cifar10``,
    or any of them prefixed with ``permuted-``)."""
    s = spec(name)
    if s.kind != "images":
        raise DataError(f"dataset {name!r} is not an image dataset; image datasets: "
                        f"{', '.join(dataset_names('images'))}")
    if name.startswith(REHEARSAL_PREFIX):
        return rehearsal(name[len(REHEARSAL_PREFIX):])
    if s.name == "digits":
        ds = _load_digits()
    else:
        directory = fetch(s.name)
        ds = _load_cifar10(directory) if s.name == "cifar10" else _load_idx(s, directory)
    if name.startswith(PERMUTED_PREFIX):
        ds = permute_pixels(ds, seed=0)
    return ds


def load_text(name: str) -> str:
    """Load a text corpus (``fortunes``, ``python-docs``, ``enwik8``, ``text8``) as one string.

    enwik8 is decoded byte-for-byte as Latin-1 so that characters map one-to-one to bytes.
    ``python-docs`` (the standard library's docstrings) is always available and is cached
    in the user cache after the first build.
    """
    s = spec(name)
    if s.kind != "text":
        raise DataError(f"dataset {name!r} is not a text corpus; text corpora: {', '.join(dataset_names('text'))}")
    if name.startswith(REHEARSAL_PREFIX):
        return rehearsal_text(s.name)
    if s.name == "python-docs":
        import sys

        cached = cache_dir() / "python-docs" / f"docstrings-{sys.version_info[0]}.{sys.version_info[1]}.txt"
        if cached.exists():
            return cached.read_text(encoding="utf-8")
        text = readers.read_stdlib_docstrings()
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(cached)
        return text
    directory = fetch(s.name)
    if not s.files:
        return readers.read_text_folder(directory)
    path = store.locate_file(directory, s.files[0])
    assert path is not None  # fetch() guarantees it
    raw = readers.read_zipped_text(path, s.name)
    return raw.decode("latin-1")


def rehearsal(name: str, n_train: int = 512, n_test: int = 256, seed: int = 0) -> ImageDataset:
    """Synthetic images with the shape and classes of image dataset ``name``: class ``k`` is a
    fixed smooth random template plus pixel noise, so a model can learn it in a few steps.

    For rehearsing an experiment's ``paper`` preset on a laptop (code paths, shapes and budgets
    of the paper's data, none of its content). Deterministic in ``seed``.

    >>> ds = rehearsal("cifar10")
    >>> tuple(ds.x_train.shape), ds.num_classes, ds.name
    ((512, 3, 32, 32), 10, 'rehearsal-cifar10')
    """
    s = spec(name)
    if s.image_shape is None:
        raise DataError(f"dataset {name!r} has no image shape to rehearse; image datasets: "
                        f"{', '.join(dataset_names('images'))}")
    c, h, w = s.image_shape
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(s.num_classes, c, max(h // 4, 1), max(w // 4, 1)))  # (K, C, h/4, w/4)
    templates = np.kron(coarse, np.ones((1, 1, 4, 4)))[:, :, :h, :w]  # (K, C, H, W), smooth

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = rng.integers(0, s.num_classes, size=n)
        x = 128 + 40 * templates[y] + 30 * rng.normal(size=(n, c, h, w))  # (N, C, H, W)
        return torch.from_numpy(np.clip(np.rint(x), 0, 255).astype(np.uint8)), torch.from_numpy(y.astype(np.int64))

    x_train, y_train = split(n_train)
    x_test, y_test = split(n_test)
    return ImageDataset(REHEARSAL_PREFIX + s.name, x_train, y_train, x_test, y_test,
                        tuple(str(k) for k in range(s.num_classes)), "synthetic (rehearsal)")


def rehearsal_text(name: str, chars: int = 200_000, seed: int = 0) -> str:
    """Synthetic text for rehearsing a text corpus ``name``: words drawn from a fixed random
    vocabulary with Zipf frequencies (letters, spaces, punctuation and newlines), deterministic."""
    rng = np.random.default_rng([seed, len(name)])
    letters = np.array(list("etaoinshrdlucmfwypvbgkjqxz"))
    vocab = ["".join(rng.choice(letters, size=int(rng.integers(1, 9)))) for _ in range(2000)]
    weights = 1.0 / np.arange(1, len(vocab) + 1)
    words = rng.choice(len(vocab), size=chars // 4, p=weights / weights.sum())
    marks = rng.choice(np.array([" ", " ", " ", " ", " ", ", ", ". ", "\n"]), size=len(words))
    return "".join(vocab[i] + m for i, m in zip(words, marks))[:chars]


def permute_pixels(ds: ImageDataset, seed: int = 0) -> ImageDataset:
    """Apply one fixed permutation of pixel positions (shared by channels and images)."""
    c, h, w = ds.image_shape
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(h * w))

    def apply(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), c, h * w)[:, :, perm].reshape(len(x), c, h, w).contiguous()

    return replace(ds, name=PERMUTED_PREFIX + ds.name, x_train=apply(ds.x_train), x_test=apply(ds.x_test))


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images to float32 in [0, 1]."""
    return x.to(torch.float32).div_(255.0)


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 images to float32, standardized with per-channel ``mean`` and ``std`` (in [0,1] units)."""
    shape = (1, -1, 1, 1)
    return (to_float(x) - mean.view(shape)) / std.view(shape)


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (in [0,1] units) of uint8 images ``(N, C, H, W)``."""
    xf = to_float(x).transpose(0, 1).reshape(x.shape[1], -1)
    return xf.mean(1), xf.std(1).clamp_min(1e-6)


# -- loaders -----------------------------------------------------------------------------

_DIGITS_TEST_FRACTION = 0.2


def _load_digits() -> ImageDataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # (1797, 1, 8, 8)
    labels = bunch.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(labels))  # fixed split, seed 0
    n_test = int(round(len(labels) * _DIGITS_TEST_FRACTION))
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    return ImageDataset(
        "digits",
        torch.from_numpy(images[train].copy()),
        torch.from_numpy(labels[train].copy()),
        torch.from_numpy(images[test].copy()),
        torch.from_numpy(labels[test].copy()),
        tuple(str(d) for d in range(10)),
        "scikit-learn load_digits (embedded)",
    )


_FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def _load_idx(s: DatasetSpec, directory: Path) -> ImageDataset:
    arrays = {}
    for remote in s.files:
        path = store.locate_file(directory, remote)
        if path is None:
            raise DataError(missing_message(s.name, f"{remote.name} missing in {directory}"))
        arrays[remote.name.split("-")[0] + ("_x" if "images" in remote.name else "_y")] = (path, readers.read_idx(path))
    out = {}
    for split in ("train", "t10k"):
        (xpath, x), (ypath, y) = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"{xpath}: {len(x)} images do not match {len(y)} labels in {ypath}")
        if y.max() > 9:
            raise DataError(f"{ypath}: label out of range 0..9")
        out[split] = (torch.from_numpy(x.copy())[:, None], torch.from_numpy(y.astype(np.int64)))
    classes = _FASHION_CLASSES if s.name == "fashion-mnist" else tuple(str(d) for d in range(10))
    return ImageDataset(s.name, *out["train"], *out["t10k"], classes, str(directory))


def _load_cifar10(directory: Path) -> ImageDataset:
    path = store.locate_file(directory, DATASETS["cifar10"].files[0])
    assert path is not None
    parts = readers.read_cifar10(path)
    (xtr, ytr), (xte, yte) = parts["train"], parts["test"]
    return ImageDataset(
        "cifar10",
        torch.from_numpy(xtr.copy()), torch.from_numpy(ytr),
        torch.from_numpy(xte.copy()), torch.from_numpy(yte),
        readers.CIFAR10_CLASSES, str(path),
    )
