"""mlmyths.stats: the vectorised crossed intervals equal the one-table reference."""
from __future__ import annotations

import numpy as np
import pytest

from mlmyths.errors import UserError
from mlmyths.stats import crossed_mean_interval, crossed_mean_intervals


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
