"""LightConv, DynamicConv and causal SDPA attention side by side over the sequence length.

Forward + backward of one layer on (B, T, C) inputs, same C, H and K = 31, causal:

- ``LightConv``: :class:`mlmyths.models.LightweightConv1d` (one depthwise ``conv1d``);
- ``LightConv conv1d``: the issue's reference form, one grouped ``F.conv1d`` on (B, C, T) with
  PyTorch's own backward (what the reference figures time);
- ``LightConv unfold``: the same kernel through DynamicConv's unfold path (a naive unfold form);
- ``DynamicConv``: :class:`mlmyths.models.DynamicConv1d` as it comes (kernel prediction + the
  native C kernels where they build, see :mod:`mlmyths.native`; else the band path);
- ``DynamicConv band``: the same layer on its pure-PyTorch band path (``method="band"``);
- ``SDPA``: ``Linear(C, 3C)`` QKV projection + ``F.scaled_dot_product_attention(is_causal=True)``.

CPU: fp32, B=2, C=256, H=8 (the issue's reference setting). CUDA (when present): bf16
autocast, B=8, C=512, H=16, T up to 32768. Times are the fastest of ``--repeats`` rounds that
time the layers in turn (the least disturbed by other processes), memory is the peak of one call
(CPU: resident-set growth; CUDA: max_memory_allocated), see
:func:`mlmyths.measure.time_and_memory`. Also measured: DynamicConv's unfold vs band
crossover over T against the native and band paths (which sets ``UNFOLD_MAX_T``) and its band
block size (``BAND_BLOCK``).

    PYTHONPATH=src python benchmarks/lightconv.py            # writes docs/benchmarks/lightconv.md
    PYTHONPATH=src python benchmarks/lightconv.py --quick    # T <= 2048, fewer repeats, no file
"""
from __future__ import annotations

import argparse
import datetime as _dt
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, write_section  # noqa: E402

from mlmyths.models.lightconv import (  # noqa: E402
    BAND_BLOCK, UNFOLD_MAX_T, UNFOLD_MAX_T_INFERENCE, DynamicConv1d, LightweightConv1d, dynamic_conv,
    dynamic_conv_path,
)
from mlmyths.measure import forward_backward, time_and_memory, wall_time  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = {  # the reference figures (2 CPU cores, fp32, B=2, C=256, H=8, K=31), ms
    ("LightConv", 1024): 9.8, ("LightConv", 4096): 35.0, ("SDPA", 1024): 62.0, ("SDPA", 4096): 597.0,
}


