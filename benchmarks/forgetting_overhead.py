"""Overhead of ForgettingTracker on a training epoch, side by side in one process.

For each setup, epochs of :func:`mlmyths.train.fit` run alternately without a callback and
with ``ForgettingTracker.update`` (ABAB..., so that drift in machine load hits both), and
the median epoch times are compared. Because a few percent is within the noise of a
shared machine, the tracker's own cost is also timed in isolation: the updates of one
epoch (same batch size, same logits shape, on the same device) as a fraction of the
plain epoch. For scale, a per-example Python loop (the bookkeeping of the paper's code,
one ``.item()`` per example) is timed on the same updates.

    PYTHONPATH=src python benchmarks/forgetting_overhead.py            # print the table
    PYTHONPATH=src python benchmarks/forgetting_overhead.py --write    # also docs/benchmarks/forgetting.md

Target (issue 4): overhead <= 3% of an epoch on CPU, and on CUDA when present.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from mlmyths.forgetting import ForgettingTracker  # noqa: E402
from mlmyths.models.resnet18 import ResNet18  # noqa: E402
from mlmyths.models.small import MLP, SmallCNN  # noqa: E402
from mlmyths.train import TrainConfig, fit  # noqa: E402


@dataclass(frozen=True)
class Setup:
    name: str  # shown in the table
    build: Callable[[], nn.Module]  # the network
    shape: tuple[int, int, int]  # one input image (C, H, W)
    n: int  # training examples per epoch
    batch_size: int  # examples per step
    device: str  # cpu or cuda


def setups(device: str, quick: bool) -> list[Setup]:
    scale = 4 if quick else 1
    if device == "cpu":
        return [
            Setup("compact CNN, Fashion-MNIST shape (the small scale)",
                  lambda: SmallCNN(1, 10, 28, width=0.5, hidden=100), (1, 28, 28), 10_000 // scale, 128, "cpu"),
            Setup("MLP, digits shape (the smoke scale; cheapest steps)",
                  lambda: MLP(64, 10, hidden=(128,)), (1, 8, 8), 1_438, 64, "cpu"),
        ]
    return [
        Setup("ResNet-18, CIFAR-10 shape (the paper scale)", lambda: ResNet18(num_classes=10), (3, 32, 32),
              50_000 // scale, 128, "cuda"),
        Setup("compact CNN, Fashion-MNIST shape", lambda: SmallCNN(1, 10, 28, width=0.5, hidden=100), (1, 28, 28),
              60_000 // scale, 128, "cuda"),
    ]


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def epoch_time(setup: Setup, model: nn.Module, x: torch.Tensor, y: torch.Tensor, callbacks: list) -> float:
    cfg = TrainConfig(epochs=1, batch_size=setup.batch_size, lr=0.01, eval_every=1)
    sync(setup.device)
    t0 = time.perf_counter()
    fit(model, x, y, cfg, callbacks=callbacks, device=setup.device, seed=0)
    sync(setup.device)
    return time.perf_counter() - t0


def reference_loop_update(stats: dict[int, list[int]], indices: torch.Tensor, logits: torch.Tensor,
                          targets: torch.Tensor) -> None:
    """Per-example bookkeeping as in the paper's code: a Python loop with one .item() per example."""
    correct = logits.argmax(-1) == targets
    for j, index in enumerate(indices.tolist()):
        stats.setdefault(index, []).append(int(correct[j].item()))


