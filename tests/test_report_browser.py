"""The HTML report in a real browser: headless Chromium (Debian's ``chromium``) driven over the
DevTools protocol (tests/_cdp.py).

The runs directory holds a smoke run of the test-only demo experiment (through the CLI, so the
figure is a real PNG the run wrote) and one hostile record: a figure path that leaves the run
directory and HTML in every free-text field. The page must load with no console error, no
uncaught exception and no dialog; every image must decode; the overview (verdict) table must fit
a 1366x768 laptop screen without horizontal scrolling; the hostile record must show as text, run
nothing and leak nothing. Screenshots go to the test's directory (and to
``$MLMYTHS_TEST_ARTIFACTS`` when set).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from _cdp import Browser
from conftest import read_results
from test_cli import run_demo_cli

WIDTH, HEIGHT = 1366, 768
HOSTILE_RUN = "20000101-000000-s0"  # older than the real run: the overview shows the real one
SECRET = "root:x:0:0"  # the first line of /etc/passwd, which must never reach the page


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("chromium is not installed (Debian/Ubuntu: apt-get install chromium; .ci/run installs it)")


def _hostile_record(runs: Path) -> Path:
    run_dir = runs / "demo" / HOSTILE_RUN
    run_dir.mkdir(parents=True)
    script = "<script>alert(1)</script>"
    record = {
        "schema": 2, "myth": "demo", "run_id": HOSTILE_RUN, "scale": "smoke", "seed": 0, "status": "completed",
        "verdict": {"outcome": "supported", "reason": "<img src=x onerror=alert(2)>"},
        "claim": {"myth": "<svg onload=alert(3)>", "paper": "<iframe src='file:///etc/passwd'></iframe>",
                  "paper_result": "</blockquote><script>alert(4)</script>"},
        "claims": [{"id": "x", "key": True, "statement": script, "paper_value": "<b>bold</b>",
                    "paper_source": "<a href='javascript:alert(5)'>link</a>", "estimate": 0.5, "ci": [0.4, 0.6],
                    "confidence": 0.95, "unit": "seeds", "test": "at_least", "threshold": 0.7,
                    "outcome": "contradicted", "reason": script}],
        "summary": script, "metrics": {"<script>alert(6)</script>": 1.0},
        "tables": {"<script>alert(7)</script>": [{"<b>col</b>": "<script>alert(8)</script>"}]},
        "figures": ["../../etc/passwd", "/etc/passwd", "figures/../../../../etc/passwd"],
        "notes": [script], "differences": [script], "config": {"x": script},
        "env": {"python": script}, "started": "2000-01-01T00:00:00+00:00", "duration_s": 1.0,
    }
    (run_dir / "results.json").write_text(json.dumps(record))
    return run_dir


# One script reads everything the test checks from the rendered page.
_INSPECT = """
(async () => {
  const images = [...document.images];
  const decoded = await Promise.all(images.map(img => img.decode().then(() => true, () => false)));
  const overview = [...document.querySelectorAll('h2')].find(h => h.textContent.trim() === 'The seven myths');
  const table = overview ? overview.nextElementSibling : null;
  const box = table ? table.getBoundingClientRect() : null;
  const style = table ? getComputedStyle(table) : null;
  return {
    images: images.map((img, i) => ({alt: img.alt, decoded: decoded[i], complete: img.complete,
                                      width: img.naturalWidth, height: img.naturalHeight,
                                      data: img.src.startsWith('data:image/png;base64,')})),
    table: box && {tag: table.tagName, left: box.left, right: box.right, top: box.top, width: box.width,
                   height: box.height, rows: table.rows.length, display: style.display, visibility: style.visibility,
                   text: table.innerText},
    viewport: {width: innerWidth, height: innerHeight},
    scrollWidth: document.documentElement.scrollWidth,
    scripts: document.scripts.length,
    handlers: [...document.querySelectorAll('*')].filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).length,
    frames: document.querySelectorAll('iframe, frame, object, embed').length,
    javascriptLinks: [...document.querySelectorAll('a[href]')].filter(a => a.href.startsWith('javascript:')).length,
    text: document.body.innerText,
    html: document.documentElement.outerHTML,
  };
})()
"""


@pytest.mark.slow
def test_report_in_headless_chromium(tmp_path):
    chromium = _chromium()
    runs = tmp_path / "runs"
    proc = run_demo_cli("run", "demo", "--scale", "smoke", "--out", str(runs), "--threads", "1", "--quiet")
    assert proc.returncode == 0, proc.stderr
    _hostile_record(runs)
    proc = run_demo_cli("report", str(runs))
    assert proc.returncode == 0, proc.stderr
    index = runs / "index.html"

    with Browser(chromium, tmp_path / "chromium-profile") as browser:
        page = browser.new_page(width=WIDTH, height=HEIGHT)
        page.navigate(index.as_uri())
        seen = page.evaluate(_INSPECT)
        shots = [page.screenshot(tmp_path / "report-1366x768.png"),
                 page.screenshot(tmp_path / "report-full-page.png", full_page=True)]
        problems = page.problems()
    artifacts = os.environ.get("MLMYTHS_TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        for shot in shots:
            shutil.copy(shot, Path(artifacts) / shot.name)

    # it loads cleanly: no console error, no exception, no failed load, no dialog (alert() never ran)
    assert problems == [], problems
    # every figure decodes: the demo run's figures are embedded, and nothing else is an image
    demo = read_results(runs, "demo")  # the newest run: the real one
    assert demo["run_id"] != HOSTILE_RUN and demo["figures"]
    assert len(seen["images"]) == len(demo["figures"]), seen["images"]
    for img in seen["images"]:
        assert img["decoded"] and img["complete"] and img["width"] > 0 and img["height"] > 0 and img["data"], img
    # the verdict table is visible at a laptop's size, without horizontal scrolling
    table, viewport = seen["table"], seen["viewport"]
    assert viewport == {"width": WIDTH, "height": HEIGHT}
    assert table and table["tag"] == "TABLE" and table["display"] != "none" and table["visibility"] == "visible"
    assert table["width"] > 0 and table["height"] > 0 and table["rows"] >= 8  # header + the seven myths + demo
    assert 0 <= table["left"] and table["right"] <= WIDTH, table
    assert table["top"] < HEIGHT, "the overview table starts below the first screen"
    assert seen["scrollWidth"] <= WIDTH, f"the page scrolls horizontally: {seen['scrollWidth']} px wide"
    row = next(line for line in table["text"].splitlines() if line.startswith("demo\t"))
    assert demo["verdict"]["outcome"] in row and f"demo/{demo['run_id']}" in row, row
    # the hostile record: shown as text, nothing runs, nothing leaks
    assert seen["scripts"] == 0 and seen["handlers"] == 0 and seen["frames"] == 0 and seen["javascriptLinks"] == 0
    assert "<script>alert(1)</script>" in seen["text"] and "<img src=x onerror=alert(2)>" in seen["text"]
    assert seen["text"].count("not shown: outside the run directory") == 3
    assert SECRET not in seen["html"] and SECRET not in index.read_text()
    for shot in shots:
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
