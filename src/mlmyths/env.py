"""Devices, seeds, thread limits and the software environment a run records.

torch is imported lazily here, so that measuring other frameworks in a subprocess
(``limit_threads`` in :mod:`mlmyths.hessians`) does not load it.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mlmyths.errors import UserError

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else CPU; asking for missing CUDA is a user error."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"device {name!r} requested but CUDA is not available; use --device cpu or auto")
        return torch.device(name)
    raise UserError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")


def describe_device(device: torch.device) -> str:
    import torch

    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.machine()} ({torch.get_num_threads()} threads)"


def derive_seed(seed: int, *key: object) -> int:
    """A stable 63-bit seed from a base seed and a key (same inputs, same seed, any process)."""
    text = repr((int(seed),) + tuple(str(k) for k in key)).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") >> 1


def seed_globals(seed: int) -> None:
    """Seed torch's (if loaded), NumPy's legacy and Python's global generators: a task's starting state."""
    import random

    np.random.seed(seed % 2**32)
    random.seed(seed)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)


def rng(seed: int, *key: object) -> np.random.Generator:
    return np.random.default_rng(derive_seed(seed, *key))


def torch_generator(seed: int, *key: object, device: str | torch.device = "cpu") -> torch.Generator:
    import torch

    return torch.Generator(device=device).manual_seed(derive_seed(seed, *key))


def git_commit() -> str | None:
    """The commit of the mlmyths checkout (with ``-dirty`` when modified), if it is one."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def capture(device: torch.device) -> dict[str, str | None]:
    """Versions and hardware to store next to every result."""
    import torch

    from mlmyths import __version__

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "device": describe_device(device),
        "mlmyths": __version__,
        "git_commit": git_commit(),
        "platform": platform.platform(),
        "cpu_count": str(os.cpu_count()),
        "argv": " ".join(sys.argv[1:]) or None,
    }


@contextlib.contextmanager
def limit_threads(threads: int) -> Iterator[None]:
    """At most ``threads`` threads for BLAS/OpenMP (threadpoolctl) and, if it is loaded, torch,
    inside the block; ``0`` leaves the libraries alone.

    Tiny models train faster on one thread, and on a machine shared with other jobs a
    second spinning thread can make torch several times slower.
    """
    if threads <= 0:
        yield
        return
    stack = contextlib.ExitStack()
    try:
        from threadpoolctl import threadpool_limits

        stack.enter_context(threadpool_limits(limits=threads))
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        pass
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(threads)
    try:
        with stack:
            yield
    finally:
        if torch is not None and before is not None:
            torch.set_num_threads(before)
