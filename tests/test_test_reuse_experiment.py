"""The test-reuse experiment: configs, the claims on simulated data with known truths, the labelling of
original accuracies, and smoke runs through the CLI (with and without the CIFAR-10.1 files).

No test here asserts the outcome of a real run: real records are checked against the three rules and
the one verdict rule; outcomes are asserted only on simulated data whose truth is known.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import read_results, run_cli

from mlmyths import claims
from mlmyths.errors import ConfigError
from mlmyths.myths import test_reuse
from mlmyths.reuse import cifar101
from mlmyths.reuse.stats import kendall_tau, linear_fit
from mlmyths.runs import RunContext

REQUIRED_ROW = {"model", "original_accuracy", "paper_original_accuracy", "original_source", "new_accuracy",
                "new_ci_low", "new_ci_high", "gap"}
CIFAR_CLAIMS = ("drop", "rank-stability", "slope")


def test_configs_build_for_every_scale():
    smoke, small, paper = (test_reuse.config(s) for s in ("smoke", "small", "paper"))
    assert smoke.dataset == "digits" and small.dataset in ("fashion-mnist", "digits")  # "auto" resolved
    assert paper.versions[0] == "v4" and paper.dataset == "cifar10" and paper.repeats >= small.repeats
    assert len(small.families) >= 12
    assert test_reuse.config("small", versions="v4").versions == ("v4",)
    for key, value, words in [("versions", "v5", "versions"), ("versions", "v6,v6", "distinct"),
                              ("families", "ridge,transformer", "families"), ("snapshots", "2,9", "snapshots"),
                              ("thresholdout_budget", 0, "thresholdout_budget"), ("repeats", 1, "at least 2"),
                              ("dataset", "imagenet", "dataset"), ("n_boot", 50, "n_boot")]:
        with pytest.raises(ConfigError, match=words):
            test_reuse.config("small", **{key: value})


def test_auto_falls_back_to_digits_with_sizes_that_fit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A machine without Fashion-MNIST: 'auto' becomes digits and the sizes shrink, in config(), so the
    record says what ran; digits named explicitly with sizes it cannot hold is a one-line error."""
    from mlmyths import data

    monkeypatch.setattr(data, "first_available", lambda *a, **k: "digits")
    cfg = test_reuse.config("small")
    assert (cfg.dataset, cfg.fit_size, cfg.analyst_size, cfg.holdout_size) == ("digits", 0, 108, 72)  # 30/20% of 359
    assert test_reuse.config("small", **{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}) == cfg
    ctx = RunContext(tmp_path / "run", seed=0)
    assert len(test_reuse.zoo_data(cfg, ctx)["y_fit"]) == 1438  # all of digits' training images
    with pytest.raises(ConfigError, match="'fit_size' is 10000 but digits has 1438"):
        test_reuse.zoo_data(test_reuse.config("small", dataset="digits"), ctx)
    with pytest.raises(ConfigError, match="must leave a fresh holdout"):
        test_reuse.zoo_data(test_reuse.config("small", dataset="digits", fit_size=0), ctx)


# -- the claims on simulated data with known truth ------------------------------------------------------------


def _rates(truth: dict[str, float], draws: int = 300, seed: int = 0) -> tuple[dict, dict]:
    cfg = test_reuse.config("small")
    rng = np.random.default_rng(seed)
    outcomes: dict[str, dict[str, int]] = {}
    verdicts: dict[str, int] = {}
    for _ in range(draws):
        results = test_reuse.evaluate(cfg, test_reuse.simulate(cfg, truth, rng))
        for r in results:
            outcomes.setdefault(r.claim.id, {}).setdefault(r.outcome, 0)
            outcomes[r.claim.id][r.outcome] += 1
        v = claims.verdict(results).outcome
        verdicts[v] = verdicts.get(v, 0) + 1
    share = lambda d: {k: n / draws for k, n in d.items()}  # noqa: E731
    return {c: share(o) for c, o in outcomes.items()}, share(verdicts)


