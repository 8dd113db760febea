"""Small C kernels compiled on first use and loaded with :mod:`ctypes` (no build step at install).

:func:`load` compiles a C file that ships inside the package with the machine's C compiler
(``$CC``, else ``cc``, ``gcc`` or ``clang``), for this machine's CPU (``-march=native``) and
with OpenMP (``-fopenmp``), dropping either where the compiler refuses it (:data:`OPTIONS`;
refusals are remembered), and caches the shared library under
``~/.cache/mlmyths/native`` (see :func:`mlmyths.files.cache_dir`), keyed by a hash of the source,
the compiler, the flags and the CPU, so that a cache shared between different machines never
hands one of them code for another's instructions. A library is loaded only from a directory
that belongs to this user and that nobody else may write to (:func:`mlmyths.files.private_dir`),
and only when its SHA-256 matches the one recorded beside it when it was built; anything else
is rebuilt. A compiler that *rejects* a set of flags is remembered (for a week), so later
processes go straight to a build that works; failures that may pass (a full disk, no memory, a
timeout) are not remembered. When there is no compiler, compiling fails,
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
import threading
import time
from pathlib import Path

from mlmyths.errors import UserError
from mlmyths.files import atomic_path, atomic_write_text, cache_dir, private_dir

FLAGS = ("-O3", "-fPIC", "-shared", "-pthread", "-fno-math-errno", "-fno-trapping-math", "-fno-signed-zeros",
         "-fassociative-math")
#: Optional flags, tried in this order until a build succeeds: code for this CPU, OpenMP threads.
OPTIONS = (("-march=native", "-fopenmp"), ("-fopenmp",), ("-march=native",), ())
COMPILE_TIMEOUT_S = 120
DISABLE_ENV = "MLMYTHS_NATIVE"
FAILURE_MEMORY_S = 7 * 24 * 3600  #: how long a compiler's rejection of a set of flags is remembered
#: compiler messages of failures that may pass on their own: never remembered
TRANSIENT = ("no space left", "cannot allocate", "out of memory", "resource temporarily", "killed", "interrupt",
             "disk quota", "read-only file system", "timed out")

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
    concurrent processes never load a half-written library), then records its SHA-256 beside it.
    Returns None, or the error and whether the compiler rejected the build for good (as opposed to
    failing to run or failing for a reason that may pass)."""
    try:
        with atomic_path(target) as tmp:
            done = subprocess.run([*shlex.split(cc), *FLAGS, *extra, "-o", str(tmp), str(source)], capture_output=True,
                                  text=True, timeout=COMPILE_TIMEOUT_S)
            if done.returncode != 0:
                lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
                error = next((line for line in lines if "error" in line.lower()),
                             lines[-1] if lines else f"exit status {done.returncode}")
                transient = done.returncode < 0 or any(t in done.stderr.lower() for t in TRANSIENT)
                raise _CompileFailed(error, not transient)
            digest = _sha256(tmp)
        atomic_write_text(_digest_path(target), digest + "\n")
        return None
    except _CompileFailed as exc:
        return exc.args[0], exc.args[1]
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{type(exc).__name__}: {exc}", False


class _CompileFailed(Exception):
    pass


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _digest_path(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _verified(target: Path) -> bool:
    """``target`` exists, is a regular file (not a link) and matches the digest recorded when it was built."""
    try:
        if target.is_symlink() or not target.is_file():
            return False
        return _digest_path(target).read_text().strip() == _sha256(target)
    except OSError:
        return False


def _remembered_failure(failed: Path) -> str | None:
    try:
        if time.time() - failed.stat().st_mtime > FAILURE_MEMORY_S:
            return None
        return failed.read_text().strip()
    except OSError:
        return None


def _build(source: Path) -> tuple[ctypes.CDLL | None, str]:
    if os.environ.get(DISABLE_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return None, f"disabled by {DISABLE_ENV}={os.environ[DISABLE_ENV]}"
    if os.name != "posix":
        return None, f"not built on {os.name} (POSIX threads and a C compiler are assumed)"
    cc = compiler()
    if cc is None:
        return None, "no C compiler found (set CC, or install cc, gcc or clang)"
    try:
        directory = private_dir(cache_dir() / "native")
    except (UserError, OSError) as exc:
        return None, f"no safe cache for compiled kernels: {exc}"
    errors = []
    text, cpu = source.read_text(), _cpu_identity()
    for extra in OPTIONS:  # the fastest build this compiler manages
        key = hashlib.sha256("\0".join([text, cc, *FLAGS, *extra, cpu]).encode())
        target = directory / f"{source.stem}-{key.hexdigest()[:20]}.so"
        failed = target.with_suffix(".failed")
        remembered = _remembered_failure(failed)
        if remembered is not None:  # the compiler rejected this very build before
            errors.append(f"{' '.join([cc, *extra])}: {remembered}")
            continue
        if not _verified(target):
            failure = _compile(cc, source, target, extra)
            if failure is not None:
                errors.append(f"{' '.join([cc, *extra])}: {failure[0]}")
                if failure[1]:
                    with contextlib.suppress(OSError):
                        atomic_write_text(failed, failure[0] + "\n")
                continue
            if not _verified(target):
                errors.append(f"{target}: its digest does not match the build")
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
