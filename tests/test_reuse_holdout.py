"""Holdout mechanisms (Thresholdout, the Ladder) and adaptive selection on synthetic zoos."""
from __future__ import annotations

import math

import numpy as np
import pytest

from mlmyths.errors import UserError
from mlmyths.reuse import (
    Ladder, ParameterFreeLadder, PlainHoldout, Thresholdout, boosting_attack, greedy_selection, random_partitions,
    random_splits,
)
from mlmyths.reuse.holdout import round_to
from mlmyths.reuse.selection import _Votes


# -- Thresholdout --------------------------------------------------------------------------------------


def test_thresholdout_answers_with_the_training_value_when_close():
    t = Thresholdout(threshold=0.04, sigma=0.0, budget=5, rng=np.random.default_rng(0))
    assert t.query(0.80, 0.82) == 0.80
    assert t.budget_left == 5 and t.overfit_events == 0 and t.queries == 1


def test_thresholdout_releases_the_holdout_value_and_spends_budget_when_far():
    t = Thresholdout(threshold=0.04, sigma=0.0, budget=3, rng=np.random.default_rng(0))
    answers = [t.query(0.95, 0.80) for _ in range(5)]  # training value overfit by 0.15
    assert answers == [0.80, 0.80, 0.80, None, None]  # sigma = 0: exact holdout values, then the budget is gone
    assert t.budget_left == 0 and t.overfit_events == 3 and t.queries == 3


def test_thresholdout_noise_has_the_papers_scales():
    # Released values are holdout + Lap(sigma): mean absolute deviation = sigma.
    sigma = 0.01
    t = Thresholdout(threshold=0.04, sigma=sigma, budget=10_000, rng=np.random.default_rng(1))
    released = np.array([t.query(0.95, 0.50) for _ in range(5000)])  # always far above threshold
    assert np.mean(np.abs(released - 0.50)) == pytest.approx(sigma, rel=0.06)
    assert t.budget_left == 5000
    # Near the threshold the decision is noisy (threshold noise Lap(2 sigma) + query noise Lap(4 sigma)):
    # the first query with a difference of exactly T is released half the time by symmetry ...
    rng = np.random.default_rng(2)
    first = [Thresholdout(0.04, sigma, 10, rng).query(0.5 + 0.04 + 1e-12, 0.5) != 0.5 + 0.04 + 1e-12
             for _ in range(4000)]
    assert 0.46 < np.mean(first) < 0.54
    # ... and with a small noise rate the threshold is sharp: differences of T +- 0.04 are always / never released.
    small = [Thresholdout(0.04, 0.001, 10, rng) for _ in range(200)]
    assert all(t.query(0.58, 0.5) != 0.58 for t in small[:100])
    assert all(t.query(0.5, 0.5) == 0.5 for t in small[100:])


def test_thresholdout_answers_on_synthetic_queries_stay_accurate():
    # 2,000 queries; on half of them the training value overfits by 0.15 (an analyst who tuned on S_t).
    rng = np.random.default_rng(3)
    truth = rng.uniform(0.3, 0.7, 2000)
    overfit = rng.random(2000) < 0.5
    train = truth + rng.normal(0, 0.005, 2000) + 0.15 * overfit
    hold = truth + rng.normal(0, 0.005, 2000)
    t = Thresholdout(threshold=0.04, sigma=0.01, budget=5000, rng=np.random.default_rng(4))
    answers = np.array([t.query(a, b) for a, b in zip(train, hold)])
    error = np.abs(answers - truth)
    assert np.mean(error < 0.05) > 0.97  # nearly every answer close to the truth (noise lets a few through) ...
    assert np.mean(error) < 0.02  # ... and close on average, although train is off by 0.15 half the time
    assert np.mean(np.abs(train - truth)) > 0.07
    assert t.overfit_events == t.budget - t.budget_left == np.sum(answers != train)
    assert t.overfit_events >= 0.95 * overfit.sum()  # the overfit queries are (nearly all) caught