class SDPAttention(nn.Module):
    """QKV projection + causal ``scaled_dot_product_attention`` (no output projection)."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(channels, 3 * channels)

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)  # (B, H, T, R) each
        return F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)


class Conv1dLightConv(LightweightConv1d):
    """LightConv as one grouped ``F.conv1d`` on (B, C, T) with autograd's backward: the reference form."""

    def _convolve(self, x_padded: Tensor, kernel: Tensor) -> Tensor:
        C = x_padded.shape[-1]
        weight = kernel.repeat_interleave(C // self.heads, dim=0).unsqueeze(1)  # (C, 1, K)
        return F.conv1d(x_padded.transpose(1, 2), weight, groups=C).transpose(1, 2)


class UnfoldLightConv(LightweightConv1d):
    """LightConv applied through the unfold path (K-windows as a strided view): the naive form."""

    def _convolve(self, x_padded: Tensor, kernel: Tensor) -> Tensor:
        B, T = x_padded.shape[0], x_padded.shape[1] - self.kernel_size + 1
        return dynamic_conv(x_padded, kernel.expand(B, T, *kernel.shape), "unfold")


class KernelPrediction(nn.Module):
    """DynamicConv's kernel-predicting step alone (linear C -> H*K, softmax): the part LightConv lacks."""

    def __init__(self, channels: int, kernel_size: int, heads: int):
        super().__init__()
        self.conv = DynamicConv1d(channels, kernel_size, heads)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv.kernel(x)


def build(name: str, C: int, H: int, K: int) -> nn.Module:
    if name == "LightConv":
        return LightweightConv1d(C, K, H)
    if name == "LightConv conv1d":
        return Conv1dLightConv(C, K, H)
    if name == "LightConv unfold":
        return UnfoldLightConv(C, K, H)
    if name == "DynamicConv":
        return DynamicConv1d(C, K, H)
    if name == "DynamicConv band":
        return DynamicConv1d(C, K, H, method="band")
    if name == "DynamicConv kernels":
        return KernelPrediction(C, K, H)
    if name == "SDPA":
        return SDPAttention(C, H)
    raise ValueError(name)


def side_by_side(device: torch.device, lengths: list[int], B: int, C: int, H: int, K: int, repeats: int,
                 max_seconds: float, unfold_max_T: int) -> list[dict]:
    """For each T: one warm-up call of each layer (its peak memory), then ``repeats`` rounds that
    time every layer once in turn, so that a slow spell of a shared machine hits all of them;
    the fastest round of each layer is kept. A layer slower than ``max_seconds`` is timed once
    and left out of longer T."""
    names = ["LightConv", "LightConv conv1d", "LightConv unfold", "DynamicConv", "DynamicConv band",
             "DynamicConv kernels", "SDPA"]
    stopped: set[str] = set()
    rows = []
    for T in lengths:
        row: dict = {"T": T}
        runs = {}
        for name in names:
            row[name] = row[name + " MiB"] = None
            if name in stopped or (name == "LightConv unfold" and T > unfold_max_T):
                continue
            torch.manual_seed(0)
            x = torch.randn(B, T, C, device=device, requires_grad=True)
            runs[name] = forward_backward(build(name, C, H, K).to(device), x)
            seconds, memory = time_and_memory(runs[name], device, repeats=0)
            row[name], row[name + " MiB"] = seconds * 1e3, None if memory is None else memory / 2**20
            if seconds > max_seconds:
                stopped.add(name)
                del runs[name]
        for _ in range(repeats):
            for name, run in runs.items():
                row[name] = min(row[name], wall_time(run, device) * 1e3)
        rows.append(row)
        print(f"T={T:6d}  " + "  ".join(f"{n} {row[n]:.2f} ms" for n in names if row[n] is not None), flush=True)
    return rows


def crossover(device: torch.device, C: int, H: int, K: int, repeats: int) -> list[dict]:
    """DynamicConv's unfold path vs its band and (where it builds) native paths for small T, forward+backward
    and forward only."""
    methods = ("unfold", "band", "native") if dynamic_conv_path(device).startswith("native") else ("unfold", "band")
    rows = []
    for T in [1, 2, 4, 8, 16, 32, 64, 128, 256]:
        row: dict = {"T": T}
        for method in methods:
            conv = DynamicConv1d(C, K, H, method=method).to(device)
            x = torch.randn(2, T, C, device=device, requires_grad=True)
            row[f"{method} fwd+bwd"] = time_and_memory(forward_backward(conv, x), device, repeats, reduce=min)[0] * 1e3

            def forward_only(conv: nn.Module = conv, x: Tensor = x) -> None:
                with torch.inference_mode():
                    conv(x)

            row[f"{method} fwd"] = time_and_memory(forward_only, device, repeats, reduce=min)[0] * 1e3
        rows.append(row)
        print("crossover " + "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                       for k, v in row.items()), flush=True)
    return rows


def block_sizes(device: torch.device, C: int, H: int, K: int, repeats: int, lengths: list[int]) -> list[dict]:
    rows = []
    for T in lengths:
        row: dict = {"T": T}
        for S in (8, 16, 32, 64, 128):
            conv = DynamicConv1d(C, K, H, method="band", block_size=S).to(device)
            x = torch.randn(2, T, C, device=device, requires_grad=True)
            row[f"S={S}"] = time_and_memory(forward_backward(conv, x), device, repeats, reduce=min)[0] * 1e3
        rows.append(row)
        print("block " + "  ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
              flush=True)
    return rows


def _cell(v: float | None, digits: int = 2) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "–" if a is None or b is None else f"{a / b:.2f}"


def table(rows: list[dict], setting: str, reference: bool) -> list[str]:
    out = [f"**{setting}** — forward+backward, ms (peak MiB):", "",
           "| T | LightConv | LightConv conv1d | LightConv unfold | DynamicConv | DynamicConv band "
           "| of which kernel prediction | SDPA + QKV | SDPA / LightConv | SDPA / DynamicConv "
           "| DynamicConv / LightConv | DynamicConv band / LightConv | DynamicConv / LightConv conv1d "
           "| (DynamicConv - prediction) / LightConv |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{_cell(r[n])} ({_cell(r[n + ' MiB'], 1)})" if r[n] is not None else "–"
                 for n in ("LightConv", "LightConv conv1d", "LightConv unfold", "DynamicConv", "DynamicConv band",
                           "DynamicConv kernels", "SDPA")]
        rest = (r["DynamicConv"] - r["DynamicConv kernels"]
                if r["DynamicConv"] is not None and r["DynamicConv kernels"] is not None else None)
        out.append(f"| {r['T']} | " + " | ".join(cells) + f" | {_ratio(r['SDPA'], r['LightConv'])} | "
                   f"{_ratio(r['SDPA'], r['DynamicConv'])} | {_ratio(r['DynamicConv'], r['LightConv'])} | "
                   f"{_ratio(r['DynamicConv band'], r['LightConv'])} | "
                   f"{_ratio(r['DynamicConv'], r['LightConv conv1d'])} | {_ratio(rest, r['LightConv'])} |")
    if reference:
        out += ["", "Issue's reference figures (2 CPU cores): " + ", ".join(
            f"{name} {ms:g} ms at T={T}" for (name, T), ms in REFERENCE.items()) + "."]
    return out + [""]


def targets(rows: list[dict]) -> list[str]:
    """The issue's targets, checked on the CPU table."""
    by_T = {r["T"]: r for r in rows}
    out = ["Targets (CPU):", ""]
    for T in (1024, 4096):
        if T in by_T and by_T[T]["LightConv"] is not None:
            ref = REFERENCE[("LightConv", T)]
            ours = by_T[T]["LightConv"]
            out.append(f"- LightConv at T={T}: {ours:.1f} ms vs the reference conv1d figure {ref:g} ms "
                       f"({'met' if ours <= ref else 'not met'} on this run).")
    ratios = [r["DynamicConv"] / r["LightConv"] for r in rows if r["DynamicConv"] and r["LightConv"]]
    if ratios:
        out.append(f"- DynamicConv / LightConv: {min(ratios):.2f}-{max(ratios):.2f}x "
                   f"({'within' if max(ratios) <= 3 else 'not within'} 3x at every T; DynamicConv also runs the "
                   "C -> H*K kernel-predicting linear layer, which LightConv does not have).")
    band = [r["DynamicConv band"] / r["LightConv"] for r in rows if r["DynamicConv band"] and r["LightConv"]]
    if band:
        out.append(f"- The same on the pure-PyTorch band path (`method=\"band\"`, what runs without a C compiler): "
                   f"{min(band):.2f}-{max(band):.2f}x ({'within' if max(band) <= 3 else 'not within'} 3x at every T).")
    ref = [r["DynamicConv"] / r["LightConv conv1d"] for r in rows if r["DynamicConv"] and r["LightConv conv1d"]]
    if ref:
        out.append(f"- DynamicConv / LightConv in the reference conv1d form (measured side by side): "
                   f"{min(ref):.2f}-{max(ref):.2f}x ({'within' if max(ref) <= 3 else 'not within'} 3x at every T).")
    rest = [(r["DynamicConv"] - r["DynamicConv kernels"]) / r["LightConv"] for r in rows
            if r["DynamicConv"] and r["DynamicConv kernels"] and r["LightConv"]]
    if rest:
        out.append(f"- Without that layer (DynamicConv minus the kernel prediction measured alone): "
                   f"{min(rest):.1f}-{max(rest):.1f}x LightConv.")
    long = [r for r in rows if r["T"] >= 1024 and r["SDPA"] is not None]
    if long:
        faster = all(r["LightConv"] < r["SDPA"] and r["DynamicConv"] < r["SDPA"] for r in long)
        out.append(f"- Both faster than SDPA from T=1024 on: {'yes' if faster else 'no'} "
                   f"(SDPA / DynamicConv {min(r['SDPA'] / r['DynamicConv'] for r in long):.1f}x at the least).")
    return out + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="T <= 2048, 2 repeats, do not write the docs file")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--note", default="", help="a line about the conditions (e.g. 'machine shared with 7 jobs')")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--repeats", type=int, default=0,
                        help="timed rounds per T (default 5, 2 with --quick); more on a noisy machine")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "lightconv.md")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available() and args.device in ("auto", "cuda")
    repeats = args.repeats or (2 if args.quick else 5)
    lines = ["## lightconv: LightConv / DynamicConv vs SDPA attention", "",
             f"`PYTHONPATH=src python benchmarks/lightconv.py --repeats {repeats}` — " + describe() + ", "
             + _dt.date.today().isoformat() + (f". {args.note}" if args.note else "."), ""]

    lines += [f"`DynamicConv` on the CPU runs its {dynamic_conv_path('cpu')} path.", ""]
    cpu = torch.device("cpu")
    lengths = [256, 512, 1024, 2048] if args.quick else [256, 512, 1024, 2048, 4096, 8192, 16384]
    print(f"CPU fp32, B=2, C=256, H=8, K=31 ({torch.get_num_threads()} threads)")
    rows = side_by_side(cpu, lengths, B=2, C=256, H=8, K=31, repeats=repeats, max_seconds=3.0, unfold_max_T=4096)
    lines += table(rows, f"CPU fp32, B=2, C=256, H=8, K=31, {torch.get_num_threads()} threads", reference=True)

    lines += targets(rows)

    cross = crossover(cpu, C=256, H=8, K=31, repeats=repeats)
    methods = [m for m in ("band", "native") if f"{m} fwd" in cross[0]]

    def first(method: str, mode: str) -> int | None:  # the smallest T from which `method` beats unfold at every length
        return next((r["T"] for i, r in enumerate(cross)
                     if all(c[f"{method} {mode}"] < c[f"unfold {mode}"] for c in cross[i:])), None)

    lines += [f"**DynamicConv unfold vs {' and '.join(methods)}** (CPU, B=2, C=256, H=8, K=31; ms): `method=\"auto\"` "
              "takes native at every T where it runs (float32 CPU); elsewhere unfold up to `UNFOLD_MAX_T` = "
              f"{UNFOLD_MAX_T} positions with gradients and `UNFOLD_MAX_T_INFERENCE` = {UNFOLD_MAX_T_INFERENCE} "
              "without, band beyond; measured here, " + "; ".join(
                  f"{m} is faster from T = {first(m, 'fwd+bwd')} on (forward+backward) and from T = {first(m, 'fwd')} "
                  "on (forward only)" for m in methods) + ".", "",
              "| T | " + " | ".join(f"{m} {mode}" for mode in ("fwd+bwd", "fwd") for m in ("unfold", *methods)) + " |",
              "|---|" + "---|" * (2 * (1 + len(methods)))]
    lines += ["| " + " | ".join([str(r["T"])] + [_cell(r[f"{m} {mode}"], 3) for mode in ("fwd+bwd", "fwd")
                                                for m in ("unfold", *methods)]) + " |" for r in cross] + [""]
    blocks = block_sizes(cpu, C=256, H=8, K=31, repeats=repeats, lengths=[1024] if args.quick else [1024, 4096])
    lines += [f"**DynamicConv band block size S** (CPU forward+backward ms; default `BAND_BLOCK` = {BAND_BLOCK}):", "",
              "| T | " + " | ".join(k for k in blocks[0] if k != "T") + " |",
              "|---|" + "---|" * (len(blocks[0]) - 1)]
    lines += ["| " + " | ".join(str(r["T"]) if k == "T" else _cell(v) for k, v in r.items()) + " |"
              for r in blocks] + [""]

    if cuda:
        gpu = torch.device("cuda")
        print(f"CUDA bf16, B=8, C=512, H=16, K=31 ({torch.cuda.get_device_name(0)})")
        glen = [2048, 8192] if args.quick else [1024, 2048, 4096, 8192, 16384, 32768]
        rows = side_by_side(gpu, glen, B=8, C=512, H=16, K=31, repeats=repeats * 4, max_seconds=10.0,
                            unfold_max_T=8192)
        lines += table(rows, f"CUDA bf16 autocast, B=8, C=512, H=16, K=31, {torch.cuda.get_device_name(0)}",
                       reference=False)
        lines += ["Issue's reference figures (H200, bf16, B=8, C=512, H=16): LightConv 1.2 ms vs SDPA 1.4 ms at "
                  "T=2048; 14 ms vs 142 ms at T=32768; 1.3 GB vs 3.2 GB peak memory.", ""]
    else:
        lines += ["CUDA: not available on this machine (rerun there for the bf16 table).", ""]

    text = "\n".join(lines)
    print("\n" + text)
    if not args.quick:
        write_section(args.out, text)


if __name__ == "__main__":
    main()
