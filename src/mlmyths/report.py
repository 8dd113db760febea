"""Reports: ``report.md`` per run; ``index.html`` and ``summary.md`` over a runs directory.

The HTML index is self-contained (figures embedded as data URIs) so it can be
mailed or opened from anywhere.
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from mlmyths.runs import atomic_write_text, read_json

MAX_TABLE_ROWS = 60
_BADGE = {"refuted": "#2e7d32", "supported": "#c62828", "inconclusive": "#ef6c00"}


def fmt(value: Any) -> str:
    """Numbers to 4 significant digits, None to an em dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _status_text(record: dict[str, Any]) -> str:
    status = record.get("status")
    if status == "completed" and record.get("verdict"):
        return record["verdict"]["outcome"]
    if status == "running":
        return "running (or killed)"
    return str(status)


# -- markdown --------------------------------------------------------------------------------


def _md_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "_(empty)_\n"
    cols: list[str] = []
    for row in rows:
        cols.extend(c for c in row if c not in cols)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows[:MAX_TABLE_ROWS]:
        lines.append("| " + " | ".join(fmt(row.get(c)).replace("|", "\\|") for c in cols) + " |")
    if len(rows) > MAX_TABLE_ROWS:
        lines.append(f"\n_{len(rows) - MAX_TABLE_ROWS} more rows in results.json_")
    return "\n".join(lines) + "\n"


def render_run_markdown(record: dict[str, Any], link_prefix: str = "") -> str:
    """The Markdown report of one run (``link_prefix`` is prepended to figure paths)."""
    claim = record.get("claim") or {}
    out = [f"# `{record['myth']}`: {claim.get('myth', '')}\n",
           f"Run `{record.get('run_id')}` · scale `{record.get('scale')}` · seed {record.get('seed')} · "
           f"status **{record.get('status')}** · {fmt(record.get('duration_s'))} s\n"]
    verdict = record.get("verdict")
    if verdict:
        out.append(f"**Verdict: {verdict['outcome'].upper()}.** {verdict['reason']}\n")
    elif record.get("error"):
        out.append(f"**No verdict** ({record.get('status')}): {record['error']}\n")
    out += ["## The paper\n", f"{claim.get('paper', '')}\n", f"> {claim.get('paper_result', '')}\n"]
    out.append("## Our measurement\n")
    if record.get("summary"):
        out.append(record["summary"] + "\n")
    if record.get("metrics"):
        out.append(_md_table([{"metric": k, "value": v} for k, v in record["metrics"].items()]))
    for name, rows in (record.get("tables") or {}).items():
        out += [f"\n### {name}\n", _md_table(rows)]
    for fig in record.get("figures") or []:
        out.append(f"\n![{Path(fig).stem}]({link_prefix}{fig})\n")
    if record.get("notes"):
        out.append("\n## Notes\n")
        out += [f"- {n}" for n in record["notes"]]
        out.append("")
    if record.get("tasks_completed") and record.get("status") != "completed":
        out.append(f"\nFinished tasks: {', '.join(record['tasks_completed'])}\n")
    out += ["\n## Config\n", "```json", json.dumps(record.get("config"), indent=2), "```",
            "\n## Environment\n", _md_table([{"key": k, "value": v} for k, v in (record.get("env") or {}).items()])]
    return "\n".join(out)


def write_run_report(run_dir: Path, record: dict[str, Any]) -> Path:
    path = Path(run_dir) / "report.md"
    atomic_write_text(path, render_run_markdown(record))
    return path


# -- over a directory of runs --------------------------------------------------------------------


def collect(root: Path) -> list[tuple[Path, dict[str, Any]]]:
    """All runs under ``root`` (``root/MYTH/RUN/results.json``), oldest first; unreadable ones skipped."""
    runs = []
    for path in sorted(Path(root).glob("*/*/results.json")):
        try:
            record = read_json(path)
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record.get("schema") == 1:
            runs.append((path.parent, record))
    runs.sort(key=lambda r: (r[1].get("started") or "", r[0].name))
    return runs


def latest_by_myth(runs: list[tuple[Path, dict[str, Any]]]) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Per myth, the newest completed run (else the newest run of any status)."""
    best: dict[str, tuple[Path, dict[str, Any]]] = {}
    for run_dir, record in runs:
        myth = record.get("myth")
        current = best.get(myth)
        if current is None or record.get("status") == "completed" or current[1].get("status") != "completed":
            best[myth] = (run_dir, record)
    return best


def _overview_rows(root: Path, runs: list[tuple[Path, dict[str, Any]]]) -> list[dict[str, Any]]:
    from mlmyths.myths import MYTHS

    latest = latest_by_myth(runs)
    rows = []
    for myth_id, info in MYTHS.items():
        if myth_id in latest:
            run_dir, record = latest[myth_id]
            verdict = record.get("verdict") or {}
            rows.append({"myth": myth_id, "claim": info.myth, "verdict": _status_text(record),
                         "reason": verdict.get("reason") or record.get("error") or "",
                         "run": run_dir.relative_to(root).as_posix(), "scale": record.get("scale")})
        else:
            rows.append({"myth": myth_id, "claim": info.myth, "verdict": "not run", "reason": "", "run": "",
                         "scale": ""})
    return rows


def write_summary(root: Path) -> tuple[Path, Path]:
    """Write ``root/summary.md`` and ``root/index.html``; return their paths."""
    root = Path(root)
    runs = collect(root)
    overview = _overview_rows(root, runs)
    md = ["# mlmyths report\n", f"{len(runs)} run(s) under `{root}`.\n", "## The seven myths\n",
          _md_table([{k: r[k] for k in ("myth", "claim", "verdict", "reason", "run")} for r in overview]),
          "\n## Runs\n"]
    for run_dir, record in reversed(runs):
        prefix = run_dir.relative_to(root).as_posix() + "/"
        body = render_run_markdown(record, link_prefix=prefix).replace("\n# ", "\n### ", 1)
        md += ["\n---\n", "#" + body if body.startswith("# ") else body]
    summary = root / "summary.md"
    atomic_write_text(summary, "\n".join(md))
    index = root / "index.html"
    atomic_write_text(index, render_html(root, overview, runs))
    return summary, index


# -- HTML ---------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}td,th{border:1px solid #ddd;padding:.25em .55em;text-align:left;vertical-align:top}
th{background:#f5f5f5}.badge{color:#fff;border-radius:4px;padding:.1em .5em;font-weight:600;white-space:nowrap}
.run{border-top:2px solid #eee;margin-top:2em;padding-top:.5em}img{max-width:100%;border:1px solid #eee;margin:.4em 0}
blockquote{border-left:4px solid #ccc;margin:.5em 0;padding:.2em .8em;color:#555}details{margin:.4em 0}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.85em}.muted{color:#777}
"""


