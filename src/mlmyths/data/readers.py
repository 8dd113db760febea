"""Readers for the on-disk formats: IDX (MNIST family), CIFAR-10 binary, text.

Every reader validates what it reads (magic numbers, declared sizes, record
counts) and raises :class:`~mlmyths.errors.DataError` naming the file when a
copy is corrupt or truncated. No pickle is ever loaded.
"""
from __future__ import annotations

import gzip

import re
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from mlmyths.errors import DataError

_IDX_TYPES = {0x08: np.uint8}


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: corrupt or truncated file ({exc})") from None


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a uint8 array of its declared shape."""
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataError(f"{path}: not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: corrupt or truncated: header declares shape {shape} "
            f"({expected} bytes) but {len(raw) - header} bytes follow"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


_CIFAR_RECORD = 1 + 3 * 32 * 32
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _cifar_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    if len(raw) == 0 or len(raw) % _CIFAR_RECORD:
        raise DataError(f"{where}: corrupt or truncated CIFAR-10 batch ({len(raw)} bytes)")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _CIFAR_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DataError(f"{where}: label out of range 0..9 (corrupt CIFAR-10 batch)")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def read_cifar10(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read CIFAR-10's binary version from the tarball or its extracted folder.

    Returns ``{"train": (x, y), "test": (x, y)}`` with x uint8 (N, 3, 32, 32).
    """
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    blobs: dict[str, bytes] = {}
    if path.is_dir():
        for n in names:
            f = path / n
            if not f.exists():
                raise DataError(f"{path}: missing {n} (expected the extracted cifar-10-batches-bin folder)")
            blobs[n] = f.read_bytes()
    else:
        try:
            with tarfile.open(path, "r:gz") as tar:
                for member in tar.getmembers():
                    base = member.name.rsplit("/", 1)[-1]
                    if base in names and member.isfile():
                        blobs[base] = tar.extractfile(member).read()  # type: ignore[union-attr]
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: corrupt or truncated archive ({exc})") from None
        missing = [n for n in names if n not in blobs]
        if missing:
            raise DataError(f"{path}: archive lacks {', '.join(missing)} (corrupt or not CIFAR-10 binary)")
    parts = [_cifar_batch(blobs[n], f"{path}:{n}") for n in names]
    x_train = np.concatenate([p[0] for p in parts[:5]])
    y_train = np.concatenate([p[1] for p in parts[:5]])
    return {"train": (x_train, y_train), "test": parts[5]}


_OVERSTRIKE = re.compile(r".\x08")


def read_text_folder(directory: Path) -> str:
    """Concatenate the plain-text files of a folder (sorted; index files and links skipped).

    Written for the ``fortune`` collections: ``%`` separator lines become blank
    lines and terminal overstriking (``x\\bx``) is removed.
    """
    parts = []
    for path in sorted(directory.iterdir()):
        if path.is_symlink() or not path.is_file() or path.suffix in {".dat", ".u8"}:
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        text = _OVERSTRIKE.sub("", text)
        parts.append(re.sub(r"(?m)^%\n", "\n", text))
    if not parts:
        raise DataError(f"{directory}: no text files found")
    return "".join(parts)


def read_zipped_text(path: Path, member: str) -> bytes:
    """The bytes of ``member`` from a zip archive, or of ``path`` itself if it is not a zip."""
    if not zipfile.is_zipfile(path):
        return path.read_bytes()
    try:
        with zipfile.ZipFile(path) as z:
            return z.read(member)
    except (zipfile.BadZipFile, KeyError, OSError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt or truncated archive ({exc})") from None


def read_npy(path: Path) -> np.ndarray:
    """Load a ``.npy`` file without allowing pickled objects."""
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: corrupt or not a plain .npy array ({exc})") from None




def read_stdlib_docstrings() -> str:
    """Module, class and function docstrings of the Python standard library, in file order.

    An always-available English corpus (a few MB) for offline language-model runs; the
    test suites and site-packages are skipped. Files that do not parse are skipped.
    """
    import ast
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"test", "tests", "idle_test", "site-packages", "dist-packages", "lib2to3", "turtledemo"}
    parts = []
    for path in sorted(root.rglob("*.py")):
        if skip.intersection(path.relative_to(root).parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 40:
                    parts.append(doc.strip())
    if not parts:
        raise DataError(f"{root}: no Python standard library sources found")
    return "\n\n".join(parts) + "\n"
