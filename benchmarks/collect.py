"""Assemble docs/BENCHMARKS.md from the per-component tables in docs/benchmarks/*.md.

Each benchmark script writes its own table (with the machine it ran on) to
docs/benchmarks/<name>.md; this script concatenates them in a fixed order.

    python benchmarks/collect.py
"""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["tensors", "tensors-closed-form", "forgetting", "fixup", "lightconv", "saliency", "dataset-bias", "test-reuse", "executors"]

HEADER = """# Benchmarks

Performance claims of mlmyths, each measured side by side in one process (or one script with
each peer in its own capped subprocess), reported as ratios, with the machine it ran on.
Regenerate a section with the command at its top, then `python benchmarks/collect.py`.
Benchmarks are not tests: the test suite never asserts wall-clock time.
"""


def main() -> None:
    parts = [HEADER]
    files = {p.stem: p for p in (ROOT / "docs" / "benchmarks").glob("*.md")}
    for name in ORDER + sorted(set(files) - set(ORDER)):
        if name in files:
            parts.append(files[name].read_text().strip() + "\n")
    (ROOT / "docs" / "BENCHMARKS.md").write_text("\n".join(parts))
    print(f"wrote docs/BENCHMARKS.md from {len(files)} section(s)")


if __name__ == "__main__":
    main()
