"""Statistics for comparing a model zoo on two test sets.

Everything here is a pure function of arrays:

- :func:`linear_fit` / :func:`probit_fit`: least-squares line of new vs original accuracy with
  a pointwise confidence band for the mean response (Recht et al. 2018, Fig. 2; the ImageNet paper,
  Recht et al. 2019, fits the line in probit space, Phi^-1(accuracy)).
- :func:`kendall_tau`, :func:`spearman_rho`: rank correlations, vectorized over leading axes.
- :func:`bootstrap_accuracies`, :func:`rank_agreement`: percentile-bootstrap intervals of the rank
  correlations, resampling test examples (the source of sampling noise in a ranking).
- :func:`pairwise_agreement`, :func:`independent_agreement`: how often two models predict the same
  label, and what that would be if their errors were independent (Mania et al., "Model Similarity
  Mitigates Test Set Overuse", NeurIPS 2019).

The accuracies' own intervals (Clopper-Pearson, as in Recht et al. 2018, Table 1) are
:func:`mlmyths.stats.clopper_pearson`.

>>> fit = linear_fit([0.82, 0.90, 0.96], [0.70, 0.84, 0.93])   # new vs original accuracy
>>> bool(fit.slope > 1)
True
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special, stats

from mlmyths.errors import UserError
from mlmyths.stats import check_alpha

ArrayLike = Any


# -- linear fits ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinearFit:
    """Ordinary least squares ``y = slope * x + intercept`` in ``space`` ("linear" or "probit").

    In probit space ``x`` and ``y`` are ``Phi^-1(accuracy)``; :meth:`predict` and :meth:`band`
    take and return accuracies either way.
    """

    slope: float
    intercept: float
    slope_ci: tuple[float, float]  #: t-interval of the slope at level 1 - alpha
    intercept_ci: tuple[float, float]
    r2: float  #: coefficient of determination in the fitted space
    n: int  #: number of points (models)
    residual_std: float  #: s = sqrt(SSE / (n - 2)) in the fitted space
    x_mean: float  #: mean of the (transformed) x
    sxx: float  #: sum of squared deviations of the (transformed) x
    t_crit: float  #: Student t quantile 1 - alpha/2 with n - 2 degrees of freedom
    space: str = "linear"
    alpha: float = 0.05

    def _to(self, a: ArrayLike) -> np.ndarray:
        a = np.asarray(a, dtype=np.float64)
        return special.ndtri(np.clip(a, _PROBIT_EPS, 1 - _PROBIT_EPS)) if self.space == "probit" else a

    def _back(self, z: np.ndarray) -> np.ndarray:
        return special.ndtr(z) if self.space == "probit" else z

    def predict(self, x: ArrayLike) -> np.ndarray:
        """The fitted mean response at accuracies ``x`` (returned as accuracies)."""
        return self._back(self.slope * self._to(x) + self.intercept)

    def band(self, x: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise ``1 - alpha`` confidence band of the mean response at ``x``:
        ``yhat +- t * s * sqrt(1/n + (x - xbar)^2 / Sxx)``."""
        z = self._to(x)
        centre = self.slope * z + self.intercept
        half = self.t_crit * self.residual_std * np.sqrt(1.0 / self.n + (z - self.x_mean) ** 2 / self.sxx)
        return self._back(centre - half), self._back(centre + half)

    def to_dict(self) -> dict[str, Any]:
        return {"space": self.space, "slope": self.slope, "intercept": self.intercept,
                "slope_ci_low": self.slope_ci[0], "slope_ci_high": self.slope_ci[1],
                "intercept_ci_low": self.intercept_ci[0], "intercept_ci_high": self.intercept_ci[1],
                "r2": self.r2, "n": self.n, "residual_std": self.residual_std}


_PROBIT_EPS = 1e-6


