"""mlmyths.stats: fast quantiles give scipy.stats' numbers; vectorised intervals equal the one-at-a-time references."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from mlmyths import stats
from mlmyths.errors import UserError
from mlmyths.stats import bonferroni, crossed_mean_interval, crossed_mean_intervals, t_interval, t_intervals


@pytest.mark.parametrize("seeds", [1, 2, 5])
def test_crossed_mean_intervals_equal_the_reference_table_by_table(seeds):
    rng = np.random.default_rng(seeds)
    tables = (rng.random((4, seeds, 50)) < rng.uniform(0.3, 0.9, (4, 1, 50))).astype(float)  # (R, seeds, examples)
    tables[3] = 1.0  # no spread at all: a zero-width interval
    mean, low, high = crossed_mean_intervals(tables, 0.99)
    for r, table in enumerate(tables):
        m, lo, hi, k, n = crossed_mean_interval(table, 0.99)
        assert (k, n) == (seeds, 50)
        np.testing.assert_allclose([mean[r], low[r], high[r]], [m, lo, hi], rtol=1e-12, atol=1e-12)
    assert low[3] == high[3] == 1.0


def test_crossed_mean_intervals_cover_at_their_level():
    """Seeds x examples with a seed effect: the 90% interval covers the true mean about 90% of the time."""
    rng = np.random.default_rng(0)
    truth, hits, draws = 0.7, 0, 400
    for _ in range(draws):
        per_example = rng.beta(7, 3, size=200)  # (examples,), mean 0.7
        per_run = np.clip(per_example + 0.03 * rng.standard_normal((5, 1)), 0, 1)  # (seeds, examples)
        table = (rng.random((5, 200)) < per_run).astype(float)
        _, low, high = crossed_mean_intervals(table[None], 0.9)
        hits += bool(low[0] <= truth <= high[0])
    assert 0.84 <= hits / draws <= 0.97


def test_crossed_mean_intervals_reject_bad_shapes():
    with pytest.raises(UserError, match="stack of"):
        crossed_mean_intervals(np.zeros((3, 4)))
    with pytest.raises(UserError, match="confidence"):
        crossed_mean_intervals(np.zeros((1, 2, 3)), 1.5)


@pytest.mark.parametrize("n", [2, 3, 10, 48, 1000])
def test_t_interval_matches_scipy(n):
    values = np.random.default_rng(n).normal(size=n)
    mean, low, high, count = stats.t_interval(values, confidence=0.9)
    half = sps.t.ppf(0.95, n - 1) * values.std(ddof=1) / np.sqrt(n)
    assert count == n
    np.testing.assert_allclose([low, high], [mean - half, mean + half], rtol=1e-12, atol=1e-15)


def test_clopper_pearson_matches_scipy_beta_quantiles():
    n = np.array([1, 5, 48, 48, 48, 10_000])
    k = np.array([0, 3, 47, 48, 20, 8_800])
    low, high = stats.clopper_pearson(k, n, alpha=0.05)
    with np.errstate(invalid="ignore"):
        ref_low = np.where(k > 0, sps.beta.ppf(0.025, k, n - k + 1), 0.0)
        ref_high = np.where(k < n, sps.beta.ppf(0.975, k + 1, n - k), 1.0)
    np.testing.assert_allclose(low, ref_low, rtol=1e-12, atol=0)
    np.testing.assert_allclose(high, ref_high, rtol=1e-12, atol=0)
    assert stats.clopper_pearson(48, 48)[0] == pytest.approx(0.025 ** (1 / 48), rel=1e-12)  # closed form at k = n


def test_ratio_interval_with_a_constant_denominator_is_the_scaled_mean_interval() -> None:
    rng = np.random.default_rng(0)
    num = rng.normal(0.3, 1.0, size=(4, 50)) + rng.normal(0, 0.2, size=(4, 1))  # seed effects too
    den = np.full_like(num, 2.0)
    ratio, low, high, k, n = stats.crossed_ratio_interval(num, den)
    mean, m_low, m_high, k2, n2 = stats.crossed_mean_interval(num)
    assert (k, n) == (k2, n2) == (4, 50)
    assert math.isclose(ratio, mean / 2) and math.isclose(low, m_low / 2) and math.isclose(high, m_high / 2)


def test_ratio_interval_covers_the_true_ratio_of_a_crossed_design() -> None:
    """Paired error indicators of two arms over seeds x examples: the relative change of the error
    rate, err_b / err_a - 1 = 0.25 by construction, is covered about 95% of the time."""
    rng = np.random.default_rng(1)
    seeds, examples, draws = 5, 2000, 400
    covered = 0
    for _ in range(draws):
        q = 0.7 * rng.beta(0.1, 0.5, size=examples)  # per-example error probability, mean 0.117
        shift = np.exp(0.05 * rng.standard_normal((seeds, 1)))  # seed-level effect (never pushes 1.25 q past 1)
        err_a = rng.random((seeds, examples)) < q * shift
        err_b = rng.random((seeds, examples)) < 1.25 * q * shift
        r, lo, hi, _, _ = stats.crossed_ratio_interval(err_b.astype(float) - err_a, err_a.astype(float))
        covered += lo <= 0.25 <= hi
    assert 0.92 <= covered / draws <= 0.995, covered / draws


def test_ratio_interval_is_nan_without_a_denominator_and_checks_shapes() -> None:
    r, lo, hi, k, n = stats.crossed_ratio_interval(np.ones((2, 3)), np.zeros((2, 3)))
    assert all(math.isnan(v) for v in (r, lo, hi)) and (k, n) == (2, 3)
    with pytest.raises(UserError, match="equal shape"):
        stats.crossed_ratio_interval(np.ones((2, 3)), np.ones((3, 2)))


def test_ratio_interval_from_margins_equals_the_crossed_interval_of_the_linearized_table() -> None:
    rng = np.random.default_rng(2)
    den = (rng.random((6, 300)) < 0.2).astype(np.float32)
    num = (rng.random((6, 300)) < 0.25).astype(np.float32) - den
    ratio, low, high, k, n = stats.crossed_ratio_interval(num, den)
    scale = den.mean(dtype=np.float64)
    assert math.isclose(ratio, num.mean(dtype=np.float64) / scale)
    z = (num.astype(np.float64) - ratio * den.astype(np.float64)) / scale  # (6, 300) the delta method's cells
    centre, z_low, z_high, _, _ = stats.crossed_mean_interval(z)
    assert abs(centre) < 1e-12 and (k, n) == (6, 300)
    assert math.isclose(high - ratio, z_high - centre, rel_tol=1e-9)
    assert math.isclose(ratio - low, centre - z_low, rel_tol=1e-9)

@pytest.mark.parametrize("na,nb", [(2, 2), (3, 7), (5, 5), (40, 12)])
def test_welch_t_interval_matches_scipy(na, nb):
    rng = np.random.default_rng(na * 100 + nb)
    a, b = rng.normal(1.0, 0.3, na), rng.normal(0.2, 1.1, nb)
    diff, low, high, n = stats.welch_t_interval(a, b, confidence=0.9)
    ref = sps.ttest_ind(a, b, equal_var=False).confidence_interval(0.9)
    assert n == na + nb and diff == pytest.approx(a.mean() - b.mean(), abs=1e-12)
    np.testing.assert_allclose([low, high], [ref.low, ref.high], rtol=1e-10, atol=1e-12)


def test_welch_t_interval_edge_cases():
    assert np.isnan(stats.welch_t_interval([1.0], [1.0, 2.0])[1])  # one value: no spread, no interval
    assert stats.welch_t_interval([1.0, 1.0], [0.0, 0.0])[1:3] == (1.0, 1.0)  # no spread: a point
    d, lo, hi, n = stats.welch_t_interval([1.0, 2.0, float("nan")], [0.0, 1.0])
    assert n == 4 and d == 1.0 and lo < 1.0 < hi  # non-finite entries left out
    with pytest.raises(UserError, match="confidence"):
        stats.welch_t_interval([1.0, 2.0], [1.0, 2.0], confidence=95)


def test_welch_t_interval_covers_at_its_level():
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(2000):
        _, low, high, _ = stats.welch_t_interval(rng.normal(0.5, 0.1, 4), rng.normal(0.0, 0.4, 6), 0.9)
        hits += bool(low <= 0.5 <= high)
    assert 0.87 <= hits / 2000 <= 0.93


def test_t_intervals_equal_t_interval_row_by_row():
    rng = np.random.default_rng(0)
    table = rng.normal(size=(6, 9))
    table[1, 4:] = np.nan  # a shorter row (NaN-padded)
    table[2, 1:] = np.nan  # one value: no interval
    table[3, :] = 2.5  # no spread: a point interval
    table[4, 0] = np.inf  # non-finite entries are left out, as in t_interval
    levels = np.array([0.95, bonferroni(0.95, 3), 0.95, 0.9, 0.99, 0.5])
    means, lows, highs, ns = t_intervals(table, levels)
    for i, row in enumerate(table):
        expected = t_interval(row, float(levels[i]))
        got = (means[i], lows[i], highs[i], ns[i])
        np.testing.assert_allclose(np.array(got[:3], dtype=float), np.array(expected[:3], dtype=float),
                                   rtol=1e-12, atol=1e-12, equal_nan=True)
        assert got[3] == expected[3]
    assert ns.tolist() == [9, 4, 1, 9, 8, 9] and np.isnan(lows[2]) and lows[3] == highs[3] == 2.5


def test_t_intervals_rejects_bad_input():
    with pytest.raises(UserError, match="confidence must be in"):
        t_intervals([[1.0, 2.0]], 1.0)
    with pytest.raises(UserError, match=r"\(rows, units\) table"):
        t_intervals([1.0, 2.0])
