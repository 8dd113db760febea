"""The documentation site: it builds with ``mkdocs build --strict``, every ```python example on its
pages runs, every results.json field is documented, and the docstring translation for
mkdocstrings (docs/_ext/griffe_mlmyths.py) does what it says."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from _doc_examples import DOCS, pages, python_blocks, run_page
from conftest import skip_without

REPO = DOCS.parent
COMPONENT_PAGES = sorted((DOCS / "components").glob("*.md"))
#: pages whose examples take more than a few seconds (a Lightning Trainer; a ResNet-110 and
#: DynamicConv's C kernels built on first use; HOG + SVM classifiers; attacks)
SLOW_PAGES = {"forgetting.md", "models.md", "bias.md", "saliency.md"}


def _nav() -> list[str]:
    """The files mkdocs.yml's nav lists (read without PyYAML: one `title: file.md` per line)."""
    return re.findall(r"^\s*-\s[^:\n]+:\s*(\S+\.md)\s*$", (REPO / "mkdocs.yml").read_text(), flags=re.M)


def test_component_pages_cover_the_components_with_examples_api_and_paper():
    assert [p.stem for p in COMPONENT_PAGES] == ["bias", "forgetting", "models", "reuse", "saliency", "tensorcalc"]
    for page in COMPONENT_PAGES:
        text = page.read_text()
        assert python_blocks(page), f"{page.name} has no runnable example"
        assert re.search(r"^::: mlmyths\.", text, flags=re.M), f"{page.name} has no API block"
        assert "**The paper" in text and "](https://" in text, f"{page.name} does not cite its paper with a link"
        assert "mlmyths run " in text, f"{page.name} does not name its experiment"
        assert "## Benchmarks" in text
    models, forgetting, saliency = (DOCS / "components" / f"{n}.md" for n in ("models", "forgetting", "saliency"))
    for module in ("mlmyths.models.resnet", "mlmyths.models.normfree", "mlmyths.models.lightconv",
                   "mlmyths.models.transformer"):
        assert f"::: {module}" in models.read_text()
    assert "::: mlmyths.integrations.lightning.ForgettingCallback" in forgetting.read_text()
    for module in ("captum_adapter", "robustness"):
        assert f"::: mlmyths.saliency.{module}" in saliency.read_text()


def test_nav_lists_every_page_and_the_existing_docs():
    nav = _nav()
    for required in ("index.md", "records.md", "VERDICTS.md", "BENCHMARKS.md", "DEVELOPING.md", "changelog.md",
                     *(f"components/{p.name}" for p in COMPONENT_PAGES),
                     *(f"benchmarks/{p.name}" for p in sorted((DOCS / "benchmarks").glob("*.md")))):
        assert required in nav, f"mkdocs.yml's nav does not list {required}"
    missing = [f for f in nav if f != "VERDICTS.md" and not (DOCS / f).is_file()]  # VERDICTS.md: see the build test
    assert not missing, f"nav lists files that do not exist: {missing}"


def _schema_fields(node: dict, prefix: str = "") -> list[str]:
    out = []
    for name, sub in node.get("properties", {}).items():
        out.append(prefix + name)
        out += _schema_fields(sub, prefix + name + ".")
        if isinstance(sub.get("items"), dict):
            out += _schema_fields(sub["items"], prefix + name + "[].")
    return out


def test_every_results_json_field_is_documented():
    schema = json.loads((REPO / "src" / "mlmyths" / "schemas" / "results.schema.json").read_text())
    fields = _schema_fields(schema)
    assert len(fields) > 40, fields  # top level, verdict, claim, claims[] entries
    text = (DOCS / "records.md").read_text()
    table_names = set(re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.M))
    for field in fields:
        leaf = field.rsplit(".", 1)[-1]
        if field.count(".") == 1 and not field.startswith("claims[]"):  # verdict.outcome, claim.paper, ...
            parent = field.split(".")[0]
            row = re.search(rf"^\| `{parent}` \|.*$", text, flags=re.M)
            assert row and f"`{leaf}`" in row.group(0), f"records.md: {field} is not described in {parent}'s row"
        else:
            assert leaf in table_names, f"records.md documents no field {field!r}"
    top = {f for f in fields if "." not in f}
    claim_fields = {f.split(".")[1] for f in fields if f.startswith("claims[].")}
    assert top | claim_fields == table_names, f"records.md documents fields the schema does not have: " \
                                              f"{sorted(table_names - top - claim_fields)}"


@pytest.mark.parametrize("page", [pytest.param(p, id=p.relative_to(DOCS).as_posix(),
                                               marks=[pytest.mark.slow] if p.name in SLOW_PAGES else [])
                                  for p in pages() if python_blocks(p)])
