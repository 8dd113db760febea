"""mlmyths.stats: the interval helpers claims are judged with."""
from __future__ import annotations

import math

import numpy as np
import pytest

from mlmyths import stats
from mlmyths.errors import UserError


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
