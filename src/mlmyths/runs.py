"""Running an experiment: the run directory, its lock, the context an experiment sees, resume.

``execute`` runs one experiment (a module of :mod:`mlmyths.myths`) and writes ``DIR/MYTH/RUN_ID/``::

    config.json   the experiment config, scale, seed, device and threads asked for
    results.json  the record (schema: :mod:`mlmyths.records`), rewritten atomically at start and end
    report.md     the run's report (written by the ``on_record`` callback the caller passes)
    log.txt       everything the run logged, with tracebacks of failures
    figures/      PNG figures
    checkpoints/  finished tasks and per-epoch training state, for ``--resume``
    .lock         while a process works in the directory: its PID and host

``status`` is ``completed``, ``interrupted`` (Ctrl-C or SIGTERM; ``--resume`` continues),
``failed`` (with ``error``), or ``running`` while the process lives (a run killed hard stays
``running``; its lock is then stale and ``--resume`` takes it over).

An experiment splits its work into *tasks*: :meth:`RunContext.map` runs a wave of independent
tasks and :meth:`RunContext.task` one. Each task's value is stored when it finishes, so an
interrupted run resumes after the last finished task, and a training task resumes from its last
epoch checkpoint. Every task starts with the global random generators seeded from its key, so its
value does not depend on which tasks ran before it.

The verdict is never the experiment's: :func:`mlmyths.claims.verdict` derives it from the
judged claims the experiment returns.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import errno
import os
import re
import shutil
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from mlmyths import claims as claims_mod
from mlmyths import config as configs
from mlmyths import env, executors
from mlmyths.errors import UserError
from mlmyths.files import atomic_write_json, jsonable, load_state, read_json, save_state
from mlmyths.progress import ProgressFactory, no_progress, progress_bar
from mlmyths.records import SCHEMA, STATUSES, Headline, RecordError, Result, errors, read_record

__all__ = ["RunContext", "RunInterrupted", "RunLocked", "execute", "find_resumable", "load_saved_config", "new_run_dir",
           "STATUSES", "interrupt_signals"]

T = TypeVar("T")


class RunLocked(UserError):
    """Another live process works in this run directory."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a run after it was recorded as ``interrupted`` in ``run_dir``."""

    def __init__(self, run_dir: Path):
        super().__init__(str(run_dir))
        self.run_dir = run_dir


# -- signals: Ctrl-C and SIGTERM stop the run wherever it is --------------------------------------------


class _Interrupts:
    """Remembers that SIGINT/SIGTERM arrived. The handler raises KeyboardInterrupt where Python is;
    a library that swallows it (e.g. inside a callback) cannot hide the signal, because every task
    boundary checks :meth:`check` and raises again."""

    def __init__(self) -> None:
        self.received: int | None = None

    def handler(self, signum: int, frame: Any) -> None:
        self.received = signum
        raise KeyboardInterrupt

    def check(self) -> None:
        if self.received is not None:
            raise KeyboardInterrupt


_interrupts = _Interrupts()


@contextlib.contextmanager
def interrupt_signals() -> Iterator[_Interrupts]:
    """Inside the block SIGTERM behaves like Ctrl-C (KeyboardInterrupt), and both are remembered
    for the task-boundary checks. SIGINT inherited as *ignored* (a background job, ``nohup``) stays
    ignored: the process was started not to be stopped from the terminal; SIGTERM still stops it."""
    if threading.current_thread() is not threading.main_thread():
        yield _interrupts
        return
    _interrupts.received = None
    previous_term = signal.signal(signal.SIGTERM, _interrupts.handler)
    previous_int = signal.getsignal(signal.SIGINT)
    if previous_int is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _interrupts.handler)
    try:
        yield _interrupts
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        if previous_int is not signal.SIG_IGN:
            signal.signal(signal.SIGINT, previous_int)


# -- the run directory and its lock ---------------------------------------------------------------------


def new_run_id(seed: int) -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S") + f"-s{seed}"


