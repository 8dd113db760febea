"""tensorcalc's compiled Hessians against the hand-written NumPy closed forms, side by side
in one process (the issue's target: within 1.3x at every size).

benchmarks/hessians.py runs every system in its own process (so that a framework running
out of memory is a recorded failure, not a crash); between processes, timings of the same
code vary by up to 1.5x on a 2-core machine. This script times the two systems that compute
the same thing -- tensorcalc and the closed form -- alternately in one process, ``rounds``
times, and reports the median ratio.

    PYTHONPATH=src python benchmarks/tensorcalc_vs_closed_form.py     # writes docs/benchmarks/tensors-closed-form.md
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import describe, write_section  # noqa: E402
from mlmyths import hessians as bench  # noqa: E402

TARGET = 1.3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="100,300,500,1000", help="comma-separated n")
    p.add_argument("--rounds", type=int, default=5, help="alternating measurements per system")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "tensors-closed-form.md")
    args = p.parse_args(argv)
    rows = []
    for problem in bench.PROBLEMS:
        for n in (int(s) for s in args.sizes.split(",")):
            times: dict[str, list[float]] = {"tensorcalc": [], "closed-form": []}
            for _ in range(args.rounds):
                for system in times:
                    times[system].append(bench.measure(problem, n, system, repeats=7, max_time=2.0)["median_s"])
            tc, cf = (statistics.median(times[s]) for s in ("tensorcalc", "closed-form"))
            rows.append((problem, n, tc, cf, tc / cf))
            print(f"{problem} n={n}: tensorcalc {tc * 1e3:.3g} ms, closed form {cf * 1e3:.3g} ms, ratio {tc / cf:.2f}",
                  flush=True)
    worst = max(r[4] for r in rows)
    lines = [
        "### tensors: tensorcalc vs the hand-written closed form, one process",
        "",
        f"`PYTHONPATH=src python benchmarks/tensorcalc_vs_closed_form.py` — {describe()}, float64. Median of "
        f"{args.rounds} alternating measurements (each the median of up to 7 calls). Target: ratio <= {TARGET} "
        f"(tensorcalc at most 30% slower); worst ratio here {worst:.2f} "
        f"({'met' if worst <= TARGET else 'NOT met'}).",
        "",
        "| problem | n | tensorcalc ms | closed form ms | ratio |",
        "|---|---:|---:|---:|---:|",
        *(f"| {p_} | {n} | {tc * 1e3:.3g} | {cf * 1e3:.3g} | {r:.2f} |" for p_, n, tc, cf, r in rows),
        "",
    ]
    write_section(args.out, "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
