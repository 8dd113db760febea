"""Analysis of a model zoo scored on an original and a new test set, from predictions alone.

:func:`analyze_zoo` takes each model's predicted labels on the new test set (and, when
available, on the original test set with its labels) and returns a :class:`ZooAnalysis`:
per-model accuracies with Clopper-Pearson intervals, the gap and the error ratio
(Recht et al. 2018, Table 1 and Appendix C), the linear and probit fits of new against
original accuracy with confidence bands (Fig. 2; probit scale as in Recht et al. 2019), rank
correlations with bootstrap intervals, and pairwise model agreement (Mania et al. 2019).

Original accuracies are *computed* only from predictions plus the original labels. Without the
labels they are unavailable (``None``), never guessed; a caller may pass accuracies reported
elsewhere (e.g. the paper's table) as ``reference_original``, which are kept in a separate field
and used for the fit and the ranks only when the computed ones are missing
(``original_source == "reported"``).

>>> import numpy as np
>>> labels = np.array([0, 1, 2, 0, 1, 2])
>>> new = np.array([[0, 1, 2, 0, 1, 0], [0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]])
>>> z = analyze_zoo(["a", "b", "c"], new, labels, reference_original=[0.99, 0.9, 0.5], n_boot=0)
>>> [round(float(v), 3) for v in z.new_accuracy], z.original_source
([0.833, 0.5, 0.333], 'reported')
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlmyths.errors import UserError
from mlmyths.stats import clopper_pearson
from mlmyths.reuse.stats import (
    LinearFit, RankAgreement, independent_agreement, linear_fit, off_diagonal_mean,
    pairwise_agreement, probit_fit, rank_agreement,
)

#: Size of the test set that reported accuracies come from, used to give them an interval
#: (CIFAR-10's test set has 10,000 images).
DEFAULT_REFERENCE_N = 10_000


@dataclass(frozen=True)
class ZooAnalysis:
    """Accuracies are fractions in [0, 1]; arrays are ``(M,)`` in the order of ``models``."""

    models: tuple[str, ...]
    num_classes: int
    n_new: int
    new_accuracy: np.ndarray
    new_ci_low: np.ndarray
    new_ci_high: np.ndarray
    n_original: int | None  #: None when the original labels were not given
    original_accuracy: np.ndarray | None  #: computed from predictions + labels, else None
    original_ci_low: np.ndarray | None
    original_ci_high: np.ndarray | None
    reference_original: np.ndarray | None  #: reported elsewhere (e.g. a paper's table), if given
    reference_ci_low: np.ndarray | None  #: Clopper-Pearson as if from ``reference_n`` examples
    reference_ci_high: np.ndarray | None
    original_source: str | None  #: "computed", "reported" or None: what the fit and ranks use
    significant_drop: np.ndarray | None  #: bool (M,): intervals of original and new do not overlap
    linear: LinearFit | None
    probit: LinearFit | None
    ranks: RankAgreement | None
    agreement_new: np.ndarray  #: (M, M) pairwise agreement on the new test set
    agreement_original: np.ndarray | None  #: (M, M) on the original test set (needs no labels)
    alpha: float

    @property
    def original_used(self) -> np.ndarray | None:
        """The original accuracies the fit and the ranks use (computed, else reported)."""
        if self.original_source == "computed":
            return self.original_accuracy
        if self.original_source == "reported":
            return self.reference_original
        return None

    @property
    def gap(self) -> np.ndarray | None:
        """Computed original minus new accuracy (None without the original labels)."""
        return None if self.original_accuracy is None else self.original_accuracy - self.new_accuracy

    @property
    def gap_vs_reference(self) -> np.ndarray | None:
        return None if self.reference_original is None else self.reference_original - self.new_accuracy

    def error_ratio(self, original: np.ndarray | None) -> np.ndarray | None:
        """New error over original error (Recht et al. 2018, Appendix C)."""
        if original is None:
            return None
        with np.errstate(divide="ignore", invalid="ignore"):
            return (1 - self.new_accuracy) / (1 - original)

    def mean_agreement(self) -> dict[str, float | None]:
        """Mean off-diagonal agreement on the new set, and what independent errors would give."""
        return {
            "observed": off_diagonal_mean(self.agreement_new),
            "independent_errors": off_diagonal_mean(independent_agreement(self.new_accuracy, self.num_classes)),
            "observed_original": None if self.agreement_original is None else off_diagonal_mean(self.agreement_original),
        }

    def rows(self, paper_names: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """One row per model, accuracies in percent, None where unavailable."""
        pct = lambda v, i: None if v is None else round(100.0 * float(v[i]), 3)  # noqa: E731
        ratio_c, ratio_r = self.error_ratio(self.original_accuracy), self.error_ratio(self.reference_original)
        gap, gap_ref = self.gap, self.gap_vs_reference
        out = []
        for i, name in enumerate(self.models):
            row: dict[str, Any] = {
                "model": name,
                "original_accuracy": pct(self.original_accuracy, i),
                "new_accuracy": pct(self.new_accuracy, i),
                "new_ci_low": pct(self.new_ci_low, i),
                "new_ci_high": pct(self.new_ci_high, i),
                "gap": pct(gap, i),
                "original_ci_low": pct(self.original_ci_low, i),
                "original_ci_high": pct(self.original_ci_high, i),
                "error_ratio": None if ratio_c is None else round(float(ratio_c[i]), 3),
                "paper_original_accuracy": pct(self.reference_original, i),
                "gap_vs_paper": pct(gap_ref, i),
                "error_ratio_vs_paper": None if ratio_r is None else round(float(ratio_r[i]), 3),
                "significant_drop": None if self.significant_drop is None else bool(self.significant_drop[i]),
            }
            if paper_names is not None:
                row["paper_name"] = paper_names.get(name)
            out.append(row)
        return out


def _predictions(values: Any, name: str, n_models: int, n_examples: int | None) -> np.ndarray:
    p = np.asarray(values)
    if p.ndim != 2 or p.shape[0] != n_models or (n_examples is not None and p.shape[1] != n_examples):
        want = f"({n_models}, {n_examples if n_examples is not None else 'N'})"
        raise UserError(f"{name}: expected predictions of shape {want}, got {p.shape}")
    if not np.issubdtype(p.dtype, np.integer):
        raise UserError(f"{name}: predictions must be integer labels, got dtype {p.dtype}")
    return p


def analyze_zoo(models: Sequence[str], new_predictions: Any, new_labels: Any, *,
                original_predictions: Any = None, original_labels: Any = None,
                reference_original: Any = None, reference_n: int = DEFAULT_REFERENCE_N,
                num_classes: int | None = None, alpha: float = 0.05, n_boot: int = 1000,
                seed: int = 0) -> ZooAnalysis:
    """Analyse a model zoo on an original and a new test set.

    Parameters
    ----------
    models : M names.
    new_predictions, new_labels : int ``(M, N1)`` and ``(N1,)``.
    original_predictions, original_labels : int ``(M, N0)`` and ``(N0,)``; either may be None.
        The original accuracies are computed only when both are given.
    reference_original : ``(M,)`` accuracies in [0, 1] reported elsewhere (e.g. a paper), or None.
        Given an interval as if measured on ``reference_n`` examples.
    alpha : 1 - confidence level of every interval (0.05: 95%).
    n_boot : bootstrap resamples for the rank correlations' intervals (0: none).
    """
    models = tuple(str(m) for m in models)
    m = len(models)
    if m == 0:
        raise UserError("analyze_zoo needs at least one model")
    labels = np.asarray(new_labels)
    if labels.ndim != 1:
        raise UserError(f"new_labels must be 1-D, got shape {labels.shape}")
    new = _predictions(new_predictions, "new_predictions", m, len(labels))
    orig_pred = None if original_predictions is None else _predictions(original_predictions, "original_predictions", m, None)
    highest = max(int(labels.max()), int(new.max()), -1 if orig_pred is None else int(orig_pred.max()))
    c = int(num_classes if num_classes is not None else highest + 1)
    new_correct = new == labels[None, :]  # (M, N1)
    k_new = new_correct.sum(1)
    new_acc = k_new / len(labels)
    new_lo, new_hi = clopper_pearson(k_new, len(labels), alpha)

    orig_correct = orig_acc = orig_lo = orig_hi = None
    n_orig = None
    if orig_pred is not None and original_labels is not None:
        olabels = np.asarray(original_labels)
        if olabels.ndim != 1 or len(olabels) != orig_pred.shape[1]:
            raise UserError(f"original_labels: expected {orig_pred.shape[1]} labels (one per prediction), "
                            f"got shape {olabels.shape}")
        orig_correct = orig_pred == olabels[None, :]
        n_orig = len(olabels)
        k_orig = orig_correct.sum(1)
        orig_acc = k_orig / n_orig
        orig_lo, orig_hi = clopper_pearson(k_orig, n_orig, alpha)

    ref = ref_lo = ref_hi = None
    if reference_original is not None:
        ref = np.asarray(reference_original, dtype=np.float64)
        if ref.shape != (m,) or np.any(~np.isfinite(ref)) or np.any((ref < 0) | (ref > 1)):
            raise UserError(f"reference_original: expected {m} accuracies in [0, 1], got {reference_original!r}")
        ref_lo, ref_hi = clopper_pearson(np.rint(ref * reference_n).astype(np.int64), reference_n, alpha)

    source = "computed" if orig_acc is not None else ("reported" if ref is not None else None)
    used = orig_acc if source == "computed" else ref
    used_lo = orig_lo if source == "computed" else ref_lo
    drop = None if used is None else np.asarray(used_lo) > np.asarray(new_hi)

    lin = prob = ranks = None
    if used is not None and m >= 3 and np.ptp(used) > 0:
        lin = linear_fit(used, new_acc, alpha)
        prob = probit_fit(used, new_acc, alpha)
    if used is not None and m >= 2:
        ranks = rank_agreement(orig_correct if source == "computed" else used, new_correct,
                               n_boot=n_boot, alpha=alpha, seed=seed)
    return ZooAnalysis(
        models=models, num_classes=c, n_new=len(labels), new_accuracy=new_acc,
        new_ci_low=np.asarray(new_lo), new_ci_high=np.asarray(new_hi),
        n_original=n_orig, original_accuracy=orig_acc,
        original_ci_low=None if orig_lo is None else np.asarray(orig_lo),
        original_ci_high=None if orig_hi is None else np.asarray(orig_hi),
        reference_original=ref, reference_ci_low=None if ref_lo is None else np.asarray(ref_lo),
        reference_ci_high=None if ref_hi is None else np.asarray(ref_hi),
        original_source=source, significant_drop=drop, linear=lin, probit=prob, ranks=ranks,
        agreement_new=pairwise_agreement(new, c),
        agreement_original=None if orig_pred is None else pairwise_agreement(orig_pred, c),
        alpha=alpha,
    )
