"""Training-step time of Fixup vs BatchNorm vs no normalization at equal depth and width.

Fixup (and SkipInit) replace every BatchNorm layer by a few scalar additions and one scalar
multiplication per branch, so a step should cost less; this measures by how much. One step =
forward, cross-entropy, backward, SGD-with-momentum update, on a fixed random batch. The
variants are timed round-robin in one process (each round times every variant once), so that
load from other processes hits all of them alike; the table reports the median per step
(wall clock, and on CPU also process CPU time, which a loaded machine inflates less) and the
ratio to BatchNorm. On CUDA the step runs under bf16 autocast, as :func:`mlmyths.train.fit`
does, and is timed with device synchronization.

    PYTHONPATH=src python benchmarks/fixup_step.py            # CPU (and CUDA when present)
    PYTHONPATH=src python benchmarks/fixup_step.py --quick    # fewer rounds
    PYTHONPATH=src python benchmarks/fixup_step.py --write docs/benchmarks/fixup.md
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from machine import write_section  # benchmarks/ is on sys.path when run as a script
from mlmyths.models.resnet import resnet

VARIANTS = ("batchnorm", "fixup", "skipinit", "none")


@dataclass(frozen=True)
class Case:
    name: str  #: what the row is
    depth: int  #: ResNet depth (6n + 2)
    width: int  #: first-stage channels
    side: int  #: image side
    channels: int  #: image channels
    batch: int  #: images per step


CPU_CASES = (
    Case("small experiment (digits)", 110, 8, 8, 1, 64),
    Case("CIFAR-shaped ResNet-56", 56, 16, 32, 3, 32),
)
CUDA_CASES = (
    Case("CIFAR ResNet-110", 110, 16, 32, 3, 128),
    Case("CIFAR ResNet-1202", 1202, 16, 32, 3, 128),
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(variant: str, case: Case, device: torch.device):
    torch.manual_seed(0)
    model = resnet(case.depth, norm=variant, in_channels=case.channels, width=case.width).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)  # small lr: 'none' must stay finite
    x = torch.randn(case.batch, case.channels, case.side, case.side, device=device)
    y = torch.randint(0, 10, (case.batch,), device=device)
    amp = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
           else contextlib.nullcontext())

    def step() -> None:
        with amp:
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def bench_case(case: Case, device: torch.device, rounds: int, warmup: int) -> dict[str, dict[str, float]]:
    steps = {v: make_step(v, case, device) for v in VARIANTS}
    for step in steps.values():
        for _ in range(warmup):
            step()
    _sync(device)
    wall: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(rounds):
        for v, step in steps.items():
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            step()
            _sync(device)
            wall[v].append(time.perf_counter() - t0)
            cpu[v].append(time.process_time() - c0)
    return {v: {"wall_ms": 1e3 * statistics.median(wall[v]), "cpu_ms": 1e3 * statistics.median(cpu[v])}
            for v in VARIANTS}


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch "
            f"thread(s), torch {torch.__version__}, load average {load:.1f} when started")


def table(device: torch.device, results: list[tuple[Case, dict[str, dict[str, float]]]]) -> str:
    cpu = device.type == "cpu"
    head = "| case | depth | width | batch | " + " | ".join(f"{v} ms" for v in VARIANTS) + \
        " | fixup / BN | none / BN |" + (" fixup / BN (CPU time) |" if cpu else "")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for case, r in results:
        cells = [f"{r[v]['wall_ms']:.1f}" for v in VARIANTS]
        ratio = r["fixup"]["wall_ms"] / r["batchnorm"]["wall_ms"]
        none = r["none"]["wall_ms"] / r["batchnorm"]["wall_ms"]
        row = f"| {case.name} | {case.depth} | {case.width} | {case.batch} | " + " | ".join(cells) + \
            f" | {ratio:.2f} | {none:.2f} |"
        if cpu:
            row += f" {r['fixup']['cpu_ms'] / r['batchnorm']['cpu_ms']:.2f} |"
        lines.append(row)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a rough number in seconds)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--write", default="", help="write the markdown report to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds, warmup = (5, 1) if args.quick else (20, 3)
    sections = []
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        cases = CPU_CASES if device.type == "cpu" else CUDA_CASES
        desc = machine(device)
        results = []
        for case in cases:
            r = bench_case(case, device, rounds, warmup)
            results.append((case, r))
            print(f"[{device.type}] {case.name}: " + ", ".join(f"{v} {r[v]['wall_ms']:.1f} ms" for v in VARIANTS)
                  + f"; fixup/BN {r['fixup']['wall_ms'] / r['batchnorm']['wall_ms']:.2f}", flush=True)
        sections.append(f"### {device.type.upper()}: {desc}\n\nMedian of {rounds} round-robin steps after "
                        f"{warmup} warm-up step(s); one step = forward, cross-entropy, backward, SGD update"
                        + (" (bf16 autocast)" if device.type == "cuda" else "") + ".\n\n" + table(device, results))
    if not torch.cuda.is_available():
        sections.append("### CUDA\n\nNo CUDA device was available for this run; on one, the script also times "
                        + " and ".join(f"{c.name} (batch {c.batch})" for c in CUDA_CASES) + " under bf16 autocast.")
    report = ("## fixup: training-step time, Fixup vs BatchNorm vs no normalization\n\n"
              "`PYTHONPATH=src python benchmarks/fixup_step.py` (this file: `--write docs/benchmarks/fixup.md`). "
              "Ratios below 1 mean Fixup's step is faster than BatchNorm's at the same depth and width.\n\n"
              + "\n\n".join(sections) + "\n")
    if args.write:
        write_section(args.write, report)
    print(report)


if __name__ == "__main__":
    main()
