"""Shared test helpers: running the CLI, locating ../shared/data, tiny experiment scales."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

# The suite trains tiny models: one thread is as fast, and it keeps timings sane when the
# machine is shared (a second spinning OpenMP thread can make torch several times slower).
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by run_cli subprocesses
try:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # BLAS (numpy/scikit-learn) too
except ImportError:  # pragma: no cover - comes with scikit-learn
    pass

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"


def shared_data_dir() -> Path | None:
    """``../shared/data`` beside the checkout (or ``$MLMYTHS_SHARED_DATA``), if present."""
    env = os.environ.get("MLMYTHS_SHARED_DATA")
    for candidate in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data", REPO / "shared" / "data"]:
        if candidate.is_dir():
            return candidate
    return None


@pytest.fixture
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("../shared/data (real MNIST test split and CIFAR-10.1 files) is not present beside this checkout")
    return path


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``python -m mlmyths ARGS`` in a subprocess (the package from this checkout's src/)."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(SRC) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.setdefault("MLMYTHS_OFFLINE", "1")
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "mlmyths", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def read_results(out: Path, myth: str) -> dict:
    """The newest results.json of ``myth`` under ``out``."""
    paths = sorted((out / myth).glob("*/results.json"))
    assert paths, f"no run of {myth} under {out}"
    return json.loads(paths[-1].read_text())


@pytest.fixture(autouse=True)
def _offline_and_isolated_cache(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never download, and never write to the user's real cache."""
    monkeypatch.setenv("MLMYTHS_OFFLINE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))


@pytest.fixture
def float64_default():
    """float64 as torch's default dtype for one test (modules opt in with ``pytest.mark.usefixtures``)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def skip_without(*modules: str, extra: str) -> None:
    """Skip the calling test when one of ``modules`` is not installed, naming it and the extra that
    installs it (``pip install -e '.[EXTRA]'``)."""
    import importlib.util

    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # its parent package is missing
            found = False
        if not found:
            pytest.skip(f"{module} is not installed (it comes with pip install -e '.[{extra}]')")