@pytest.mark.parametrize("kwargs", [{"threshold": -0.1}, {"sigma": -1.0}, {"budget": -1}])
def test_thresholdout_rejects_bad_parameters(kwargs):
    with pytest.raises(UserError):
        Thresholdout(**kwargs)


# -- the Ladder ---------------------------------------------------------------------------------------------


def test_ladder_update_rule():
    ladder = Ladder(step=0.01)
    released = [ladder.submit(loss) for loss in (0.3012, 0.2950, 0.2899, 0.2891, 0.31, 0.1234)]
    # R_0 = inf; improvements must beat R_{t-1} - eta; released values are rounded to multiples of eta.
    assert released == pytest.approx([0.30, 0.30, 0.29, 0.29, 0.29, 0.12])
    assert ladder.improved and ladder.submissions == 6
    assert round_to(0.2349, 0.01) == pytest.approx(0.23) and round_to(0.2351, 0.01) == pytest.approx(0.24)
    with pytest.raises(UserError):
        Ladder(step=0)


def test_parameter_free_ladder_uses_one_standard_error_of_the_paired_differences():
    n = 400
    rng = np.random.default_rng(5)
    first = (rng.random(n) < 0.30).astype(float)
    ladder = ParameterFreeLadder()
    assert ladder.submit(first) == pytest.approx(round_to(first.mean(), 1 / n)) and ladder.improved
    # a submission differing on a few examples: threshold s / sqrt(n)
    second = first.copy()
    flip = np.flatnonzero(first == 1)[:6]
    second[flip] = 0.0  # 6 fewer errors: improvement 6/400 = 0.015
    s = np.std(second - first, ddof=1) / math.sqrt(n)
    assert 0.015 > s  # so it is accepted
    assert ladder.submit(second) == pytest.approx(second.mean()) and ladder.improved
    third = second.copy()
    third[np.flatnonzero(second == 1)[:1]] = 0.0
    third[np.flatnonzero(second == 0)[:1]] = 1.0  # same loss, different errors: not an improvement
    assert ladder.submit(third) == pytest.approx(second.mean()) and not ladder.improved
    with pytest.raises(UserError):
        ladder.submit(np.zeros(10))


# -- selection ------------------------------------------------------------------------------------------


def test_vote_update_matches_a_direct_plurality_vote():
    rng = np.random.default_rng(6)
    preds = rng.integers(0, 4, (7, 300))
    votes = _Votes(300, 4)
    for k in range(7):
        cand = votes.with_each(preds)  # each candidate added to the current ensemble
        chosen = preds[: k + 1]  # the ensemble so far plus candidate k
        counts = np.stack([(chosen == c).sum(0) for c in range(4)], 1)
        assert np.array_equal(cand[k], counts.argmax(1))  # argmax: ties to the smallest class
        votes.add(preds[k])


def _synthetic_zoo(seed: int, m: int = 40, n_pool: int = 3000, n_analyst: int = 1000):
    """Candidates with independent errors of equal accuracy: any selection gain is noise."""
    rng = np.random.default_rng(seed)
    y_pool, y_a = rng.integers(0, 10, n_pool), rng.integers(0, 10, n_analyst)

    def predict(y):
        wrong = (y + rng.integers(1, 10, (m, len(y)))) % 10
        return np.where(rng.random((m, len(y))) < 0.7, y, wrong)

    return predict(y_a), y_a, predict(y_pool), y_pool