def _ols(x: np.ndarray, y: np.ndarray, alpha: float, space: str) -> LinearFit:
    check_alpha(alpha)
    if x.ndim != 1 or x.shape != y.shape:
        raise UserError(f"linear fit needs two 1-D arrays of the same length, got shapes {x.shape} and {y.shape}")
    n = len(x)
    if n < 3:
        raise UserError(f"a linear fit with a confidence band needs at least 3 models, got {n}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise UserError("linear fit: accuracies must be finite numbers (no None/NaN)")
    x_mean, y_mean = x.mean(), y.mean()
    sxx = float(((x - x_mean) ** 2).sum())
    if sxx == 0.0:
        raise UserError("linear fit: all original accuracies are equal, so the slope is undefined")
    slope = float(((x - x_mean) * (y - y_mean)).sum() / sxx)
    intercept = float(y_mean - slope * x_mean)
    resid = y - (slope * x + intercept)
    sse = float((resid ** 2).sum())
    syy = float(((y - y_mean) ** 2).sum())
    s = float(np.sqrt(sse / (n - 2)))
    t = float(special.stdtrit(n - 2, 1 - alpha / 2))  # Student t quantile (stats.t.ppf, without its overhead)
    se_slope = s / np.sqrt(sxx)
    se_intercept = s * np.sqrt(1.0 / n + x_mean ** 2 / sxx)
    return LinearFit(
        slope=slope, intercept=intercept,
        slope_ci=(slope - t * se_slope, slope + t * se_slope),
        intercept_ci=(intercept - t * se_intercept, intercept + t * se_intercept),
        r2=1.0 - sse / syy if syy > 0 else 1.0, n=n, residual_std=s, x_mean=float(x_mean), sxx=sxx,
        t_crit=t, space=space, alpha=alpha,
    )


def linear_fit(x: ArrayLike, y: ArrayLike, alpha: float = 0.05) -> LinearFit:
    """Least-squares line ``y = slope * x + intercept`` with t-intervals and a confidence band.

    Recht et al. (2018), Fig. 2: new accuracy against original accuracy, slope above 1.

    >>> fit = linear_fit([0.90, 0.93, 0.96], [0.80, 0.86, 0.92])
    >>> round(fit.slope, 6), round(fit.intercept, 6)
    (2.0, -1.0)
    """
    return _ols(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), alpha, "linear")


def probit_fit(x: ArrayLike, y: ArrayLike, alpha: float = 0.05) -> LinearFit:
    """:func:`linear_fit` of ``Phi^-1(y)`` on ``Phi^-1(x)`` (the probit scale of Recht et al. 2019).

    Accuracies of exactly 0 or 1 are clipped to ``[1e-6, 1 - 1e-6]`` before the transform.
    """
    to = lambda a: special.ndtri(np.clip(np.asarray(a, dtype=np.float64), _PROBIT_EPS, 1 - _PROBIT_EPS))  # noqa: E731
    return _ols(to(x), to(y), alpha, "probit")


# -- rank correlations -------------------------------------------------------------------------------


