"""Executors side by side: per-task overhead and scaling of waves (issue 16).

1. **Overhead**: a wave of ``--tasks`` trivial tasks through ``RunContext.map`` (values stored,
   log written, exactly as an experiment's tasks) in this process, on 2 local worker processes and
   on a private local Ray; the per-task wall time above the in-process one is the executor's cost.
2. **Scaling on a local multi-node Ray cluster**: a head and ``--nodes - 1`` worker nodes started
   with ``ray start`` on this machine, 1 CPU each; a wave of CPU-bound tasks (one thread each) on 1
   node vs all nodes: tasks/s and wall time.
3. Optionally (``--experiment MYTH``), one experiment's ``small`` run with ``--workers 1`` vs
   ``--workers 2`` (the same ``--threads 1``), wall time.

    python benchmarks/executors.py --tasks 200 --write docs/benchmarks/executors.md
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402

from machine import describe, write_section  # noqa: E402
from mlmyths import executors, runs  # noqa: E402

RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


def trivial(i: int) -> dict:
    return {"i": i}


def cpu_work(i: int, size: int = 300, repeats: int = 40) -> float:
    """A fraction of a second of single-threaded float work (40 matrix products of 300 x 300)."""
    rng = np.random.default_rng(i)
    a = rng.standard_normal((size, size))
    total = 0.0
    for _ in range(repeats):
        total += float(np.linalg.norm(a @ a))
    return total


def wave_seconds(executor: executors.Executor, n: int, fn, threads: int = 1) -> float:
    run_dir = Path(tempfile.mkdtemp(prefix="bench-executors-"))
    ctx = runs.RunContext(run_dir, threads=threads, executor=executor)
    start = time.perf_counter()
    values = ctx.map({f"t{i}": (lambda i=i: fn(i)) for i in range(n)})
    seconds = time.perf_counter() - start
    assert len(values) == n
    shutil.rmtree(run_dir, ignore_errors=True)
    return seconds


def overhead(tasks: int) -> list[dict]:
    rows = []
    base = wave_seconds(executors.InProcess(), tasks, trivial)
    rows.append({"executor": "in-process", "wave s": base, "ms per task": 1e3 * base / tasks, "overhead ms": 0.0})
    for name, make in (("2 local workers", lambda: executors.LocalPool(2, threads=1)),
                       ("Ray (local)", lambda: executors.RayExecutor("local", threads=1))):
        ex = make()
        try:
            wave_seconds(ex, 4, trivial)  # start the workers outside the measurement
            s = wave_seconds(ex, tasks, trivial)
        finally:
            ex.close()
        rows.append({"executor": name, "wave s": s, "ms per task": 1e3 * s / tasks,
                     "overhead ms": 1e3 * (s - base) / tasks})
    return rows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scaling(nodes: int, tasks: int) -> list[dict]:
    ray_cmd = str(Path(sys.executable).with_name("ray"))
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{Path(__file__).parent}", **RAY_ENV)
    os.environ.update(RAY_ENV)
    port = free_port()
    temp = tempfile.mkdtemp(prefix="ray-bench-")
    subprocess.run([ray_cmd, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=1",
                    "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
                   env=env, check=True, capture_output=True)
    rows = []
    try:
        address = f"127.0.0.1:{port}"
        for n_nodes in (1, nodes):
            while len(_nodes(address)) < n_nodes:
                subprocess.run([ray_cmd, "start", f"--address={address}", "--num-cpus=1"], env=env, check=True,
                               capture_output=True)
                time.sleep(2)
            ex = executors.RayExecutor(address, threads=1)
            try:
                wave_seconds(ex, n_nodes, cpu_work)  # warm every node's worker
                s = wave_seconds(ex, tasks, cpu_work)
            finally:
                ex.close()
            rows.append({"nodes (1 CPU each)": n_nodes, "tasks": tasks, "wall s": s, "tasks/s": tasks / s})
    finally:
        subprocess.run([ray_cmd, "stop", "--force"], env=env, capture_output=True)
    rows[-1]["speed-up"] = rows[0]["wall s"] / rows[-1]["wall s"]
    return rows


def _nodes(address: str) -> list:
    import ray

    ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    try:
        return [n for n in ray.nodes() if n["Alive"]]
    finally:
        ray.shutdown()


def experiment(myth: str) -> list[dict]:
    rows = []
    for workers in (1, 2):
        out = Path(tempfile.mkdtemp(prefix="bench-run-"))
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mlmyths", "run", myth, "--scale", "small", "--threads", "1",
                        "--workers", str(workers), "--out", str(out), "--quiet"], check=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT / "src")), capture_output=True)
        rows.append({"experiment": myth, "workers": workers, "wall s": time.perf_counter() - start})
        shutil.rmtree(out, ignore_errors=True)
    rows[-1]["speed-up"] = rows[0]["wall s"] / rows[-1]["wall s"]
    return rows


def shares(directory: Path, cost: list[dict]) -> list[dict]:
    """Each executor's per-task overhead x the tasks a committed small run ran, over its run time."""
    import json

    rows = []
    for path in sorted(directory.glob("*.json")):
        record = json.loads(path.read_text())
        tasks, seconds = len(record.get("task_seconds") or {}), record.get("duration_s") or 0.0
        row = {"myth": path.stem, "tasks": tasks, "run s": float(seconds)}
        for c in cost[1:]:
            row[f"{c['executor']} share"] = f"{100 * tasks * c['overhead ms'] / 1e3 / seconds:.2f}%" if seconds else ""
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(f"{r[c]:.3g}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in cols)
                   + " |")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=200, help="trivial tasks in the overhead wave")
    p.add_argument("--nodes", type=int, default=2, help="Ray nodes (1 CPU each) for the scaling wave")
    p.add_argument("--cpu-tasks", type=int, default=8, help="CPU-bound tasks in the scaling wave")
    p.add_argument("--experiment", default=None, help="also time this myth's small run with 1 and 2 workers")
    p.add_argument("--write", type=Path, default=None, help="write the tables to this markdown file")
    p.add_argument("--records", type=Path, default=ROOT / "docs" / "results" / "small",
                   help="committed small records: the overhead as a share of each myth's run")
    args = p.parse_args()
    cost = overhead(args.tasks)
    parts = ["### Per-task overhead (a wave of trivial tasks through `RunContext.map`)", table(cost),
             "### A wave of CPU-bound tasks on a local multi-node Ray cluster", table(scaling(args.nodes, args.cpu_tasks))]
    if args.records.is_dir():
        parts += ["### The overhead per task times each committed `small` record's task count, as a share of its run time",
                  table(shares(args.records, cost))]
    if args.experiment:
        parts += [f"### `mlmyths run {args.experiment} --scale small --threads 1`, 1 vs 2 workers",
                  table(experiment(args.experiment))]
    command = " ".join(["python benchmarks/executors.py", *sys.argv[1:]])
    text = "\n\n".join([f"## executors: in-process, local workers and Ray (`{command}`)",
                          f"Machine: {describe()}.", *parts]) + "\n"
    print(text)
    if args.write:
        write_section(args.write, text)


if __name__ == "__main__":
    main()