def isolated_update_time(setup: Setup, tracker_update: Callable, repeats: int = 3) -> float:
    """Seconds for one epoch's worth of tracker updates alone (median of ``repeats``)."""
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(setup.n, generator=g).to(setup.device)
    logits = torch.randn(setup.n, 10, generator=g).to(setup.device)
    targets = torch.randint(0, 10, (setup.n,), generator=g).to(setup.device)
    batches = [(order[i:i + setup.batch_size], logits[i:i + setup.batch_size], targets[i:i + setup.batch_size])
               for i in range(0, setup.n, setup.batch_size)]
    times = []
    for _ in range(repeats):
        sync(setup.device)
        t0 = time.perf_counter()
        for idx, lg, tg in batches:
            tracker_update(idx, lg, tg)
        sync(setup.device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(setup: Setup, rounds: int) -> dict[str, float]:
    torch.manual_seed(0)
    x = torch.randn(setup.n, *setup.shape)
    y = torch.randint(0, 10, (setup.n,))
    model = setup.build().to(setup.device)
    epoch_time(setup, model, x, y, [])  # warm-up (allocator, kernels, cuDNN autotuning)
    plain, tracked = [], []
    for _ in range(rounds):  # ABAB: machine-load drift hits both
        plain.append(epoch_time(setup, model, x, y, []))
        tracker = ForgettingTracker(setup.n, device=setup.device)
        tracked.append(epoch_time(setup, model, x, y, [tracker.update]))
    t_plain, t_tracked = statistics.median(plain), statistics.median(tracked)
    vectorized = isolated_update_time(setup, ForgettingTracker(setup.n, device=setup.device).update)
    stats: dict[int, list[int]] = {}
    loop = isolated_update_time(setup, lambda i, lg, tg: reference_loop_update(stats, i, lg, tg), repeats=1)
    return {"plain_s": t_plain, "tracked_s": t_tracked, "overhead_end_to_end": t_tracked / t_plain - 1,
            "updates_s": vectorized, "overhead_isolated": vectorized / t_plain, "loop_s": loop,
            "loop_overhead": loop / t_plain, "spread": (max(plain) - min(plain)) / t_plain}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating epochs per variant (median taken)")
    parser.add_argument("--quick", action="store_true", help="a quarter of the examples per epoch")
    parser.add_argument("--write", action="store_true", help="write docs/benchmarks/forgetting.md")
    parser.add_argument("--note", default="", help="a remark recorded under the table (e.g. machine load)")
    args = parser.parse_args()
    from machine import describe, write_section

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        for setup in setups(device, args.quick):
            r = measure(setup, args.rounds)
            rows.append((setup, r))
            print(f"{device:4s} {setup.name}: epoch {r['plain_s']:.3f}s plain, {r['tracked_s']:.3f}s tracked "
                  f"({100 * r['overhead_end_to_end']:+.1f}%); tracker alone {1e3 * r['updates_s']:.1f} ms "
                  f"= {100 * r['overhead_isolated']:.2f}% of the epoch; per-example loop "
                  f"{1e3 * r['loop_s']:.0f} ms = {100 * r['loop_overhead']:.1f}%", flush=True)
    lines = [
        "## forgetting: ForgettingTracker overhead per training epoch",
        "",
        f"`PYTHONPATH=src python benchmarks/forgetting_overhead.py --write` (rounds={args.rounds}"
        f"{', quick' if args.quick else ''}). Machine: {describe()}.",
        "",
        "Target: <= 3% of an epoch. *End to end*: median epoch of `fit` with the tracker vs without "
        "(alternating runs; within the noise of a shared machine, see *spread*). *Isolated*: one epoch's "
        "tracker updates timed alone, as a fraction of the plain epoch. *Loop*: a per-example Python loop as in "
        "the paper's code (correctness only, one `.item()` per example) on the same updates.",
        "",
        "| device | setup | examples | batch | epoch plain (s) | epoch tracked (s) | end to end | spread | "
        "isolated | per-example loop |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for setup, r in rows:
        lines.append(f"| {setup.device} | {setup.name} | {setup.n} | {setup.batch_size} | {r['plain_s']:.3f} | "
                     f"{r['tracked_s']:.3f} | {100 * r['overhead_end_to_end']:+.1f}% | {100 * r['spread']:.0f}% | "
                     f"{100 * r['overhead_isolated']:.2f}% | {100 * r['loop_overhead']:.1f}% |")
    if args.note:
        lines += ["", f"Note: {args.note}"]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    if args.write:
        write_section(ROOT / "docs" / "benchmarks" / "forgetting.md", text)


if __name__ == "__main__":
    main()
