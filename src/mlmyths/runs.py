"""Run records: the run directory, ``results.json`` (schema 1), atomic writes, resume.

``execute`` runs one experiment (a module of :mod:`mlmyths.myths`) and writes
``DIR/MYTH/RUN_ID/``::

    config.json   the experiment config, scale, seed and device asked for
    results.json  schema 1 (below), rewritten atomically at start and end
    report.md     the run's report (see :mod:`mlmyths.report`)
    log.txt       everything the run logged, with tracebacks of failures
    figures/      PNG figures
    checkpoints/  finished tasks and per-epoch training state, for ``--resume``

``results.json``: ``schema, myth, run_id, scale, seed, status, verdict{outcome, reason},
claim{myth, paper, paper_result}, summary, metrics, tables, figures, notes, config, env,
started, duration_s, error, tasks_completed``. ``status`` is ``completed``,
``interrupted`` (Ctrl-C or SIGTERM; ``--resume`` continues), ``failed`` (with
``error``), or ``running`` while the process lives (a run killed hard stays
``running``; the report shows it as not finished).

An experiment splits its work into *tasks* with :meth:`RunContext.task`: each task's
value is stored when it finishes, so an interrupted run resumes after the last
finished task, and a training task resumes from its last epoch checkpoint.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import math
import os
import re
import signal
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from mlmyths import config as configs
from mlmyths import env
from mlmyths.errors import UserError
from mlmyths.progress import ProgressFactory, progress_bar

SCHEMA = 1
OUTCOMES = ("refuted", "supported", "inconclusive")
STATUSES = ("running", "completed", "interrupted", "failed")

T = TypeVar("T")


# -- what an experiment returns ------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """The myth, the study that tested it, and the study's headline result."""

    myth: str  #: the myth sentence
    paper: str  #: citation of the refuting study
    paper_result: str  #: the paper's headline result, in words and numbers


@dataclass(frozen=True)
class Verdict:
    """``refuted`` (the paper's finding reproduced: the myth is false here), ``supported``
    or ``inconclusive``, with a one-sentence reason quoting the numbers."""

    outcome: str
    reason: str

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"verdict outcome must be one of {OUTCOMES}, got {self.outcome!r}")
        if not self.reason.strip():
            raise ValueError("a verdict needs a reason")


@dataclass
class Result:
    """What ``run(cfg, ctx)`` returns."""

    verdict: Verdict
    summary: str  #: our measurement in a few sentences, with the numbers
    metrics: dict[str, Any] = field(default_factory=dict)  #: name -> number (None if unavailable)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  #: name -> rows
    figures: list[str] = field(default_factory=list)  #: paths relative to the run directory
    notes: list[str] = field(default_factory=list)  #: caveats, deviations from the paper


