"""The Hessian apparatus of the ``tensors`` experiment: the paper's three problems, their closed
forms, and the peer frameworks, measured side by side (kept out of :mod:`mlmyths.tensorcalc`,
which depends on nothing but NumPy).

Laue, Mitterreiter & Giesen (NeurIPS 2018, Sec. 5) time Hessians of

1. ``quadratic``: ``f(x) = x'*A*x`` w.r.t. ``x`` (``A`` n x n) — Hessian ``A + A'``;
2. ``logistic``: ``f(w) = sum(log(exp(-y.*(X*w)) + 1))`` w.r.t. ``w`` (``X`` 2n x n,
   ``y`` ±1) — Hessian ``X' diag(v) X``;
3. ``factorization``: ``f(U) = ||T - U*V'||_F^2`` w.r.t. ``U`` (``T`` n x n of rank 10,
   ``U, V`` n x 10) — a 4th-order Hessian ``2 δ ⊗ V'V`` of shape (n, 10, n, 10).

:func:`measure` times one system on one problem in this process (optionally interleaved
call by call with a second system, for paired ratios); :func:`measure_isolated` does it in a
child process under a memory cap (``RLIMIT_AS``), so that a framework running out of memory,
crashing or hanging is recorded as a failure, the table goes on, and the caller -- waiting on
a pipe, never inside a framework's code -- can always be stopped (Ctrl-C kills the child).
The children are forked from a *fork server* that imported NumPy, PyTorch, jax and HIPS
autograd once (imports take seconds; a fork takes milliseconds) and never ran them, so each
measurement starts from the same freshly imported state; the memory cap counts from the size
of that state. :func:`expression_sizes` counts the operations of each system's Hessian:
tensorcalc DAG nodes, jaxpr equations, torch.fx graph nodes (``make_fx``);
:func:`expression_sizes_isolated` does it in a child too. Peers are optional
(``pip install 'mlmyths[bench]'``).

Run one measurement from the shell (what :func:`measure_isolated` does)::

    python -m mlmyths.hessians '{"problem": "quadratic", "n": 100, "system": "jax"}'
"""
from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import json
import math
import os
import re
import resource
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlmyths.env import limit_threads
from mlmyths.errors import UserError
from mlmyths.measure import peak_rss_mb, reset_peak_rss, rss_bytes, rss_mb

PROBLEMS = ("quadratic", "logistic", "factorization")
SYSTEMS = ("tensorcalc", "closed-form", "jax", "torch.func", "torch.autograd", "autograd", "tensorflow")
#: systems that are automatic-differentiation frameworks (the peers the verdict compares against)
FRAMEWORKS = ("jax", "torch.func", "torch.autograd", "autograd", "tensorflow")
RANK = 10  # inner dimension k of the factorization problem (the rank of T)

_MODULE = {"jax": "jax", "torch.func": "torch", "torch.autograd": "torch", "autograd": "autograd",
           "tensorflow": "tensorflow", "tensorcalc": "numpy", "closed-form": "numpy"}


@dataclass(frozen=True)
class Problem:
    """One benchmark problem in the string language, with its variable kinds."""

    name: str  #: quadratic | logistic | factorization
    expression: str  #: matrixcalculus.org syntax
    kinds: tuple[tuple[str, Any], ...]  #: variable -> kind
    wrt: str  #: the variable the Hessian is taken with respect to
    title: str  #: the function in words, for tables

    def parse(self) -> Any:
        from mlmyths import tensorcalc as tc

        return tc.parse(self.expression, **dict(self.kinds))


PROBLEM_SPECS = {
    "quadratic": Problem("quadratic", "x'*A*x", (("x", ("n",)), ("A", ("n", "n"))), "x", "f(x) = x'Ax"),
    "logistic": Problem("logistic", "sum(log(exp(-y.*(X*w)) + 1))",
                        (("X", ("m", "n")), ("w", ("n",)), ("y", ("m",))), "w",
                        "f(w) = sum log(exp(-y .* Xw) + 1)"),
    "factorization": Problem("factorization", "norm2(T - U*V')^2",
                             (("T", ("n", "m")), ("U", ("n", "k")), ("V", ("m", "k"))), "U",
                             "f(U) = ||T - UV'||_F^2"),
}


class Unavailable(UserError):
    """The system exists but cannot run this measurement here (e.g. a CPU-only library on CUDA)."""

    def __init__(self, why: str):
        super().__init__(f"not available: {why}")


def installed(system: str) -> bool:
    """Whether the system's library can be imported (checked without importing it)."""
    if system not in _MODULE:
        raise UserError(f"unknown system {system!r}; choose from {', '.join(SYSTEMS)}")
    return importlib.util.find_spec(_MODULE[system]) is not None


