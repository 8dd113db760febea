"""Where the tasks of a wave run: in this process, in local worker processes, or on a Ray cluster.

:meth:`mlmyths.runs.RunContext.map` hands a wave of independent tasks to an executor and stores
each value as it comes back; the driver alone writes the run directory's records, whichever
worker ran a task, so ``--resume`` and the record are the same whatever ran them.

- :class:`InProcess` (default): one task at a time in this process (no dependency).
- :class:`LocalPool` (``--workers N``): N worker processes (``spawn``), each limited to
  ``--threads`` threads; a worker that dies is replaced and its task retried.
- :class:`RayExecutor` (``--ray ADDRESS``): each task a Ray task with the resources it declares
  (CPUs, GPUs, memory), so GPU tasks land on GPU nodes; ``auto`` connects to ``$RAY_ADDRESS``,
  ``local`` starts a private local Ray. Ray is an optional extra (``pip install mlmyths[ray]``),
  imported only here and only when asked for.

A task is a zero-argument callable, pickled with cloudpickle: closures over the config, data
tensors and the run context are fine (the context travels in its worker form, see
``RunContext.__getstate__``). In a worker, every task starts with the global random generators
seeded from its key and with ``threads`` CPU threads, as in this process, so with the same
``--threads`` the three executors give the same values bit for bit on the CPU.
"""
from __future__ import annotations

import concurrent.futures as futures
import contextlib
import multiprocessing
import os
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlmyths import env
from mlmyths.errors import UserError
from mlmyths.extras import require

DEFAULT_RETRIES = 2  #: times a task is run again after its worker died


@dataclass(frozen=True)
class TaskSpec:
    """One task of a wave as the executor sees it."""

    key: str
    fn: Callable[[], Any]
    seed: int  #: the global generators' seed (derived from the run seed and the key)
    threads: int  #: CPU threads for torch and BLAS in the worker (0: library default)
    resources: dict[str, float] = field(default_factory=dict)  #: num_cpus, num_gpus, memory (bytes)


@dataclass
class TaskOutcome:
    """What came back from one task: its value, or the error (with the traceback) that stopped it."""

    key: str
    value: Any = None
    error: BaseException | None = None
    traceback: str = ""
    logs: list[str] = field(default_factory=list)  #: lines the task logged in its worker
    checkpoints: list[str] = field(default_factory=list)  #: intra-task checkpoints to delete once stored
    seconds: float = 0.0
    attempts: int = 1


class TaskFailed(RuntimeError):
    """A task raised, or its worker died more often than the retries allow."""

    def __init__(self, key: str, message: str):
        super().__init__(f"task {key}: {message}")
        self.key = key


# -- the worker side -----------------------------------------------------------------------------


class _WorkerState:
    """Per worker process: where the running task's log lines and checkpoints go."""

    def __init__(self) -> None:
        self.logs: list[str] = []
        self.checkpoints: list[str] = []
        self.scratch: Path | None = None


worker = _WorkerState()


def in_worker() -> bool:
    return os.environ.get("MLMYTHS_WORKER") == "1"


def scratch_dir(run_dir: Path) -> Path:
    """Where a task in a worker keeps intra-task checkpoints: the run's own checkpoints directory
    when this machine sees the run directory (local workers), else a node-local temporary one."""
    local = Path(run_dir) / "checkpoints"
    if local.is_dir() and os.access(local, os.W_OK):
        return local
    if worker.scratch is None:
        worker.scratch = Path(tempfile.mkdtemp(prefix="mlmyths-task-"))
    return worker.scratch


def _init_worker(threads: int, path: Sequence[str]) -> None:
    os.environ["MLMYTHS_WORKER"] = "1"
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver stops the workers; Ctrl-C goes to it
    for entry in reversed(path):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    if threads > 0:
        os.environ["OMP_NUM_THREADS"] = str(threads)


