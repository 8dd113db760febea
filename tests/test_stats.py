"""mlmyths.stats: the fast quantiles give scipy.stats' numbers."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from mlmyths import stats


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