def test_examples_on_the_page_run(page, tmp_path, monkeypatch):
    """Each page's ```python blocks, in order, in one namespace, in an empty directory, on the CPU."""
    monkeypatch.chdir(tmp_path)
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    try:
        with warnings.catch_warnings():  # Lightning, for one, changes the warning filters
            assert run_page(page) >= 1
    finally:  # an example must not change the test process for the tests after it
        torch.set_default_dtype(dtype)
        torch.set_num_threads(threads)


def test_the_example_runner_reports_a_failing_block_at_its_page_line(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# A page\n\n```python\nx = 1\n```\n\ntext\n\n```python\nassert x == 2, 'x is 1'\n```\n")
    assert [line for line, _ in python_blocks(page)] == [4, 10]
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("_doc_examples.py")), str(page)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 1
    assert "FAILED page.md" in proc.stdout and f'File "{page}", line 10' in proc.stderr and "x is 1" in proc.stderr


# -- the site ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path):
    skip_without("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python", extra="docs")
    assert (DOCS / "VERDICTS.md").is_file(), (
        "docs/VERDICTS.md is missing: the site includes it (python -m mlmyths.myths.verdicts docs/VERDICTS.md)")
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "mkdocs.yml"),
                           "-d", str(site)], capture_output=True, text=True, timeout=600, cwd=REPO,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    for page in ("tensorcalc", "bias", "reuse", "forgetting", "models", "saliency"):
        html = (site / "components" / page / "index.html").read_text()
        assert f'id="mlmyths.{page}' in html or 'id="mlmyths.models.' in html, f"{page}: no API rendered"
        assert "::: mlmyths" not in html and "--8&lt;--" not in html and "--8<--" not in html
    reuse = (site / "components" / "reuse" / "index.html").read_text()
    assert 'id="mlmyths.reuse.reusable.ReusableHoldout"' in reuse
    assert "38.6x" in reuse  # docs/benchmarks/test-reuse.md, included
    assert 'id="mlmyths.integrations.lightning.ForgettingCallback"' in \
        (site / "components" / "forgetting" / "index.html").read_text()
    records = (site / "records" / "index.html").read_text()
    assert "tasks_completed" in records and 'id="mlmyths.records.read_record"' in records
    verdicts_title = (DOCS / "VERDICTS.md").read_text().splitlines()[0].lstrip("# ").strip()
    assert verdicts_title in (site / "VERDICTS" / "index.html").read_text()
    changelog = (site / "changelog" / "index.html").read_text()
    import mlmyths
    assert mlmyths.__version__ in changelog
    for page in ("DEVELOPING", "BENCHMARKS", "benchmarks/lightconv"):
        assert (site / page / "index.html").is_file()


# -- docstrings for mkdocstrings -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def translate():
    pytest.importorskip("griffe", reason="griffe (mkdocstrings-python's parser) is not installed: pip install -e '.[docs]'")
    spec = importlib.util.spec_from_file_location("griffe_mlmyths", DOCS / "_ext" / "griffe_mlmyths.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.translate


def test_translate_parameter_items(translate):
    text = ("Summary.\n\nParameters\n----------\nlabels : the holdout labels, int (n,).\n"
            "threshold, sigma : T and the noise rate,\n    two lines.\norder : int, default 1\n    The order.\n")
    assert translate(text) == ("Summary.\n\nParameters\n----------\nlabels\n    the holdout labels, int (n,).\n"
                               "threshold\n    T and the noise rate,\n    two lines.\nsigma\n    T and the noise rate,\n"
                               "    two lines.\norder : int, default 1\n    The order.")


def test_translate_ends_a_section_and_fences_doctests(translate):
    text = ("Parameters\n----------\nx : a number.\n\nAttributes: ``y``.\n\n>>> f([1,\n...    2])\n['a']\n\n"
            "Examples\n--------\n>>> g()\n1\n")
    out = translate(text)
    assert out == ("Parameters\n----------\nx\n    a number.\n\nNotes\n--------\nAttributes: ``y``.\n\n```pycon\n"
                   ">>> f([1,\n...    2])\n['a']\n```\n\nExamples\n--------\n>>> g()\n1")


def test_translate_roles_and_literal_blocks(translate):
    text = "See :func:`~mlmyths.saliency.attack` and :class:`ForgettingTracker`, :mod:`.ir`::\n\n    code\n"
    assert translate(text) == "See `attack` and `ForgettingTracker`, `ir`:\n\n    code"
    fenced = "```python\nx = 1  # :func:`kept`\n```"
    assert translate(fenced) == fenced