def run_payload(payload: bytes) -> bytes:
    """Run one pickled :class:`TaskSpec` here and return the pickled :class:`TaskOutcome`."""
    import cloudpickle

    os.environ["MLMYTHS_WORKER"] = "1"
    spec: TaskSpec = cloudpickle.loads(payload)
    worker.logs, worker.checkpoints = [], []
    start = time.perf_counter()
    outcome = TaskOutcome(spec.key)
    try:
        with env.limit_threads(spec.threads):
            env.seed_globals(spec.seed)
            outcome.value = spec.fn()
    except Exception as exc:  # reported to the driver with its key and traceback
        outcome.error, outcome.traceback = exc, traceback.format_exc()
    outcome.logs, outcome.checkpoints = list(worker.logs), list(worker.checkpoints)
    outcome.seconds = time.perf_counter() - start
    try:
        return cloudpickle.dumps(outcome)
    except Exception as exc:  # an unpicklable exception or value: say so rather than die
        return cloudpickle.dumps(TaskOutcome(spec.key, error=RuntimeError(f"result not picklable: {exc}"),
                                             traceback=outcome.traceback, seconds=outcome.seconds))


# -- the driver side -------------------------------------------------------------------------------


class Executor:
    """Runs waves of :class:`TaskSpec`; ``on_done`` is called in the driver as each one finishes."""

    name = "in-process"
    parallel = False

    def run(self, specs: Sequence[TaskSpec], on_done: Callable[[TaskOutcome], None]) -> None:
        raise TypeError("the in-process executor runs tasks through RunContext itself")

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return self.name


class InProcess(Executor):
    """One task at a time in this process (the default)."""


def _pickle(spec: TaskSpec) -> bytes:
    cloudpickle = require("cloudpickle", extra="ray", feature="running tasks in worker processes (--workers, --ray)")
    try:
        return cloudpickle.dumps(spec)
    except Exception as exc:
        raise TaskFailed(spec.key, f"cannot be sent to a worker ({type(exc).__name__}: {exc}); tasks must "
                                   "close over picklable values only (config, arrays, the run context)") from None


def _unpickle(data: bytes) -> TaskOutcome:
    import cloudpickle

    return cloudpickle.loads(data)


