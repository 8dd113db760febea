"""Myth 3: "ML researchers do not use the test set for validation" -- test-set reuse, new test sets,
accuracy drops and adaptive overfitting.

Components (each a module of this package):

- :mod:`~mlmyths.reuse.stats`: Clopper-Pearson intervals, linear and probit fits with confidence
  bands, Kendall/Spearman rank correlations with bootstrap intervals, pairwise model agreement.
- :mod:`~mlmyths.reuse.analysis`: :func:`analyze_zoo`, the per-model table and fits of a zoo scored
  on an original and a new test set (Recht, Roelofs, Schmidt & Shankar 2018/2019).
- :mod:`~mlmyths.reuse.cifar101`: loader of the published CIFAR-10.1 predictions.
- :mod:`~mlmyths.reuse.holdout`: holdout-query mechanisms: plain reuse, Thresholdout (Dwork et al.,
  Science 2015), the Ladder and its parameter-free variant (Blum & Hardt, ICML 2015).
- :mod:`~mlmyths.reuse.reusable`: :class:`ReusableHoldout`, the object an analyst queries instead of the
  holdout (Thresholdout, the Ladder or plain reuse), with its query log and budget.
- :mod:`~mlmyths.reuse.selection`: adaptive selection against a reused holdout scored on a fresh one
  (greedy ensemble selection / leaderboard climbing), and Blum & Hardt's boosting attack.
- :mod:`~mlmyths.reuse.zoo`: a diverse from-scratch model zoo (linear, random features, kNN, forest,
  MLPs, CNNs) returning predicted labels.

>>> from mlmyths.reuse import clopper_pearson
>>> tuple(round(v, 3) for v in clopper_pearson(1879, 2021))   # 93.0% on CIFAR-10.1 v4
(0.918, 0.94)
"""
from __future__ import annotations

from mlmyths.reuse.analysis import ZooAnalysis, analyze_zoo
from mlmyths.reuse.cifar101 import (
    PAPER_CITATION, PAPER_ORIGINAL_ACCURACY, PublishedPredictions, cifar10_test_labels, load_published,
    read_prediction_file,
)
from mlmyths.reuse.holdout import Ladder, ParameterFreeLadder, PlainHoldout, Thresholdout
from mlmyths.reuse.reusable import HoldoutBudgetSpent, HoldoutQuery, ReusableHoldout
from mlmyths.reuse.selection import (
    AttackResult, SelectionTrace, ThresholdoutSettings, boosting_attack, boosting_attack_on, greedy_selection,
    random_partitions, random_splits,
)
from mlmyths.stats import clopper_pearson
from mlmyths.reuse.stats import (
    LinearFit, RankAgreement, bootstrap_accuracies, independent_agreement, kendall_tau,
    linear_fit, pairwise_agreement, probit_fit, rank_agreement, spearman_rho,
)
from mlmyths.reuse.zoo import FAMILIES, ZooConfig, train_family

__all__ = [
    "ZooAnalysis", "analyze_zoo", "PAPER_CITATION", "PAPER_ORIGINAL_ACCURACY", "PublishedPredictions",
    "cifar10_test_labels", "load_published", "read_prediction_file", "Ladder", "ParameterFreeLadder",
    "PlainHoldout", "Thresholdout", "HoldoutBudgetSpent", "HoldoutQuery", "ReusableHoldout", "AttackResult",
    "SelectionTrace", "ThresholdoutSettings", "boosting_attack", "boosting_attack_on",
    "greedy_selection", "random_partitions", "random_splits", "LinearFit", "RankAgreement", "bootstrap_accuracies", "clopper_pearson",
    "independent_agreement", "kendall_tau", "linear_fit", "pairwise_agreement", "probit_fit", "rank_agreement",
    "spearman_rho", "FAMILIES", "ZooConfig", "train_family",
]
