"""HOG features: mlmyths.bias.hog (batched, vectorized torch) vs scikit-image's per-image hog.

Name That Dataset computes HOG for thousands of small images per run; scikit-image's
``skimage.feature.hog`` (the oracle our tests compare against) takes one image per call.
This times both on the same random images, round-robin in one process (every round times
each implementation once, so load from other processes hits both alike), and reports the
median wall-clock and process CPU time per 1000 images and the speed-up, for our HOG in
float64 (the precision scikit-image uses; outputs agree to float32 rounding) and in float32
(what the dataset-bias pipeline feeds it; a pixel whose angle sits within float32 rounding
of a bin edge may change bin, hence a larger max difference).

    PYTHONPATH=src python benchmarks/bias_hog.py
    PYTHONPATH=src python benchmarks/bias_hog.py --quick
    PYTHONPATH=src python benchmarks/bias_hog.py --write docs/benchmarks/dataset-bias.md
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch

from machine import write_section  # benchmarks/ is on sys.path when run as a script
from mlmyths.bias import hog


@dataclass(frozen=True)
class Case:
    name: str  # what the row is
    images: int  # images per call
    channels: int  # 1 (grey) or 3 (colour)
    side: int  # image side in pixels
    cell: int  # pixels per cell
    block: int  # cells per block


CASES = (
    Case("Name That Dataset, small scale (16x16 grey)", 4000, 1, 16, 4, 2),
    Case("paper scale thumbnails (32x32 colour)", 2000, 3, 32, 4, 2),
    Case("scikit-image defaults (64x64 grey)", 500, 1, 64, 8, 3),
)


def _ours(x: np.ndarray, case: Case) -> np.ndarray:
    return hog(torch.from_numpy(x), pixels_per_cell=case.cell, cells_per_block=case.block).numpy()


def _ours32(x: np.ndarray, case: Case) -> np.ndarray:
    return _ours(x.astype(np.float32), case)


def _skimage(x: np.ndarray, case: Case) -> np.ndarray:
    from skimage.feature import hog as sk_hog

    kwargs = {"pixels_per_cell": (case.cell, case.cell), "cells_per_block": (case.block, case.block)}
    if case.channels == 1:
        return np.stack([sk_hog(img[0], **kwargs) for img in x])
    return np.stack([sk_hog(img, channel_axis=0, **kwargs) for img in x])


def _time(fn, *args) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(case: Case, rounds: int) -> dict[str, float]:
    x = np.random.default_rng(0).random((case.images, case.channels, case.side, case.side))
    reference = _skimage(x, case)
    out = {"diff64": float(np.abs(_ours(x, case) - reference).max()),
           "diff32": float(np.abs(_ours32(x, case) - reference).max())}
    functions = {"ours": _ours, "ours32": _ours32, "skimage": _skimage}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in functions}
    for _ in range(rounds):
        for name, fn in functions.items():
            times[name].append(_time(fn, x, case))
    per_k = 1000.0 / case.images
    for name, values in times.items():
        out[f"{name}_wall_ms"] = statistics.median(v[0] for v in values) * 1000 * per_k
        out[f"{name}_cpu_ms"] = statistics.median(v[1] for v in values) * 1000 * per_k
    for name in ("ours", "ours32"):
        out[f"{name}_speedup_wall"] = out["skimage_wall_ms"] / out[f"{name}_wall_ms"]
        out[f"{name}_speedup_cpu"] = out["skimage_cpu_ms"] / out[f"{name}_cpu_ms"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 7")
    parser.add_argument("--write", help="also write the table (markdown) to this file")
    args = parser.parse_args()
    rounds = 3 if args.quick else 7
    machine = (f"{platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
               f"torch {torch.__version__} ({torch.get_num_threads()} threads), load average "
               f"{os.getloadavg()[0]:.1f}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    lines = ["# dataset-bias: HOG features", "",
             f"`benchmarks/bias_hog.py`, {rounds} rounds round-robin, median per 1000 images. Machine: {machine}.",
             "On a machine shared with other jobs, OpenMP's default busy-waiting makes 2-thread torch code "
             "erratically slow; OMP_WAIT_POLICY=PASSIVE avoids that. Rerun on a quiet machine for final numbers.", "",
             ("| case | precision | ours wall ms | skimage wall ms | speed-up (wall) | ours CPU ms | "
              "skimage CPU ms | speed-up (CPU) | max abs diff |"), "|---|---|---|---|---|---|---|---|---|"]
    for case in CASES:
        r = measure(case, rounds)
        for name, label, diff in (("ours", "float64", r["diff64"]), ("ours32", "float32", r["diff32"])):
            lines.append(f"| {case.name} | {label} | {r[f'{name}_wall_ms']:.1f} | {r['skimage_wall_ms']:.1f} | "
                         f"{r[f'{name}_speedup_wall']:.1f}x | {r[f'{name}_cpu_ms']:.1f} | {r['skimage_cpu_ms']:.1f} | "
                         f"{r[f'{name}_speedup_cpu']:.1f}x | {diff:.1e} |")
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    if args.write:
        write_section(args.write, text)
    print(text)


if __name__ == "__main__":
    main()
