"""The `forgetting` experiment: configs, the verdict rule, and a smoke run through the CLI."""
from __future__ import annotations

import math

import numpy as np
import pytest

from mlmyths.errors import ConfigError
from mlmyths.forgetting import ForgettingTracker
from mlmyths.myths import forgetting as exp

from conftest import read_results, run_cli

# -- configs ------------------------------------------------------------------------------------------------


def test_presets_build_and_paper_scale_follows_the_papers_two_setups() -> None:
    for scale in ("smoke", "small", "paper"):
        exp._check(exp.config(scale))
    cifar = exp.config("paper")
    assert (cifar.dataset, cifar.model, cifar.epochs, cifar.batch_size, cifar.lr) == (
        "cifar10", "resnet18", 200, 128, 0.1)
    assert cifar.nesterov and cifar.weight_decay == 5e-4 and cifar.milestones == (60, 120, 160) and cifar.gamma == 0.2
    assert (cifar.score_augment, cifar.removal_augment, cifar.seeds) == ("crop-flip", "crop-flip-cutout", 5)
    mnist = exp.config("paper", dataset="permuted-mnist")
    assert (mnist.dataset, mnist.model, mnist.batch_size, mnist.lr, mnist.momentum) == (
        "permuted-mnist", "small-cnn", 64, 0.01, 0.5)
    assert (mnist.schedule, mnist.epochs, mnist.score_augment) == ("constant", 200, "none")
    small = exp.config("small")
    assert small.dataset == "auto" and small.train_subset == 10_000


