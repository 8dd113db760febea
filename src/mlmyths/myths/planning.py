"""``mlmyths plan MYTH --scale S``: an experiment's waves of tasks and what they will cost, before
anything runs.

Each experiment declares ``plan(cfg) -> list[Wave]``: for every wave, how many independent tasks
it holds, how much work each task does (in the unit it is measured in: optimizer steps,
measurements, classifier fits) and how its tasks' keys begin. The time a task takes is
*measured*, never guessed: by a *probe* that runs one unit of the work now on the device asked
for (seconds per unit x units per task), or else from the task durations a finished run of the
same myth and scale recorded (``task_seconds`` in its results.json). A paper-scale plan probed on
a laptop CPU says what it would cost there, and that a GPU node is what it asks for; a wave with
neither a probe nor an earlier run says "not measured".
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

#: seconds of probing per wave, at most (after one warm-up unit)
PROBE_BUDGET_S = 3.0


@dataclass(frozen=True)
class Wave:
    """A group of independent tasks of an experiment's plan; groups with the same ``stage`` are one
    wave (one ``ctx.map``), stages run one after another."""

    name: str  #: what the tasks are, e.g. "scoring runs (one per seed)"
    tasks: int  #: how many independent tasks
    units_per_task: float  #: work per task, in ``unit``
    unit: str  #: e.g. "SGD steps of a ResNet-18 on 128 CIFAR-10 images"
    key_prefix: str = ""  #: how the keys of this wave's tasks begin (to find their recorded durations)
    probe: Callable[[Any], None] | None = None  #: runs ONE unit of the work on a device (for timing)
    cpus: float = 1.0  #: CPU threads per task (on --device cuda every task also asks Ray for one GPU)
    stage: int = 1  #: which wave (ctx.map call) the tasks belong to; waves run in order


def seconds_per_unit(probe: Callable[[Any], None], device: Any, budget_s: float = PROBE_BUDGET_S) -> float:
    """Median seconds of one unit of work: one warm-up call, then calls until ``budget_s`` is spent
    (at least 3)."""
    from mlmyths.measure import wall_time

    wall_time(lambda: probe(device), device)
    times: list[float] = []
    spent = 0.0
    while len(times) < 3 or (spent < budget_s and len(times) < 50):
        t = wall_time(lambda: probe(device), device)
        times.append(t)
        spent += t
    times.sort()
    return times[len(times) // 2]


def recorded_seconds(records: Sequence[dict[str, Any]], prefix: str) -> tuple[float, str] | None:
    """Mean recorded seconds of tasks whose key starts with ``prefix`` in the newest record that has
    any, and that record's run id."""
    for record in sorted(records, key=lambda r: r.get("started") or "", reverse=True):
        times = [s for k, s in (record.get("task_seconds") or {}).items() if k.startswith(prefix)]
        if times:
            return sum(times) / len(times), str(record.get("run_id"))
    return None


def estimate(waves: Sequence[Wave], device: Any, *, probe: bool = True,
             history: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """One row per wave: tasks, work, seconds per task (probed now, or recorded by an earlier run in
    ``history``) and the task-hours it adds up to."""
    rows = []
    for w in waves:
        s = seconds_per_unit(w.probe, device) if (probe and w.probe is not None) else None
        task_s, source = (None if s is None else s * w.units_per_task), ("probe" if s is not None else "")
        if task_s is None and w.key_prefix and (found := recorded_seconds(history, w.key_prefix)) is not None:
            task_s, source = found[0], f"run {found[1]}"
        rows.append({"wave": w.stage, "tasks of": w.name, "tasks": w.tasks, "work per task": f"{w.units_per_task:,.0f} {w.unit}",
                     "s per unit": s, "measured by": source or None,
                     "hours per task": None if task_s is None else task_s / 3600,
                     "task-hours": None if task_s is None else task_s * w.tasks / 3600,
                     "resources per task": f"{w.cpus:g} CPU" + (", 1 GPU" if _is_cuda(device) else "")})
    return rows


def _is_cuda(device: Any) -> bool:
    return getattr(device, "type", str(device)) == "cuda"


def render(myth: str, scale: str, device: Any, rows: list[dict[str, Any]], workers: int) -> str:
    """The plan as text: a table and the totals (hours on ``workers`` parallel workers like this one)."""
    def fmt(v: Any) -> str:
        if v is None:
            return "not measured"
        if isinstance(v, float):
            return f"{v:.3g}"
        return str(v)

    cols = list(rows[0]) if rows else []
    widths = {c: max(len(c), *(len(fmt(r[c])) for r in rows)) for c in cols}
    lines = [f"plan for {myth} at scale {scale} on {device}:", "",
             "  ".join(c.ljust(widths[c]) for c in cols), "  ".join("-" * widths[c] for c in cols)]
    lines += ["  ".join(fmt(r[c]).ljust(widths[c]) for c in cols) for r in rows]
    known = [r for r in rows if r["task-hours"] is not None]
    total = sum(r["task-hours"] for r in known)
    tasks = sum(r["tasks"] for r in rows)
    stages = sorted({r["wave"] for r in rows})
    # waves run one after another; within a wave the tasks spread over the workers, and no wave is
    # shorter than its longest task
    wall = 0.0
    for stage in stages:
        part = [r for r in known if r["wave"] == stage]
        if part:
            wall += max(max(r["hours per task"] for r in part), sum(r["task-hours"] for r in part) / workers)
    lines += ["", f"{len(stages)} wave(s), {tasks} task(s)"]
    if not known:
        lines[-1] += "; no time measured (probe with --device, or run once and plan with --out)"
        return "\n".join(lines)
    lines[-1] += (f"; measured work: {total:.3g} task-hours on this device"
                  + ("" if len(known) == len(rows) else f" ({len(rows) - len(known)} group(s) of tasks not measured)"))
    lines.append(f"wall time with {workers} worker(s) like this device: about {wall:.3g} h"
                 + ("" if len(known) == len(rows) else " for the measured part"))
    return "\n".join(lines)

