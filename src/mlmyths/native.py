"""Small C kernels compiled on first use and loaded with :mod:`ctypes` (no build step at install).

:func:`load` compiles a C file that ships inside the package with the machine's C compiler
(``$CC``, else ``cc``, ``gcc`` or ``clang``), for this machine's CPU (``-march=native``) and
with OpenMP (``-fopenmp``), dropping either where the compiler refuses it (:data:`OPTIONS`;
refusals are remembered), and caches the shared library under
``~/.cache/mlmyths/native`` (see :func:`mlmyths.data.cache_dir`), keyed by the source, the
compiler, the flags and the CPU, so that a cache shared between different machines never
hands one of them code for another's instructions. When there is no compiler, compiling fails,
or ``MLMYTHS_NATIVE=0`` is set, :func:`load` returns ``None`` and callers take their pure
PyTorch path; :func:`status` says why, for reports and benchmarks.

The flags allow reassociating float sums (``-fassociative-math`` and what it needs), which lets
the compiler vectorize reductions; NaN and infinity keep their meaning (no ``-ffast-math``).
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from mlmyths.data.store import cache_dir

FLAGS = ("-O3", "-fPIC", "-shared", "-pthread", "-fno-math-errno", "-fno-trapping-math", "-fno-signed-zeros",
         "-fassociative-math")
#: Optional flags, tried in this order until a build succeeds: code for this CPU, OpenMP threads.
OPTIONS = (("-march=native", "-fopenmp"), ("-fopenmp",), ("-march=native",), ())
COMPILE_TIMEOUT_S = 120
DISABLE_ENV = "MLMYTHS_NATIVE"

_lock = threading.Lock()
_built: dict[Path, tuple[ctypes.CDLL | None, str]] = {}  # per source: the library (or None) and how it went


def compiler() -> str | None:
    """The C compiler command: ``$CC`` if set (e.g. ``ccache gcc``; its program must be found), else
    the first of cc, gcc, clang found. None when there is none."""
    if os.environ.get("CC"):
        words = shlex.split(os.environ["CC"])
        program = shutil.which(words[0]) if words else None
        return shlex.join([program, *words[1:]]) if program else None
    return next((found for name in ("cc", "gcc", "clang") if (found := shutil.which(name))), None)


def _cpu_identity() -> str:
    """What ``-march=native`` depends on: the CPU model and its instruction-set flags where Linux tells them."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
        lines = [line for line in text.splitlines() if line.startswith(("model name", "flags", "Features"))]
        return "\n".join(sorted(set(lines)))
    except OSError:
        return f"{platform.machine()} {platform.processor()}"


def _compile(cc: str, source: Path, target: Path, extra: tuple[str, ...]) -> tuple[str, bool] | None:
    """Compiles into a temporary file next to ``target`` and renames it into place (atomic, so that
    concurrent processes never load a half-written library). Returns None, or the error and whether
    the compiler rejected the build (as opposed to failing to run)."""
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".so.tmp")
        os.close(fd)
        done = subprocess.run([*shlex.split(cc), *FLAGS, *extra, "-o", tmp, str(source)], capture_output=True, text=True,
                              timeout=COMPILE_TIMEOUT_S)
        if done.returncode != 0:
            lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
            return next((line for line in lines if "error" in line.lower()), lines[-1] if lines else
                        f"exit status {done.returncode}"), True
        os.replace(tmp, target)
        return None
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{type(exc).__name__}: {exc}", False
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _build(source: Path) -> tuple[ctypes.CDLL | None, str]:
    if os.environ.get(DISABLE_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return None, f"disabled by {DISABLE_ENV}={os.environ[DISABLE_ENV]}"
    if os.name != "posix":
        return None, f"not built on {os.name} (POSIX threads and a C compiler are assumed)"
    cc = compiler()
    if cc is None:
        return None, "no C compiler found (set CC, or install cc, gcc or clang)"
    errors = []
    text, cpu = source.read_text(), _cpu_identity()
    for extra in OPTIONS:  # the fastest build this compiler manages
        key = hashlib.sha256("\0".join([text, cc, *FLAGS, *extra, cpu]).encode())
        target = cache_dir() / "native" / f"{source.stem}-{key.hexdigest()[:20]}.so"
        failed = target.with_suffix(".failed")
        if failed.exists():  # this build failed before, for this very source, compiler and CPU
            errors.append(f"{' '.join([cc, *extra])}: {failed.read_text().strip()}")
            continue
        if not target.exists():
            failure = _compile(cc, source, target, extra)
            if failure is not None:
                errors.append(f"{' '.join([cc, *extra])}: {failure[0]}")
                if failure[1]:  # remembered, so that later processes go straight to a build that works
                    with contextlib.suppress(OSError):
                        failed.write_text(failure[0] + "\n")
                continue
        try:
            return ctypes.CDLL(str(target)), " ".join(["built with", cc, *extra])
        except OSError as exc:
            errors.append(f"loading {target}: {exc}")
    return None, errors[0] if errors else "no build tried"


def load(source: Path) -> ctypes.CDLL | None:
    """The shared library built from the C file ``source``, compiled and cached on first use;
    None when it cannot be built here (see :func:`status`). Built once per process."""
    return _load(Path(source))[0]


def status(source: Path) -> str:
    """How :func:`load` fared with ``source``: "built with …", or why there is no library."""
    return _load(Path(source))[1]


def _load(source: Path) -> tuple[ctypes.CDLL | None, str]:
    with _lock:
        if source not in _built:
            _built[source] = _build(source)
        return _built[source]


def forget(source: Path) -> None:
    """Drops this process's memory of ``source`` so that the next :func:`load` looks again (tests)."""
    with _lock:
        _built.pop(Path(source), None)