def new_run_dir(root: Path, seed: int) -> Path:
    """A new, empty run directory under ``root``; concurrent callers never get the same one."""
    base = Path(root) / new_run_id(seed)
    for n in range(1, 10_000):
        path = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise UserError(f"could not create a new run directory under {root}: too many runs started this second")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _RunLock:
    """``run_dir/.lock`` holding ``PID HOST`` while this process works in the directory. A lock whose
    process is gone (same host) is stale and taken over; a live one is :class:`RunLocked`."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / ".lock"
        self.held = False

    def acquire(self) -> None:
        me = f"{os.getpid()} {socket.gethostname()}\n"
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is None:
                    continue
                pid, host = owner
                if host == socket.gethostname() and not _pid_alive(pid):
                    with contextlib.suppress(FileNotFoundError):
                        self.path.unlink()  # stale: its process is gone
                    continue
                raise RunLocked(f"run {self.path.parent} is in use by process {pid} on {host}; wait for it to "
                                f"finish (or stop it) before resuming") from None
            with os.fdopen(fd, "w") as f:
                f.write(me)
            self.held = True
            return
        raise RunLocked(f"could not take the lock {self.path}; try again")

    def _owner(self) -> tuple[int, str] | None:
        try:
            words = self.path.read_text().split()
            return int(words[0]), (words[1] if len(words) > 1 else socket.gethostname())
        except FileNotFoundError:
            return None
        except (OSError, ValueError, IndexError):
            return 0, socket.gethostname()  # unreadable: treat as stale (pid 0 is never alive for us)

    def release(self) -> None:
        if self.held:
            with contextlib.suppress(OSError):
                self.path.unlink()
            self.held = False


def find_resumable(out: Path, myth: str) -> Path | None:
    """The newest run of ``myth`` under ``out`` that did not complete (unreadable records skipped)."""
    candidates = []
    for results in Path(out, myth).glob("*/results.json"):
        try:
            record = read_record(results)
        except RecordError:
            continue
        if record.get("status") != "completed":
            candidates.append((record.get("started") or "", results.parent.name, results.parent))
    return max(candidates)[2] if candidates else None


def load_saved_config(run_dir: Path) -> dict[str, Any]:
    """``config.json`` of a run to resume, checked: :class:`UserError` naming the damage otherwise."""
    path = Path(run_dir) / "config.json"
    try:
        saved = read_json(path)
    except FileNotFoundError:
        raise UserError(f"cannot resume {run_dir}: its config.json is missing") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise UserError(f"cannot resume {run_dir}: its config.json is damaged ({type(exc).__name__})") from None
    ok = (isinstance(saved, dict) and isinstance(saved.get("config"), dict) and isinstance(saved.get("scale"), str)
          and isinstance(saved.get("seed"), int) and not isinstance(saved.get("seed"), bool))
    if not ok:
        raise UserError(f"cannot resume {run_dir}: its config.json lacks config/scale/seed of the right types")
    return saved


# -- the context an experiment runs in -------------------------------------------------------------------


def _safe(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("_") or "task"


class RunContext:
    """Everything an experiment's ``run(cfg, ctx)`` may use besides its config.

    Attributes: ``run_dir``, ``figures_dir``, ``device`` (``torch.device``), ``threads`` (CPU
    threads per process; 0: the libraries' defaults), ``seed``, ``resuming``, and ``progress`` (a
    factory for :mod:`mlmyths.progress`, to pass to library functions such as :func:`mlmyths.train.fit`).

    Pickled (to travel with a task to a worker process or a Ray node) it becomes its *worker form*:
    it logs into the task's outcome (the driver writes log.txt), keeps intra-task checkpoints where
    the worker can (see :func:`mlmyths.executors.scratch_dir`), shows no progress, and runs tasks
    it is given directly, without storing them (only the driver stores task values).
    """

    def __init__(self, run_dir: Path, *, seed: int = 0, device: torch.device | str = "cpu", threads: int = 0,
                 echo: Callable[[str], None] | None = None, interactive: bool | None = None,
                 resuming: bool = False, executor: executors.Executor | None = None):
        self.run_dir = Path(run_dir)
        self.figures_dir = self.run_dir / "figures"
        self.checkpoints_dir = self.run_dir / "checkpoints"
        self.seed = int(seed)
        self.device = torch.device(device)
        self.threads = int(threads)
        self.resuming = resuming
        self.executor = executor or executors.InProcess()
        self._worker = False
        self._echo = echo
        self._log_lock = threading.Lock()
        self.tasks_completed: list[str] = []
        self.task_seconds: dict[str, float] = {}  #: wall seconds of each task run in this attempt
        self._task_checkpoints: list[Path] | None = None
        self.progress: ProgressFactory = progress_bar(interactive=interactive, log=self.log)
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def __getstate__(self) -> dict[str, Any]:
        return {"run_dir": self.run_dir, "seed": self.seed, "device": str(self.device), "threads": self.threads,
                "resuming": self.resuming}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.run_dir = Path(state["run_dir"])
        self.figures_dir = self.run_dir / "figures"
        self.checkpoints_dir = self.run_dir / "checkpoints"
        self.seed, self.threads, self.resuming = state["seed"], state["threads"], state["resuming"]
        self.device = torch.device(state["device"])
        self.executor = executors.InProcess()
        self._worker = True
        self._echo = None
        self._log_lock = threading.Lock()
        self.tasks_completed = []
        self.task_seconds = {}
        self._task_checkpoints = None
        self.progress = no_progress

    # logging
    def log(self, message: str) -> None:
        """Append a timestamped line to ``log.txt`` (and echo it when the CLI asked)."""
        if self._worker:
            executors.worker.logs.append(message)
            return
        stamp = _dt.datetime.now().strftime("%H:%M:%S")
        with self._log_lock, open(self.run_dir / "log.txt", "a", encoding="utf-8") as f:
            f.write(f"{stamp} {message}\n")
        if self._echo:
            self._echo(message)

    # randomness
    def seed_for(self, *key: object) -> int:
        """A seed derived from the run's seed and ``key`` (use one key per independent variant)."""
        return env.derive_seed(self.seed, *key)

    def rng(self, *key: object) -> np.random.Generator:
        return env.rng(self.seed, *key)

    def generator(self, *key: object) -> torch.Generator:
        """A CPU ``torch.Generator`` seeded from the run's seed and ``key``."""
        return env.torch_generator(self.seed, *key)

    # tasks and checkpoints
    def map(self, tasks: Mapping[str, Callable[[], T]]) -> dict[str, T]:
        """Run a wave of independent tasks, ``{key: fn}``, and return ``{key: value}`` in the same order.

        Each value (nested dicts/lists of numbers, strings and arrays) is stored as its task
        finishes; on ``--resume`` stored values are returned without running. Values come back in
        their stored form (tensors become numpy arrays, tuples lists), fresh or resumed, so both
        compute the same thing from them. A task must not depend on another task of the same wave:
        waves make the dependencies explicit (e.g. scoring runs, then removal runs).
        """
        keys = list(tasks)
        clashes = sorted({_safe(k) for k in keys if sum(_safe(o) == _safe(k) for o in keys) > 1})
        if clashes:
            raise ValueError(f"task keys collide after sanitizing: {clashes}")
        if self._worker:  # a task inside a task, in a worker: run it here, the driver stores the outer one
            return {key: self._run_here(tasks[key], key) for key in keys}
        if self.executor.parallel:
            fresh = self._run_wave(keys, tasks)
            return {key: self._stored(key, reused=key not in fresh) for key in keys}
        return {key: self._run_task(key, tasks[key]) for key in keys}

    def task(self, key: str, fn: Callable[[], T]) -> T:
        """One task: ``map({key: fn})[key]``."""
        return self.map({key: fn})[key]

    def _task_path(self, key: str) -> Path:
        return self.checkpoints_dir / "tasks" / f"{_safe(key)}.npz"

    def _run_here(self, fn: Callable[[], T], key: str) -> T:
        env.seed_globals(self.seed_for("task", key))
        return fn()

    def _stored(self, key: str, reused: bool) -> Any:
        if reused:
            self.log(f"task {key}: done in an earlier attempt, reusing its result")
        if key not in self.tasks_completed:
            self.tasks_completed.append(key)
        return load_state(self._task_path(key))

    def _run_wave(self, keys: list[str], tasks: Mapping[str, Callable[[], Any]]) -> set[str]:
        """Hand the wave's unfinished tasks to the executor; store each value as it comes back.
        Returns the keys run now."""
        _interrupts.check()
        todo = [k for k in keys if not self._task_path(k).exists()]
        if not todo:
            return set()
        self.log(f"wave of {len(keys)} task(s), {len(todo)} to run on {self.executor.describe()}")
        specs = [executors.TaskSpec(k, tasks[k], self.seed_for("task", k), self.threads,
                                    {"num_cpus": max(self.threads, 1), "num_gpus": 1 if self.device.type == "cuda" else 0})
                 for k in todo]

        def done(outcome: executors.TaskOutcome) -> None:
            for line in outcome.logs:
                self.log(f"[{outcome.key}] {line}")
            if outcome.error is not None:
                self.log(f"task {outcome.key} failed:\n{outcome.traceback.rstrip()}")
                if isinstance(outcome.error, UserError):
                    raise outcome.error
                raise executors.TaskFailed(outcome.key, f"{type(outcome.error).__name__}: {outcome.error}")
            save_state(self._task_path(outcome.key), outcome.value)
            for ckpt in outcome.checkpoints:
                Path(ckpt).unlink(missing_ok=True)
            self.tasks_completed.append(outcome.key)
            self.task_seconds[outcome.key] = round(outcome.seconds, 3)
            self.log(f"task {outcome.key}: done in {outcome.seconds:.1f}s"
                     + (f" (attempt {outcome.attempts})" if outcome.attempts > 1 else ""))
            _interrupts.check()

        self.executor.run(specs, done)
        return set(todo)

    def _run_task(self, key: str, fn: Callable[[], T]) -> T:
        _interrupts.check()
        path = self._task_path(key)
        if path.exists():
            self.log(f"task {key}: done in an earlier attempt, reusing its result")
            if key not in self.tasks_completed:
                self.tasks_completed.append(key)
            return load_state(path)  # type: ignore[no-any-return]
        outer, self._task_checkpoints = self._task_checkpoints, []
        start = time.perf_counter()
        try:
            env.seed_globals(self.seed_for("task", key))
            value = fn()
            self.task_seconds[key] = round(time.perf_counter() - start, 3)
            _interrupts.check()  # a signal a library swallowed still stops the run here
            save_state(path, value)
            for ckpt in self._task_checkpoints:
                ckpt.unlink(missing_ok=True)
        finally:
            self._task_checkpoints = outer
        self.tasks_completed.append(key)
        return load_state(path)  # type: ignore[no-any-return]

    def checkpoint_path(self, key: str) -> Path:
        """Where a long computation (e.g. ``fit(checkpoint=...)``) keeps its resumable state."""
        if self._worker:
            path = executors.scratch_dir(self.run_dir) / f"{_safe(key)}.pt"
            executors.worker.checkpoints.append(str(path))
            return path
        path = self.checkpoints_dir / f"{_safe(key)}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        if self._task_checkpoints is not None:
            self._task_checkpoints.append(path)
        return path

    # figures
    def save_figure(self, fig: Any, name: str) -> str:
        """Save a matplotlib figure as ``figures/NAME.png`` and return that relative path."""
        from mlmyths import plots

        self.figures_dir.mkdir(parents=True, exist_ok=True)
        path = self.figures_dir / f"{_safe(name)}.png"
        plots.save(fig, path)
        return path.relative_to(self.run_dir).as_posix()


