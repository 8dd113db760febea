"""Small statistics shared by several components.

- :func:`clopper_pearson`: the exact binomial confidence interval of an accuracy
  (Clopper & Pearson, Biometrika 1934), used for test-set accuracies (Recht et al. 2018)
  and for "above chance" decisions (Torralba & Efros 2011).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from mlmyths.errors import UserError

ArrayLike = Any


def check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise UserError(f"alpha must be in (0, 1) (e.g. 0.05 for 95% intervals), got {alpha!r}")


def clopper_pearson(k: ArrayLike, n: ArrayLike, alpha: float = 0.05) -> tuple[Any, Any]:
    """Exact (Clopper-Pearson) ``1 - alpha`` interval for a binomial proportion ``k / n``.

    ``low = Beta(alpha/2; k, n-k+1)`` quantile (0 when ``k = 0``) and
    ``high = Beta(1-alpha/2; k+1, n-k)`` quantile (1 when ``k = n``). ``k`` and ``n`` may be
    arrays (broadcast); scalars in give floats out.

    >>> clopper_pearson(0, 10)[0], clopper_pearson(10, 10)[1]
    (0.0, 1.0)
    """
    check_alpha(alpha)
    k_arr, n_arr = np.broadcast_arrays(np.asarray(k), np.asarray(n))
    if not (np.issubdtype(k_arr.dtype, np.integer) or np.all(np.mod(k_arr, 1) == 0)):
        raise UserError(f"k must be whole numbers of successes, got {k!r}")
    if np.any(n_arr < 1) or np.any(k_arr < 0) or np.any(k_arr > n_arr):
        raise UserError(f"clopper_pearson needs 0 <= k <= n and n >= 1, got k={k!r}, n={n!r}")
    kf, nf = k_arr.astype(np.float64), n_arr.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        low = np.where(kf > 0, stats.beta.ppf(alpha / 2, kf, nf - kf + 1), 0.0)
        high = np.where(kf < nf, stats.beta.ppf(1 - alpha / 2, kf + 1, nf - kf), 1.0)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high
