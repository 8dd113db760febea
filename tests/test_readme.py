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
