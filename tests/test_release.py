"""A release that works: one version everywhere, and a wheel that installs and runs the docs' examples.

The wheel test builds the sdist and the wheel (``python -m build``, isolated), checks what they
carry, runs ``twine check``, installs the wheel into a fresh virtual environment and runs every
documentation page's examples and ``mlmyths --version`` there, from an empty directory, so that
nothing of the checkout (src/) can be imported.

The fresh environment (``python -m venv --without-pip``, no system site-packages) gets the wheel
through pip with ``--no-index``, over the *declared* dependencies only: the closure of the wheel's
``Requires-Dist`` (with the extras the examples need: lightning, captum), resolved in this test
process's environment, is linked into the new site-packages (symbolic links, no copies). pip then
checks that every requirement is satisfied, and nothing that the wheel does not declare is
importable. What this does not check is the download from an index: installing torch==2.13.0 and
the rest into the venv from the local wheel cache took 2 min 27 s on the 2-core reference machine
(2 min 43 s for torch alone with byte-compiling), the linked closure a few seconds.
"""
from __future__ import annotations

import email.parser
import importlib.metadata as metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

import mlmyths
from _doc_examples import pages, python_blocks
from conftest import REPO, run_cli, skip_without

CORE_DEPENDENCIES = {"torch", "numpy", "scipy", "scikit-learn", "matplotlib", "rich", "opt-einsum", "cloudpickle"}
EXAMPLE_EXTRAS = ("lightning", "captum")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python >= 3.11")
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_one_version_everywhere():
    project = _pyproject()
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "mlmyths.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", mlmyths.__version__)
    changelog = (REPO / "CHANGELOG.md").read_text()
    first = re.search(r"^## (\S+)", changelog, flags=re.M)
    assert first and first.group(1) == mlmyths.__version__, "CHANGELOG.md's newest entry is not the version"
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"mlmyths {mlmyths.__version__}", proc.stdout + proc.stderr


def test_core_dependencies_stay_small_and_extras_are_declared():
    project = _pyproject()["project"]
    core = {_norm(re.split(r"[<>=!~\[ ;]", d)[0]) for d in project["dependencies"]}
    assert core == CORE_DEPENDENCIES
    extras = project["optional-dependencies"]
    for extra in ("lightning", "captum", "docs", "bench", "dev"):
        assert extra in extras
    dev = {_norm(re.split(r"[<>=!~\[ ;]", d)[0]) for d in extras["dev"]}
    for needed in ("mkdocs", "mkdocs-material", "mkdocstrings", "build", "twine", "pytest", "lightning", "captum"):
        assert needed in dev, f"the dev extra (the README's test command) lacks {needed}"


# -- the wheel -----------------------------------------------------------------------------------------


def _requirement_closure(requirements: list[str], extras: tuple[str, ...]) -> list[metadata.Distribution]:
    """The installed distributions that ``requirements`` (Requires-Dist lines, markers evaluated
    with ``extras``) need, transitively."""
    from packaging.requirements import Requirement

    found: dict[str, metadata.Distribution] = {}
    visited: set[tuple[str, frozenset[str]]] = set()
    todo = [(r, extras) for r in requirements]
    while todo:
        line, active = todo.pop()
        req = Requirement(line)
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in (*active, "")):
            continue
        key = (_norm(req.name), frozenset(req.extras))
        if key in visited:
            continue
        visited.add(key)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue  # pip --no-index will name it
        found[key[0]] = dist
        todo += [(r, tuple(req.extras)) for r in dist.requires or []]
    return list(found.values())


