"""``mlmyths plan MYTH --scale S``: an experiment's waves of tasks and what they will cost, before
anything runs.

Each experiment declares ``plan(cfg) -> list[Wave]``: for every wave, how many independent tasks
it holds, how much work each task does (in the unit it is measured in: optimizer steps,
measurements, classifier fits) and, where it can, a *probe* that runs a few units of that work
now and returns the seconds per unit. The estimate multiplies the two on the device asked for:
it is a measurement of this machine, not a guess about another (a paper-scale plan probed on a
laptop CPU says what it would cost there, and that a GPU node is what it asks for).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

#: seconds of probing per wave, at most (after one warm-up unit)
PROBE_BUDGET_S = 3.0


@dataclass(frozen=True)
class Wave:
    """One wave of independent tasks of an experiment's plan."""

    name: str  #: what the tasks are, e.g. "scoring runs (one per seed)"
    tasks: int  #: how many independent tasks
    units_per_task: float  #: work per task, in ``unit``
    unit: str  #: e.g. "SGD steps of a ResNet-18 on 128 CIFAR-10 images"
    probe: Callable[[Any], None] | None = None  #: runs ONE unit of the work on a device (for timing)
    gpus: float = 0.0  #: GPUs per task when run with --device cuda (Ray resources)
    cpus: float = 1.0  #: CPU threads per task


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


def estimate(waves: Sequence[Wave], device: Any, *, probe: bool = True) -> list[dict[str, Any]]:
    """One row per wave: tasks, work, measured seconds per unit and the task-hours it adds up to."""
    rows = []
    for w in waves:
        s = seconds_per_unit(w.probe, device) if (probe and w.probe is not None) else None
        task_s = None if s is None else s * w.units_per_task
        rows.append({"wave": w.name, "tasks": w.tasks, "work per task": f"{w.units_per_task:,.0f} {w.unit}",
                     "s per unit": s, "hours per task": None if task_s is None else task_s / 3600,
                     "task-hours": None if task_s is None else task_s * w.tasks / 3600,
                     "resources per task": f"{w.cpus:g} CPU" + (f", {w.gpus:g} GPU" if w.gpus else "")})
    return rows


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
    lines = [f"plan for {myth} at scale {scale}, measured on {device}:", "",
             "  ".join(c.ljust(widths[c]) for c in cols), "  ".join("-" * widths[c] for c in cols)]
    lines += ["  ".join(fmt(r[c]).ljust(widths[c]) for c in cols) for r in rows]
    known = [r for r in rows if r["task-hours"] is not None]
    total = sum(r["task-hours"] for r in known)
    tasks = sum(r["tasks"] for r in rows)
    # waves run one after another; within a wave, tasks spread over the workers
    wall = sum(math.ceil(r["tasks"] / workers) * r["hours per task"] for r in known)
    lines += ["", f"{len(rows)} wave(s), {tasks} task(s); measured work: {total:.3g} task-hours on this device"
              + ("" if len(known) == len(rows) else f" ({len(rows) - len(known)} wave(s) not measured)"),
              f"wall time with {workers} worker(s) like this device: about {wall:.3g} h"]
    return "\n".join(lines)