def _badge(text: str) -> str:
    color = _BADGE.get(text, "#757575")
    return f'<span class="badge" style="background:{color}">{html.escape(text)}</span>'


def _html_table(rows: list[dict[str, Any]], *, raw_cols: tuple[str, ...] = ()) -> str:
    if not rows:
        return "<p class='muted'>(empty)</p>"
    cols: list[str] = []
    for row in rows:
        cols.extend(c for c in row if c not in cols)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for row in rows[:MAX_TABLE_ROWS]:
        cells = "".join(f"<td>{row.get(c, '') if c in raw_cols else html.escape(fmt(row.get(c)))}</td>" for c in cols)
        body.append(f"<tr>{cells}</tr>")
    more = (f"<p class='muted'>{len(rows) - MAX_TABLE_ROWS} more rows in results.json</p>"
            if len(rows) > MAX_TABLE_ROWS else "")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>{more}"


def _embed(path: Path) -> str:
    if not path.exists():
        return f"<p class='muted'>missing figure {html.escape(path.name)}</p>"
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _run_html(run_dir: Path, record: dict[str, Any], anchor: str) -> str:
    claim = record.get("claim") or {}
    status = _status_text(record)
    verdict = record.get("verdict")
    parts = [f'<div class="run" id="{anchor}"><h2>{html.escape(record["myth"])}: {html.escape(claim.get("myth", ""))} '
             f'{_badge(status)}</h2>',
             f"<p class='muted'>run {html.escape(str(record.get('run_id')))} · scale {html.escape(str(record.get('scale')))}"
             f" · seed {record.get('seed')} · {fmt(record.get('duration_s'))} s</p>"]
    if verdict:
        parts.append(f"<p><b>Verdict: {html.escape(verdict['outcome'])}.</b> {html.escape(verdict['reason'])}</p>")
    elif record.get("error"):
        parts.append(f"<p><b>No verdict</b> ({html.escape(str(record.get('status')))}): {html.escape(record['error'])}</p>")
    parts.append(f"<h3>The paper</h3><p>{html.escape(claim.get('paper', ''))}</p>"
                 f"<blockquote>{html.escape(claim.get('paper_result', ''))}</blockquote>")
    parts.append("<h3>Our measurement</h3>")
    if record.get("summary"):
        parts.append(f"<p>{html.escape(record['summary'])}</p>")
    if record.get("metrics"):
        parts.append(_html_table([{"metric": k, "value": v} for k, v in record["metrics"].items()]))
    for fig in record.get("figures") or []:
        parts.append(_embed(run_dir / fig))
    for name, rows in (record.get("tables") or {}).items():
        parts.append(f"<details><summary>table: {html.escape(name)} ({len(rows)} rows)</summary>{_html_table(rows)}</details>")
    if record.get("notes"):
        parts.append("<h3>Notes</h3><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in record["notes"]) + "</ul>")
    parts.append("<details><summary>config</summary><pre>" + html.escape(json.dumps(record.get("config"), indent=2))
                 + "</pre></details>")
    parts.append("<details><summary>environment</summary>"
                 + _html_table([{"key": k, "value": v} for k, v in (record.get("env") or {}).items()]) + "</details>")
    parts.append("</div>")
    return "\n".join(parts)


def render_html(root: Path, overview: list[dict[str, Any]], runs: list[tuple[Path, dict[str, Any]]]) -> str:
    anchors = {run_dir: f"run-{i}" for i, (run_dir, _) in enumerate(runs)}
    by_rel = {run_dir.relative_to(root).as_posix(): anchors[run_dir] for run_dir, _ in runs}
    rows = []
    for r in overview:
        link = f'<a href="#{by_rel[r["run"]]}">{html.escape(r["run"])}</a>' if r["run"] in by_rel else ""
        rows.append({"myth": html.escape(r["myth"]), "claim": html.escape(r["claim"]), "verdict": _badge(r["verdict"]),
                     "reason": html.escape(r["reason"]), "run": link})
    body = "\n".join(_run_html(run_dir, record, anchors[run_dir]) for run_dir, record in reversed(runs))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>mlmyths report</title><style>{_CSS}</style></head>"
            f"<body><h1>mlmyths report</h1><p class='muted'>{len(runs)} run(s) under {html.escape(str(root))}</p>"
            f"<h2>The seven myths</h2>{_html_table(rows, raw_cols=('myth', 'claim', 'verdict', 'reason', 'run'))}"
            f"{body}</body></html>")