def kendall_tau(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Kendall's tau-b between ``a`` and ``b`` along the last axis (ties handled as scipy does).

    ``a``, ``b``: ``(..., M)`` (broadcast against each other); returns ``(...)``. Each of the
    ``M (M - 1) / 2`` pairs is visited once, and each input's pair signs are computed on its own
    shape before broadcasting (a fixed ranking against ``(B, M)`` bootstrap rows costs one
    ``(M, M)`` sign table, not ``B``). Meant for model zoos (M up to a few hundred).

    >>> float(kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]))
    0.6666666666666666
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    m = a.shape[-1]
    if b.shape[-1] != m:
        raise UserError(f"kendall_tau needs the same number of models on both sides, got {m} and {b.shape[-1]}")
    i, j = np.triu_indices(m, 1)
    # (..., P): one sign per pair (np.take: fancy indexing on the last axis is ~40x slower)
    sa = np.sign(np.take(a, i, axis=-1) - np.take(a, j, axis=-1))
    sb = np.sign(np.take(b, i, axis=-1) - np.take(b, j, axis=-1))
    if sa.ndim == 1 or sb.ndim == 1:  # one fixed ranking: a matrix-vector product
        fixed, rows = (sa, sb) if sa.ndim == 1 else (sb, sa)
        num = rows @ fixed
    else:
        num = (sa * sb).sum(axis=-1)
    den = np.sqrt(np.count_nonzero(sa, axis=-1) * np.count_nonzero(sb, axis=-1).astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def spearman_rho(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Spearman's rho (Pearson correlation of average ranks) along the last axis."""
    a, b = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    ra = stats.rankdata(a, axis=-1)
    rb = stats.rankdata(b, axis=-1)
    ra = ra - ra.mean(axis=-1, keepdims=True)
    rb = rb - rb.mean(axis=-1, keepdims=True)
    den = np.sqrt((ra * ra).sum(-1) * (rb * rb).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(-1) / np.where(den > 0, den, 1.0), np.nan)


def bootstrap_accuracies(correct: ArrayLike, n_boot: int, rng: np.random.Generator,
                         chunk: int = 64) -> np.ndarray:
    """Accuracies of every model on ``n_boot`` bootstrap resamples of the test examples.

    ``correct``: bool ``(M, N)`` (model m right on example i). The same resample of examples is
    used for all models (they were scored on the same test set). Returns ``(n_boot, M)``.
    """
    correct = np.asarray(correct)
    if correct.ndim != 2 or correct.shape[1] == 0:
        raise UserError(f"bootstrap needs a (models, examples) correctness matrix, got shape {correct.shape}")
    m, n = correct.shape
    c = correct.astype(np.float32).T  # (N, M)
    out = np.empty((n_boot, m), dtype=np.float64)
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(b, n))  # (b, N) resampled example indices
        counts = np.bincount((np.arange(b)[:, None] * n + idx).ravel(), minlength=b * n).reshape(b, n)
        out[start:start + b] = (counts.astype(np.float32) @ c) / n  # (b, M)
    return out


@dataclass(frozen=True)
class RankAgreement:
    """Rank correlation of two accuracy vectors over the same models, with bootstrap intervals."""

    kendall_tau: float
    kendall_ci: tuple[float, float]
    spearman: float
    spearman_ci: tuple[float, float]
    n_models: int
    n_boot: int
    resampled: tuple[str, ...]  #: which sides were resampled ("original", "new")
    kendall_replicates: np.ndarray | None = None  #: (n_boot,) tau of each bootstrap resample, None without one

    def to_dict(self) -> dict[str, Any]:
        return {"kendall_tau": self.kendall_tau, "kendall_ci_low": self.kendall_ci[0],
                "kendall_ci_high": self.kendall_ci[1], "spearman": self.spearman,
                "spearman_ci_low": self.spearman_ci[0], "spearman_ci_high": self.spearman_ci[1],
                "n_models": self.n_models, "n_boot": self.n_boot, "resampled": list(self.resampled)}


def _side(values: ArrayLike, name: str) -> np.ndarray:
    v = np.asarray(values)
    if v.ndim not in (1, 2):
        raise UserError(f"{name}: expected accuracies (M,) or a correctness matrix (M, N), got shape {v.shape}")
    return v


def rank_agreement(original: ArrayLike, new: ArrayLike, *, n_boot: int = 1000, alpha: float = 0.05,
                   seed: int = 0) -> RankAgreement:
    """Kendall's tau and Spearman's rho between two rankings of the same models.

    Each side is either fixed accuracies ``(M,)`` (e.g. numbers reported in a paper) or a bool
    correctness matrix ``(M, N)``, whose test examples are resampled with replacement
    (independently for the two test sets) to give percentile intervals at level ``1 - alpha``.

    >>> r = rank_agreement([0.9, 0.8, 0.7, 0.6], [0.85, 0.7, 0.72, 0.5], n_boot=10)
    >>> round(r.kendall_tau, 3)
    0.667
    """
    check_alpha(alpha)
    a, b = _side(original, "original"), _side(new, "new")
    if a.shape[0] != b.shape[0]:
        raise UserError(f"rank agreement needs the same models on both sides, got {a.shape[0]} and {b.shape[0]}")
    if a.shape[0] < 2:
        raise UserError(f"rank agreement needs at least 2 models, got {a.shape[0]}")
    point_a = a.mean(1) if a.ndim == 2 else a.astype(np.float64)
    point_b = b.mean(1) if b.ndim == 2 else b.astype(np.float64)
    rng = np.random.default_rng(seed)
    resampled = tuple(name for name, v in (("original", a), ("new", b)) if v.ndim == 2)
    if resampled and n_boot > 0:
        boot_a = bootstrap_accuracies(a, n_boot, rng) if a.ndim == 2 else np.broadcast_to(point_a, (n_boot, len(point_a)))
        boot_b = bootstrap_accuracies(b, n_boot, rng) if b.ndim == 2 else np.broadcast_to(point_b, (n_boot, len(point_b)))
        taus, rhos = kendall_tau(boot_a, boot_b), spearman_rho(boot_a, boot_b)
        q = [100 * alpha / 2, 100 * (1 - alpha / 2)]
        tau_ci = tuple(float(v) for v in np.nanpercentile(taus, q))
        rho_ci = tuple(float(v) for v in np.nanpercentile(rhos, q))
    else:
        taus = None
        tau_ci = rho_ci = (float("nan"), float("nan"))
    return RankAgreement(float(kendall_tau(point_a, point_b)), tau_ci, float(spearman_rho(point_a, point_b)),
                         rho_ci, int(a.shape[0]), int(n_boot) if resampled else 0, resampled,  # type: ignore[arg-type]
                         None if taus is None else np.asarray(taus, dtype=np.float64))


# -- model similarity ---------------------------------------------------------------------------------


def pairwise_agreement(predictions: ArrayLike, num_classes: int | None = None) -> np.ndarray:
    """Fraction of examples on which each pair of models predicts the same label.

    ``predictions``: int ``(M, N)``; returns a symmetric ``(M, M)`` matrix with ones on the diagonal.
    Computed as ``onehot @ onehot.T / N`` (no (M, M, N) intermediate).
    """
    p = np.asarray(predictions)
    if p.ndim != 2 or p.shape[1] == 0:
        raise UserError(f"pairwise agreement needs predictions of shape (models, examples), got {p.shape}")
    c = int(num_classes if num_classes is not None else p.max() + 1)
    m, n = p.shape
    onehot = np.zeros((m, n, c), dtype=np.float32)  # (M, N, C)
    np.put_along_axis(onehot, p[..., None].astype(np.int64), 1.0, axis=2)
    flat = onehot.reshape(m, n * c)
    return (flat @ flat.T) / n


def independent_agreement(accuracy: ArrayLike, num_classes: int) -> np.ndarray:
    """Expected agreement of two models whose errors are independent, with wrong labels uniform
    over the other ``num_classes - 1`` classes: ``a_i a_j + (1 - a_i)(1 - a_j) / (C - 1)``.

    The baseline Mania et al. (2019) compare observed model similarity against. Returns ``(M, M)``
    (the diagonal is the formula too, not 1).
    """
    a = np.asarray(accuracy, dtype=np.float64)
    if num_classes < 2:
        raise UserError(f"num_classes must be >= 2, got {num_classes}")
    return np.outer(a, a) + np.outer(1 - a, 1 - a) / (num_classes - 1)


def off_diagonal_mean(matrix: ArrayLike) -> float:
    """Mean of the off-diagonal entries of a square matrix."""
    m = np.asarray(matrix, dtype=np.float64)
    k = m.shape[0]
    if k < 2:
        return float("nan")
    return float((m.sum() - np.trace(m)) / (k * (k - 1)))
