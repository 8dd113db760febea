"""mlmyths.reuse.stats and analysis: closed forms, known values, agreement with scipy, synthetic zoos."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mlmyths.errors import UserError
from mlmyths.reuse import (
    analyze_zoo, bootstrap_accuracies, clopper_pearson, independent_agreement, kendall_tau, linear_fit,
    pairwise_agreement, probit_fit, rank_agreement, spearman_rho,
)


# -- Clopper-Pearson ---------------------------------------------------------------------------------


def test_clopper_pearson_known_values_from_the_paper():
    # Recht et al. 2018, Sec. 3.2: 90% accuracy on 2,000 images -> [88.6%, 91.3%].
    low, high = clopper_pearson(1800, 2000)
    assert (round(100 * low, 1), round(100 * high, 1)) == (88.6, 91.3)
    # Table 1: shake_shake_64d_cutout, 93.0% of 2,021 -> [91.8, 94.0].
    low, high = clopper_pearson(1879, 2021)
    assert (round(100 * low, 1), round(100 * high, 1)) == (91.8, 94.0)


def test_clopper_pearson_edges_have_closed_forms():
    n, alpha = 20, 0.05
    low, high = clopper_pearson(0, n, alpha)
    assert low == 0.0 and high == pytest.approx(1 - (alpha / 2) ** (1 / n), rel=1e-12)
    low, high = clopper_pearson(n, n, alpha)
    assert high == 1.0 and low == pytest.approx((alpha / 2) ** (1 / n), rel=1e-12)
    # k = 1 of n = 1 and k = 0 of 1: the textbook values alpha/2 and 1 - alpha/2.
    assert clopper_pearson(1, 1) == pytest.approx((0.025, 1.0))
    assert clopper_pearson(0, 1) == pytest.approx((0.0, 0.975))


def test_clopper_pearson_is_vectorized_and_covers_the_estimate():
    k = np.array([0, 3, 50, 97, 100])
    low, high = clopper_pearson(k, 100)
    assert low.shape == (5,) and np.all(low <= k / 100) and np.all(k / 100 <= high)
    for i, ki in enumerate(k):  # same as scalar calls
        assert (low[i], high[i]) == pytest.approx(clopper_pearson(int(ki), 100))
    # inverting the binomial test: P(X >= k | p = low) = alpha / 2
    assert stats.binom.sf(49, 100, low[2]) == pytest.approx(0.025, rel=1e-6)
    assert stats.binom.cdf(50, 100, high[2]) == pytest.approx(0.025, rel=1e-6)


@pytest.mark.parametrize("k, n, alpha", [(5, 4, 0.05), (-1, 4, 0.05), (1, 0, 0.05), (1, 4, 0.0), (1.5, 4, 0.05)])
def test_clopper_pearson_rejects_bad_input(k, n, alpha):
    with pytest.raises(UserError):
        clopper_pearson(k, n, alpha)


# -- fits --------------------------------------------------------------------------------------------


def test_linear_fit_matches_scipy_and_the_band_has_the_textbook_width():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.8, 0.97, 30)
    y = 1.7 * x - 0.75 + rng.normal(0, 0.01, 30)
    fit = linear_fit(x, y)
    ref = stats.linregress(x, y)
    assert fit.slope == pytest.approx(ref.slope, rel=1e-10)
    assert fit.intercept == pytest.approx(ref.intercept, rel=1e-10)
    assert fit.r2 == pytest.approx(ref.rvalue ** 2, rel=1e-10)
    t = stats.t.ppf(0.975, 28)
    assert fit.slope_ci == pytest.approx((ref.slope - t * ref.stderr, ref.slope + t * ref.stderr), rel=1e-9)
    assert fit.intercept_ci[1] - fit.intercept == pytest.approx(t * ref.intercept_stderr, rel=1e-9)
    lo, hi = fit.band(np.array([x.mean(), x.mean() + 0.1]))
    assert (hi - lo)[0] / 2 == pytest.approx(t * fit.residual_std / np.sqrt(30), rel=1e-9)  # narrowest at the mean
    assert (hi - lo)[1] > (hi - lo)[0]
    assert fit.slope_ci[0] < 1.7 < fit.slope_ci[1]


def test_band_covers_the_true_line_at_the_nominal_rate():
    rng = np.random.default_rng(1)
    x = np.linspace(0.8, 0.95, 12)
    hits = 0
    for _ in range(400):
        fit = linear_fit(x, 2 * x - 1 + rng.normal(0, 0.02, len(x)))
        lo, hi = fit.band(np.array([0.9]))
        hits += int(lo[0] <= 0.8 <= hi[0])
    assert 0.92 <= hits / 400 <= 0.98


def test_exact_line_and_probit_fit():
    x = np.array([0.80, 0.85, 0.90, 0.95])
    fit = linear_fit(x, 2 * x - 1)
    assert fit.slope == pytest.approx(2) and fit.residual_std == pytest.approx(0, abs=1e-12)
    assert np.allclose(fit.band(x)[0], fit.band(x)[1])
    # points exactly on a probit line are recovered, and predictions come back in accuracy space
    from scipy.special import ndtr, ndtri

    y = ndtr(1.2 * ndtri(x) - 0.4)
    pfit = probit_fit(x, y)
    assert (pfit.slope, pfit.intercept) == pytest.approx((1.2, -0.4), abs=1e-9)
    assert pfit.predict(x) == pytest.approx(y, abs=1e-9)
    assert probit_fit([0.5, 1.0, 0.9], [0.4, 0.99, 0.8]).slope > 0  # an accuracy of 1.0 is clipped, not inf


def test_fit_rejects_degenerate_input():
    with pytest.raises(UserError, match="at least 3"):
        linear_fit([0.9, 0.8], [0.8, 0.7])
    with pytest.raises(UserError, match="equal"):
        linear_fit([0.9, 0.9, 0.9], [0.8, 0.7, 0.6])


# -- ranks ----------------------------------------------------------------------------------------------


def test_rank_correlations_match_scipy_with_ties_and_batches():
    rng = np.random.default_rng(2)
    a = rng.integers(0, 6, (5, 12)).astype(float)  # many ties
    b = a + rng.integers(-2, 3, (5, 12))
    tau, rho = kendall_tau(a, b), spearman_rho(a, b)
    for i in range(5):
        assert tau[i] == pytest.approx(stats.kendalltau(a[i], b[i]).statistic, rel=1e-12)
        assert rho[i] == pytest.approx(stats.spearmanr(a[i], b[i]).statistic, rel=1e-12)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1)
    # one fixed ranking against many rows (bootstrap replicates) is the same as row by row
    fixed = a[0]
    assert kendall_tau(fixed, b) == pytest.approx([stats.kendalltau(fixed, row).statistic for row in b], rel=1e-12)
    with pytest.raises(UserError, match="same number of models"):
        kendall_tau([1, 2, 3], [1, 2])


def test_bootstrap_accuracies_are_resample_means():
    rng = np.random.default_rng(3)
    correct = rng.random((4, 50)) < 0.7
    boot = bootstrap_accuracies(correct, 300, np.random.default_rng(4))
    assert boot.shape == (300, 4)
    # the same resample for all models: a model identical to another gets identical accuracies
    twin = bootstrap_accuracies(np.vstack([correct[:1], correct[:1]]), 50, np.random.default_rng(5))
    assert np.array_equal(twin[:, 0], twin[:, 1])
    assert boot.mean(0) == pytest.approx(correct.mean(1), abs=0.02)  # unbiased
    assert boot.std(0) == pytest.approx(np.sqrt(correct.mean(1) * (1 - correct.mean(1)) / 50), rel=0.2)


def test_rank_agreement_on_synthetic_zoos():
    rng = np.random.default_rng(6)
    acc = np.linspace(0.6, 0.95, 15)
    orig = rng.random((15, 4000)) < acc[:, None]
    new_same = rng.random((15, 2000)) < (acc - 0.05)[:, None]  # uniform drop: ranking preserved
    new_shuffled = rng.random((15, 2000)) < rng.permutation(acc)[:, None]
    same = rank_agreement(orig, new_same, n_boot=300)
    assert same.kendall_tau > 0.85 and same.kendall_ci[0] > 0.7 and same.resampled == ("original", "new")
    assert same.kendall_ci[0] <= same.kendall_ci[1] and same.spearman_ci[0] <= same.spearman_ci[1]
    shuffled = rank_agreement(orig, new_shuffled, n_boot=300)
    assert shuffled.kendall_ci[0] < same.kendall_ci[0] and abs(shuffled.kendall_tau) < 0.6
    fixed = rank_agreement(acc, new_same, n_boot=100)  # reported accuracies on one side
    assert fixed.resampled == ("new",) and fixed.n_boot == 100
    # the replicates are what the interval is made of
    assert fixed.kendall_replicates.shape == (100,)
    assert np.percentile(fixed.kendall_replicates, [2.5, 97.5]) == pytest.approx(fixed.kendall_ci, abs=1e-12)
    assert rank_agreement(acc, acc, n_boot=100).kendall_replicates is None  # nothing to resample
    with pytest.raises(UserError, match="same models"):
        rank_agreement(acc, new_same[:3])


def test_pairwise_agreement_and_independent_baseline():
    preds = np.array([[0, 1, 2, 3], [0, 1, 2, 0], [1, 1, 1, 1]])
    agree = pairwise_agreement(preds, 4)
    expected = np.array([[1, 0.75, 0.25], [0.75, 1, 0.25], [0.25, 0.25, 1]])
    assert agree == pytest.approx(expected)
    # independent errors with uniform wrong labels: simulate and compare with the formula
    rng = np.random.default_rng(7)
    n, c, acc = 200_000, 10, np.array([0.9, 0.7])
    y = rng.integers(0, c, n)
    sims = []
    for a in acc:
        wrong = (y + rng.integers(1, c, n)) % c
        sims.append(np.where(rng.random(n) < a, y, wrong))
    observed = pairwise_agreement(np.stack(sims), c)[0, 1]
    assert observed == pytest.approx(independent_agreement(acc, c)[0, 1], abs=0.005)


# -- analyze_zoo -------------------------------------------------------------------------------------------


def _zoo(seed: int = 0, m: int = 12, drop: float = 0.06):
    rng = np.random.default_rng(seed)
    acc = np.linspace(0.80, 0.96, m)
    y0, y1 = rng.integers(0, 10, 5000), rng.integers(0, 10, 2000)

    def predict(y, a):
        wrong = (y + rng.integers(1, 10, len(y))) % 10
        return np.where(rng.random((m, len(y))) < a[:, None], y, wrong)

    return acc, y0, predict(y0, acc), y1, predict(y1, acc - drop)


def test_analyze_zoo_with_original_labels():
    acc, y0, p0, y1, p1 = _zoo()
    z = analyze_zoo([f"m{i}" for i in range(12)], p1, y1, original_predictions=p0, original_labels=y0, n_boot=200)
    assert z.original_source == "computed"
    assert z.original_accuracy == pytest.approx(acc, abs=0.015)
    assert z.gap == pytest.approx(np.full(12, 0.06), abs=0.03)
    assert z.significant_drop.sum() >= 10
    assert z.linear.slope == pytest.approx(1.0, abs=0.15)
    assert z.ranks.kendall_tau > 0.8
    rows = z.rows()
    assert set(rows[0]) >= {"model", "original_accuracy", "new_accuracy", "new_ci_low", "new_ci_high", "gap"}
    assert rows[3]["new_ci_low"] <= rows[3]["new_accuracy"] <= rows[3]["new_ci_high"]
    assert rows[3]["gap"] == pytest.approx(rows[3]["original_accuracy"] - rows[3]["new_accuracy"], abs=1e-2)
    assert rows[3]["paper_original_accuracy"] is None
    # error ratio = new error / original error
    assert rows[3]["error_ratio"] == pytest.approx((100 - rows[3]["new_accuracy"]) / (100 - rows[3]["original_accuracy"]),
                                                   rel=1e-3)


def test_analyze_zoo_without_labels_never_guesses_but_uses_a_reported_reference():
    acc, _, p0, y1, p1 = _zoo(seed=1)
    z = analyze_zoo(list("abcdefghijkl"), p1, y1, original_predictions=p0, n_boot=0)
    assert z.original_source is None and z.original_accuracy is None and z.gap is None
    assert z.linear is None and z.ranks is None and z.significant_drop is None
    assert all(r["original_accuracy"] is None and r["gap"] is None for r in z.rows())
    assert z.agreement_original is not None  # agreement needs no labels
    z = analyze_zoo(list("abcdefghijkl"), p1, y1, original_predictions=p0, reference_original=acc, n_boot=100)
    assert z.original_source == "reported" and z.original_accuracy is None
    assert z.linear.slope == pytest.approx(1.0, abs=0.2) and z.ranks.resampled == ("new",)
    rows = z.rows()
    assert rows[0]["original_accuracy"] is None and rows[0]["paper_original_accuracy"] == pytest.approx(80.0)
    assert rows[0]["gap_vs_paper"] == pytest.approx(80.0 - rows[0]["new_accuracy"], abs=1e-6)


def test_analyze_zoo_rejects_mismatched_shapes():
    _, y0, p0, y1, p1 = _zoo()
    with pytest.raises(UserError, match="new_predictions"):
        analyze_zoo(["a"] * 12, p1[:, :10], y1)
    with pytest.raises(UserError, match="original_labels"):
        analyze_zoo(["a"] * 12, p1, y1, original_predictions=p0, original_labels=y0[:10])
    with pytest.raises(UserError, match="reference_original"):
        analyze_zoo(["a"] * 12, p1, y1, reference_original=np.full(12, 95.0))  # percent, not a fraction