# -- running an experiment ------------------------------------------------------------------------------


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _filesystem_error(exc: OSError, where: Path) -> UserError:
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return UserError(f"cannot write the run under {where}: {reason}"
                     + (" (choose another --out)" if exc.errno != errno.ENOSPC else " (free some space)"))


def execute(myth: str, experiment: Any, cfg: Any, *, out: Path, seed: int = 0, scale: str = "small",
            device: str = "auto", threads: int = 0, resume_dir: Path | None = None,
            echo: Callable[[str], None] | None = None, interactive: bool | None = None,
            on_record: Callable[[Path, dict[str, Any]], Any] | None = None,
            executor: executors.Executor | None = None) -> dict[str, Any]:
    """Run ``experiment.run(cfg, ctx)`` and record it; returns the final results record.

    ``threads`` > 0 limits torch and BLAS to that many threads during the run (small models
    train fastest on one; 0 keeps the libraries' defaults). ``scale`` is recorded only: the
    experiment sees nothing but ``cfg``. ``on_record(run_dir, record)`` is called after the record is
    written at the end (the CLI renders report.md with it). ``executor`` runs the waves of tasks
    (:mod:`mlmyths.executors`; default: in this process).

    KeyboardInterrupt (and SIGTERM) record ``interrupted`` and propagate. A :class:`UserError`
    raised before any task finished removes the new run directory and propagates (nothing was
    computed). Other exceptions record ``failed`` with the error and a traceback in ``log.txt``,
    and the record is returned. A filesystem that refuses the run directory is a UserError.
    """
    torch_device = env.resolve_device(device)
    resuming = resume_dir is not None
    try:
        run_dir = Path(resume_dir) if resuming else new_run_dir(Path(out) / myth, seed)
    except OSError as exc:
        raise _filesystem_error(exc, Path(out)) from None
    lock = _RunLock(run_dir)
    try:
        lock.acquire()
    except OSError as exc:
        raise _filesystem_error(exc, run_dir) from None
    try:
        return _execute_locked(myth, experiment, cfg, run_dir=run_dir, seed=seed, scale=scale, device=device,
                               torch_device=torch_device, threads=threads, resuming=resuming, echo=echo,
                               interactive=interactive, on_record=on_record, executor=executor)
    finally:
        lock.release()


