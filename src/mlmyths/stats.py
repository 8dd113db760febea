"""Small statistics shared by several components.

- :func:`clopper_pearson`: the exact binomial confidence interval of an accuracy
  (Clopper & Pearson, Biometrika 1934), used for test-set accuracies (Recht et al. 2018)
  and for "above chance" decisions (Torralba & Efros 2011).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy import special

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
        # special.betaincinv is what stats.beta.ppf computes, without its per-call argument handling
        # (claim evaluations run thousands of times in the calibration)
        low = np.where(kf > 0, special.betaincinv(kf, nf - kf + 1, alpha / 2), 0.0)
        high = np.where(kf < nf, special.betaincinv(kf + 1, nf - kf, 1 - alpha / 2), 1.0)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


# -- intervals for claims (mlmyths.claims) --------------------------------------------------------


def mean_std(values: ArrayLike) -> tuple[float, float, int]:
    """Mean, sample standard deviation (``ddof=1``) and count of the finite entries of ``values``.

    The one convention for "mean ± std over n" everywhere in mlmyths: non-finite entries
    (diverged runs, missing values) are left out and counted out of ``n``; the std of fewer than
    two values is NaN (there is no spread to report), the mean of none is NaN.

    >>> mean_std([1.0, 2.0, 3.0, float("nan")])
    (2.0, 1.0, 3)
    """
    arr = np.asarray(values, dtype=float).ravel()
    arr = arr[np.isfinite(arr)]
    n = int(arr.size)
    mean = float(arr.mean()) if n else float("nan")
    std = float(arr.std(ddof=1)) if n > 1 else float("nan")
    return mean, std, n


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise UserError(f"confidence must be in (0, 1) (e.g. 0.95), got {confidence!r}")


def bonferroni(confidence: float, comparisons: int) -> float:
    """The per-comparison confidence that keeps ``comparisons`` intervals simultaneously at
    ``confidence`` (Bonferroni: ``1 - (1 - confidence) / m``).

    >>> round(bonferroni(0.95, 5), 4)
    0.99
    """
    _check_confidence(confidence)
    return 1.0 - (1.0 - confidence) / max(int(comparisons), 1)


def _t_quantile(q: float, df: float) -> float:
    """Student-t quantile: ``special.stdtrit``, what ``stats.t.ppf`` computes, without its per-call
    argument handling (claim evaluations run thousands of times in the calibration)."""
    return float(special.stdtrit(df, q))


def t_interval(values: ArrayLike, confidence: float = 0.95) -> tuple[float, float, float, int]:
    """Student-t interval for the mean of independent ``values`` (finite entries only):
    ``(mean, low, high, n)``; NaN ends with fewer than two values.

    >>> m, lo, hi, n = t_interval([1.0, 2.0, 3.0])
    >>> round(lo, 3), round(hi, 3), n
    (-0.484, 4.484, 3)
    """
    _check_confidence(confidence)
    mean, std, n = mean_std(values)
    if n < 2:
        return mean, float("nan"), float("nan"), n
    half = float(_t_quantile(0.5 + confidence / 2, n - 1) * std / np.sqrt(n))
    return mean, mean - half, mean + half, n


def paired_t_interval(a: ArrayLike, b: ArrayLike, confidence: float = 0.95) -> tuple[float, float, float, int]:
    """t interval for the mean of ``a - b`` over paired units (same seed / initialization):
    ``(mean, low, high, n)``. Pairs with a non-finite member are left out."""
    a_arr, b_arr = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if a_arr.shape != b_arr.shape:
        raise UserError(f"paired values need equal lengths, got {a_arr.size} and {b_arr.size}")
    return t_interval(a_arr - b_arr, confidence)


def crossed_mean_interval(values: ArrayLike, confidence: float = 0.95) -> tuple[float, float, float, int, int]:
    """Interval for the grand mean of a ``(seeds, examples)`` table where both seeds and test
    examples are samples (a crossed design): ``(mean, low, high, seeds, examples)``.

    The variance of the grand mean is estimated as ``var(seed means)/k + var(example means)/n``
    (each component's sample variance; slightly conservative, since each also carries the
    interaction's share), with a t critical value on Welch-Satterthwaite degrees of freedom.
    With one seed only the examples' term is left (the interval then ignores seed-to-seed
    variation, and callers should say so). Typical use: per-example accuracy differences of
    paired runs, ``values[s, i] = correct_a[s, i] - correct_b[s, i]``.
    """
    _check_confidence(confidence)
    table = np.asarray(values)
    if table.ndim != 2 or table.shape[1] < 2:
        raise UserError(f"crossed_mean_interval needs a (seeds, examples) table with >= 2 examples, "
                        f"got shape {table.shape}")
    mean, low, high = _crossed(table.mean(dtype=np.float64), table.mean(axis=1, dtype=np.float64),
                               table.mean(axis=0, dtype=np.float64), confidence)
    return float(mean), float(low), float(high), table.shape[0], table.shape[1]


def bootstrap_interval(statistic: Any, *samples: ArrayLike, confidence: float = 0.95, resamples: int = 2000,
                       seed: int = 0) -> tuple[float, float, float]:
    """Percentile bootstrap interval of ``statistic(*samples)``, resampling the units (the
    first axis of every sample, jointly: paired samples stay paired): ``(value, low, high)``.

    ``statistic`` gets arrays with a leading resample axis ``(B, n, ...)`` and returns ``(B,)``
    (vectorised), so ``resamples`` evaluations cost one call.

    >>> x = np.arange(100.0)
    >>> v, lo, hi = bootstrap_interval(lambda a: a.mean(axis=1), x)
    >>> v, bool(lo < 49.5 < hi)
    (49.5, True)
    """
    _check_confidence(confidence)
    arrays = [np.asarray(s) for s in samples]
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise UserError(f"bootstrap samples must have the same number of units, got {[len(a) for a in arrays]}")
    if n < 2:
        return float("nan"), float("nan"), float("nan")
    value = float(np.asarray(statistic(*[a[None] for a in arrays])).ravel()[0])
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))  # (B, n)
    boot = np.asarray(statistic(*[a[idx] for a in arrays]), dtype=float)  # (B,)
    boot = boot[np.isfinite(boot)]
    if boot.size < resamples // 2:
        return value, float("nan"), float("nan")
    alpha = 1.0 - confidence
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return value, float(low), float(high)


def simultaneous_min(values: ArrayLike, lows: ArrayLike, highs: ArrayLike) -> tuple[float, float, float]:
    """Interval for the smallest of several true values from simultaneous intervals (e.g. made at
    :func:`bonferroni`'s level): ``(min value, min low, min high)``.

    If every interval covers its true value, the true minimum lies in ``[min lows, min highs]``;
    so "every pair/model exceeds t" is tested as ``at_least t`` on this interval.
    """
    v, lo, hi = (np.asarray(a, dtype=float).ravel() for a in (values, lows, highs))
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    return float(v.min()), float(lo.min()), float(hi.min())


def crossed_mean_intervals(tables: ArrayLike, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`crossed_mean_interval` of each of a stack of equally shaped ``(seeds, examples)`` tables,
    vectorised (one t quantile call for the stack): arrays ``(mean, low, high)``, each ``(R,)``.

    For claims that quantify over many pairs or models, evaluated thousands of times in the
    calibration by simulation.

    >>> tables = np.array([[[1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 1.0]]] * 2)  # (R=2, seeds=2, examples=4)
    >>> mean, low, high = crossed_mean_intervals(tables)
    >>> mean.tolist(), bool(np.allclose(low, crossed_mean_interval(tables[0])[1]))
    ([0.75, 0.75], True)
    """
    _check_confidence(confidence)
    t = np.asarray(tables, dtype=float)
    if t.ndim != 3 or t.shape[2] < 2:
        raise UserError(f"crossed_mean_intervals needs a stack of (seeds, examples) tables with >= 2 examples, "
                        f"got shape {t.shape}")
    return _crossed(t.mean(axis=(1, 2)), t.mean(axis=2), t.mean(axis=1), confidence)  # (R,), (R, k), (R, n)


def crossed_ratio_interval(numerator: ArrayLike, denominator: ArrayLike, confidence: float = 0.95
                           ) -> tuple[float, float, float, int, int]:
    """Interval for the ratio of grand means ``mean(numerator) / mean(denominator)`` of two
    ``(seeds, examples)`` tables over the same cells (a crossed design, as in
    :func:`crossed_mean_interval`): ``(ratio, low, high, seeds, examples)``.

    Delta method: to first order ``ratio_hat - ratio`` is the grand mean of the linearized cells
    ``(numerator - ratio_hat * denominator) / mean(denominator)``, whose crossed interval (centred
    on zero) gives the half-width. Typical use: a relative change of the error rate of paired runs,
    ``numerator[s, i] = err_b[s, i] - err_a[s, i]``, ``denominator[s, i] = err_a[s, i]``. NaN ends
    (and a NaN ratio) when the denominator's mean is zero.

    >>> den = np.array([[1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    >>> r, lo, hi, k, n = crossed_ratio_interval(0.5 * den, den)
    >>> r, lo, hi, k, n
    (0.5, 0.5, 0.5, 2, 4)
    """
    _check_confidence(confidence)
    num, den = np.asarray(numerator), np.asarray(denominator)
    if num.shape != den.shape or num.ndim != 2 or num.shape[1] < 2:
        raise UserError(f"crossed_ratio_interval needs two (seeds, examples) tables of equal shape with >= 2 "
                        f"examples, got shapes {num.shape} and {den.shape}")
    k, n = num.shape
    scale = float(den.mean(dtype=np.float64))
    if scale == 0.0 or not np.isfinite(scale):
        return float("nan"), float("nan"), float("nan"), k, n
    ratio = float(num.mean(dtype=np.float64)) / scale
    # the linearized cells are linear in the tables, so their margins come from the tables' margins
    seed_means = (num.mean(axis=1, dtype=np.float64) - ratio * den.mean(axis=1, dtype=np.float64)) / scale  # (k,)
    example_means = (num.mean(axis=0, dtype=np.float64) - ratio * den.mean(axis=0, dtype=np.float64)) / scale  # (n,)
    _, low, _ = _crossed(np.float64(0.0), seed_means, example_means, confidence)
    return ratio, ratio + float(low), ratio - float(low), k, n


def _crossed(mean: Any, seed_means: np.ndarray, example_means: np.ndarray, confidence: float
             ) -> tuple[Any, Any, Any]:
    """The crossed interval from a table's grand mean and its row (seed) and column (example) means,
    which are all the variance estimate ``var(seed means)/k + var(example means)/n`` needs, with a t
    quantile on Welch-Satterthwaite degrees of freedom; vectorised over leading axes
    (``mean (...)``, ``seed_means (..., k)``, ``example_means (..., n)``). One seed: the examples'
    term alone."""
    k, n = seed_means.shape[-1], example_means.shape[-1]
    col_var = example_means.var(axis=-1, ddof=1) / n  # (...,) the examples' term
    row_var = seed_means.var(axis=-1, ddof=1) / k if k > 1 else np.zeros_like(col_var)  # (...,) the seeds' term
    se2 = row_var + col_var
    denom = (row_var ** 2 / (k - 1) if k > 1 else 0.0) + col_var ** 2 / (n - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(denom > 0, se2 ** 2 / np.where(denom > 0, denom, 1.0), float(n - 1))
    half = np.where(se2 > 0, special.stdtrit(df, 0.5 + confidence / 2) * np.sqrt(se2), 0.0)
    return mean, mean - half, mean + half


def welch_t_interval(a: ArrayLike, b: ArrayLike, confidence: float = 0.95) -> tuple[float, float, float, int]:
    """Welch's t interval for ``mean(a) - mean(b)`` of two independent samples with unequal
    variances (Welch 1947; Satterthwaite's degrees of freedom): ``(difference, low, high, n_a + n_b)``.

    Finite entries only; NaN ends when either sample has fewer than two values. Typical use:
    log running times of two systems measured in separate processes (the difference of the mean
    logs is the log of the ratio of geometric means).

    >>> d, lo, hi, n = welch_t_interval([1.0, 2.0, 3.0], [0.0, 0.5, 1.0, 1.5])
    >>> round(d, 3), round(lo, 3), round(hi, 3), n
    (1.25, -0.771, 3.271, 7)
    """
    _check_confidence(confidence)
    ma, sa, na = mean_std(a)
    mb, sb, nb = mean_std(b)
    diff = ma - mb
    if na < 2 or nb < 2:
        return diff, float("nan"), float("nan"), na + nb
    va, vb = sa * sa / na, sb * sb / nb
    se2 = va + vb
    if se2 == 0.0:
        return diff, diff, diff, na + nb
    df = se2 * se2 / (va * va / (na - 1) + vb * vb / (nb - 1))
    half = _t_quantile(0.5 + confidence / 2, df) * float(np.sqrt(se2))
    return diff, diff - half, diff + half, na + nb


def t_intervals(values: ArrayLike, confidence: ArrayLike = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`t_interval` for every row of a ``(rows, units)`` table at once, with one quantile call:
    ``(means, lows, highs, ns)``, each ``(rows,)``, over the finite entries of each row (so rows of
    different lengths can share a table, padded with NaN); NaN ends for rows with fewer than two.
    ``confidence`` may differ per row (e.g. Bonferroni levels beside plain ones).

    For claim evaluations that run thousands of times in calibration, where one quantile call per
    interval dominates the time.

    >>> means, lows, highs, ns = t_intervals([[1.0, 2.0, 3.0], [4.0, 4.0, float("nan")]])
    >>> [round(float(v), 3) for v in (lows[0], highs[0])], ns.tolist(), float(highs[1])
    ([-0.484, 4.484], [3, 2], 4.0)
    """
    levels = np.asarray(confidence, dtype=float)
    if not np.all((levels > 0.0) & (levels < 1.0)):
        raise UserError(f"confidence must be in (0, 1) (e.g. 0.95), got {confidence!r}")
    table = np.asarray(values, dtype=float)
    if table.ndim != 2:
        raise UserError(f"t_intervals needs a (rows, units) table, got shape {table.shape}")
    finite = np.isfinite(table)
    n = finite.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(finite, table, 0.0).sum(axis=1) / n
        var = (np.where(finite, table - mean[:, None], 0.0) ** 2).sum(axis=1) / (n - 1)
        crit = special.stdtrit(np.maximum(n - 1, 1), 0.5 + levels / 2)  # t quantiles, fast
        half = np.where(n >= 2, crit * np.sqrt(var / n), np.nan)
    return mean, mean - half, mean + half, n