def _link_distributions(dists: list[metadata.Distribution], site: Path) -> int:
    """Symlink each distribution's top-level files and folders (from its RECORD) into ``site``."""
    linked = 0
    for dist in dists:
        base = Path(dist.locate_file(""))
        tops = {Path(f).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        if getattr(dist, "_path", None) is not None:  # the .dist-info folder (also when RECORD is missing)
            tops.add(Path(dist._path).name)
        for top in sorted(tops):
            source, target = base / top, site / top
            if source.exists() and not target.exists() and top != "__pycache__" and not top.endswith(".pth"):
                target.symlink_to(source, target_is_directory=source.is_dir())
                linked += 1
    return linked


@pytest.mark.slow
def test_the_wheel_installs_and_runs_the_documentation_examples(tmp_path):
    skip_without("build", "twine", "packaging", extra="dev")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    # build from a copy: setuptools writes egg-info into the tree it builds, and the checkout stays as it is
    source = tmp_path / "source"
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "runs", "build", "dist", "site", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis"))
    dist = tmp_path / "dist"
    proc = subprocess.run([sys.executable, "-m", "build", "--outdir", str(dist), str(source)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    timings["build"] = time.perf_counter() - t0
    (wheel,) = dist.glob("mlmyths-*.whl")
    (sdist,) = dist.glob("mlmyths-*.tar.gz")

    # what they carry
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = email.parser.Parser().parsestr(z.read(f"mlmyths-{mlmyths.__version__}.dist-info/METADATA").decode())
        entry_points = z.read(f"mlmyths-{mlmyths.__version__}.dist-info/entry_points.txt").decode()
    for path in ("mlmyths/models/dynamic_conv.c", "mlmyths/schemas/results.schema.json", "mlmyths/py.typed",
                 "mlmyths/models/lightconv.py", "mlmyths/integrations/lightning.py"):
        assert path in names, f"the wheel lacks {path}"
    assert not any(n.startswith(("tests/", "docs/", "src/")) for n in names)
    assert meta["Version"] == mlmyths.__version__
    core = {_norm(re.split(r"[<>=!~\[ ;(]", r)[0]) for r in meta.get_all("Requires-Dist") if "extra ==" not in r}
    assert core == CORE_DEPENDENCIES
    assert {"lightning", "captum", "docs", "dev"} <= set(meta.get_all("Provides-Extra"))
    assert "mlmyths = mlmyths.cli:main" in entry_points
    with tarfile.open(sdist) as tar:
        members = {m.split("/", 1)[1] for m in tar.getnames() if "/" in m}
    for path in ("src/mlmyths/models/dynamic_conv.c", "src/mlmyths/schemas/results.schema.json", "CHANGELOG.md",
                 "README.md", "pyproject.toml"):
        assert path in members, f"the sdist lacks {path}"

    proc = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.count("PASSED") == 2, proc.stdout + proc.stderr

    # a fresh environment: the wheel and its declared dependency closure, nothing else
    t0 = time.perf_counter()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    closure = _requirement_closure(meta.get_all("Requires-Dist"), EXAMPLE_EXTRAS)
    assert {"torch", "lightning", "captum"} <= {_norm(d.metadata["Name"]) for d in closure}
    assert _link_distributions(closure, site) > 0
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index",
                           "--no-compile", "--disable-pip-version-check", "-q",
                           f"{wheel}[{','.join(EXAMPLE_EXTRAS)}]"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    timings["install"] = time.perf_counter() - t0

    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), MLMYTHS_OFFLINE="1", OMP_NUM_THREADS="1",
               PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, cwd=workdir, env=env)

    where = run(str(python), "-c", "import mlmyths, sys; print(mlmyths.__file__); print('\\n'.join(sys.path))")
    assert where.returncode == 0, where.stderr
    assert where.stdout.splitlines()[0].startswith(str(site)), where.stdout
    assert not any(str(REPO / "src") in p for p in where.stdout.splitlines()), where.stdout
    version = run(str(venv / "bin" / "mlmyths"), "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"mlmyths {mlmyths.__version__}", version.stderr
    if shutil.which("cc") or os.environ.get("CC"):  # the C source came with the wheel and builds there
        path = run(str(python), "-c", "from mlmyths.models.lightconv import dynamic_conv_path; print(dynamic_conv_path())")
        assert path.stdout.startswith("native"), path.stdout + path.stderr

    t0 = time.perf_counter()
    runnable = [str(p) for p in pages() if python_blocks(p)]
    examples = run(str(python), str(Path(__file__).with_name("_doc_examples.py")), *runnable, timeout=900)
    timings["examples"] = time.perf_counter() - t0
    assert examples.returncode == 0, examples.stdout[-4000:] + examples.stderr[-8000:]
    assert examples.stdout.count("\nok ") + examples.stdout.startswith("ok ") == len(runnable), examples.stdout
    print("timings (s):", {k: round(v, 1) for k, v in timings.items()})
    print(examples.stdout)