def _truth(**changes: float) -> dict[str, float]:
    truth = dict(test_reuse.CALIBRATION["paper"])
    truth.update({k.replace("_", "-"): v for k, v in changes.items()})
    return truth


def test_only_the_controlled_reuse_claim_decides_the_verdict():
    """The published-model findings are context: all three on the other side (no drop, a reshuffled
    ranking, diminishing returns) leave the verdict to the key claim; a zoo that learned and a reused
    holdout that overstates nothing make 'supported' reachable."""
    assert [c.id for c in test_reuse.CLAIMS if c.key] == ["reuse-overstates"]
    rates, verdicts = _rates(_truth(drop=-2.0, rank_stability=0.45, slope=0.6))
    assert rates["rank-stability"].get("contradicted", 0) > 0.9 and rates["slope"].get("contradicted", 0) > 0.9
    assert verdicts.get("refuted", 0) > 0.85 and verdicts.get("supported", 0) == 0
    rates, verdicts = _rates(_truth(reuse_overstates=0.0))
    assert rates["reuse-overstates"].get("contradicted", 0) > 0.7 and verdicts.get("supported", 0) > 0.7  # power ~80%
    assert verdicts.get("refuted", 0) == 0


@pytest.mark.slow
def test_the_key_claim_at_its_threshold_with_a_zoo_that_learned():
    """The generic calibration puts every claim at its threshold at once, so the prerequisite (zoo at 50%)
    gates the key claim out most of the time; here the zoo learned and only the gap sits at 0.5 points."""
    rates, verdicts = _rates(_truth(reuse_overstates=0.5), draws=1000, seed=1)
    at = rates["reuse-overstates"]
    assert at.get("reproduced", 0) <= 0.05 and at.get("contradicted", 0) <= 0.05
    assert verdicts.get("refuted", 0) <= 0.05 and verdicts.get("supported", 0) <= 0.05


def test_a_zoo_at_chance_gives_inconclusive_never_refuted_or_supported():
    for gap in (3.0, 0.0):  # a large gap from noise fitting, or none: neither says anything
        rates, verdicts = _rates(_truth(zoo_learned=10.0, reuse_overstates=gap), draws=100)
        assert rates["zoo-learned"].get("contradicted", 0) == 1.0
        assert rates["reuse-overstates"] == {"not_tested": 1.0}
        assert verdicts == {"inconclusive": 1.0}


def test_a_stable_ranking_with_diminishing_returns_contradicts_the_slope_only():
    rates, _ = _rates(_truth(rank_stability=0.85, slope=0.7), draws=100)
    assert rates["slope"].get("contradicted", 0) > 0.9
    assert rates["rank-stability"].get("reproduced", 0) > 0.7 and "contradicted" not in rates["rank-stability"]


@pytest.mark.parametrize("tau, slope, drop", [(0.6, 1.0, 0.01), (0.89, 1.7, 0.04), (0.45, 0.6, -0.02)])
def test_simulated_truths_have_the_asked_statistics(tau, slope, drop):
    y = test_reuse.true_new_accuracies(tau, slope, drop)
    x = test_reuse._PAPER_ORIGINAL
    assert tau <= float(kendall_tau(x, y)) < tau + 2.5 / 431  # the first value at or above tau (one pair's step)
    assert linear_fit(x, y).slope == pytest.approx(slope, rel=1e-9)
    assert float(np.min(x - y)) == pytest.approx(drop, abs=1e-12)


def _published(original, new, *, n_new=2000, rounding=0.0005, boot=None):
    return {"version": "v6", "source": "paper", "original": np.asarray(original), "new": np.asarray(new),
            "n_original": 10_000, "n_new": n_new, "rounding": rounding,
            "tau_boot": np.linspace(0.7, 0.9, 201) if boot is None else boot}


def _judged(pub, gap=(0.01,) * 20, fresh=(0.85,) * 20) -> dict:
    m = {"published": pub, "published_reason": "files absent", "gap": np.asarray(gap), "fresh": np.asarray(fresh)}
    return {r.claim.id: r for r in test_reuse.evaluate(test_reuse.config("small"), m)}


