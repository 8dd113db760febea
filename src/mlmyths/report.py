"""Reports, a view of run records: ``report.md`` per run; ``index.html`` and ``summary.md`` over a runs directory.

Records are read through :func:`mlmyths.records.read_record` (schema-checked, size- and
depth-bounded); a record that fails is listed with its reason and the others render. Figures
are embedded only when they are PNG files of bounded size inside their own run directory, so a
record cannot make the report read anything else. Every value that reaches HTML is escaped.
The HTML index is self-contained (figures embedded as data URIs) so it can be mailed or opened
from anywhere. The report knows nothing of the experiments: the caller passes the registry
(myth id -> myth sentence) for the overview.
"""
from __future__ import annotations

import base64
import html
import json
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlmyths.files import atomic_write_text
from mlmyths.records import RecordError, read_record

MAX_TABLE_ROWS = 60
MAX_FIGURE_BYTES = 8 * 2**20  #: a figure larger than this is not embedded
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_BADGE = {"refuted": "#2e7d32", "supported": "#c62828", "inconclusive": "#ef6c00", "reproduced": "#2e7d32",
          "contradicted": "#c62828", "not_tested": "#757575"}
_TEST_WORDS = {"at_least": "≥", "at_most": "≤", "within": "within ±"}


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
        return str(record["verdict"]["outcome"])
    if status == "running":
        return "running (or killed)"
    return str(status)


def claim_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The claims table: paper | ours with interval | test | outcome (one row per claim)."""
    rows = []
    for c in record.get("claims") or []:
        ci = c.get("ci")
        ours = "—" if c.get("estimate") is None else (
            f"{fmt(c['estimate'])} [{fmt(ci[0])}, {fmt(ci[1])}]" if ci else fmt(c["estimate"]))
        rows.append({
            "claim": c["id"] + (" (key)" if c.get("key") else ""),
            "paper": f"{c['statement']} ({c['paper_value']}; {c['paper_source']})",
            "ours": ours + (f" ({c['confidence']:.0%}, {c.get('unit')})" if c.get("estimate") is not None else ""),
            "test": f"{c.get('statistic', '')} {_TEST_WORDS.get(c['test'], c['test'])} {fmt(c['threshold'])}".strip(),
            "outcome": c["outcome"],
        })
    return rows


# -- markdown --------------------------------------------------------------------------------


def _md_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "_(empty)_\n"
    cols: list[str] = []
    for row in rows:
        cols.extend(c for c in row if c not in cols)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows[:MAX_TABLE_ROWS]:
        lines.append("| " + " | ".join(fmt(row.get(c)).replace("|", "\\|").replace("\n", " ") for c in cols) + " |")
    if len(rows) > MAX_TABLE_ROWS:
        lines.append(f"\n_{len(rows) - MAX_TABLE_ROWS} more rows in results.json_")
    return "\n".join(lines) + "\n"


def render_run_markdown(record: dict[str, Any], link_prefix: str = "") -> str:
    """The Markdown report of one run (``link_prefix`` is prepended to figure paths)."""
    claim = record.get("claim") or {}
    out = [f"# `{record.get('myth')}`: {claim.get('myth', '')}\n",
           f"Run `{record.get('run_id')}` · scale `{record.get('scale')}` · seed {record.get('seed')} · "
           f"status **{record.get('status')}** · {fmt(record.get('duration_s'))} s\n"]
    verdict = record.get("verdict")
    if verdict:
        out.append(f"**Verdict: {verdict['outcome'].upper()}.** {verdict['reason']}\n")
    elif record.get("error"):
        out.append(f"**No verdict** ({record.get('status')}): {record['error']}\n")
    out += ["## The paper\n", f"{claim.get('paper', '')}\n", f"> {claim.get('paper_result', '')}\n"]
    if record.get("claims"):
        out += ["## Claims\n", "The verdict is `refuted` iff every key claim is reproduced, `supported` iff some key "
                "claim is contradicted, `inconclusive` otherwise (docs/VERDICTS.md).\n", _md_table(claim_rows(record))]
    if record.get("differences"):
        out.append("\n## What differs from the paper\n")
        out += [f"- {d}" for d in record["differences"]]
        out.append("")
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


def collect(root: Path) -> tuple[list[tuple[Path, dict[str, Any]]], list[tuple[Path, str]]]:
    """Runs under ``root`` (``root/MYTH/RUN/results.json``), oldest first, and the records that
    could not be used, each with the reason."""
    good: list[tuple[Path, dict[str, Any]]] = []
    bad: list[tuple[Path, str]] = []
    base = Path(root).resolve()
    for path in sorted(Path(root).glob("*/*/results.json")):
        if path.is_symlink() or base not in path.resolve().parents:
            bad.append((path, "a link that leaves the runs directory"))
            continue
        try:
            record = read_record(path)
        except RecordError as exc:
            bad.append((path, str(exc)))
            continue
        if record["myth"] != path.parent.parent.name:
            bad.append((path, f"records myth {record['myth']!r} but lies under {path.parent.parent.name!r}"))
            continue
        good.append((path.parent, record))
    good.sort(key=lambda r: (r[1].get("started") or "", r[0].name))
    return good, bad


def latest_by_myth(runs: list[tuple[Path, dict[str, Any]]]) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Per myth, the newest completed run (else the newest run of any status)."""
    best: dict[str, tuple[Path, dict[str, Any]]] = {}
    for run_dir, record in runs:
        myth = record["myth"]
        current = best.get(myth)
        if current is None or record.get("status") == "completed" or current[1].get("status") != "completed":
            best[myth] = (run_dir, record)
    return best


