"""Where dataset files live: local search paths and verified downloads.

Search order for dataset ``NAME`` (first complete copy wins):

1. ``$MLMYTHS_DATA/NAME``
2. the user cache, ``$XDG_CACHE_HOME/mlmyths/NAME`` (default ``~/.cache/mlmyths/NAME``)
3. system copies installed by an OS package (e.g. Debian's ``dataset-fashion-mnist``)
4. a download from the official URL into the user cache, verified by size and SHA-256.

Set ``MLMYTHS_OFFLINE=1`` to skip step 4. Every failure is a
:class:`~mlmyths.errors.DataError` whose one-line message says what to do.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from mlmyths.data.registry import DATASETS, PERMUTED_PREFIX, REHEARSAL_PREFIX, DatasetSpec, RemoteFile
from mlmyths.errors import DataError
from mlmyths.files import atomic_path, cache_dir

_CHUNK = 1 << 20


def spec(name: str) -> DatasetSpec:
    """The registry entry for ``name`` (a ``permuted-`` or ``rehearsal-`` prefix is ignored)."""
    base = name
    for prefix in (REHEARSAL_PREFIX, PERMUTED_PREFIX):
        base = base[len(prefix):] if base.startswith(prefix) else base
    if base not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    return DATASETS[base]


def search_dirs(name: str) -> list[tuple[str, Path]]:
    """Candidate directories for ``name`` in search order, each with a label."""
    s = spec(name)
    dirs: list[tuple[str, Path]] = []
    env = os.environ.get("MLMYTHS_DATA")
    if env:
        dirs.append(("$MLMYTHS_DATA", Path(env) / s.name))
    dirs.append(("user cache", cache_dir() / s.name))
    dirs.extend(("system copy", Path(d)) for d in s.system_dirs)
    return dirs


def locate_file(directory: Path, remote: RemoteFile) -> Path | None:
    """The local copy of ``remote`` in ``directory`` under its name or an alias."""
    for candidate in (remote.name, *remote.aliases):
        path = directory / candidate
        if path.exists():
            return path
    return None


def _complete(s: DatasetSpec, directory: Path) -> bool:
    if not directory.is_dir():
        return False
    if not s.files:  # a folder of files, e.g. a text collection
        return any(p.is_file() for p in directory.iterdir())
    return all(locate_file(directory, f) is not None for f in s.required_files())


def find(name: str) -> tuple[str, Path] | None:
    """``(label, directory)`` of the first complete local copy of ``name``, else None."""
    s = spec(name)
    if s.embedded:
        return ("embedded", Path("<bundled with scikit-learn>" if s.kind == "images" else "<Python standard library>"))
    for label, directory in search_dirs(name):
        if _complete(s, directory):
            return label, directory
    return None


def missing_message(name: str, reason: str = "") -> str:
    """One line telling the user how to get ``name``."""
    s = spec(name)
    target = search_dirs(name)[0][1]
    names = [f.name for f in s.required_files()]
    if len(names) > 6:  # e.g. CIFAR-10.1's 92 files: name a few, count the rest
        names = names[:3] + [f"and {len(names) - 3} more files listed in mlmyths.data.registry"]
    files = ", ".join(names) or "the text files"
    where = f"put {files} in {target}"
    if not os.environ.get("MLMYTHS_DATA"):
        where += " (or in $MLMYTHS_DATA/" + s.name + ")"
    why = f" ({reason})" if reason else ""
    hint = f"{s.install_hint}; or {where}" if s.install_hint else where
    return f"dataset {s.name!r} is not available locally{why}: {hint}"


def offline() -> bool:
    return os.environ.get("MLMYTHS_OFFLINE", "").lower() in {"1", "true", "yes"}


def fetch(name: str, *, report: Callable[[str], None] | None = None) -> Path:
    """Return a directory holding ``name``, downloading missing files into the user cache.

    Downloads are verified against the registry's size and SHA-256; a mismatch
    deletes the partial file and raises :class:`DataError` naming it.
    """
    found = find(name)
    if found is not None:
        return found[1]
    s = spec(name)
    if not s.files:
        raise DataError(missing_message(name, "it cannot be downloaded"))
    if offline():
        raise DataError(missing_message(name, "MLMYTHS_OFFLINE is set"))
    target = cache_dir() / s.name
    for remote in s.files:
        if locate_file(target, remote) is None:
            if report:
                report(f"downloading {remote.url} ({remote.size / 1e6:.1f} MB)")
            download(remote, target / remote.name, name=name)
    return target


def download(remote: RemoteFile, dest: Path, *, name: str = "") -> Path:
    """Download ``remote`` to ``dest`` atomically, verifying size and SHA-256 of the file itself.

    The bytes go to a temporary file unique to this process (concurrent downloads of one dataset
    never share one), which is read back and checked before it is renamed into place; a corrupt
    or truncated download is deleted and named in the :class:`DataError`.
    """
    try:
        with atomic_path(dest) as partial:
            with urllib.request.urlopen(remote.url, timeout=60) as response, open(partial, "wb") as out:
                shutil.copyfileobj(response, out, _CHUNK)
            size, digest = partial.stat().st_size, sha256_of(partial)
            if size != remote.size or digest != remote.sha256:
                raise DataError(
                    f"downloaded file {dest.name} from {remote.url} is corrupt or truncated: "
                    f"{size} bytes, sha256 {digest[:16]}..., expected {remote.size} bytes, "
                    f"sha256 {remote.sha256[:16]}...; try again"
                )
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        raise DataError(missing_message(name or remote.name, f"download of {remote.url} failed: {reason}")) from None
    return dest


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def remove(name: str) -> bool:
    """Delete the user-cache copy of ``name``; True when something was removed."""
    target = cache_dir() / spec(name).name
    if target.exists():
        shutil.rmtree(target)
        return True
    return False
