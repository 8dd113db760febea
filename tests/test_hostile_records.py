"""Hostile run records (issue 19.1): the report renders every good run, lists each bad record with
its reason, reads nothing outside the run directory, and executes nothing.

Each case is a results.json (or a figure) planted under a runs directory beside one good record.
"""
from __future__ import annotations

import base64
import json
import os
import struct
import zlib
from pathlib import Path

import pytest

from conftest import run_cli
from mlmyths import records, report

REGISTRY = {"demo": "A demo myth."}
SECRET = "TOP-SECRET-CONTENT-0451"


def png_bytes(width: int = 4, height: int = 3) -> bytes:
    """A valid grey PNG."""
    raw = b"".join(b"\x00" + bytes([128] * width) for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def good_record(run_id: str = "good", **changes) -> dict:
    record = {"schema": 2, "myth": "demo", "run_id": run_id, "scale": "smoke", "seed": 0, "status": "completed",
              "verdict": {"outcome": "inconclusive", "reason": "r"},
              "claim": {"myth": "A demo myth.", "paper": "P", "paper_result": "R"}, "claims": [],
              "summary": "fine", "metrics": {"acc": 0.5}, "tables": {"t": [{"a": 1, "b": [1, 2]}]},
              "figures": ["figures/ok.png"], "notes": [], "differences": [], "config": {"k": 1},
              "env": {"python": "3"}, "started": "2026-12-06T00:00:00+00:00", "duration_s": 1.0, "error": None,
              "tasks_completed": []}
    record.update(changes)
    return record


def plant(root: Path, run_id: str, record: object | bytes | str, figures: dict[str, bytes] | None = None) -> Path:
    run_dir = root / "demo" / run_id
    (run_dir / "figures").mkdir(parents=True, exist_ok=True)
    for name, data in (figures or {"figures/ok.png": png_bytes()}).items():
        (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / name).write_bytes(data)
    path = run_dir / "results.json"
    if isinstance(record, bytes):
        path.write_bytes(record)
    elif isinstance(record, str):
        path.write_text(record)
    else:
        path.write_text(json.dumps(record))
    return run_dir


@pytest.fixture
def runs_root(tmp_path):
    root = tmp_path / "runs"
    plant(root, "good", good_record())
    outside = tmp_path / "secret.txt"
    outside.write_text(SECRET)
    return root


def render(root: Path) -> tuple[str, str, list]:
    summary, index, bad = report.write_summary(root, REGISTRY)
    return index.read_text(), summary.read_text(), bad


BAD_RECORDS = {
    "missing-myth": {k: v for k, v in good_record("missing-myth").items() if k != "myth"},
    "string-verdict": good_record("string-verdict", verdict="refuted"),
    "list-metrics": good_record("list-metrics", metrics=[1, 2]),
    "script-seed": good_record("script-seed", seed="<script>alert(1)</script>"),
    "script-duration": good_record("script-duration", duration_s="<img src=x onerror=alert(1)>"),
    "unknown-field": good_record("unknown-field", evil=True),
    "bad-outcome": good_record("bad-outcome", verdict={"outcome": "proven", "reason": "x"}),
    "bad-claim": good_record("bad-claim", claims=[{"id": "x"}]),
    "deep-config": good_record("deep-config", config=json.loads("[" * 200 + "]" * 200)),
    "nested-table-cell": good_record("nested-table-cell", tables={"t": [{"a": {"b": {"c": 1}}}]}),
    "wrong-myth-dir": good_record("wrong-myth-dir", myth="tensors"),
    "not-an-object": [1, 2, 3],
    "huge-string": good_record("huge-string", summary="x" * 60000),
}


@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_a_record_off_the_schema_is_listed_with_its_reason_and_the_rest_renders(runs_root, case):
    plant(runs_root, case, BAD_RECORDS[case])
    page, summary, bad = render(runs_root)
    assert [p.parent.name for p, _ in bad] == [case]
    reason = bad[0][1]
    assert reason and "\n" not in reason
    assert page.count('class="run"') == 1 and "fine" in page  # the good run
    assert html_free_of_injection(page)
    assert case in summary and "Records that could not be read" in summary


def html_free_of_injection(page: str) -> bool:
    return "<script>" not in page and "onerror=" not in page.replace("onerror=alert(1)&gt;", "")


@pytest.mark.parametrize("content", [b"", b"{\"schema\": 2, \"myth\": \"de", b"\xff\xfe\x00garbage", b"NaN",
                                     b'{"schema": 2, "myth": "demo", "run_id": "x", "status": "completed", "seed": NaN}',
                                     b"[" * 100_000])
def test_truncated_garbage_and_non_json_records_are_named_not_skipped_silently(runs_root, content):
    plant(runs_root, "broken", content)
    page, summary, bad = render(runs_root)
    assert len(bad) == 1 and bad[0][0].parent.name == "broken"
    assert bad[0][1].startswith(("unreadable", "JSON nested", "$"))
    assert "broken/results.json" in page


def test_a_huge_record_is_refused_unread(runs_root):
    run_dir = plant(runs_root, "huge", good_record("huge"))
    with open(run_dir / "results.json", "r+b") as f:  # sparse: no disk used, nothing read
        f.truncate(records.MAX_RECORD_BYTES + 1)
    _, _, bad = render(runs_root)
    assert bad[0][1].startswith(f"{records.MAX_RECORD_BYTES + 1} bytes, larger than")


def test_a_results_link_out_of_the_runs_directory_is_not_followed(runs_root, tmp_path):
    (runs_root / "demo" / "linked").mkdir(parents=True)
    (runs_root / "demo" / "linked" / "results.json").symlink_to(tmp_path / "secret.txt")
    page, _, bad = render(runs_root)
    assert bad[0][1] == "a link that leaves the runs directory"
    assert SECRET not in page


@pytest.mark.parametrize("figure,why", [
    ("../../../secret.txt", "outside the run directory"),
    ("/proc/self/environ", "outside the run directory"),
    ("/dev/zero", "outside the run directory"),
    ("figures/link.png", "outside the run directory"),
    ("figures/fake.png", "not a PNG file"),
    ("figures/dir.png", "not a regular file"),
    ("figures/missing.png", "missing"),
    ("figures/huge.png", "larger than 8 MB"),
])
def test_figures_are_embedded_only_when_they_are_bounded_pngs_inside_the_run(runs_root, tmp_path, figure, why):
    run_dir = plant(runs_root, "figs", good_record("figs", figures=["figures/ok.png", figure]))
    (run_dir / "figures" / "link.png").symlink_to(tmp_path / "secret.txt")
    (run_dir / "figures" / "fake.png").write_text(SECRET)
    (run_dir / "figures" / "dir.png").mkdir()
    with open(run_dir / "figures" / "huge.png", "wb") as f:
        f.write(png_bytes())
        f.truncate(report.MAX_FIGURE_BYTES + 1)
    os.environ["MLMYTHS_TEST_CANARY"] = SECRET  # what /proc/self/environ would leak
    try:
        page, _, bad = render(runs_root)
    finally:
        del os.environ["MLMYTHS_TEST_CANARY"]
    assert bad == []
    assert SECRET not in page and base64.b64encode(SECRET.encode()).decode()[:16] not in page
    assert f"not shown: {why}" in page
    assert page.count("data:image/png;base64,") == 2  # ok.png of the good run and of this one
    path, reason = report.figure_path(run_dir, figure)
    assert path is None and reason == why


def test_every_field_is_escaped_in_html(runs_root):
    evil = "<script>alert('x')</script>"
    plant(runs_root, "evil", good_record(
        evil, scale=evil, summary=evil, notes=[evil], differences=[evil],
        metrics={evil: evil}, tables={evil: [{evil: evil}]}, env={evil: evil}, config={evil: evil},
        verdict={"outcome": "refuted", "reason": evil}, error=evil,
        claim={"myth": evil, "paper": evil, "paper_result": evil},
        claims=[{"id": "c", "key": True, "statement": evil, "paper_value": evil, "paper_source": evil,
                 "statistic": evil, "justification": evil, "estimate": 1.0, "ci": [0.5, 1.5], "confidence": 0.95,
                 "n": 3, "method": evil, "unit": evil, "test": "at_least", "threshold": 0.1,
                 "outcome": "reproduced", "reason": evil}]))
    page, _, bad = render(runs_root)
    assert bad == []
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_our_validator_agrees_with_a_real_json_schema_validator(runs_root):
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is in the dev extra")
    schema = records.schema()
    cases = [good_record(), *BAD_RECORDS.values()]
    for case in cases:
        ours = not records.errors(case)
        try:
            jsonschema.validate(case, schema, cls=jsonschema.Draft202012Validator)
            theirs = True
        except jsonschema.ValidationError:
            theirs = False
        except RecursionError:  # pragma: no cover - jsonschema recurses; our validator does not
            theirs = False
        if case.get("myth") == "tensors" if isinstance(case, dict) else False:
            continue  # directory/myth mismatch is a report rule, not a schema one
        if isinstance(case, dict) and case.get("run_id") == "deep-config":
            assert not ours  # depth bound: ours refuses what plain JSON Schema would accept
            continue
        assert ours == theirs, (case if isinstance(case, list) else case.get("run_id"), records.errors(case))


def test_report_command_lists_bad_records_and_exits_0_with_good_ones(runs_root, tmp_path):
    plant(runs_root, "broken", b"{")
    proc = run_cli("report", str(runs_root))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("\n") == 1 and "skipped" in proc.stderr and "broken" in proc.stderr
    only_bad = tmp_path / "only-bad"
    plant(only_bad, "broken", b"{")
    proc = run_cli("report", str(only_bad))
    assert proc.returncode == 2 and "no readable runs" in proc.stderr and "Traceback" not in proc.stderr