def _overview_rows(root: Path, runs: list[tuple[Path, dict[str, Any]]], registry: Mapping[str, str]
                   ) -> list[dict[str, Any]]:
    latest = latest_by_myth(runs)
    rows = []
    for myth_id in [*registry, *sorted(set(latest) - set(registry))]:
        sentence = registry.get(myth_id, "(not a registered myth)")
        if myth_id in latest:
            run_dir, record = latest[myth_id]
            verdict = record.get("verdict") or {}
            rows.append({"myth": myth_id, "claim": sentence, "verdict": _status_text(record),
                         "reason": verdict.get("reason") or record.get("error") or "",
                         "run": run_dir.relative_to(root).as_posix(), "scale": record.get("scale")})
        else:
            rows.append({"myth": myth_id, "claim": sentence, "verdict": "not run", "reason": "", "run": "", "scale": ""})
    return rows


def write_summary(root: Path, registry: Mapping[str, str]) -> tuple[Path, Path, list[tuple[Path, str]]]:
    """Write ``root/summary.md`` and ``root/index.html`` over every run under ``root``; return their
    paths and the records that could not be rendered (path, reason). ``registry``: myth id -> myth."""
    root = Path(root)
    runs, bad = collect(root)
    overview = _overview_rows(root, runs, registry)
    md = ["# mlmyths report\n", f"{len(runs)} run(s) under `{root}`.\n", "## The seven myths\n",
          _md_table([{k: r[k] for k in ("myth", "claim", "verdict", "reason", "run")} for r in overview])]
    if bad:
        md += ["\n## Records that could not be read\n",
               _md_table([{"record": p.relative_to(root).as_posix(), "reason": why} for p, why in bad])]
    md.append("\n## Runs\n")
    for run_dir, record in reversed(runs):
        prefix = run_dir.relative_to(root).as_posix() + "/"
        body = render_run_markdown(record, link_prefix=prefix).replace("\n# ", "\n### ", 1)
        md += ["\n---\n", "#" + body if body.startswith("# ") else body]
    summary = root / "summary.md"
    atomic_write_text(summary, "\n".join(md))
    index = root / "index.html"
    atomic_write_text(index, render_html(root, overview, runs, bad))
    return summary, index, bad