def test_drop_is_the_smallest_drop_with_bonferroni_simultaneous_intervals():
    from scipy import stats

    x, y = np.array([0.97, 0.93, 0.85]), np.array([0.93, 0.86, 0.72])
    r = _judged(_published(x, y))["drop"]
    z = stats.norm.ppf(1 - 0.05 / (2 * 3))
    half = z * np.sqrt(x * (1 - x) / 10_000 + y * (1 - y) / 2000) + 0.0005
    assert r.estimate.value == pytest.approx(4.0)  # the first model's drop is the smallest
    assert r.estimate.low == pytest.approx(100 * np.min(x - y - half))
    assert r.estimate.high == pytest.approx(100 * np.min(x - y + half))
    assert r.estimate.n == 3 and "Bonferroni" in r.estimate.method and "Table 1" in r.estimate.method


def test_ranks_use_the_bootstrap_percentiles_and_slope_the_t_interval():
    x, y = np.linspace(0.82, 0.97, 30), np.linspace(0.70, 0.93, 30)
    boot = np.random.default_rng(0).uniform(0.62, 0.98, 1000)
    judged = _judged(_published(x, y, boot=boot))
    ranks, slope = judged["rank-stability"], judged["slope"]
    assert ranks.estimate.value == pytest.approx(1.0)
    assert (ranks.estimate.low, ranks.estimate.high) == pytest.approx(tuple(np.quantile(boot, [0.025, 0.975])))
    assert ranks.outcome == "reproduced" and "held fixed" in ranks.estimate.method
    assert slope.estimate.value == pytest.approx(0.23 / 0.15) and slope.outcome == "reproduced"
    few = _judged(_published(x, y, boot=np.full(50, 0.8)))["rank-stability"]
    assert few.outcome == "not_tested" and "50 bootstrap resamples" in few.reason


def test_missing_published_data_leaves_the_cifar_claims_not_tested_with_the_reason():
    judged = _judged(None, gap=np.full(20, 0.012) + np.linspace(-1e-3, 1e-3, 20))
    for c in CIFAR_CLAIMS:
        assert judged[c].outcome == "not_tested" and judged[c].reason == "files absent"
    assert judged["reuse-overstates"].outcome == "reproduced"  # part (b) still decides


# -- the published predictions ---------------------------------------------------------------------------------


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
    out = test_reuse.published_analysis(test_reuse.config("smoke"), "v6", labels, seed=0)
    assert out["source"] == "computed" and out["rounding"] == 0.0
    rows = {r["model"]: r for r in out["rows"]}
    assert rows["darc"]["original_accuracy"] == 100.0
    for name, row in rows.items():
        i = pub.models.index(name)
        agree = 100.0 * float((pub.original[i] == pub.original[darc]).mean())
        assert row["original_accuracy"] == pytest.approx(agree, abs=1e-3)
        assert row["original_source"] == test_reuse.ORIGINAL_SOURCES["computed"]
        assert row["paper_original_accuracy"] == cifar101.PAPER_ORIGINAL_ACCURACY[name][1]
    assert out["ranks"]["resampled"] == ["original", "new"] and len(out["tau_boot"]) == 200
    m = test_reuse.measurements(test_reuse.config("smoke"), {"v6": out}, [], None)
    ranks = _judged(m["published"])["rank-stability"]
    assert "resampled too" in ranks.estimate.method and "computed from CIFAR-10's test labels" in ranks.estimate.method