class LocalPool(Executor):
    """``workers`` local processes (``spawn``: no fork after threads started), each with ``threads``
    CPU threads. A worker killed mid-task breaks the pool: the pool is rebuilt and the tasks it
    held run again, at most ``retries`` more times each."""

    parallel = True

    def __init__(self, workers: int, threads: int = 1, retries: int = DEFAULT_RETRIES):
        if workers < 1:
            raise UserError(f"--workers must be at least 1, got {workers}")
        self.workers, self.threads, self.retries = workers, threads, retries
        self.name = f"{workers} local worker process(es)"
        self._pool: futures.ProcessPoolExecutor | None = None

    def _new_pool(self) -> futures.ProcessPoolExecutor:
        return futures.ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                           initializer=_init_worker, initargs=(self.threads, list(sys.path)))

    def run(self, specs: Sequence[TaskSpec], on_done: Callable[[TaskOutcome], None]) -> None:
        attempts = {s.key: 0 for s in specs}
        pending = {s.key: s for s in specs}
        payloads = {s.key: _pickle(s) for s in specs}
        while pending:
            self._pool = self._pool or self._new_pool()
            running = {self._pool.submit(run_payload, payloads[k]): k for k in pending}
            for k in running.values():
                attempts[k] += 1
            broken = False
            try:
                for fut in futures.as_completed(running):
                    key = running[fut]
                    try:
                        outcome = _unpickle(fut.result())
                    except futures.process.BrokenProcessPool:
                        broken = True
                        continue
                    outcome.attempts = attempts[key]
                    del pending[key]
                    on_done(outcome)
            except BaseException:
                self._kill()
                raise
            if broken:
                self._kill()
                over = [k for k in pending if attempts[k] > self.retries]
                if over:
                    raise TaskFailed(over[0], f"its worker died {attempts[over[0]]} time(s) (killed, or out of "
                                              "memory); `--resume` runs it again")

    def _kill(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        processes = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for p in processes:
            with contextlib.suppress(Exception):
                p.kill()
        for p in processes:
            with contextlib.suppress(Exception):
                p.join(timeout=5)

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


class RayExecutor(Executor):
    """Each task a Ray task. ``address``: ``local`` (start a private local Ray), ``auto`` (``$RAY_ADDRESS``
    or a running local cluster) or ``HOST:PORT`` of a head node. A task whose worker dies (killed,
    node lost) is retried by Ray up to ``retries`` times; then the run fails naming the task."""

    parallel = True

    def __init__(self, address: str, threads: int = 1, retries: int = DEFAULT_RETRIES):
        self.ray = require("ray", extra="ray", feature="--ray")
        self.address, self.threads, self.retries = address, threads, retries
        self._started = False
        runtime_env = {"env_vars": {"MLMYTHS_WORKER": "1", **({"OMP_NUM_THREADS": str(threads)} if threads else {}),
                                    **({"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {})}}
        if not self.ray.is_initialized():
            kwargs: dict[str, Any] = {"runtime_env": runtime_env, "log_to_driver": False,
                                      "logging_level": "ERROR", "configure_logging": True}
            if address == "local":
                kwargs.update(include_dashboard=False)
            elif address == "auto":
                kwargs["address"] = os.environ.get("RAY_ADDRESS") or "auto"
            else:
                _check_reachable(address)
                kwargs["address"] = address
            try:
                self.ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise UserError(f"--ray {address}: cannot connect to a Ray cluster ({str(exc).splitlines()[0]}); "
                                "start one with `ray start --head` or use --ray local") from None
            self._started = True
        self.name = f"Ray at {address}"
        self._remote = self.ray.remote(max_retries=retries, retry_exceptions=False)(run_payload)

    def run(self, specs: Sequence[TaskSpec], on_done: Callable[[TaskOutcome], None]) -> None:
        ray = self.ray
        refs = {}
        for s in specs:
            options = {"num_cpus": s.resources.get("num_cpus", max(self.threads, 1)),
                       "num_gpus": s.resources.get("num_gpus", 0)}
            if s.resources.get("memory"):
                options["memory"] = int(s.resources["memory"])
            refs[self._remote.options(**options).remote(_pickle(s))] = s.key
        try:
            while refs:
                done, _ = ray.wait(list(refs), num_returns=1)
                key = refs.pop(done[0])
                try:
                    outcome = _unpickle(ray.get(done[0]))
                except ray.exceptions.RayError as exc:
                    raise TaskFailed(key, f"lost after {self.retries + 1} attempt(s) ({type(exc).__name__}); "
                                          "`--resume` runs it again") from None
                on_done(outcome)
        except BaseException:
            for ref in refs:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            raise

    def close(self) -> None:
        if self._started:
            with contextlib.suppress(Exception):
                self.ray.shutdown()
            self._started = False


def _check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """A ``HOST:PORT`` that refuses connections is a user error now, not after Ray's minutes of retries."""
    import socket

    host, _, port = address.rpartition(":")
    if address.startswith(("ray://", "http://", "https://")) or not port.isdigit():
        return  # Ray's own address forms: let Ray judge them
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise UserError(f"--ray {address}: cannot connect to a Ray cluster ({exc.strerror or exc}); start one with "
                        "`ray start --head` or use --ray local") from None


def create(workers: int = 1, ray: str | None = None, threads: int = 0, retries: int = DEFAULT_RETRIES) -> Executor:
    """The executor the command line asked for: ``--ray`` wins, then ``--workers`` > 1, else in-process."""
    if ray:
        return RayExecutor(ray, threads=threads or 1, retries=retries)
    if workers > 1:
        return LocalPool(workers, threads=threads or 1, retries=retries)
    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    return InProcess()