def check_problem(problem: str) -> Problem:
    if problem not in PROBLEM_SPECS:
        raise UserError(f"unknown problem {problem!r}; choose from {', '.join(PROBLEMS)}")
    return PROBLEM_SPECS[problem]


def make_inputs(problem: str, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random float64 inputs of size ``n`` (the logistic X is 2n x n; the factorization rank is 10)."""
    check_problem(problem)
    rng = np.random.default_rng(seed)
    if problem == "quadratic":
        return {"x": rng.standard_normal(n), "A": rng.standard_normal((n, n))}
    if problem == "logistic":
        m = 2 * n
        X = rng.standard_normal((m, n)) / math.sqrt(n)  # (m, n), margins of order one
        return {"X": X, "w": rng.standard_normal(n), "y": np.sign(rng.standard_normal(m))}
    k = RANK
    T = rng.standard_normal((n, k)) @ rng.standard_normal((k, n)) / math.sqrt(k)  # (n, n), rank k
    return {"T": T, "U": rng.standard_normal((n, k)), "V": rng.standard_normal((n, k))}


# -- closed forms ------------------------------------------------------------------------------


def closed_form(problem: str, inputs: dict[str, Any], xp: Any = np) -> Any:
    """The Hessian written by hand (numpy, or torch with ``xp=torch``)."""
    if problem == "quadratic":
        A = inputs["A"]
        return A + A.T
    if problem == "logistic":
        X, w, y = inputs["X"], inputs["w"], inputs["y"]
        s = 1.0 / (1.0 + xp.exp(y * (X @ w)))  # sigmoid(-y z), (m,)
        v = s * (1.0 - s) * y * y
        return X.T @ (v[:, None] * X)
    V = inputs["V"]
    n, k = inputs["U"].shape
    G = 2.0 * (V.T @ V)  # (k, k)
    if xp is np:
        H = np.zeros((n, k, n, k), dtype=V.dtype)
    else:
        H = xp.zeros((n, k, n, k), dtype=V.dtype, device=V.device)
    i = xp.arange(n) if xp is np else xp.arange(n, device=V.device)
    H[i, :, i, :] = G
    return H


def check_hessian(problem: str, inputs: dict[str, np.ndarray], H: Any, samples: int = 2000) -> float:
    """Largest relative error of ``H`` against the closed form (sampled entries for the
    4th-order factorization Hessian, so that no second copy of it is allocated)."""
    H = _to_numpy(H)
    if problem != "factorization":
        ref = closed_form(problem, inputs)
        return float(np.abs(H - ref).max() / max(1.0, np.abs(ref).max()))
    n, k = inputs["U"].shape
    if H.shape != (n, k, n, k):
        return math.inf
    G = 2.0 * inputs["V"].T @ inputs["V"]
    rng = np.random.default_rng(1)
    i, j, p, q = (rng.integers(0, d, samples) for d in (n, k, n, k))
    i2, j2, q2 = (rng.integers(0, d, samples) for d in (n, k, k))
    i, j, p, q = np.r_[i, i2], np.r_[j, j2], np.r_[p, i2], np.r_[q, q2]  # half on the diagonal blocks
    ref = np.where(i == p, G[j, q], 0.0)
    return float(np.abs(H[i, j, p, q] - ref).max() / max(1.0, np.abs(G).max()))


def _to_numpy(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):
        return a.detach().cpu().numpy()
    return np.asarray(a)


# -- the systems -----------------------------------------------------------------------------


def _array_function(problem: str, data: dict[str, Any], np_: Any) -> Callable[[Any], Any]:
    """The problem's f written with ``np_``: jax.numpy, autograd.numpy or torch."""
    if problem == "quadratic":
        A = data["A"]
        return lambda x: x @ A @ x
    if problem == "logistic":
        X, y = data["X"], data["y"]
        return lambda w: np_.sum(np_.log(np_.exp(-y * (X @ w)) + 1))
    T, V = data["T"], data["V"]
    return lambda U: np_.sum((T - U @ V.T) ** 2)


def build(problem: str, system: str, inputs: dict[str, np.ndarray], device: str = "cpu"
          ) -> tuple[Callable[[], Any], Callable[[], None]]:
    """``(hessian, sync)``: a no-argument function computing the Hessian at ``inputs``
    and a function that waits for the device (CUDA) to finish."""
    spec = check_problem(problem)
    wrt = spec.wrt
    no_sync: Callable[[], None] = lambda: None  # noqa: E731
    cuda = device.startswith("cuda")
    if system in ("tensorcalc", "closed-form") and not cuda:
        if system == "closed-form":
            return (lambda: closed_form(problem, inputs)), no_sync
        from mlmyths import tensorcalc as tc

        f = spec.parse()
        fn = tc.compile(tc.hessian(f, wrt), backend="numpy", variables=f)
        return (lambda: fn(**inputs)), no_sync
    if system in ("tensorcalc", "closed-form", "torch.func", "torch.autograd"):
        import torch

        dtype = torch.float32 if cuda else torch.float64
        data = {k: torch.tensor(v, dtype=dtype, device=device) for k, v in inputs.items()}
        sync = torch.cuda.synchronize if cuda else no_sync
        if system == "closed-form":
            return (lambda: closed_form(problem, data, torch)), sync
        if system == "tensorcalc":
            from mlmyths import tensorcalc as tc

            f = spec.parse()
            fn = tc.compile(tc.hessian(f, wrt), backend="torch", variables=f)
            return (lambda: fn(**data)), sync
        fx = _array_function(problem, data, torch)
        point = data[wrt]
        if system == "torch.func":
            hess = torch.func.hessian(fx)
            return (lambda: hess(point)), sync
        return (lambda: torch.autograd.functional.hessian(fx, point)), sync
    if system == "jax":
        import jax

        if cuda and jax.default_backend() != "gpu":
            raise Unavailable("this jax has no GPU backend")
        jax.config.update("jax_enable_x64", not cuda)
        if cuda:  # jax's default float32 matmul on tensor-core GPUs is TF32 (10-bit mantissa); compare at float32
            jax.config.update("jax_default_matmul_precision", "highest")
        import jax.numpy as jnp

        dtype = jnp.float32 if cuda else jnp.float64
        data = {k: jnp.asarray(v, dtype=dtype) for k, v in inputs.items()}
        others = {k: v for k, v in data.items() if k != wrt}

        def f(point: Any, rest: dict[str, Any]) -> Any:
            return _array_function(problem, rest, jnp)(point)

        hess = jax.jit(jax.hessian(f, argnums=0))
        point = data[wrt]
        return (lambda: jax.block_until_ready(hess(point, others))), no_sync  # jax dispatches asynchronously
    if system == "autograd":
        if cuda:
            raise Unavailable("HIPS autograd runs on the CPU only")
        import autograd
        import autograd.numpy as anp

        fa = _array_function(problem, inputs, anp)
        hess = autograd.hessian(fa)
        return (lambda: hess(inputs[wrt])), no_sync
    if system == "tensorflow":
        import tensorflow as tf

        if cuda and not tf.config.list_physical_devices("GPU"):
            raise Unavailable("this TensorFlow has no GPU support")
        dtype = tf.float32 if cuda else tf.float64
        data = {k: tf.constant(v, dtype=dtype) for k, v in inputs.items()}
        ft = _tf_function(problem, data, tf)

        @tf.function
        def hess(point: Any) -> Any:
            with tf.GradientTape() as outer:
                outer.watch(point)
                with tf.GradientTape() as inner:
                    inner.watch(point)
                    value = ft(point)
                grad = inner.gradient(value, point)
            return outer.jacobian(grad, point)

        point = data[wrt]
        return (lambda: hess(point)), no_sync
    raise UserError(f"unknown system {system!r}; choose from {', '.join(SYSTEMS)}")


def _tf_function(problem: str, data: dict[str, Any], tf: Any) -> Callable[[Any], Any]:
    if problem == "quadratic":
        A = data["A"]
        return lambda x: tf.tensordot(x, tf.linalg.matvec(A, x), 1)
    if problem == "logistic":
        X, y = data["X"], data["y"]
        return lambda w: tf.reduce_sum(tf.math.log(tf.exp(-y * tf.linalg.matvec(X, w)) + 1))
    T, V = data["T"], data["V"]
    return lambda U: tf.reduce_sum((T - tf.matmul(U, V, transpose_b=True)) ** 2)


# -- measuring -------------------------------------------------------------------------------


def _import_framework(system: str) -> None:
    """Import the system's library before timing (import time is not part of the setup time)."""
    import importlib

    module = _MODULE[system]
    importlib.import_module(module)
    if system == "jax":
        importlib.import_module("jax.numpy")
    if system == "torch.func":
        importlib.import_module("torch.func")
    if system == "autograd":
        importlib.import_module("autograd.numpy")


def measure(problem: str, n: int, system: str, *, repeats: int = 7, max_time: float = 2.0,
            device: str = "cpu", seed: int = 0, check: bool = True, threads: int = 0, min_calls: int = 1,
            interleave: str | None = None) -> dict[str, Any]:
    """Time one system's Hessian in this process (see :func:`_measure` for the fields);
    ``threads > 0`` limits BLAS and torch threads while it runs. With ``interleave`` (another
    system), both are built and called alternately, so that their times pair call by call
    (``times[i]`` of both came from the same moment); the other's row is under ``"interleaved"``."""
    check_problem(problem)
    for name in (system, interleave) if interleave else (system,):
        _import_framework(name)
    with limit_threads(threads):
        return _measure(problem, n, system, repeats=repeats, max_time=max_time, device=device, seed=seed,
                        check=check, min_calls=min_calls, interleave=interleave)


def _measure(problem: str, n: int, system: str, *, repeats: int, max_time: float, device: str, seed: int,
             check: bool, min_calls: int = 1, interleave: str | None = None) -> dict[str, Any]:
    """Time one system's Hessian in this process.

    Returns ``times`` (seconds of each timed call: at least ``min_calls`` and at most ``repeats``
    calls, fewer than ``repeats`` when they exceed ``max_time`` seconds in total), ``median_s``,
    ``min_s``, ``calls``, ``setup_s`` (building the Hessian function: tensorcalc's derivation and
    code generation, a framework's tracing; not the import of the library) and ``first_call_s``
    (the first call, including jit compilation), ``rel_error`` against the closed form and
    ``eps`` (the machine epsilon of the Hessian's dtype), ``output_mb`` (the Hessian's size) and
    ``peak_mb``: how far the process's resident memory peaked above its size once the library
    was imported and the inputs made (the kernel's peak counter is reset there; None where that
    is not possible).
    """
    inputs = make_inputs(problem, n, seed)
    peak_ok = reset_peak_rss()
    rss0 = rss_mb()
    names = [system] + ([interleave] if interleave else [])
    built: dict[str, tuple[Callable[[], Any], Callable[[], None]]] = {}
    rows: dict[str, dict[str, Any]] = {}
    for name in names:
        t0 = time.perf_counter()
        built[name] = build(problem, name, inputs, device)
        rows[name] = {"problem": problem, "n": n, "system": name, "device": device,
                      "setup_s": time.perf_counter() - t0}
    for name in names:
        hess, sync = built[name]
        t0 = time.perf_counter()
        H = hess()
        sync()
        rows[name].update(first_call_s=time.perf_counter() - t0, output_mb=_nbytes(H) / 2**20, eps=_eps(H),
                          rel_error=check_hessian(problem, inputs, H) if check else None)
        del H
    times: dict[str, list[float]] = {name: [] for name in names}
    spent = last = 0.0
    while len(times[system]) < repeats and (len(times[system]) < max(min_calls, 1) or spent + last <= max_time):
        last = 0.0
        for name in names:
            hess, sync = built[name]
            t0 = time.perf_counter()
            H = hess()
            sync()
            dt = time.perf_counter() - t0
            del H
            times[name].append(dt)
            last += dt
        spent += last
    peak = max(0.0, peak_rss_mb() - rss0) if peak_ok else None
    for name in names:
        t = times[name]
        rows[name].update(times=t, median_s=float(np.median(t)), min_s=float(min(t)), calls=len(t), peak_mb=peak,
                          error=None)
    out = rows[system]
    if interleave:
        out["interleaved"] = rows[interleave]
    return out


def _nbytes(a: Any) -> int:
    if hasattr(a, "nbytes"):
        return int(a.nbytes)
    if hasattr(a, "element_size"):
        return int(a.element_size() * a.numel())
    return int(np.asarray(a).nbytes)


def _eps(a: Any) -> float:
    """Machine epsilon of an array's floating dtype (numpy, torch or jax)."""
    dtype = getattr(a, "dtype", None)
    if dtype is not None and "torch" in type(dtype).__module__:
        import torch

        return float(torch.finfo(dtype).eps)
    return float(np.finfo(np.dtype(str(dtype)) if dtype is not None else np.float64).eps)


def _classify(returncode: int | None, stderr: str, mem_gb: float) -> str:
    text = stderr.lower()
    if returncode in (-9, 137) or any(s in text for s in (
            "memoryerror", "out of memory", "resource_exhausted", "bad_alloc", "cannot allocate memory",
            "failed to allocate", "allocation")):
        return f"out of memory (cap {mem_gb:g} GB)"
    if returncode is not None and returncode < 0:
        return f"killed by signal {-returncode}"
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return (lines[-1][:200] if lines else f"exit status {returncode}")


def thread_env(threads: int) -> dict[str, str]:
    """Environment variables that give every library (OpenMP, BLAS, XLA, TensorFlow) ``threads`` threads."""
    t = str(int(threads))
    return {"OMP_NUM_THREADS": t, "MKL_NUM_THREADS": t, "OPENBLAS_NUM_THREADS": t,
            "XLA_FLAGS": f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} "
                         f"intra_op_parallelism_threads={t}",
            "TF_NUM_INTRAOP_THREADS": t, "TF_NUM_INTEROP_THREADS": "1"}


