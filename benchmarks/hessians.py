"""Hessians of the paper's three problems: mlmyths.tensorcalc against the closed forms and
the autodiff frameworks, each measurement in its own process under a memory cap.

    python benchmarks/hessians.py                       # the full table -> docs/benchmarks/tensors.md
    python benchmarks/hessians.py --sizes 100,300 --mem-gb 4 --threads 1   # a quick look

Laue, Mitterreiter & Giesen (NeurIPS 2018, Sec. 5): quadratic form x'Ax, logistic regression
(X is 2n x n) and matrix factorization ||T - UV'||² (T n x n of rank 10, U, V n x 10; a
4th-order Hessian of shape (n, 10, n, 10)). float64 on the CPU (float32 with --device cuda).
A system that fails (out of memory under the cap, timeout, crash) is recorded as failed and
is not run at larger n of that problem; frameworks that are not installed are listed.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mlmyths import hessians as bench  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, write_section  # noqa: E402


def versions() -> str:
    import importlib.metadata as md

    out = [f"python {platform.python_version()}"]
    for pkg in ("numpy", "opt_einsum", "jax", "torch", "autograd", "tensorflow"):
        try:
            out.append(f"{pkg} {md.version(pkg)}")
        except md.PackageNotFoundError:
            out.append(f"{pkg} not installed")
    return ", ".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="100,300,1000,3000", help="comma-separated n (default 100,300,1000,3000)")
    p.add_argument("--problems", default=",".join(bench.PROBLEMS))
    p.add_argument("--systems", default=",".join(bench.SYSTEMS))
    p.add_argument("--mem-gb", type=float, default=4.0, help="address-space cap per measurement process (GiB)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per measurement process")
    p.add_argument("--repeats", type=int, default=7, help="timed calls per measurement (fewer when slow)")
    p.add_argument("--max-time", type=float, default=5.0, help="seconds of timed calls per measurement, at most")
    p.add_argument("--threads", type=int, default=0, help="threads per library (0: library defaults)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "tensors.md")
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    p.add_argument("--no-sizes", action="store_true", help="skip the expression-size table")
    p.add_argument("--note", default="", help="a caveat printed under the command (e.g. 'machine loaded')")
    args = p.parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes.split(","))
    problems = tuple(args.problems.split(","))
    systems = tuple(args.systems.split(","))

    def run_one(problem: str, n: int, system: str) -> dict:
        return bench.measure_isolated(problem, n, system, mem_gb=args.mem_gb, timeout_s=args.timeout,
                                      repeats=args.repeats, max_time=args.max_time, device=args.device,
                                      threads=args.threads)

    t0 = time.perf_counter()
    rows = bench.grid(problems, sizes, systems, run_one, progress=lambda m: print(m, flush=True))
    took = time.perf_counter() - t0
    missing = [s for s in systems if not bench.installed(s)]
    cmd = "python benchmarks/hessians.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    lines = [
        "## tensors: Hessians by tensor calculus vs autodiff frameworks",
        "",
        f"`{cmd}` ({_dt.date.today().isoformat()}, {took / 60:.1f} min). Machine: {describe()}. {versions()}.",
        "",
        *([f"**Note:** {args.note}", ""] if args.note else []),
        f"Device {args.device} ({'float64' if args.device == 'cpu' else 'float32'}); each measurement in its own "
        f"process (forked from a server that imported the frameworks once) capped at {args.mem_gb:g} GiB of "
        f"address space above that server's and {args.timeout:g} s; threads per library: "
        f"{args.threads or 'library default'}. Median of up to {args.repeats} calls (at most {args.max_time:g} s); "
        "*ratio* = time / tensorcalc's time at the same problem and n (> 1: tensorcalc faster); *set-up + first "
        "call* = derivation/tracing and the first, compiling call; *peak memory* = the process's peak resident "
        "memory above its size after import and input creation. A system that failed at some n is not run at "
        "larger n." + (f" Not installed: {', '.join(missing)}." if missing else ""),
        "",
        bench.markdown_table(rows),
    ]
    if not args.no_sizes:
        sizes = [r for problem in problems for r in bench.expression_sizes(problem)]
        lines += ["", "Operations in each system's Hessian (forward = forward over forward, reverse = reverse over "
                  "reverse, mixed = forward over reverse as in jax.hessian / torch.func.hessian): tensorcalc DAG "
                  "nodes, jaxpr equations, torch.fx call nodes (make_fx).", "",
                  "| problem | system | forward | reverse | mixed |", "|---|---|---:|---:|---:|"]
        for problem in problems:
            for system in dict.fromkeys(r["system"] for r in sizes if r["problem"] == problem):
                ops = {r["mode"]: r["operations"] for r in sizes if r["problem"] == problem and r["system"] == system}
                lines.append(f"| {problem} | {system} | {ops['forward']} | {ops['reverse']} | {ops['mixed']} |")
        lines.append("")
    write_section(args.out, "\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