# -- atomic files ----------------------------------------------------------------------------


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file a normal file's permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def jsonable(value: Any) -> Any:
    """Plain-JSON version of ``value``: numpy/torch scalars to Python, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
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


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n")


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# -- task values: JSON plus arrays, never pickle -----------------------------------------------


def save_state(path: Path, value: Any) -> None:
    """Store nested dicts/lists of numbers, strings and arrays (numpy or torch) in one ``.npz``.

    Tuples come back as lists and tensors as numpy arrays.
    """
    arrays: dict[str, np.ndarray] = {}

    def encode(v: Any) -> Any:
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu().numpy()
        if isinstance(v, np.ndarray):
            key = f"a{len(arrays)}"
            arrays[key] = v
            return {"__array__": key}
        if isinstance(v, dict):
            return {str(k): encode(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [encode(x) for x in v]
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, float) and not math.isfinite(v):
            return {"__float__": repr(v)}
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        raise TypeError(f"cannot store a value of type {type(v).__name__} in a task result")

    meta = json.dumps(encode(value), allow_nan=False)
    import io

    buf = io.BytesIO()
    np.savez(buf, __json__=np.frombuffer(meta.encode(), dtype=np.uint8), **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_state(path: Path) -> Any:
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


# -- the context an experiment runs in ---------------------------------------------------------


def _safe(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("_") or "task"


class RunContext:
    """Everything an experiment's ``run(cfg, ctx)`` may use besides its config.

    Attributes: ``run_dir``, ``figures_dir``, ``device`` (``torch.device``), ``seed``,
    ``scale``, and ``progress`` (a factory for :mod:`mlmyths.progress`, to pass to
    library functions such as :func:`mlmyths.train.fit`).
    """

    def __init__(self, run_dir: Path, *, seed: int = 0, scale: str = "small",
                 device: torch.device | str = "cpu", echo: Callable[[str], None] | None = None,
                 interactive: bool | None = None, resuming: bool = False):
        self.run_dir = Path(run_dir)
        self.figures_dir = self.run_dir / "figures"
        self.checkpoints_dir = self.run_dir / "checkpoints"
        self.seed = int(seed)
        self.scale = scale
        self.device = torch.device(device)
        self.resuming = resuming
        self._echo = echo
        self._log_lock = threading.Lock()
        self.tasks_completed: list[str] = []
        self._task_checkpoints: list[Path] | None = None
        self.progress: ProgressFactory = progress_bar(interactive=interactive, log=self.log)
        self.run_dir.mkdir(parents=True, exist_ok=True)

    # logging
    def log(self, message: str) -> None:
        """Append a timestamped line to ``log.txt`` (and echo it when the CLI asked)."""
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
    def task(self, key: str, fn: Callable[[], T]) -> T:
        """Run ``fn()`` once per run: its value (nested dicts/lists of numbers, strings and
        arrays) is stored, and on ``--resume`` the stored value is returned without running.

        The value returned is always the stored form (tensors become numpy arrays, tuples
        lists), so a fresh run and a resumed one compute the same thing from it. Training
        checkpoints created inside the task (:meth:`checkpoint_path`) are deleted once the
        task's value is stored.
        """
        path = self.checkpoints_dir / "tasks" / f"{_safe(key)}.npz"
        if path.exists():
            self.log(f"task {key}: done in an earlier attempt, reusing its result")
            if key not in self.tasks_completed:
                self.tasks_completed.append(key)
            return load_state(path)  # type: ignore[return-value]
        outer, self._task_checkpoints = self._task_checkpoints, []
        try:
            value = fn()
            save_state(path, value)
            for ckpt in self._task_checkpoints:
                ckpt.unlink(missing_ok=True)
        finally:
            self._task_checkpoints = outer
        self.tasks_completed.append(key)
        return load_state(path)  # type: ignore[return-value]

    def checkpoint_path(self, key: str) -> Path:
        """Where a long computation (e.g. ``fit(checkpoint=...)``) keeps its resumable state."""
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


# -- running an experiment ------------------------------------------------------------------------


def new_run_id(seed: int) -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S") + f"-s{seed}"


def new_run_dir(root: Path, seed: int) -> Path:
    base = root / new_run_id(seed)
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def find_resumable(out: Path, myth: str) -> Path | None:
    """The newest run of ``myth`` under ``out`` that did not complete."""
    candidates = []
    for results in (out / myth).glob("*/results.json"):
        try:
            record = read_json(results)
        except (OSError, ValueError):
            continue
        if record.get("status") != "completed":
            candidates.append((record.get("started", ""), results.parent))
    return max(candidates)[1] if candidates else None


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _claim_dict(claim: Claim) -> dict[str, str]:
    return dataclasses.asdict(claim)


def execute(myth: str, experiment: Any, cfg: Any, *, out: Path, seed: int = 0, scale: str = "small",
            device: str = "auto", threads: int = 0, resume_dir: Path | None = None,
            echo: Callable[[str], None] | None = None, interactive: bool | None = None) -> dict[str, Any]:
    """Run ``experiment.run(cfg, ctx)`` and record it; returns the final results record.

    ``threads`` > 0 limits torch and BLAS to that many threads during the run (small models
    train fastest on one; 0 keeps the libraries' defaults).

    KeyboardInterrupt (and SIGTERM) record ``interrupted`` and propagate. A
    :class:`UserError` raised before any task finished removes the new run directory
    and propagates (nothing was computed); other exceptions record ``failed`` with the
    error and a traceback in ``log.txt``, and the record is returned.
    """
    from mlmyths import report

    torch_device = env.resolve_device(device)
    resuming = resume_dir is not None
    run_dir = Path(resume_dir) if resuming else new_run_dir(Path(out) / myth, seed)
    previous: dict[str, Any] = {}
    if resuming and (run_dir / "results.json").exists():
        previous = read_json(run_dir / "results.json")
    cfg_dict = configs.to_dict(cfg)
    atomic_write_json(run_dir / "config.json", {"myth": myth, "scale": scale, "seed": seed,
                                                "device": device, "threads": threads, "config": cfg_dict})
    ctx = RunContext(run_dir, seed=seed, scale=scale, device=torch_device, echo=echo,
                     interactive=interactive, resuming=resuming)
    record: dict[str, Any] = {
        "schema": SCHEMA, "myth": myth, "run_id": run_dir.name, "scale": scale, "seed": seed,
        "status": "running", "verdict": None, "claim": _claim_dict(experiment.CLAIM),
        "summary": None, "metrics": {}, "tables": {}, "figures": [], "notes": [],
        "config": cfg_dict, "env": env.capture(torch_device),
        "started": previous.get("started") or _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "duration_s": float(previous.get("duration_s") or 0.0), "error": None, "tasks_completed": [],
    }
    earlier = record["duration_s"]
    atomic_write_json(run_dir / "results.json", record)
    ctx.log(f"{'resuming' if resuming else 'starting'} {myth} (scale={scale}, seed={seed}, "
            f"device={record['env']['device']}) in {run_dir}")
    t0 = time.perf_counter()

    def finish(status: str, **fields: Any) -> dict[str, Any]:
        record.update(status=status, tasks_completed=list(ctx.tasks_completed),
                      duration_s=round(earlier + time.perf_counter() - t0, 3), **fields)
        atomic_write_json(run_dir / "results.json", record)
        report.write_run_report(run_dir, record)
        return record

    try:
        with _sigterm_as_interrupt(), env.limit_threads(threads):
            record["env"]["threads"] = str(torch.get_num_threads())
            result = experiment.run(cfg, ctx)
        if not isinstance(result, Result) or not isinstance(result.verdict, Verdict):
            raise TypeError(f"{myth}: run() must return a Result with a Verdict, got {type(result).__name__}")
        missing = [f for f in result.figures if not (run_dir / f).exists()]
        if missing:
            raise FileNotFoundError(f"{myth}: figures listed but not written: {', '.join(missing)}")
    except KeyboardInterrupt:
        ctx.log("interrupted; `mlmyths run " + myth + " --resume` continues from the last finished task")
        finish("interrupted", error="interrupted before completion")
        raise
    except UserError as exc:
        if not resuming and not ctx.tasks_completed:
            import shutil

            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            ctx.log(f"failed: {exc}")
            finish("failed", error=str(exc))
        raise
    except Exception as exc:  # a bug or a numerical failure: record it, keep what was computed
        ctx.log("failed:\n" + traceback.format_exc())
        return finish("failed", error=f"{type(exc).__name__}: {exc}")
    ctx.log(f"{result.verdict.outcome}: {result.verdict.reason}")
    return finish(
        "completed",
        verdict=dataclasses.asdict(result.verdict), summary=result.summary, metrics=result.metrics,
        tables=result.tables, figures=result.figures, notes=result.notes,
    )
