"""The README promises two commands; CI must run the same test command."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_ci_runs_the_readme_test_command():
    blocks = bash_blocks((REPO / "README.md").read_text())
    test_command = next(b for b in blocks if "pytest" in b and "\n" not in b)
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert test_command in ci


def test_readme_main_command_runs_all_then_reports():
    blocks = bash_blocks((REPO / "README.md").read_text())
    main = next(b for b in blocks if "run all" in b)
    assert "torch==2.13.0" in main and main.endswith("mlmyths report")


def test_findings_table_comes_from_the_committed_records():
    """Every number of the README's findings table is the committed small run's (docs/results/small),
    and each row says its caveat; regenerate with `python -m mlmyths.report README.md docs/results/small`."""
    from mlmyths import myths, report

    records = report.committed_records(REPO / "docs" / "results" / "small")
    assert set(records) == set(myths.MYTHS), "docs/results/small/ holds one record per myth"
    assert all(r["scale"] == "small" and r["status"] == "completed" for r in records.values())
    block = report.findings_block((REPO / "README.md").read_text(encoding="utf-8"))
    caveats = report.caveats_of(block)
    assert set(caveats) == set(myths.MYTHS) and all(len(c) > 10 for c in caveats.values())
    assert block == report.findings_table(records, caveats)


def test_findings_table_keeps_caveats_and_takes_numbers_from_records():
    from mlmyths import report

    claim = {"id": "c", "key": True, "estimate": 1.5, "ci": [1.0, 2.0], "test": "at_least", "threshold": 1.0,
             "outcome": "reproduced"}
    other = dict(claim, id="d", key=False, estimate=None, ci=None, outcome="not_tested")
    table = report.findings_table({"m": {"verdict": {"outcome": "refuted"}, "claims": [claim, other], "duration_s": 90}},
                                  {"m": "a miniature"})
    assert "| `m` | **refuted** (1.5 min) | key: `c` 1.5 [1, 2] vs ≥1: reproduced. Also: `d` not tested | a miniature |" in table
    assert report.caveats_of(table) == {"m": "a miniature"}
    assert report.findings_block("x\n" + table + "\ny") == table