def _execute_locked(myth: str, experiment: Any, cfg: Any, *, run_dir: Path, seed: int, scale: str, device: str,
                    torch_device: torch.device, threads: int, resuming: bool, echo: Callable[[str], None] | None,
                    interactive: bool | None, on_record: Callable[[Path, dict[str, Any]], Any] | None,
                    executor: executors.Executor | None) -> dict[str, Any]:
    previous: dict[str, Any] = {}
    if resuming and (run_dir / "results.json").exists():
        try:
            previous = read_record(run_dir / "results.json")
        except RecordError as exc:
            raise UserError(f"cannot resume {run_dir}: its results.json is damaged ({exc})") from None
    cfg_dict = configs.to_dict(cfg)
    headline: Headline = experiment.CLAIM
    record: dict[str, Any] = {
        "schema": SCHEMA, "myth": myth, "run_id": run_dir.name, "scale": scale, "seed": seed,
        "status": "running", "verdict": None, "claim": dataclasses.asdict(headline), "claims": [],
        "summary": None, "metrics": {}, "tables": {}, "figures": [], "notes": [], "differences": [],
        "config": cfg_dict, "env": env.capture(torch_device),
        "started": previous.get("started") or _now(),
        "duration_s": float(previous.get("duration_s") or 0.0), "error": None, "tasks_completed": [],
        "task_seconds": dict(previous.get("task_seconds") or {}),
    }
    try:
        atomic_write_json(run_dir / "config.json", {"myth": myth, "scale": scale, "seed": seed, "device": device,
                                                    "threads": threads, "config": cfg_dict})
        atomic_write_json(run_dir / "results.json", record)
        ctx = RunContext(run_dir, seed=seed, device=torch_device, threads=threads, echo=echo,
                         interactive=interactive, resuming=resuming, executor=executor)
    except OSError as exc:
        if not resuming:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise _filesystem_error(exc, run_dir) from None
    earlier = record["duration_s"]
    record["env"]["executor"] = ctx.executor.describe()
    t0 = time.perf_counter()

    def finish(status: str, **fields: Any) -> dict[str, Any]:
        record["task_seconds"].update(ctx.task_seconds)
        record.update(status=status, tasks_completed=list(ctx.tasks_completed),
                      duration_s=round(earlier + time.perf_counter() - t0, 3), **fields)
        problems = errors(jsonable(record), limit=3)
        if problems:  # a bug in an experiment: keep the record, say so
            ctx.log("warning: the record departs from the schema: " + "; ".join(problems))
        try:
            atomic_write_json(run_dir / "results.json", record)
        except OSError as exc:
            _log_quietly(ctx, f"could not write results.json: {exc}")
            raise
        if on_record is not None:
            on_record(run_dir, record)
        return record

    try:
        with interrupt_signals(), env.limit_threads(threads):
            record["env"].update(threads=str(torch.get_num_threads()), device=env.describe_device(torch_device))
            ctx.log(f"{'resuming' if resuming else 'starting'} {myth} (scale={scale}, seed={seed}, "
                    f"device={record['env']['device']}, tasks on {ctx.executor.describe()}) in {run_dir}")
            result = experiment.run(cfg, ctx)
        if not isinstance(result, Result):
            raise TypeError(f"{myth}: run() must return a mlmyths.records.Result, got {type(result).__name__}")
        missing = [f for f in result.figures if not (run_dir / f).exists()]
        if missing:
            raise FileNotFoundError(f"{myth}: figures listed but not written: {', '.join(missing)}")
        verdict = claims_mod.verdict(result.claims)
    except KeyboardInterrupt:
        ctx.log("interrupted; `mlmyths run " + myth + " --resume` continues from the last finished task")
        finish("interrupted", error="interrupted before completion")
        raise RunInterrupted(run_dir) from None
    except UserError as exc:
        if not resuming and not ctx.tasks_completed:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            ctx.log(f"failed: {exc}")
            finish("failed", error=str(exc))
        raise
    except OSError as exc:
        if exc.errno == errno.ENOSPC:  # a full disk: record what can be recorded, exit 1
            _log_quietly(ctx, "failed: " + os.strerror(exc.errno))
            with contextlib.suppress(OSError):
                finish("failed", error=f"OSError: {os.strerror(exc.errno)}")
            record.update(status="failed", error=f"OSError: {os.strerror(exc.errno)}")
            return record
        ctx.log("failed:\n" + traceback.format_exc())
        return finish("failed", error=f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # a bug or a numerical failure: record it, keep what was computed
        if _interrupts.received is not None:  # a library turned the interrupt into another exception
            ctx.log(f"interrupted ({type(exc).__name__} raised after the signal); `mlmyths run {myth} --resume` "
                    "continues from the last finished task")
            finish("interrupted", error="interrupted before completion")
            raise RunInterrupted(run_dir) from None
        ctx.log("failed:\n" + traceback.format_exc())
        return finish("failed", error=f"{type(exc).__name__}: {exc}")
    ctx.log(f"{verdict.outcome}: {verdict.reason}")
    return finish(
        "completed", verdict=dataclasses.asdict(verdict), claims=[c.to_dict() for c in result.claims],
        summary=result.summary, metrics=result.metrics, tables=result.tables, figures=result.figures,
        notes=result.notes, differences=result.differences,
    )


def _log_quietly(ctx: RunContext, message: str) -> None:
    """Log where the log itself may be unwritable (a full disk)."""
    with contextlib.suppress(OSError):
        ctx.log(message)