# -- HTML ---------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}td,th{border:1px solid #ddd;padding:.25em .55em;text-align:left;vertical-align:top}
th{background:#f5f5f5}.badge{color:#fff;border-radius:4px;padding:.1em .5em;font-weight:600;white-space:nowrap}
.run{border-top:2px solid #eee;margin-top:2em;padding-top:.5em}img{max-width:100%;border:1px solid #eee;margin:.4em 0}
blockquote{border-left:4px solid #ccc;margin:.5em 0;padding:.2em .8em;color:#555}details{margin:.4em 0}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.85em}.muted{color:#777}
"""


def _esc(value: Any) -> str:
    return html.escape(fmt(value))


def _badge(text: str) -> str:
    color = _BADGE.get(text, "#757575")
    return f'<span class="badge" style="background:{color}">{html.escape(text)}</span>'


def _html_table(rows: list[dict[str, Any]], *, raw_cols: tuple[str, ...] = ()) -> str:
    """``raw_cols`` hold HTML the caller built (and escaped) itself."""
    if not rows:
        return "<p class='muted'>(empty)</p>"
    cols: list[str] = []
    for row in rows:
        cols.extend(c for c in row if c not in cols)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for row in rows[:MAX_TABLE_ROWS]:
        cells = "".join(f"<td>{row.get(c, '') if c in raw_cols else _esc(row.get(c))}</td>" for c in cols)
        body.append(f"<tr>{cells}</tr>")
    more = (f"<p class='muted'>{len(rows) - MAX_TABLE_ROWS} more rows in results.json</p>"
            if len(rows) > MAX_TABLE_ROWS else "")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>{more}"


def figure_path(run_dir: Path, figure: str) -> tuple[Path | None, str]:
    """The file a record's ``figures`` entry names, if it is safe to embed: a regular PNG file of at
    most :data:`MAX_FIGURE_BYTES` inside ``run_dir`` (no ``..``, no absolute path, no link out).
    Otherwise None and the reason."""
    base = Path(run_dir).resolve()
    rel = Path(figure)
    if rel.is_absolute() or ".." in rel.parts:
        return None, "outside the run directory"
    path = (base / rel).resolve()
    if base not in path.parents:
        return None, "outside the run directory"
    try:
        info = os.stat(path)
    except OSError:
        return None, "missing"
    if not stat.S_ISREG(info.st_mode):
        return None, "not a regular file"
    if info.st_size > MAX_FIGURE_BYTES:
        return None, f"larger than {MAX_FIGURE_BYTES // 2**20} MB"
    with open(path, "rb") as f:
        if f.read(len(_PNG_MAGIC)) != _PNG_MAGIC:
            return None, "not a PNG file"
    return path, ""


def _embed(run_dir: Path, figure: str) -> str:
    path, why = figure_path(run_dir, figure)
    if path is None:
        return f"<p class='muted'>figure {html.escape(figure)} not shown: {html.escape(why)}</p>"
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _claims_html(record: dict[str, Any]) -> str:
    rows = claim_rows(record)
    if not rows:
        return ""
    for r in rows:
        r["outcome"] = _badge(str(r["outcome"]))
        for k in ("claim", "paper", "ours", "test"):
            r[k] = html.escape(str(r[k]))
    return "<h3>Claims</h3>" + _html_table(rows, raw_cols=("claim", "paper", "ours", "test", "outcome"))


def _run_html(run_dir: Path, record: dict[str, Any], anchor: str) -> str:
    claim = record.get("claim") or {}
    verdict = record.get("verdict")
    parts = [f'<div class="run" id="{html.escape(anchor)}"><h2>{html.escape(record["myth"])}: '
             f'{html.escape(claim.get("myth", ""))} {_badge(_status_text(record))}</h2>',
             f"<p class='muted'>run {_esc(record.get('run_id'))} · scale {_esc(record.get('scale'))}"
             f" · seed {_esc(record.get('seed'))} · {_esc(record.get('duration_s'))} s</p>"]
    if verdict:
        parts.append(f"<p><b>Verdict: {html.escape(verdict['outcome'])}.</b> {html.escape(verdict['reason'])}</p>")
    elif record.get("error"):
        parts.append(f"<p><b>No verdict</b> ({_esc(record.get('status'))}): {html.escape(record['error'])}</p>")
    parts.append(f"<h3>The paper</h3><p>{html.escape(claim.get('paper', ''))}</p>"
                 f"<blockquote>{html.escape(claim.get('paper_result', ''))}</blockquote>")
    parts.append(_claims_html(record))
    if record.get("differences"):
        parts.append("<h3>What differs from the paper</h3><ul>"
                     + "".join(f"<li>{html.escape(d)}</li>" for d in record["differences"]) + "</ul>")
    parts.append("<h3>Our measurement</h3>")
    if record.get("summary"):
        parts.append(f"<p>{html.escape(record['summary'])}</p>")
    if record.get("metrics"):
        parts.append(_html_table([{"metric": k, "value": v} for k, v in record["metrics"].items()]))
    for fig in record.get("figures") or []:
        parts.append(_embed(run_dir, fig))
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


def render_html(root: Path, overview: list[dict[str, Any]], runs: list[tuple[Path, dict[str, Any]]],
                bad: Sequence[tuple[Path, str]] = ()) -> str:
    anchors = {run_dir: f"run-{i}" for i, (run_dir, _) in enumerate(runs)}
    by_rel = {run_dir.relative_to(root).as_posix(): anchors[run_dir] for run_dir, _ in runs}
    rows = []
    for r in overview:
        link = f'<a href="#{by_rel[r["run"]]}">{html.escape(r["run"])}</a>' if r["run"] in by_rel else ""
        rows.append({"myth": html.escape(r["myth"]), "claim": html.escape(r["claim"]), "verdict": _badge(r["verdict"]),
                     "reason": html.escape(r["reason"]), "run": link})
    broken = ""
    if bad:
        broken = ("<h2>Records that could not be read</h2>"
                  + _html_table([{"record": p.relative_to(root).as_posix(), "reason": why} for p, why in bad]))
    body = "\n".join(_run_html(run_dir, record, anchors[run_dir]) for run_dir, record in reversed(runs))
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>mlmyths report</title>"
            f"<style>{_CSS}</style></head>"
            f"<body><h1>mlmyths report</h1><p class='muted'>{len(runs)} run(s) under {html.escape(str(root))}</p>"
            f"<h2>The seven myths</h2>{_html_table(rows, raw_cols=('myth', 'claim', 'verdict', 'reason', 'run'))}"
            f"{broken}{body}</body></html>")


# -- the README's findings table -------------------------------------------------------------------------

FINDINGS_START, FINDINGS_END = "<!-- findings:start -->", "<!-- findings:end -->"


def claim_brief(c: dict[str, Any]) -> str:
    """One claim in a few words: ``id: estimate [low, high] vs rule -> outcome``."""
    rule = f"{_TEST_WORDS.get(c['test'], c['test'])}{fmt(float(c['threshold']))}"
    if c.get("estimate") is None or not c.get("ci"):
        return f"`{c['id']}` not tested"
    low, high = c["ci"]
    return f"`{c['id']}` {fmt(c['estimate'])} [{fmt(low)}, {fmt(high)}] vs {rule}: {c['outcome'].replace('_', ' ')}"


def findings_rows(records: Mapping[str, dict[str, Any]]) -> list[tuple[str, str, str]]:
    """``(myth, verdict, key claims; secondary claims)`` per record, every number taken from it."""
    rows = []
    for myth, record in records.items():
        claims = record.get("claims") or []
        key = "; ".join(claim_brief(c) for c in claims if c.get("key"))
        other = "; ".join(claim_brief(c) for c in claims if not c.get("key"))
        verdict = (record.get("verdict") or {}).get("outcome", record.get("status", "?"))
        rows.append((myth, verdict, f"key: {key}" + (f". Also: {other}" if other else "")))
    return rows


def findings_table(records: Mapping[str, dict[str, Any]], caveats: Mapping[str, str]) -> str:
    """The README's findings table between its markers: per myth the verdict and every claim's
    estimate, interval, test and outcome as the record has them, and the hand-written caveat."""
    lines = [FINDINGS_START, "| myth | verdict (run time) | the claims, from the committed record | caveat |",
             "|---|---|---|---|"]
    for myth, verdict, text in findings_rows(records):
        seconds = records[myth].get("duration_s")
        took = f" ({seconds / 60:.1f} min)" if isinstance(seconds, (int, float)) else ""
        lines.append(f"| `{myth}` | **{verdict}**{took} | {text.replace('|', '/')} | {caveats.get(myth, '')} |")
    return "\n".join([*lines, FINDINGS_END])


def findings_block(text: str) -> str:
    """The findings block of a README (markers included); ValueError when it has none."""
    start, end = text.find(FINDINGS_START), text.find(FINDINGS_END)
    if start < 0 or end < start:
        raise ValueError(f"no {FINDINGS_START} ... {FINDINGS_END} block")
    return text[start:end + len(FINDINGS_END)]


def caveats_of(block: str) -> dict[str, str]:
    """``myth -> caveat`` from the last cell of each row of a findings block."""
    out = {}
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) == 4 and cells[0].startswith("`"):
            out[cells[0].strip("`")] = cells[3]
    return out


def committed_records(directory: Path) -> dict[str, dict[str, Any]]:
    """``myth -> record`` of every ``MYTH.json`` in ``directory`` (read and schema-checked), by name."""
    return {p.stem: read_record(p) for p in sorted(directory.glob("*.json"))}


def update_findings(readme: Path, directory: Path) -> None:
    """Rewrite ``readme``'s findings block from the records in ``directory``, keeping its caveats::

        python -m mlmyths.report README.md docs/results/small
    """
    text = readme.read_text(encoding="utf-8")
    block = findings_block(text)
    atomic_write_text(readme, text.replace(block, findings_table(committed_records(directory), caveats_of(block))))


if __name__ == "__main__":
    import sys

    update_findings(Path(sys.argv[1]), Path(sys.argv[2]))