# -- measuring in a child process ---------------------------------------------------------------

#: modules the fork server imports once, when installed (TensorFlow is left out: it starts threads
#: when imported, and a process with threads must not fork; a measurement imports it itself)
_PRELOAD = ("numpy", "mlmyths.tensorcalc", "torch", "torch.func", "torch._dynamo", "jax", "jax.numpy", "autograd",
            "autograd.numpy")  # torch._dynamo: what torch.func imports on its first call (5 s)


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent dies (no orphan keeps computing)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _src_path() -> str:
    return str(Path(__file__).resolve().parents[1])


class _ForkServer:
    """A child process that imported the frameworks once (``python -m mlmyths.hessians
    --fork-server``) and forks one grandchild per request, so that a measurement costs a fork,
    not the seconds of importing jax and PyTorch. Line-delimited JSON over its stdin/stdout:
    a request, then ``{"pid": ...}`` when the grandchild started and ``{"status": ...}`` when it
    ended; the grandchild writes its result to the file the request names."""

    def __init__(self, threads: int, ready_timeout_s: float):
        env = dict(os.environ)
        env["PYTHONPATH"] = _src_path() + os.pathsep + env.get("PYTHONPATH", "")
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        if threads > 0:
            env.update(thread_env(threads))  # read by OpenMP/BLAS when the server imports them
        self.proc = subprocess.Popen([sys.executable, "-m", "mlmyths.hessians", "--fork-server"], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self._buffer = b""
        try:
            ready = self.line(ready_timeout_s)
        except BaseException:  # Ctrl-C while it imports: stop it too
            self.close()
            raise
        if ready != "ready":
            self.close()
            raise RuntimeError(f"the measurement fork server did not start ({ready or 'no answer'} after "
                               f"{ready_timeout_s:g} s)")

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        self.proc.stdin.flush()

    def line(self, timeout_s: float) -> str | None:
        """The next line, or None when ``timeout_s`` passed first; EOFError when the server is gone."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                raise EOFError("the measurement fork server exited")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def close(self, gently: bool = False) -> None:
        """Stop the server: ``gently`` lets it finish (its input ends), else kill it."""
        if gently and self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        with contextlib.suppress(OSError):
            self.proc.kill()
        self.proc.wait()


_servers: dict[int, _ForkServer] = {}
_servers_lock = threading.Lock()


@atexit.register
def _close_servers() -> None:
    for server in list(_servers.values()):
        server.close(gently=True)
    _servers.clear()


def _serve() -> int:
    """The fork server's loop (``python -m mlmyths.hessians --fork-server``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is for the caller, which stops the children
    _die_with_parent()
    for module in _PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    os.write(1, b"ready\n")
    for raw in sys.stdin.buffer:
        request = json.loads(raw)
        pid = os.fork()
        if pid == 0:
            _grandchild(request)
        os.write(1, (json.dumps({"pid": pid}) + "\n").encode())
        _, status = os.waitpid(pid, 0)
        os.write(1, (json.dumps({"status": os.waitstatus_to_exitcode(status)}) + "\n").encode())
    return 0


def _grandchild(request: dict[str, Any]) -> None:
    """One measurement, forked from the fork server: output to the request's log, address space
    capped at ``mem_gb`` GiB above the size at the fork, the result as JSON in the request's file."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        _die_with_parent()
        if request.get("mem_gb") is not None:
            limit = rss_bytes("VmSize") + int(float(request["mem_gb"]) * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        out = _run_spec(request["kind"], request["spec"], int(request.get("threads", 0)))
        tmp = request["out"] + ".part"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(out, f)
        os.replace(tmp, request["out"])
        code = 0
    except BaseException:  # noqa: BLE001 - reported through the log and the exit status
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _run_spec(kind: str, spec: dict[str, Any], threads: int = 0) -> dict[str, Any]:
    """What a child computes: ``measure`` (its row, or ``{"error": ...}``) or ``sizes``."""
    try:
        if kind == "sizes":
            return {"rows": [row for p in spec["problems"] for row in expression_sizes(p, int(spec["n"]))]}
        return measure(spec["problem"], int(spec["n"]), spec["system"], repeats=int(spec.get("repeats", 7)),
                       max_time=float(spec.get("max_time", 2.0)), device=spec.get("device", "cpu"),
                       seed=int(spec.get("seed", 0)), threads=threads, min_calls=int(spec.get("min_calls", 1)),
                       interleave=spec.get("interleave"))
    except MemoryError:
        return {"error": "MemoryError"}
    except Unavailable as exc:
        return {"error": str(exc)}
    except ImportError as exc:
        return {"error": f"not installed ({exc.name})"}
    except Exception as exc:  # a framework failure is a result of the benchmark, reported as such
        text = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        if re.search(r"out of memory|resource_exhausted|bad_alloc|cannot allocate", text, re.I):
            text = "MemoryError"
        return {"error": text}


def _in_child(kind: str, spec: dict[str, Any], *, mem_gb: float, timeout_s: float, cap: bool,
              threads: int) -> dict[str, Any]:
    """:func:`_run_spec` in a grandchild of the fork server for ``threads``; ``{"error": ...}``
    when it ran out of memory, crashed or passed ``timeout_s``. The grandchild is killed when
    this raises (Ctrl-C here stops it, and the server with it)."""
    with _servers_lock:
        server = _servers.get(threads)
        if server is None or server.proc.poll() is not None:
            server = _servers[threads] = _ForkServer(threads, max(120.0, timeout_s))
        with tempfile.TemporaryDirectory(prefix="mlmyths-hessians-") as tmp:
            log_path, out_path = os.path.join(tmp, "child.log"), os.path.join(tmp, "result.json")
            pid = None
            try:
                server.send({"kind": kind, "spec": spec, "log": log_path, "out": out_path,
                             "mem_gb": mem_gb if cap else None, "threads": threads})
                started = server.line(60.0)
                if started is None:
                    raise RuntimeError("the measurement fork server did not fork within 60 s")
                pid = int(json.loads(started)["pid"])
                ended = server.line(timeout_s)
                if ended is None:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                    server.line(60.0)
                    return {"error": f"timeout after {timeout_s:g} s"}
                status = int(json.loads(ended)["status"])
            except BaseException:
                if pid is not None:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                server.close()
                _servers.pop(threads, None)
                raise
            if os.path.exists(out_path):
                with open(out_path, encoding="utf-8") as f:
                    got: dict[str, Any] = json.load(f)
                if got.get("error") == "MemoryError":
                    got["error"] = f"out of memory (cap {mem_gb:g} GB)"
                return got
            try:
                with open(log_path, encoding="utf-8", errors="replace") as f:
                    log = f.read()[-20_000:]
            except OSError:
                log = ""
            return {"error": _classify(status, log, mem_gb)}


def measure_isolated(problem: str, n: int, system: str, *, mem_gb: float = 4.0, timeout_s: float = 300.0,
                     repeats: int = 7, max_time: float = 2.0, device: str = "cpu", seed: int = 0,
                     threads: int = 0, min_calls: int = 1, interleave: str | None = None) -> dict[str, Any]:
    """:func:`measure` in a child process with at most ``mem_gb`` GiB of address space above the
    fork server's (the frameworks imported, nothing run) and ``timeout_s`` seconds for set-up,
    first call and timed calls; a crash, an allocation failure or a timeout comes back as
    ``{"error": "..."}``. ``threads > 0`` limits every library to that many threads (0: their
    defaults). With ``interleave`` the other system's row is under ``"interleaved"`` (a failure
    then fails both).
    """
    result: dict[str, Any] = {"problem": problem, "n": n, "system": system, "device": device,
                              "median_s": None, "setup_s": None, "first_call_s": None, "rel_error": None,
                              "peak_mb": None}
    check_problem(problem)
    for name in (system, interleave) if interleave else (system,):
        if not installed(name):
            return {**result, "error": "not installed"}
    spec = {"problem": problem, "n": n, "system": system, "repeats": repeats, "max_time": max_time,
            "device": device, "seed": seed, "min_calls": min_calls, "interleave": interleave}
    got = _in_child("measure", spec, mem_gb=mem_gb, timeout_s=timeout_s, cap=device == "cpu", threads=threads)
    out = {**result, **got}
    if interleave and "interleaved" not in out:
        out["interleaved"] = {**result, "system": interleave, "error": out.get("error") or "no result"}
    return out


def expression_sizes_isolated(problems: tuple[str, ...], n: int = 5, *, timeout_s: float = 300.0,
                              mem_gb: float = 4.0) -> list[dict[str, Any]]:
    """:func:`expression_sizes` of every problem in one child process (the frameworks trace there,
    never here); a failure raises RuntimeError naming it."""
    for problem in problems:
        check_problem(problem)
    got = _in_child("sizes", {"problems": list(problems), "n": n}, mem_gb=mem_gb, timeout_s=timeout_s, cap=True,
                    threads=0)
    if "rows" not in got:
        raise RuntimeError(f"expression sizes of {', '.join(problems)} failed: {got.get('error')}")
    return list(got["rows"])


def _worker(spec_json: str) -> int:
    spec = json.loads(spec_json)
    print(json.dumps(_run_spec("measure", spec)), flush=True)
    return 0


# -- a whole table -----------------------------------------------------------------------------


def grid(problems: tuple[str, ...], sizes: tuple[int, ...], systems: tuple[str, ...],
         run_one: Callable[[str, int, str], dict[str, Any]] | None = None,
         progress: Callable[[str], None] | None = None, *,
         run_wave: Callable[[list[tuple[str, int, str]]], list[dict[str, Any]]] | None = None
         ) -> list[dict[str, Any]]:
    """Measure every (problem, n, system), one wave per n, smallest first: ``run_wave(jobs)``
    returns one row per ``(problem, n, system)`` job (default: ``run_one`` on each in turn). A
    system that failed at some n is not run at larger n of that problem (recorded as skipped);
    one that is not installed or not available here is recorded as such. A row measured with an
    interleaved system (``measure(..., interleave=...)``) gives that system's row too."""
    if run_wave is None:
        if run_one is None:
            raise TypeError("grid needs run_one or run_wave")
        one = run_one
        run_wave = lambda jobs: [one(*job) for job in jobs]  # noqa: E731
    for problem in problems:
        check_problem(problem)
    order = {s: i for i, s in enumerate((*systems, *SYSTEMS))}
    stopped: dict[tuple[str, str], str] = {}  # (problem, system) -> the error rows at larger n carry
    seen: list[str] = []
    rows: list[dict[str, Any]] = []
    for n in sorted(sizes):
        jobs = [(p, n, s) for p in problems for s in systems if (p, s) not in stopped and installed(s)]
        got = dict(zip(jobs, run_wave(jobs))) if jobs else {}
        for p in problems:
            for s in systems:
                if (p, n, s) in got:
                    measured = [got[(p, n, s)]]
                    if "interleaved" in measured[0]:
                        measured.append(measured[0].pop("interleaved"))
                elif (p, s) in stopped or installed(s):
                    measured = []
                else:
                    measured = [{"problem": p, "n": n, "system": s, "median_s": None, "error": "not installed"}]
                for row in measured:
                    rows.append(row)
                    seen += [row["system"]] if row["system"] not in seen else []
                    if progress:
                        what = row.get("error") or f"{row['median_s']:.3g} s"
                        progress(f"{p} n={n} {row['system']}: {what}")
                    if row.get("error") and (p, row["system"]) not in stopped:
                        stopped[(p, row["system"])] = (row["error"] if unavailable(row)
                                                       else f"skipped: {row['error']} at n={n}")
            for s in seen:
                if (p, s) in stopped and not any(r["problem"] == p and r["n"] == n and r["system"] == s for r in rows):
                    rows.append({"problem": p, "n": n, "system": s, "median_s": None, "error": stopped[(p, s)]})
    rows.sort(key=lambda r: (problems.index(r["problem"]), r["n"], order.get(r["system"], len(order))))
    return with_ratios(rows)


