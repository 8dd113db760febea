"""Measuring code: wall time, peak memory, resident set -- the one place for each.

Used by the experiments that time things (``tensors``, ``lightconv``), by
:mod:`mlmyths.hessians` and by ``benchmarks/``. torch is imported only when a torch device is
measured, so peers timed in a child process need not load it.

- :func:`wall_time`: seconds of one call (waiting for the GPU on CUDA).
- :func:`time_and_memory`: median (or another reduction) of repeated calls after a warm-up,
  and the warm-up's peak memory.
- :func:`peak_memory`: peak memory of a block: CUDA's allocator peak, or on Linux the growth
  of the resident set (``VmHWM`` after a reset through ``/proc/self/clear_refs``).
- :func:`rss_bytes`, :func:`reset_peak_rss`, :func:`rss_mb`, :func:`peak_rss_mb`: this
  process's memory.

>>> seconds = wall_time(lambda: sum(range(1000)))
>>> 0.0 <= seconds < 1.0
True
"""
from __future__ import annotations

import contextlib
import ctypes
import math
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

_libc: Any = None


def reset_peak_rss() -> bool:
    """Reset this process's peak resident set (``VmHWM``) to its current size, through
    ``/proc/self/clear_refs`` (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:  # pragma: no cover - not Linux
        return False


def rss_bytes(field: str = "VmRSS") -> int:
    """A memory field of ``/proc/self/status`` in bytes: ``VmRSS`` (resident set now) or ``VmHWM``
    (its peak). OSError where there is no such file or field (not Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"no {field} in /proc/self/status")


def rss_mb() -> float:
    """Resident set now, in MiB (NaN where unknown)."""
    try:
        return rss_bytes("VmRSS") / 2**20
    except (OSError, ValueError):  # pragma: no cover - not Linux
        return float("nan")


def peak_rss_mb() -> float:
    """Peak resident set in MiB (``VmHWM``; ``getrusage``'s maximum where Linux's is missing)."""
    try:
        return rss_bytes("VmHWM") / 2**20
    except (OSError, ValueError):  # pragma: no cover - not Linux
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 1024 if sys.platform != "darwin" else peak / 2**20


def _is_cuda(device: Any) -> bool:
    return getattr(device, "type", str(device).split(":")[0]) == "cuda"


def _synchronize(device: Any) -> None:
    if _is_cuda(device):
        import torch

        torch.cuda.synchronize(device)


@contextlib.contextmanager
def peak_memory(device: Any = "cpu") -> Iterator[dict[str, float | None]]:
    """Measure the peak memory of the enclosed code: ``out["bytes"]`` after the block.

    CUDA: ``max_memory_allocated`` above what was allocated before. CPU (Linux): growth of the
    resident set (``VmHWM`` after resetting it through ``/proc/self/clear_refs``, free heap
    returned with ``malloc_trim`` first). ``None`` where neither is available.
    """
    global _libc
    out: dict[str, float | None] = {"bytes": None}
    if _is_cuda(device):
        import torch

        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        yield out
        torch.cuda.synchronize(device)
        out["bytes"] = float(torch.cuda.max_memory_allocated(device) - base)
        return
    start = None
    if sys.platform.startswith("linux"):
        try:
            if _libc is None:
                _libc = ctypes.CDLL("libc.so.6")
            _libc.malloc_trim(0)
            start = rss_bytes("VmRSS") if reset_peak_rss() else None
        except OSError:
            start = None
    yield out
    if start is not None:
        out["bytes"] = float(max(rss_bytes("VmHWM") - start, 0))


def wall_time(fn: Callable[[], Any], device: Any = "cpu") -> float:
    """Seconds one call of ``fn()`` takes (waiting for the GPU to finish on CUDA)."""
    start = time.perf_counter()
    fn()
    _synchronize(device)
    return time.perf_counter() - start


def time_and_memory(fn: Callable[[], Any], device: Any = "cpu", repeats: int = 5, max_seconds: float = math.inf,
                    reduce: Callable[[list[float]], float] = statistics.median) -> tuple[float, float | None]:
    """Wall time of ``fn()`` over ``repeats`` calls after a warm-up call (their median, or
    ``reduce``), and the peak memory of the warm-up call (see :func:`peak_memory`). A warm-up
    longer than ``max_seconds`` is the only call, and its time is returned."""
    with peak_memory(device) as memory:
        first = wall_time(fn, device)
    if first > max_seconds or repeats < 1:
        return first, memory["bytes"]
    return reduce([wall_time(fn, device) for _ in range(repeats)]), memory["bytes"]


def forward_backward(module: Any, x: Any) -> Callable[[], None]:
    """A closure running one forward+backward of the torch ``module`` on ``x`` (bf16 autocast on
    CUDA), for timing a layer the way training uses it."""
    import torch

    amp = torch.autocast("cuda", dtype=torch.bfloat16) if x.device.type == "cuda" else contextlib.nullcontext()

    def run() -> None:
        module.zero_grad(set_to_none=True)
        x.grad = None
        with amp:
            out = module(x)
        out.float().sum().backward()

    return run
