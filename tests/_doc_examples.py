"""The ```python examples of the documentation pages: find them, and run them page by page.

Used by tests/test_docs.py (in the test process, from the checkout) and tests/test_release.py
(as a script, by the Python of a fresh virtual environment with the built wheel installed):

    python _doc_examples.py PAGE.md [PAGE.md ...]

runs each page's blocks in order in one namespace (a page reads as one script), in a fresh
temporary working directory per page, and prints one line per page; exit status 1 if any fails.
Standard library only: it must run where only the wheel and its dependencies are installed.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"
#: pages whose ```python blocks are not examples: DEVELOPING.md's block is the template of an
#: experiment module (it runs only inside the experiment registry; tests/test_contract.py checks
#: the real ones).
NOT_EXAMPLES = ("DEVELOPING.md",)
_FENCE = re.compile(r"^(?P<indent>[ \t]*)```python[ \t]*\n(?P<code>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)


def pages() -> list[Path]:
    """Every Markdown page of the site with examples to run (all of docs/ but NOT_EXAMPLES)."""
    return sorted(p for p in DOCS.rglob("*.md") if p.name not in NOT_EXAMPLES and "_ext" not in p.parts)


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """The ```python blocks of ``path``: (line number of the first code line, dedented code)."""
    text = Path(path).read_text(encoding="utf-8")
    blocks = []
    for m in _FENCE.finditer(text):
        indent = len(m.group("indent"))
        code = "".join(line[indent:] for line in m.group("code").splitlines(keepends=True))
        blocks.append((text.count("\n", 0, m.start("code")) + 1, code))
    return blocks


def run_page(path: Path) -> int:
    """Run the blocks of ``path`` in order, in one namespace, in the current directory; the number
    of blocks run. Tracebacks point at the page's own line numbers."""
    namespace: dict[str, object] = {"__name__": "__doc_example__"}
    blocks = python_blocks(path)
    for line, code in blocks:
        exec(compile("\n" * (line - 1) + code, str(path), "exec"), namespace)  # noqa: S102 - our own docs
    return len(blocks)


def main(argv: list[str]) -> int:
    failed = 0
    for name in argv:
        path = Path(name).resolve()
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="mlmyths-doc-") as workdir:
            os.chdir(workdir)
            try:
                n = run_page(path)
            except BaseException:  # noqa: BLE001 - report and go on with the other pages
                failed += 1
                print(f"FAILED {path.name}", flush=True)
                traceback.print_exc()
                continue
            finally:
                os.chdir("/")
        print(f"ok {path.name}: {n} block(s) in {time.perf_counter() - start:.1f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