def with_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add ``ratio``: the system's median time over tensorcalc's at the same problem and n
    (> 1: tensorcalc is faster)."""
    base = {(r["problem"], r["n"]): r.get("median_s") for r in rows if r["system"] == "tensorcalc"}
    out = []
    for r in rows:
        t, b = r.get("median_s"), base.get((r["problem"], r["n"]))
        out.append({**r, "ratio": (t / b) if t and b else None})
    return out


def unavailable(row: dict[str, Any]) -> bool:
    """Not installed, or not able to run here (not a failure of the system)."""
    return str(row.get("error") or "").startswith(("not installed", "not available"))


def failed(row: dict[str, Any]) -> bool:
    """Ran but did not finish (out of memory, timeout, crash, skipped after one)."""
    return bool(row.get("error")) and not unavailable(row) and not str(row["error"]).startswith("skipped: not ")


def exhausted(row: dict[str, Any]) -> bool:
    """Ran out of memory or time (or was skipped after doing so at a smaller n): the system is too
    slow or too large for the budget -- unlike a crash, which is a failure of the comparison.

    >>> exhausted({"error": "skipped: out of memory (cap 4 GB) at n=300"}), exhausted({"error": "TypeError: x"})
    (True, False)
    """
    error = str(row.get("error") or "")
    error = error.removeprefix("skipped: ")
    return error.startswith(("out of memory", "timeout after"))


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The benchmark table: problem, n, system, median time, ratio to tensorcalc, set-up and first
    call, peak memory above the inputs, output size, failure reason."""
    head = ("| problem | n | system | median time | ratio to tensorcalc | set-up + first call | peak memory | "
            "output | failure |")
    lines = [head, "|---|---:|---|---:|---:|---:|---:|---:|---|"]

    def t(v: Any) -> str:
        if v is None:
            return "—"
        return f"{v * 1e3:.3g} ms" if v < 1 else f"{v:.3g} s"

    for r in rows:
        setup = None if r.get("setup_s") is None else r["setup_s"] + (r.get("first_call_s") or 0.0)
        ratio = "—" if r.get("ratio") is None else f"{r['ratio']:.3g}x"
        mem = "—" if r.get("peak_mb") is None else f"{r['peak_mb']:.0f} MB"
        out = "—" if r.get("output_mb") is None else f"{r['output_mb']:.3g} MB"
        lines.append(f"| {r['problem']} | {r['n']} | {r['system']} | {t(r.get('median_s'))} | {ratio} | "
                     f"{t(setup)} | {mem} | {out} | {r.get('error') or ''} |")
    return "\n".join(lines) + "\n"


