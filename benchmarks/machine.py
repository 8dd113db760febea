"""What every benchmark script shares: one line describing the machine it ran on, and writing
its section of docs/benchmarks/ (collected into docs/BENCHMARKS.md by collect.py)."""
from __future__ import annotations

import os
import platform
from pathlib import Path


def write_section(path: str | Path, text: str) -> None:
    """Write a benchmark's markdown section to ``path`` (creating its folder) and say so."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")


def describe() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            cpu = names[0]
    except OSError:
        pass
    parts = [f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"]
    if torch.cuda.is_available():
        parts.append(f"GPU {torch.cuda.get_device_name(0)}")
    return "; ".join(parts)


if __name__ == "__main__":
    print(describe())