def _check_record(res: dict) -> None:
    """A real record: schema-2 claims whose outcomes follow the three rules, and a verdict that follows the
    key claims -- whatever the outcomes are."""
    assert res["status"] == "completed" and res["schema"] == 2
    got = {c["id"]: c for c in res["claims"]}
    assert list(got) == [c.id for c in test_reuse.CLAIMS]
    for c in test_reuse.CLAIMS:
        entry = got[c.id]
        assert entry["key"] == c.key and entry["test"] == c.test and entry["threshold"] == c.threshold
        if entry["ci"] is None:
            assert entry["outcome"] == "not_tested" and entry["reason"]
            continue
        rule = claims.OUTCOMES[int(claims.outcome_codes(c.test, c.threshold, np.array([entry["ci"][0]]),
                                                         np.array([entry["ci"][1]]))[0])]
        gated = entry["outcome"] == "not_tested" and "prerequisite 'zoo-learned'" in entry["reason"]
        assert entry["outcome"] == rule or (c.key and gated), (c.id, entry)
    key = [got[c.id]["outcome"] for c in test_reuse.CLAIMS if c.key]
    assert res["verdict"]["outcome"] == claims.verdict_code(key)
    assert res["differences"] and res["summary"]


@pytest.mark.slow
def test_smoke_run_through_the_cli(shared_data: Path, tmp_path: Path):
    if not (shared_data / "cifar10.1" / "model_predictions").is_dir():
        pytest.skip("no published CIFAR-10.1 predictions in ../shared/data")
    proc = run_cli("run", "test-reuse", "--scale", "smoke", "--out", str(tmp_path),
                   env={"MLMYTHS_DATA": str(shared_data)})
    assert proc.returncode == 0, proc.stderr
    res = read_results(tmp_path, "test-reuse")
    _check_record(res)
    assert all(c["outcome"] != "not_tested" for c in res["claims"] if c["id"] in CIFAR_CLAIMS)
    # No CIFAR-10 copy here: the original accuracies are the paper's, and the record says so everywhere.
    paper = test_reuse.ORIGINAL_SOURCES["paper"]
    assert res["metrics"]["v6_original_source"] == paper and res["metrics"]["v4_original_source"] == paper
    for name in ("models", "models_v4"):
        rows = res["tables"][name]
        assert len(rows) == 30 and all(REQUIRED_ROW <= set(r) for r in rows)
        assert all(r["original_source"] == paper for r in rows)
        assert all(r["original_accuracy"] is None and r["gap"] is None for r in rows)  # never guessed
        assert all(r["new_ci_low"] <= r["new_accuracy"] <= r["new_ci_high"] for r in rows)
        assert all(r["paper_original_accuracy"] - r["new_accuracy"] == pytest.approx(r["gap_vs_paper"], abs=1e-2)
                   for r in rows)
    assert all("the paper's Table 1" in c["method"] for c in res["claims"] if c["id"] in CIFAR_CLAIMS)
    m = res["metrics"]
    assert m["v6_agreement_observed"] > m["v6_agreement_independent_errors"]  # Mania et al.: similar models
    assert m["zoo_families"] >= 12 and m["zoo_candidates"] >= 24 and m["zoo_dataset"] == "digits"
    assert {r["mechanism"] for r in res["tables"]["selection"]} == {"plain", "thresholdout", "ladder"}
    for fig in res["figures"]:
        assert (tmp_path / "test-reuse" / res["run_id"] / fig).stat().st_size > 10_000


@pytest.mark.slow
def test_missing_cifar101_runs_part_b_and_says_why_not_tested(tmp_path: Path):
    proc = run_cli("run", "test-reuse", "--scale", "smoke", "--out", str(tmp_path / "out"),
                   env={"MLMYTHS_DATA": str(tmp_path / "empty")})
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "warning: dataset 'cifar10.1' is not available locally" in proc.stderr
    res = read_results(tmp_path / "out", "test-reuse")
    _check_record(res)
    got = {c["id"]: c for c in res["claims"]}
    for c in CIFAR_CLAIMS:
        assert got[c]["outcome"] == "not_tested" and "mlmyths data fetch cifar10.1" in got[c]["reason"]
    assert got["reuse-overstates"]["ci"] is not None  # part (b) ran and was judged
    assert "models" not in res["tables"] and not any(k.startswith("v6_") for k in res["metrics"])
    assert res["metrics"]["zoo_candidates"] >= 24 and len(res["tables"]["selection"]) == 6
    assert any(n.startswith("Part (a) did not run") for n in res["notes"])
