"""The `forgetting` experiment: configs, the claims on simulated data with known truth, and a smoke
run through the CLI (whose record must follow the rules, whatever its outcome)."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from mlmyths import claims
from mlmyths.errors import ConfigError
from mlmyths.forgetting import ForgettingTracker
from mlmyths.myths import forgetting as exp
from mlmyths.stats import clopper_pearson

from conftest import read_results, run_cli

KEY = ("pruning-costs-nothing", "forgetting-beats-random")

# -- configs ------------------------------------------------------------------------------------------------


def test_presets_build_and_paper_scale_follows_the_papers_two_setups() -> None:
    cifar = exp.config("paper")
    assert (cifar.dataset, cifar.model, cifar.epochs, cifar.batch_size, cifar.lr) == (
        "cifar10", "resnet18", 200, 128, 0.1)
    assert cifar.nesterov and cifar.weight_decay == 5e-4 and cifar.milestones == (60, 120, 160) and cifar.gamma == 0.2
    assert (cifar.score_augment, cifar.removal_augment, cifar.seeds) == ("crop-flip", "crop-flip-cutout", 5)
    assert exp.CLAIM_FRACTION in cifar.fractions and 0.35 in cifar.fractions  # the paper's 30% and 35%
    mnist = exp.config("paper", dataset="permuted-mnist")
    assert (mnist.dataset, mnist.model, mnist.batch_size, mnist.lr, mnist.momentum) == (
        "permuted-mnist", "small-cnn", 64, 0.01, 0.5)
    assert (mnist.schedule, mnist.epochs, mnist.score_augment) == ("constant", 200, "none")
    assert 0.8 in mnist.fractions  # Fig. 6: 80% of MNIST can go
    small = exp.config("small")
    assert small.dataset in ("fashion-mnist", "digits") and small.model == "small-cnn"  # "auto" resolved
    assert small.train_subset == 10_000 and small.removal_seeds == small.seeds == 6
    assert exp.CLAIM_FRACTION in small.fractions and exp.CLAIM_FRACTION in exp.config("smoke").fractions


def test_the_models_each_setup_builds() -> None:
    import torch

    cifar = exp.build_model(exp.config("paper"), (3, 32, 32), 10)
    assert sum(p.numel() for p in cifar.parameters()) == 11_173_962  # the paper's ResNet-18
    mnist = exp.build_model(exp.config("paper", dataset="mnist"), (1, 28, 28), 10)
    assert mnist(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    small = exp.build_model(exp.config("small"), (1, 28, 28), 10)
    assert sum(p.numel() for p in small.parameters()) < 100_000  # a compact CNN for 2 CPU cores


@pytest.mark.parametrize("overrides,key", [
    ({"orders": ("forgetting", "hardest")}, "orders"),
    ({"orders": ("forgetting", "forgetting")}, "orders"),
    ({"fractions": (0.2, 1.0)}, "fractions"),
    ({"fractions": (0.3, 0.3)}, "fractions"),
    ({"el2n_epoch": 50}, "el2n_epoch"),
    ({"removal_seeds": 3}, "removal_seeds"),  # smoke has 2 scoring runs: run r pairs with scoring run r
    ({"hidden": 0}, "hidden"),
    ({"lr": 0.0}, "lr"),
])
def test_bad_config_values_are_rejected_naming_the_key(overrides, key) -> None:
    with pytest.raises(ConfigError, match=f"'{key}'"):
        exp.config("smoke", **overrides)


def test_unknown_keys_are_rejected() -> None:
    with pytest.raises(ConfigError, match="unknown config key 'epoch'"):
        exp.config("small", epoch=3)


def test_stratified_subset_keeps_class_shares() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), [500, 300, 150, 50])
    picked = exp.stratified_subset(labels, 100, rng)
    assert len(picked) == 100 and len(np.unique(picked)) == 100
    np.testing.assert_array_equal(np.bincount(labels[picked]), [50, 30, 15, 5])
    np.testing.assert_array_equal(exp.stratified_subset(labels, 0, rng), np.arange(1000))  # 0: everything
    np.testing.assert_array_equal(exp.stratified_subset(labels, 5000, rng), np.arange(1000))


def test_rehearsal_keeps_the_paper_setup_and_cuts_the_budget() -> None:
    paper = exp.config("paper")
    cfg = exp.rehearsal(paper)
    assert cfg.dataset == "rehearsal-cifar10" and cfg.model == "resnet18"
    assert (cfg.score_augment, cfg.removal_augment) == (paper.score_augment, paper.removal_augment)
    assert exp.separate_baselines(cfg) and cfg.orders == paper.orders and cfg.fractions == (exp.CLAIM_FRACTION,)
    assert cfg.epochs <= 2 and cfg.seeds == cfg.removal_seeds == 2


# -- the claims on measurements with known truth -------------------------------------------------------------


def _tables(full_errors: list[int], forgetting_errors: list[int], random_errors: list[int], n: int = 100) -> dict:
    """Correctness tables (seeds, n) with the given error counts per seed, errors on the first examples."""
    def table(errors: list[int]) -> np.ndarray:
        t = np.ones((len(errors), n), dtype=np.float32)
        for s, e in enumerate(errors):
            t[s, :e] = 0.0
        return t

    return {"correct": {"full": table(full_errors), "forgetting": table(forgetting_errors),
                        "random": table(random_errors)},
            "num_classes": 10, "unforgettable": 600, "n_train": 1000}


def _by_id(results) -> dict:
    return {r.claim.id: r for r in results}


def test_relative_error_changes_are_computed_as_declared() -> None:
    cfg = exp.config("smoke")
    m = _tables([10, 12], [11, 13], [15, 17])  # errors per seed out of 100
    r = _by_id(exp.evaluate(cfg, m))
    assert math.isclose(r["pruning-costs-nothing"].estimate.value, (24 - 22) / 22)  # (err_forgetting - err_full) / err_full
    assert math.isclose(r["forgetting-beats-random"].estimate.value, (32 - 24) / 22)  # (err_random - err_forgetting) / err_full
    assert math.isclose(r["model-learned"].estimate.value, (0.89 - 0.1) / 0.9)
    assert math.isclose(r["many-unforgettable"].estimate.value, 0.6)
    unforgettable = r["many-unforgettable"].estimate
    assert (unforgettable.low, unforgettable.high) == pytest.approx(clopper_pearson(600, 1000))


def test_the_key_claims_are_paired_by_seed() -> None:
    """Removal runs that repeat their full-data run's predictions cost exactly nothing: the paired
    interval is a point. Shuffling the seeds of one arm breaks the pairs and widens it."""
    cfg = exp.config("small")
    m = exp.simulate(cfg, exp.CALIBRATION["paper"], np.random.default_rng(0))
    m["correct"]["forgetting"] = m["correct"]["full"].copy()
    paired = _by_id(exp.evaluate(cfg, m))["pruning-costs-nothing"]
    assert paired.estimate.value == paired.estimate.low == paired.estimate.high == 0.0
    assert paired.outcome == "reproduced"
    m["correct"]["forgetting"] = m["correct"]["full"][::-1].copy()  # same runs, other seeds' partners
    shuffled = _by_id(exp.evaluate(cfg, m))["pruning-costs-nothing"]
    assert shuffled.estimate.high - shuffled.estimate.low > 0.01


def test_a_model_at_chance_leaves_the_key_claims_not_tested() -> None:
    """The sanity prerequisite: whatever the removal runs show, a network that learned nothing gives
    no verdict on the myth (issue 19.4: it used to say refuted)."""
    cfg = exp.config("small")
    rng = np.random.default_rng(1)
    for truth in (exp.CALIBRATION["paper"], exp.CALIBRATION["other"]):
        m = exp.simulate(cfg, {**truth, "model-learned": 0.0}, rng)
        results = _by_id(exp.evaluate(cfg, m))
        assert results["model-learned"].outcome == "contradicted"
        for cid in KEY:
            assert results[cid].outcome == "not_tested" and "prerequisite 'model-learned'" in results[cid].reason
        assert claims.verdict(list(results.values())).outcome == "inconclusive"


def test_diverged_runs_are_left_out_and_missing_runs_are_not_tested() -> None:
    cfg = exp.config("smoke")
    m = _tables([10, 12, 11], [11, 13, 12], [15, 17, 16])
    m["correct"]["random"][2] = np.nan  # seed 2's random-removal run diverged
    r = _by_id(exp.evaluate(cfg, m))
    assert r["forgetting-beats-random"].estimate.n == 2 * 100 and "1 seed(s) left out" in r["forgetting-beats-random"].reason
    assert r["pruning-costs-nothing"].estimate.n == 3 * 100  # its own runs all finished
    m["correct"]["full"][:] = np.nan
    r = _by_id(exp.evaluate(cfg, m))
    assert all(r[cid].outcome == "not_tested" for cid in ("model-learned", *KEY))
    no_random = dataclasses.replace(cfg, orders=("forgetting", "el2n"))
    m = _tables([10, 12], [11, 13], [15, 17])
    m["correct"]["random"] = None
    r = _by_id(exp.evaluate(no_random, m))
    assert all(r[cid].outcome == "not_tested" and "did not remove 30%" in r[cid].reason for cid in KEY)


@pytest.mark.slow
def test_simulated_measurements_have_the_small_runs_sizes() -> None:
    cfg = exp.config("small")
    m = exp.simulate(cfg, exp.CALIBRATION["paper"], np.random.default_rng(0))
    n_test = 10_000 if cfg.dataset == "fashion-mnist" else 359
    for arm in ("full", "forgetting", "random"):
        assert m["correct"][arm].shape == (cfg.removal_seeds, n_test)
    assert m["n_train"] == (cfg.train_subset if cfg.dataset == "fashion-mnist" else 1438)
    disagreement = float(np.mean(m["correct"]["full"][0] != m["correct"]["full"][1]))
    assert abs(disagreement - exp.DISAGREEMENT) < 0.01  # the noise level it claims to simulate


# -- end to end ----------------------------------------------------------------------------------------------


def test_smoke_run_through_the_cli(tmp_path) -> None:
    # One thread: the smoke model is a tiny MLP, and on an oversubscribed CI box OpenMP threads
    # spinning against other processes make each step tens of times slower.
    proc = run_cli("run", "forgetting", "--scale", "smoke", "--out", str(tmp_path), "--quiet", timeout=300,
                   env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    record = read_results(tmp_path, "forgetting")
    assert record["status"] == "completed" and record["scale"] == "smoke" and record["schema"] == 2
    assert f"forgetting: {record['verdict']['outcome'].upper()}" in proc.stdout
    m = record["metrics"]
    run_dir = tmp_path / "forgetting" / record["run_id"]
    cfg = exp.config("smoke")

    # the claims: every declared one, outcomes by the three rules, the verdict by the key claims
    declared = {c.id: c for c in exp.CLAIMS}
    recorded = {c["id"]: c for c in record["claims"]}
    assert set(recorded) == set(declared)
    learned = recorded["model-learned"]
    for cid, c in recorded.items():
        gated_away = declared[cid].key and learned["outcome"] != "reproduced"
        if c["ci"] is None:
            assert c["outcome"] == "not_tested"
        elif gated_away:
            assert c["outcome"] == "not_tested" and "prerequisite 'model-learned'" in c["reason"]
        else:
            assert c["outcome"] == declared[cid].outcome(*c["ci"]), cid
        assert (c["test"], c["threshold"], c["key"]) == (declared[cid].test, declared[cid].threshold,
                                                          declared[cid].key)
    key_outcomes = [c["outcome"] for c in record["claims"] if c["key"]]
    assert record["verdict"]["outcome"] == claims.verdict_code(key_outcomes)
    assert record["differences"]

    # the claims' estimates agree with the removal curve, computed on another path (run accuracies)
    rows = record["tables"]["removal_curve"]
    full = rows[0]
    assert math.isclose(learned["estimate"], (full["accuracy_pct"] / 100 - 0.1) / 0.9, rel_tol=1e-6)
    at = {r["order"]: r for r in rows[1:] if math.isclose(r["removed_pct"], 100 * exp.CLAIM_FRACTION)}
    full_error = 1 - full["accuracy_pct"] / 100
    cost = recorded["pruning-costs-nothing"]["estimate"]
    beats = recorded["forgetting-beats-random"]["estimate"]
    if cost is not None:
        assert math.isclose(cost, at["forgetting"]["drop_points"] / 100 / full_error, rel_tol=1e-5, abs_tol=1e-9)
        assert math.isclose(at["forgetting"]["error_change_pct"] / 100, cost, rel_tol=1e-5, abs_tol=1e-9)
    if beats is not None:
        gain = (at["random"]["drop_points"] - at["forgetting"]["drop_points"]) / 100 / full_error
        assert math.isclose(beats, gain, rel_tol=1e-5, abs_tol=1e-9)

    # the stored statistics are the ones summarised
    stats = ForgettingTracker.load(run_dir / "forgetting_stats.npz")
    assert stats.runs == cfg.seeds and stats.n_examples == m["n_train"] == 1438
    assert (stats.presentations(per_run=True) == cfg.epochs).all()  # every example, once per epoch
    assert math.isclose(m["fraction_unforgettable"], stats.unforgettable().mean())
    assert math.isclose(recorded["many-unforgettable"]["estimate"], m["fraction_unforgettable"])
    assert m["fraction_unforgettable"] <= m["fraction_unforgettable_per_seed"] + 1e-12  # all runs vs per run
    histogram = {row["forgetting_count"]: row["examples"] for row in record["tables"]["forgetting_count_histogram"]}
    counts = stats.forgetting_counts()
    assert histogram == {int(c): int(k) for c, k in enumerate(np.bincount(counts)) if k}
    assert histogram.get(0, 0) >= m["fraction_unforgettable"] * m["n_train"] - 1e-9
    assert -1 <= m["spearman_el2n_vs_forgetting"] <= 1
    assert 0 <= m["full_data_test_disagreement"] <= 1

    # the removal curve: every order at every fraction, each trained on the right number of examples
    assert len(rows) == 1 + len(cfg.fractions) * len(cfg.orders)
    for row in rows[1:]:
        assert row["n_train"] == 1438 - round(row["removed_pct"] / 100 * 1438)
        assert row["runs"] == cfg.removal_seeds and 0 < row["accuracy_pct"] <= 100
    assert math.isclose(full["accuracy_pct"], 100 * m["full_data_accuracy"])

    # the class balance of what the largest removal keeps adds up to what was kept
    balance = record["tables"][f"classes_kept_at_{round(100 * max(cfg.fractions))}pct_removed"]
    kept_total = 1438 - round(max(cfg.fractions) * 1438)
    for order in cfg.orders:
        kept = sum(row[f"kept_pct_{order}"] / 100 * row["examples"] for row in balance)
        assert abs(kept - kept_total) < 1e-6
    assert sum(row["examples"] for row in balance) == 1438

    assert sorted(record["figures"]) == sorted(f"figures/{f}.png" for f in (
        "histogram", "removal_curve", "examples", "el2n_vs_forgetting", "settling"))
    for fig in record["figures"]:
        assert (run_dir / fig).stat().st_size > 5_000
    assert (run_dir / "report.md").exists() and (run_dir / "scores.npz").exists()


@pytest.mark.parametrize("args,words", [
    (("--dataset", "no-such-set"), "'dataset': 'no-such-set' is not an image dataset"),
    (("--set", "hidden=0"), "'hidden' must be at least 1, got 0"),
])
def test_bad_input_is_a_one_line_error_before_anything_runs(tmp_path, args, words) -> None:
    proc = run_cli("run", "forgetting", "--scale", "smoke", *args, "--out", str(tmp_path), "--quiet")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and words in proc.stderr
    assert not list((tmp_path / "forgetting").glob("*/results.json"))  # nothing computed, nothing left behind


def test_an_interrupted_scoring_run_resumes_with_its_early_el2n_and_snapshots(tmp_path) -> None:
    import torch

    from mlmyths.forgetting import el2n_scores
    from mlmyths.train import TrainConfig, fit

    g = torch.Generator().manual_seed(0)
    x = torch.randn(80, 5, generator=g)
    y = (x[:, 0] + torch.randn(80, generator=g) > 0).long()
    cfg = exp.config("smoke", epochs=6, el2n_epoch=2)

    def scoring(epochs: int, checkpoint=None) -> tuple[ForgettingTracker, exp._ScoringLog]:
        torch.manual_seed(0)
        model = torch.nn.Linear(5, 2)
        tracker = ForgettingTracker(80)
        log = exp._ScoringLog(tracker, cfg, lambda net: el2n_scores(net, x, y))
        train = TrainConfig(epochs=epochs, batch_size=16, lr=0.5, momentum=0.0)
        fit(model, x, y, train, callbacks=[tracker], epoch_callbacks=[log.after_epoch], checkpoint=checkpoint)
        return tracker, log

    whole_tracker, whole = scoring(6)
    ckpt = tmp_path / "score.pt"
    scoring(3, ckpt)  # interrupted after epoch 3, EL2N (epoch 2) already taken
    tracker, resumed = scoring(6, ckpt)
    assert resumed.epochs == whole.epochs == [1, 2, 3, 4, 5, 6]
    torch.testing.assert_close(resumed.el2n, whole.el2n)
    assert resumed.unforgettable == whole.unforgettable
    for a, b in zip(resumed.counts, whole.counts):
        torch.testing.assert_close(a, b)
    np.testing.assert_array_equal(tracker.forgetting_counts(), whole_tracker.forgetting_counts())