def test_plain_reuse_overfits_the_holdout_and_thresholdout_less():
    gaps: dict[str, list[float]] = {m: [] for m in ("plain", "thresholdout", "ladder")}
    for r in range(6):
        pa, ya, pool, yp = _synthetic_zoo(r)
        (h, f), = random_splits(len(yp), 500, 1, np.random.default_rng(100 + r))
        for mech in gaps:
            trace = greedy_selection(pa, ya, pool[:, h], yp[h], pool[:, f], yp[f], rounds=8, mechanism=mech,
                                     rng=np.random.default_rng(200 + r))
            gaps[mech].append(trace.final()["gap"])
            assert trace.final()["holdout"] == trace.holdout[trace.final_rounds - 1]
            if mech == "ladder":  # the leaderboard only moves up, by accepted submissions' exact holdout scores
                assert np.all(np.diff(trace.reported) > 0) and trace.final_rounds == len(trace.reported)
                assert trace.reported == pytest.approx(trace.holdout, abs=1e-12)
    # Independent 70% models: ensembles do help on fresh data, but the reported holdout score of the
    # plainly selected ensemble overstates it (winner's curse + adaptivity).
    assert np.mean(gaps["plain"]) > 0.005 and min(gaps["plain"]) > 0
    # Thresholdout answers mostly from the analyst's own set (1,000 examples, selected on, plus noise):
    # its answers stay within the threshold T = 0.04 of the truth, as Dwork et al. guarantee.
    assert abs(np.mean(gaps["thresholdout"])) < 0.04
    # The Ladder stops as soon as no candidate beats the leader by a standard error: here after round one,
    # so its gap is the winner's curse of picking one of 40 models on 500 examples.
    assert 0.01 < np.mean(gaps["ladder"]) < 0.08


def test_greedy_round_one_is_the_best_single_model():
    pa, ya, pool, yp = _synthetic_zoo(9, m=10)
    h, f = np.arange(1500), np.arange(1500, 3000)
    trace = greedy_selection(pa, ya, pool[:, h], yp[h], pool[:, f], yp[f], rounds=3, mechanism="plain")
    single = (pool[:, h] == yp[h]).mean(1)
    assert trace.chosen[0] == int(np.argmax(single)) and trace.reported[0] == pytest.approx(single.max())
    assert trace.queries == 30
    with pytest.raises(UserError, match="mechanism"):
        greedy_selection(pa, ya, pool[:, h], yp[h], pool[:, f], yp[f], rounds=3, mechanism="oracle")


def test_boosting_attack_climbs_a_plain_leaderboard_but_not_the_ladder():
    plain, ladder = [], []
    for r in range(5):
        rng = np.random.default_rng(r)
        labels = rng.integers(0, 2, 2000)
        plain.append(boosting_attack(labels, queries=500, num_classes=2, mechanism="plain", rng=rng))
        ladder.append(boosting_attack(labels, queries=500, num_classes=2, mechanism="ladder", rng=rng))
    # Blum & Hardt: about sqrt(k / n) above chance on the plain holdout, close to chance under the Ladder
    assert np.mean([a.gap for a in plain]) > 0.08
    assert np.mean([a.gap for a in ladder]) < 0.03
    assert all(a.true_accuracy == 0.5 and a.reported == a.holdout for a in plain)
    with pytest.raises(UserError):
        boosting_attack(np.zeros(10, int), queries=5, num_classes=2, mechanism="thresholdout")


def test_random_partitions_and_splits():
    parts = random_partitions(100, (20, 30), 2, np.random.default_rng(0))
    for a, h, f in parts:
        assert (len(a), len(h), len(f)) == (20, 30, 50)
        assert np.array_equal(np.sort(np.concatenate([a, h, f])), np.arange(100))
    with pytest.raises(UserError, match="part sizes"):
        random_partitions(100, (60, 40), 1, np.random.default_rng(0))


def test_random_splits_partition_the_pool():
    splits = random_splits(100, 30, 3, np.random.default_rng(0))
    for h, f in splits:
        assert len(h) == 30 and len(f) == 70 and len(np.intersect1d(h, f)) == 0
    assert not np.array_equal(splits[0][0], splits[1][0])
    with pytest.raises(UserError, match="holdout size"):
        random_splits(100, 100, 1, np.random.default_rng(0))


def test_plain_holdout_counts_queries():
    p = PlainHoldout()
    assert p.query(None, 0.7) == 0.7 and p.queries == 1
