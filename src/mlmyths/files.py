"""Files: atomic writes, JSON, task-value storage and the user cache -- one implementation each.

The ground floor that every other module may use (it imports nothing of mlmyths but
:mod:`mlmyths.errors`):

- :func:`atomic_path` / :func:`atomic_write_bytes` / :func:`atomic_write_text` /
  :func:`atomic_write_json`: readers see the old file or the new one, never a mix. The
  temporary file lives beside the target under a name unique to this process and call, is
  created with the permissions a plain ``open`` would give (the umask applies), and is
  removed when the writer fails or is interrupted.
- :func:`jsonable` / :func:`read_json`: plain JSON out of numpy/torch values (NaN/inf become
  ``null``), and back.
- :func:`save_state` / :func:`load_state`: nested dicts/lists of numbers, strings and arrays in
  one ``.npz`` (JSON plus arrays, never pickle).
- :func:`cache_dir`: the user cache, ``$XDG_CACHE_HOME/mlmyths`` or ``~/.cache/mlmyths``;
  :func:`private_dir` makes (or checks) a directory only its owner may write to.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> atomic_write_json(d / "r.json", {"acc": float("nan"), "n": 3})
>>> read_json(d / "r.json")
{'acc': None, 'n': 3}
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mlmyths.errors import UserError


# -- atomic writes ----------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed onto ``path`` when the block ends
    without an exception, deleted otherwise.

    For writers that want a file name (``torch.save``, a compiler's ``-o``, a download). The
    name is unique to this process and call, so concurrent writers never share a temporary
    file; the last rename wins.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never a mix."""
    with atomic_path(path) as tmp:
        # O_EXCL: never follow or reuse something planted under the temporary name; mode 0o666
        # lets the umask decide the permissions, as for any file the user creates.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path | str, obj: Any) -> None:
    """``obj`` as indented JSON (see :func:`jsonable`), written atomically."""
    atomic_write_text(path, json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n")


# -- JSON ---------------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """Plain-JSON version of ``value``: numpy/torch values to Python, NaN/inf to None,
    dataclasses to dicts, paths to strings."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    value = _to_numpy(value)
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, Path):
        return str(value)
    return value


def read_json(path: Path | str) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _to_numpy(value: Any) -> Any:
    """A torch tensor as a numpy array (torch is only consulted when the value is one)."""
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return value


# -- task values: JSON plus arrays, never pickle -------------------------------------------------


def save_state(path: Path | str, value: Any) -> None:
    """Store nested dicts/lists of numbers, strings and arrays (numpy or torch) in one ``.npz``.

    Tuples come back as lists and tensors as numpy arrays; non-finite floats survive.
    """
    arrays: dict[str, np.ndarray] = {}

    def encode(v: Any) -> Any:
        v = _to_numpy(v)
        if isinstance(v, np.ndarray):
            key = f"a{len(arrays)}"
            arrays[key] = v
            return {"__array__": key}
        if isinstance(v, dict):
            return {str(k): encode(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [encode(x) for x in v]
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            return {"__float__": repr(v)}
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        raise TypeError(f"cannot store a value of type {type(v).__name__} in a task result")

    meta = json.dumps(encode(value), allow_nan=False)
    buf = io.BytesIO()
    np.savez(buf, __json__=np.frombuffer(meta.encode(), dtype=np.uint8), **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_state(path: Path | str) -> Any:
    """The value :func:`save_state` stored."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(bytes(z["__json__"]).decode())
        arrays = {k: z[k] for k in z.files if k != "__json__"}

    def decode(v: Any) -> Any:
        if isinstance(v, dict):
            if set(v) == {"__array__"}:
                return arrays[v["__array__"]]
            if set(v) == {"__float__"}:
                return float(v["__float__"])
            return {k: decode(x) for k, x in v.items()}
        if isinstance(v, list):
            return [decode(x) for x in v]
        return v

    return decode(meta)


# -- the user cache ------------------------------------------------------------------------------


def cache_dir() -> Path:
    """The user cache root, ``$XDG_CACHE_HOME/mlmyths`` or ``~/.cache/mlmyths``."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "mlmyths"


def private_dir(path: Path | str) -> Path:
    """Create ``path`` (mode 0700) if needed and check that it is a real directory owned by this
    user that nobody else may write to; :class:`UserError` naming the problem otherwise.

    For directories whose contents are trusted later (compiled libraries that get loaded): a
    directory others can write to could have a file planted in it.
    """
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise UserError(f"{path} must be a real directory, not a link or a file; remove it and try again")
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise UserError(f"{path} belongs to user id {info.st_uid}, not to you ({os.getuid()}); "
                        "remove it or point XDG_CACHE_HOME elsewhere")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UserError(f"{path} is writable by others (mode {stat.S_IMODE(info.st_mode):o}); "
                        f"run `chmod go-w {path}` or remove it")
    return path