def test_the_models_each_setup_builds() -> None:
    import torch

    cifar = exp._build_model(exp.config("paper"), (3, 32, 32), 10)
    assert sum(p.numel() for p in cifar.parameters()) == 11_173_962  # the paper's ResNet-18
    mnist = exp._build_model(exp.config("paper", dataset="mnist"), (1, 28, 28), 10)
    assert mnist(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    small = exp._build_model(exp.config("small"), (1, 28, 28), 10)
    assert sum(p.numel() for p in small.parameters()) < 100_000  # a compact CNN for 2 CPU cores


def test_bad_config_values_are_rejected() -> None:
    with pytest.raises(ConfigError, match="orders"):
        exp._check(exp.config("smoke", orders=("forgetting", "hardest")))
    with pytest.raises(ConfigError, match="fractions"):
        exp._check(exp.config("smoke", fractions=(0.2, 1.0)))
    with pytest.raises(ConfigError, match="el2n_epoch"):
        exp._check(exp.config("smoke", el2n_epoch=50))
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


# -- the verdict rule ----------------------------------------------------------------------------------------


def curve(forgetting: list[float], random: list[float], fractions=(0.1, 0.2, 0.3)) -> dict:
    return {"forgetting": dict(zip(fractions, forgetting)), "random": dict(zip(fractions, random))}


def test_verdict_refuted_when_a_large_removal_keeps_accuracy_and_random_loses_more() -> None:
    verdict, best = exp.removal_verdict(0.900, 0.001, curve([0.899, 0.898, 0.890], [0.895, 0.890, 0.880]),
                                        tolerance=0.003, min_fraction=0.2)
    assert verdict.outcome == "refuted" and best == 0.2
    assert "20%" in verdict.reason and "89.80%" in verdict.reason and "89.00%" in verdict.reason


def test_verdict_uses_the_seeds_std_when_larger_than_the_tolerance() -> None:
    c = curve([0.899, 0.895, 0.894], [0.890, 0.885, 0.880])
    assert exp.removal_verdict(0.900, 0.001, c, tolerance=0.003, min_fraction=0.2)[0].outcome == "supported"
    verdict, best = exp.removal_verdict(0.900, 0.0065, c, tolerance=0.003, min_fraction=0.2)
    assert verdict.outcome == "refuted" and best == 0.3


def test_verdict_ignores_removals_below_the_minimum_fraction() -> None:
    verdict, _ = exp.removal_verdict(0.900, 0.0, curve([0.900, 0.880, 0.870], [0.890, 0.870, 0.860]),
                                     tolerance=0.003, min_fraction=0.2)
    assert verdict.outcome == "supported"  # 10% was free, but the rule asks for >= 20%


def test_verdict_inconclusive_when_random_removal_does_as_well() -> None:
    verdict, best = exp.removal_verdict(0.900, 0.0, curve([0.899, 0.899, 0.899], [0.899, 0.900, 0.9005]),
                                        tolerance=0.003, min_fraction=0.2)
    assert verdict.outcome == "inconclusive" and best is None
    assert "random removal did as well" in verdict.reason
    verdict, _ = exp.removal_verdict(0.9, 0.0, {"forgetting": {0.3: 0.9}}, tolerance=0.003, min_fraction=0.2)
    assert verdict.outcome == "inconclusive"


# -- end to end ----------------------------------------------------------------------------------------------


def test_smoke_run_through_the_cli(tmp_path) -> None:
    # One thread: the smoke model is a tiny MLP, and on an oversubscribed CI box OpenMP threads
    # spinning against other processes make each step tens of times slower.
    proc = run_cli("run", "forgetting", "--scale", "smoke", "--out", str(tmp_path), "--quiet", timeout=300,
                   env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    record = read_results(tmp_path, "forgetting")
    assert record["status"] == "completed" and record["scale"] == "smoke"
    assert record["verdict"]["outcome"] in ("refuted", "supported", "inconclusive")
    assert f"forgetting: {record['verdict']['outcome'].upper()}" in proc.stdout
    m = record["metrics"]
    run_dir = tmp_path / "forgetting" / record["run_id"]
    cfg = exp.config("smoke")

    # the stored statistics are the ones summarised
    stats = ForgettingTracker.load(run_dir / "forgetting_stats.npz")
    assert stats.runs == cfg.seeds and stats.n_examples == m["n_train"] == 1438
    assert (stats.presentations(per_run=True) == cfg.epochs).all()  # every example, once per epoch
    assert math.isclose(m["fraction_unforgettable"], stats.unforgettable().mean())
    assert m["fraction_unforgettable"] <= m["fraction_unforgettable_per_seed"] + 1e-12  # all runs vs per run
    histogram = {row["forgetting_count"]: row["examples"] for row in record["tables"]["forgetting_count_histogram"]}
    counts = stats.forgetting_counts()
    assert histogram == {int(c): int(k) for c, k in enumerate(np.bincount(counts)) if k}
    assert histogram.get(0, 0) >= m["fraction_unforgettable"] * m["n_train"] - 1e-9
    assert -1 <= m["spearman_el2n_vs_forgetting"] <= 1

    # the removal curve: every order at every fraction, each trained on the right number of examples
    rows = record["tables"]["removal_curve"]
    assert len(rows) == 1 + len(cfg.fractions) * len(cfg.orders)
    for row in rows[1:]:
        assert row["n_train"] == 1438 - round(row["removed_pct"] / 100 * 1438)
        assert row["runs"] == cfg.removal_seeds and 0 < row["accuracy_pct"] <= 100
    full = rows[0]
    assert math.isclose(full["accuracy_pct"], 100 * m["full_data_accuracy"])
    # the verdict is the documented rule applied to the recorded numbers
    table = {}
    for row in rows[1:]:
        table.setdefault(row["order"], {})[row["removed_pct"] / 100] = row["accuracy_pct"] / 100
    verdict, best = exp.removal_verdict(m["full_data_accuracy"], m["full_data_accuracy_std"], table,
                                        tolerance=cfg.tolerance, min_fraction=cfg.min_fraction)
    assert verdict.outcome == record["verdict"]["outcome"] and best == m["largest_prunable_fraction"]

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


def test_missing_dataset_is_a_one_line_error(tmp_path) -> None:
    proc = run_cli("run", "forgetting", "--scale", "smoke", "--dataset", "no-such-set", "--out", str(tmp_path),
                   "--quiet")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "unknown dataset 'no-such-set'" in proc.stderr
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


def test_verdict_supported_only_when_the_loss_clearly_exceeds_the_tolerance() -> None:
    # the small run of 2026-11-28: 20% removed lost 0.37 points (tolerance 0.30), standard error ~0.16
    c = {"forgetting": {0.2: 0.87653, 0.3: 0.87257}, "random": {0.2: 0.87503, 0.3: 0.87033},
         "el2n": {0.2: 0.88223, 0.3: 0.87953}}
    verdict, best = exp.removal_verdict(0.88027, 0.00123, c, tolerance=0.003, min_fraction=0.2,
                                        drop_se={0.2: 0.0016, 0.3: 0.0033})
    assert verdict.outcome == "inconclusive" and best is None
    assert "lost 0.37 points" in verdict.reason and "within two standard errors" in verdict.reason
    assert "EL2N-ordered: 88.22%" in verdict.reason
    # the same losses with tight seeds are a clear loss
    verdict, _ = exp.removal_verdict(0.88027, 0.00123, c, tolerance=0.003, min_fraction=0.2,
                                     drop_se={0.2: 0.0002, 0.3: 0.0002})
    assert verdict.outcome == "supported" and "two standard errors" in verdict.reason