# -- expression sizes ---------------------------------------------------------------------------


def _count_jaxpr(jaxpr: Any) -> int:
    """Equations of a jaxpr, counting those of nested jaxprs (pjit, custom_jvp, ...) instead of the call."""
    total = 0
    for eqn in jaxpr.eqns:
        inner = [v for v in eqn.params.values() if hasattr(v, "eqns") or hasattr(v, "jaxpr")]
        if inner:
            for v in inner:
                total += _count_jaxpr(v.jaxpr if hasattr(v, "jaxpr") and not hasattr(v, "eqns") else v)
        else:
            total += 1
    return total


def expression_sizes(problem: str, n: int = 5, systems: tuple[str, ...] = ("tensorcalc", "jax", "torch.func")
                     ) -> list[dict[str, Any]]:
    """Operation counts of each system's Hessian of ``problem`` in three modes:
    ``forward`` (forward over forward), ``reverse`` (reverse over reverse) and ``mixed``
    (forward over reverse: what ``jax.hessian`` and ``torch.func.hessian`` do; tensorcalc's
    default chooses per order). tensorcalc: distinct operation nodes of the simplified
    DAG; jax: equations of the jaxpr; torch.func: call_function nodes of the
    ``make_fx`` graph. Systems that are not installed are skipped."""
    spec = check_problem(problem)
    rows: list[dict[str, Any]] = []
    inputs = make_inputs(problem, n)
    for system in systems:
        if not installed(system):
            continue
        if system == "tensorcalc":
            from mlmyths import tensorcalc as tc

            f = spec.parse()
            for mode, tc_mode in (("forward", "forward"), ("reverse", "reverse"), ("mixed", "auto")):
                H = tc.hessian(f, spec.wrt, mode=tc_mode)  # type: ignore[arg-type]
                rows.append({"problem": problem, "system": system, "mode": mode, "operations": tc.node_count(H),
                             "unit": "DAG nodes"})
        elif system == "jax":
            import jax
            import jax.numpy as jnp

            data = {k: jnp.asarray(v) for k, v in inputs.items()}
            fj = _array_function(problem, data, jnp)
            for mode, h in (("forward", jax.jacfwd(jax.jacfwd(fj))), ("reverse", jax.jacrev(jax.jacrev(fj))),
                            ("mixed", jax.hessian(fj))):
                closed = jax.make_jaxpr(h)(data[spec.wrt])
                rows.append({"problem": problem, "system": system, "mode": mode,
                             "operations": _count_jaxpr(closed.jaxpr), "unit": "jaxpr equations"})
        elif system == "torch.func":
            import torch
            from torch.fx.experimental.proxy_tensor import make_fx

            data = {k: torch.tensor(v) for k, v in inputs.items()}
            ft = _array_function(problem, data, torch)
            tf_ = torch.func
            for mode, h in (("forward", tf_.jacfwd(tf_.jacfwd(ft))), ("reverse", tf_.jacrev(tf_.jacrev(ft))),
                            ("mixed", tf_.hessian(ft))):
                graph = make_fx(h)(data[spec.wrt]).graph
                count = sum(1 for node in graph.nodes if node.op == "call_function")
                rows.append({"problem": problem, "system": system, "mode": mode, "operations": count,
                             "unit": "torch.fx nodes"})
    return rows


if __name__ == "__main__":  # the fork server of measure_isolated, or one measurement from the shell
    raise SystemExit(_serve() if sys.argv[1:] == ["--fork-server"] else _worker(sys.argv[1]))
