"""The test-reuse experiment: configs, the verdict rule, original labels, and a smoke run through the CLI."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import read_results, run_cli

from mlmyths.errors import ConfigError
from mlmyths.myths import test_reuse
from mlmyths.reuse import cifar101
from mlmyths.runs import RunContext

REQUIRED_ROW = {"model", "original_accuracy", "new_accuracy", "new_ci_low", "new_ci_high", "gap"}


def test_configs_build_for_every_scale():
    smoke, small, paper = (test_reuse.config(s) for s in ("smoke", "small", "paper"))
    assert smoke.dataset == "digits" and small.dataset == "auto"
    assert paper.versions[0] == "v4" and paper.fit_size == 0 and paper.repeats >= small.repeats
    assert len(small.families) >= 12
    assert test_reuse.config("small", versions="v4").versions == ("v4",)
    with pytest.raises(ConfigError, match="versions"):
        test_reuse.config("small", versions="v5")
    with pytest.raises(ConfigError, match="families"):
        test_reuse.config("small", families="ridge,transformer")
    with pytest.raises(ConfigError, match="snapshots"):
        test_reuse.config("small", snapshots="2,9")
    with pytest.raises(ConfigError, match="budget"):
        test_reuse.config("small", budget=0)


def _primary(drops: int, tau_low: float, source: str | None = "reported", m: int = 30) -> dict:
    rows = [{"gap": 5.0, "gap_vs_paper": 5.0 + i / 10} for i in range(m)]
    ranks = None if source is None else {"kendall_tau": tau_low + 0.05, "kendall_ci_low": tau_low}
    return {"rows": rows, "source": source, "significant_drops": drops, "ranks": ranks}


def test_verdict_rule():
    cfg = test_reuse.config("small")
    refuted = test_reuse._verdict(cfg, _primary(30, 0.8), "v6")
    assert refuted.outcome == "refuted" and "30/30" in refuted.reason and "paper's Table 1" in refuted.reason
    assert test_reuse._verdict(cfg, _primary(27, 0.8, "computed"), "v6").outcome == "refuted"  # 90% suffice
    assert "our original accuracies" in test_reuse._verdict(cfg, _primary(27, 0.8, "computed"), "v6").reason
    assert test_reuse._verdict(cfg, _primary(26, 0.8), "v6").outcome == "inconclusive"
    assert test_reuse._verdict(cfg, _primary(30, 0.5), "v6").outcome == "inconclusive"  # ranking not stable
    assert test_reuse._verdict(cfg, _primary(10, 0.8), "v6").outcome == "supported"  # most accuracies carry over
    assert test_reuse._verdict(cfg, _primary(0, 0.0, None), "v6").outcome == "inconclusive"
    assert test_reuse._verdict(cfg, None, "v6").outcome == "inconclusive"


def test_original_accuracies_are_computed_when_cifar10_labels_exist(shared_data: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch):
    from test_reuse_cifar101 import write_fake_cifar10

    if not (shared_data / "cifar10.1" / "model_predictions").is_dir():
        pytest.skip("no published CIFAR-10.1 predictions in ../shared/data")
    (tmp_path / "data").mkdir()
    os.symlink(shared_data / "cifar10.1", tmp_path / "data" / "cifar10.1")
    monkeypatch.setenv("MLMYTHS_DATA", str(tmp_path / "data"))
    # A stand-in for CIFAR-10's test labels: darc's own predictions, so darc scores 100% by construction.
    pub = cifar101.load_published(None, "v6")
    darc = pub.models.index("darc")
    write_fake_cifar10(tmp_path / "data", pub.original[darc].astype(np.uint8))
    labels = cifar101.cifar10_test_labels()
    assert labels is not None
    ctx = RunContext(tmp_path / "run", seed=0, scale="smoke")
    out = test_reuse._published(test_reuse.config("smoke", n_boot=50), ctx, "v6", labels)
    assert out["source"] == "computed"
    rows = {r["model"]: r for r in out["rows"]}
    assert rows["darc"]["original_accuracy"] == 100.0
    for name, row in rows.items():
        i = pub.models.index(name)
        agree = 100.0 * float((pub.original[i] == pub.original[darc]).mean())
        assert row["original_accuracy"] == pytest.approx(agree, abs=1e-3)
        assert row["gap"] == pytest.approx(row["original_accuracy"] - row["new_accuracy"], abs=2e-3)
        assert row["paper_original_accuracy"] == cifar101.PAPER_ORIGINAL_ACCURACY[name][1]
    assert out["ranks"]["resampled"] == ["original", "new"]


def test_smoke_run_through_the_cli(shared_data: Path, tmp_path: Path):
    if not (shared_data / "cifar10.1" / "model_predictions").is_dir():
        pytest.skip("no published CIFAR-10.1 predictions in ../shared/data")
    proc = run_cli("run", "test-reuse", "--scale", "smoke", "--out", str(tmp_path),
                   env={"MLMYTHS_DATA": str(shared_data)})
    assert proc.returncode == 0, proc.stderr
    res = read_results(tmp_path, "test-reuse")
    assert res["status"] == "completed"
    # No CIFAR-10 copy here: the verdict rests on the paper's printed original accuracies, and says so.
    assert res["verdict"]["outcome"] == "refuted"
    assert "paper's Table 1" in res["verdict"]["reason"]
    rows = res["tables"]["models"]
    assert len(rows) == 30 and all(REQUIRED_ROW <= set(r) for r in rows)
    assert all(r["original_accuracy"] is None and r["gap"] is None for r in rows)  # never guessed
    assert all(r["new_ci_low"] <= r["new_accuracy"] <= r["new_ci_high"] for r in rows)
    assert all(r["paper_original_accuracy"] - r["new_accuracy"] == pytest.approx(r["gap_vs_paper"], abs=1e-2)
               for r in rows)
    assert len(res["tables"]["models_v4"]) == 30
    m = res["metrics"]
    assert m["v6_significant_drops"] == 30 and m["v6_original_source"] == "reported"
    assert m["v6_linear_slope"] > 1 and m["v6_kendall_ci_low"] > 0.6
    assert m["v6_agreement_observed"] > m["v6_agreement_independent_errors"]  # Mania et al.
    assert m["zoo_families"] >= 12 and m["zoo_candidates"] >= 24 and m["zoo_dataset"] == "digits"
    assert m["attack_gap_plain"] > m["attack_gap_ladder"]
    assert isinstance(m["zoo_gap_measurable"], bool)
    assert {r["mechanism"] for r in res["tables"]["selection"]} == {"plain", "thresholdout", "ladder"}
    for fig in res["figures"]:
        assert (tmp_path / "test-reuse" / res["run_id"] / fig).stat().st_size > 10_000
    assert any("CIFAR-10's test labels are not available" in n for n in res["notes"])


def test_missing_cifar101_runs_part_b_and_says_why_inconclusive(tmp_path: Path):
    proc = run_cli("run", "test-reuse", "--scale", "smoke", "--out", str(tmp_path / "out"),
                   env={"MLMYTHS_DATA": str(tmp_path / "empty")})
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "warning: dataset 'cifar10.1' is not available locally" in proc.stderr
    res = read_results(tmp_path / "out", "test-reuse")
    assert res["status"] == "completed" and res["verdict"]["outcome"] == "inconclusive"
    assert "mlmyths data fetch cifar10.1" in res["verdict"]["reason"]
    assert "models" not in res["tables"] and not any(k.startswith("v6_") for k in res["metrics"])
    assert res["metrics"]["zoo_candidates"] >= 24 and len(res["tables"]["selection"]) == 6  # part (b) ran
    assert any(n.startswith("Part (a) did not run") for n in res["notes"])


def test_small_sizes_shrink_to_fit_the_digits_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh machine without Fashion-MNIST: 'auto' falls back to digits, which the small sizes don't fit."""
    from mlmyths import data

    monkeypatch.setattr(data, "first_available", lambda *a, **k: "digits")
    ctx = RunContext(tmp_path / "run", seed=0, scale="small")
    d = test_reuse._zoo_data(test_reuse.config("small"), ctx)
    n_pool = len(d["y_pool"])
    assert d["name"] == "digits" and len(d["y_fit"]) == 1438  # all of digits' training images
    assert (d["analyst_size"], d["holdout_size"]) == (round(0.3 * n_pool), round(0.2 * n_pool))
    assert "instead of 10000, 3000/2000/rest" in d["adapted"]
    with pytest.raises(ConfigError, match="'fit_size' is 10000 but digits has 1438"):  # named explicitly: an error
        test_reuse._zoo_data(test_reuse.config("small", dataset="digits"), ctx)
    assert test_reuse._zoo_data(test_reuse.config("smoke"), ctx)["adapted"] is None
