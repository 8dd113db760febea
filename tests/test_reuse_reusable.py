"""ReusableHoldout: the boosting attack against naive reuse, the Ladder and Thresholdout; budget and log."""
from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

from mlmyths.errors import UserError
from mlmyths.reuse import (
    HoldoutBudgetSpent, ParameterFreeLadder, ReusableHoldout, boosting_attack, boosting_attack_on, reusable,
)


def test_docstring_examples_run():
    failures, attempted = doctest.testmod(reusable, optionflags=doctest.ELLIPSIS)
    assert attempted > 0 and failures == 0


def _predictions_with_accuracy(labels: np.ndarray, accuracy: float) -> np.ndarray:
    """Binary predictions that are right on exactly round(accuracy * n) examples."""
    wrong = len(labels) - round(accuracy * len(labels))
    p = labels.copy()
    p[:wrong] = 1 - p[:wrong]
    return p


# -- the boosting attack (Blum & Hardt 2015) -----------------------------------------------------------------


def test_boosting_attack_fools_a_naive_holdout_but_not_the_ladder_or_thresholdout():
    """n = 1,000 coin-flip labels, k = 1,000 random labelings, 6 seeds.

    Tolerances. The Ladder reveals a score only when its board moves, so the attacker learns the
    scores of a few submissions and cannot aggregate many above-chance ones; the board shows at
    most the luckiest of the k chance-level submissions, which by Hoeffding and a union bound stays
    below 0.5 + sqrt(ln(k / beta) / 2n) = 0.570 with probability 0.95 (beta = 0.05), and about
    0.5 + sqrt(ln(k) / 2n) = 0.559 in expectation. Thresholdout (T = 0.04, sigma = 0.01) reveals
    the holdout at most B = 20 times; Dwork et al.'s guarantee is stated for an accuracy
    tau = 4T/3 (their T = 3 tau / 4), so every answer should lie within tau = 0.053 of the true
    0.5, and the mean over seeds within T.
    """
    n, k, T = 1000, 1000, 0.04
    reported: dict[str, list[float]] = {"plain": [], "ladder": [], "thresholdout": []}
    for seed in range(6):
        rng = np.random.default_rng(seed)
        y, y_train = rng.integers(0, 2, n), rng.integers(0, 2, n)
        holdouts = {"plain": ReusableHoldout(y, mechanism="plain"),
                    "ladder": ReusableHoldout(y, mechanism="ladder"),
                    "thresholdout": ReusableHoldout(y, mechanism="thresholdout", train_labels=y_train, budget=20,
                                                    threshold=T, sigma=0.01, seed=100 + seed)}
        for name, holdout in holdouts.items():
            result = boosting_attack_on(holdout, queries=k, num_classes=2, rng=np.random.default_rng(1000 + seed))
            assert result.true_accuracy == 0.5
            reported[name].append(result.reported)
            if name == "plain":
                assert result.reported == result.holdout  # the naive holdout reports the (overfit) holdout score
        # the attacker spent the budget but the unit it kept for the vote, and stopped before its k queries
        assert holdouts["thresholdout"].budget_left in (0, 1) and holdouts["thresholdout"].queries < k
    plain, ladder, thresholdout = (np.array(reported[m]) for m in ("plain", "ladder", "thresholdout"))
    assert plain.min() > 0.6 and plain.mean() > 0.65  # Blum & Hardt: about sqrt(k / n) above chance
    assert ladder.max() < 0.5 + math.sqrt(math.log(k / 0.05) / (2 * n))
    assert ladder.mean() < 0.5 + math.sqrt(math.log(k) / (2 * n))
    assert np.abs(thresholdout - 0.5).max() < 4 * T / 3
    assert abs(thresholdout.mean() - 0.5) < T
    assert plain.mean() - 0.5 > 3 * max(ladder.mean() - 0.5, abs(thresholdout.mean() - 0.5))


def test_boosting_attack_on_labels_is_the_attack_on_a_reusable_holdout():
    labels = np.random.default_rng(7).integers(0, 3, 500)
    for mechanism in ("plain", "ladder"):
        a = boosting_attack(labels, queries=200, num_classes=3, mechanism=mechanism, rng=np.random.default_rng(8))
        b = boosting_attack_on(ReusableHoldout(labels, mechanism=mechanism), queries=200, num_classes=3,
                               rng=np.random.default_rng(8))
        assert a == b


# -- budget and log -------------------------------------------------------------------------------------------


def test_plain_holdout_answers_exactly_and_counts_every_query():
    y = np.zeros(200, dtype=np.int64)
    holdout = ReusableHoldout(y, mechanism="plain", budget=3)
    answers = [holdout.score(_predictions_with_accuracy(y, a)) for a in (0.5, 0.75, 0.9)]
    assert answers == [0.5, 0.75, 0.9]
    assert [(q.index, q.answer, q.from_holdout, q.budget_spent, q.train_score) for q in holdout.log] == [
        (0, 0.5, True, 1, None), (1, 0.75, True, 1, None), (2, 0.9, True, 1, None)]
    assert holdout.budget_left == 0 and holdout.queries == 3
    with pytest.raises(HoldoutBudgetSpent, match="budget of 3 is spent after 3 queries"):
        holdout.score(y)
    assert holdout.queries == 3  # a refused query is not logged


