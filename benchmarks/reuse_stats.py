"""Benchmark: the vectorized paths of mlmyths.reuse against straightforward references, side by side.

1. Kendall tau over bootstrap rows: ``reuse.kendall_tau`` on (B, M) at once vs a loop of
   ``scipy.stats.kendalltau`` (B = 1000 resamples, M = 30 models, as in the experiment).
2. Bootstrap accuracies: ``reuse.bootstrap_accuracies`` (bincount counts @ correctness) vs
   fancy-indexing ``correct[:, idx].mean(1)`` per resample (M = 30 models, N = 10,000 images).
3. Greedy ensemble selection: one round of ``_Votes.with_each`` (incremental plurality vote for all
   candidates) vs recounting every candidate's ensemble vote from scratch (M = 40, N = 10,000,
   8 members).

Every pair is checked for equal results before timing. Run:
``PYTHONPATH=src python benchmarks/reuse_stats.py [--write docs/benchmarks/test-reuse.md]``
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from machine import write_section  # benchmarks/ is on sys.path when run as a script
from mlmyths.reuse import bootstrap_accuracies, kendall_tau
from mlmyths.reuse.selection import _Votes


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_kendall(rng: np.random.Generator) -> tuple[str, float, float]:
    a, b = rng.random((1000, 30)), rng.random((1000, 30))
    ours = kendall_tau(a, b)
    ref = np.array([stats.kendalltau(x, y).statistic for x, y in zip(a, b)])
    assert np.allclose(ours, ref)
    return ("Kendall tau, 1000 x 30 (scipy loop)", best_of(lambda: kendall_tau(a, b)),
            best_of(lambda: [stats.kendalltau(x, y).statistic for x, y in zip(a, b)]))


def bench_bootstrap(rng: np.random.Generator) -> tuple[str, float, float]:
    correct = rng.random((30, 10_000)) < 0.9
    n_boot = 200

    def reference(seed: int) -> np.ndarray:
        r = np.random.default_rng(seed)
        out = np.empty((n_boot, 30))
        for start in range(0, n_boot, 64):  # same index stream as the vectorized path
            idx = r.integers(0, 10_000, size=(min(64, n_boot - start), 10_000))
            for j, row in enumerate(idx):
                out[start + j] = correct[:, row].mean(1)
        return out

    assert np.allclose(bootstrap_accuracies(correct, n_boot, np.random.default_rng(1)), reference(1), atol=1e-6)
    return (f"bootstrap accuracies, {n_boot} x 30 x 10k (index loop)",
            best_of(lambda: bootstrap_accuracies(correct, n_boot, np.random.default_rng(1))),
            best_of(lambda: reference(1)))


def bench_votes(rng: np.random.Generator) -> tuple[str, float, float]:
    m, n, c = 40, 10_000, 10
    preds = rng.integers(0, c, (m, n))
    votes = _Votes(n, c)
    members = [3, 7, 7, 1, 20, 5, 9, 11]
    for k in members:
        votes.add(preds[k])

    def reference() -> np.ndarray:
        out = np.empty((m, n), dtype=np.int64)
        for j in range(m):
            chosen = preds[members + [j]]  # (k+1, N)
            counts = np.stack([(chosen == cls).sum(0) for cls in range(c)], 1)  # (N, C)
            out[j] = counts.argmax(1)
        return out

    assert np.array_equal(votes.with_each(preds), reference())
    return ("greedy round, 40 candidates x 10k (recount)", best_of(lambda: votes.with_each(preds)), best_of(reference))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="write the results table (markdown) to this file")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = [bench_kendall(rng), bench_bootstrap(rng), bench_votes(rng)]
    machine = (f"{platform.machine()}, {torch.get_num_threads()} torch threads, numpy {np.__version__}, "
               f"python {platform.python_version()}")
    lines = [f"Machine: {machine}.", "", "| task (reference) | mlmyths.reuse | reference | speed-up |", "|---|---|---|---|"]
    for name, ours, ref in rows:
        lines.append(f"| {name} | {1e3 * ours:.1f} ms | {1e3 * ref:.1f} ms | {ref / ours:.1f}x |")
    text = "\n".join(lines)
    print(text)
    if args.write:
        header = ("# test-reuse benchmarks\n\n`benchmarks/reuse_stats.py`: vectorized paths of `mlmyths.reuse` "
                  "against straightforward references (results checked equal first; best of 3).\n\n")
        write_section(args.write, header + text + "\n")


if __name__ == "__main__":
    main()