def test_ladder_with_a_step_follows_algorithm_1_and_spends_one_unit_per_submission():
    y = np.zeros(10_000, dtype=np.int64)
    losses = (0.3012, 0.2950, 0.2899, 0.2891, 0.31, 0.1234)  # as in test_ladder_update_rule
    holdout = ReusableHoldout(y, mechanism="ladder", step=0.01, budget=6)
    answers = [holdout.score(_predictions_with_accuracy(y, 1 - loss)) for loss in losses]
    # the board moves when a loss beats the best by more than the step; released values rounded to the step
    assert answers == pytest.approx([0.70, 0.70, 0.71, 0.71, 0.71, 0.88])
    assert [q.from_holdout for q in holdout.log] == [True, False, True, False, False, True]
    assert [q.budget_spent for q in holdout.log] == [1] * 6 and holdout.budget_left == 0
    with pytest.raises(HoldoutBudgetSpent):
        holdout.score(y)


def test_parameter_free_ladder_through_the_object_is_the_ladder_itself():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    submissions = rng.integers(0, 2, (30, 400))
    holdout, ladder = ReusableHoldout(y, mechanism="ladder"), ParameterFreeLadder()
    for p in submissions:
        assert holdout.score(p) == 1.0 - ladder.submit((p != y).astype(np.float64))
        assert holdout.log[-1].from_holdout == ladder.improved
    assert holdout.budget_left is None and holdout.queries == 30


def test_thresholdout_log_and_budget_are_exact():
    y, y_train = np.zeros(100, dtype=np.int64), np.zeros(100, dtype=np.int64)
    holdout = ReusableHoldout(y, mechanism="thresholdout", train_labels=y_train, budget=2, threshold=0.04,
                              sigma=0.0, seed=0)  # sigma = 0: no noise, the threshold is exactly T

    def ask(train: float, hold: float) -> float:
        return holdout.score(_predictions_with_accuracy(y, hold), _predictions_with_accuracy(y_train, train))

    assert ask(0.80, 0.82) == 0.80  # within T: the training score, no budget spent
    assert holdout.budget_left == 2
    assert ask(0.95, 0.80) == 0.80  # overfit by 0.15: the holdout score, one unit spent
    assert ask(0.60, 0.60) == 0.60
    assert ask(0.50, 0.70) == 0.70  # the second release spends the budget
    assert [(q.train_score, q.answer, q.from_holdout, q.budget_spent) for q in holdout.log] == [
        (0.80, 0.80, False, 0), (0.95, 0.80, True, 1), (0.60, 0.60, False, 0), (0.50, 0.70, True, 1)]
    assert holdout.budget_left == 0
    with pytest.raises(HoldoutBudgetSpent, match="fresh holdout"):
        ask(0.60, 0.60)  # Thresholdout answers nothing once B releases are spent, not even close queries
    assert holdout.queries == 4


def test_the_log_fingerprints_what_was_asked_without_revealing_the_holdout_score():
    y = np.random.default_rng(0).integers(0, 2, 300)
    holdout = ReusableHoldout(y, mechanism="ladder")
    a, b = y.copy(), y.copy()
    a[:10], b[:20] = 1 - a[:10], 1 - b[:20]  # 290 and 280 of 300 right
    holdout.score(a), holdout.score(b), holdout.score(a)
    assert holdout.log[0].asked == holdout.log[2].asked != holdout.log[1].asked
    assert len(holdout.log[0].asked) == 16
    # the second submission did not move the board: its own score, 280/300, appears nowhere in the log
    assert [q.answer for q in holdout.log] == pytest.approx([290 / 300] * 3)
    assert [q.from_holdout for q in holdout.log] == [True, False, False]
    assert "ladder, n=300, 3 queries, budget no limit" in repr(holdout)


@pytest.mark.parametrize("kwargs, message", [
    ({"mechanism": "oracle"}, "unknown holdout mechanism 'oracle'"),
    ({"mechanism": "thresholdout"}, "pass train_labels="),
    ({"mechanism": "ladder", "budget": 0}, "budget must be an integer >= 1"),
    ({"mechanism": "plain", "step": 0.01}, "step=0.01 is the Ladder's"),
    ({"mechanism": "ladder", "step": 0.0}, "Ladder step must be > 0"),
])
def test_bad_construction_is_refused(kwargs, message):
    with pytest.raises(UserError, match=message):
        ReusableHoldout(np.zeros(10, dtype=np.int64), **kwargs)


def test_bad_queries_are_refused():
    y = np.zeros(10, dtype=np.int64)
    with pytest.raises(UserError, match="labels must be a 1-D array of integer class labels"):
        ReusableHoldout(np.zeros(10))
    holdout = ReusableHoldout(y, mechanism="thresholdout", train_labels=np.zeros(5, dtype=np.int64))
    with pytest.raises(UserError, match="needs train_predictions="):
        holdout.score(y)
    with pytest.raises(UserError, match="train_predictions has 4 entries, the labels it is scored against have 5"):
        holdout.score(y, np.zeros(4, dtype=np.int64))
    with pytest.raises(UserError, match="predictions has 9 entries"):
        holdout.score(y[:9], np.zeros(5, dtype=np.int64))
    with pytest.raises(UserError, match="not scores"):
        holdout.score(np.zeros((10, 2)), np.zeros(5, dtype=np.int64))
    assert holdout.queries == 0
