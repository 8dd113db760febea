"""Adaptive model selection against a reused holdout, scored on a fresh holdout it never saw.

A zoo of trained candidates is given by its predicted labels on three disjoint sets: the
analyst's own validation set (``S_t`` of Dwork et al. 2015, used freely), the *holdout*
that every selection step queries (reused), and a *fresh* holdout the selection never sees
(the "new test set"). All three are random parts of one pool (:func:`random_partitions`),
redrawn for every repetition, so they come from the same distribution.

Two selection procedures, each run through a holdout mechanism of :mod:`mlmyths.reuse.holdout`:

- :func:`greedy_selection`: greedy forward ensemble selection with replacement (Caruana,
  Niculescu-Mizil, Crew & Ksikes, "Ensemble Selection from Libraries of Models", ICML 2004):
  each round adds the candidate whose plurality-vote ensemble scores best, and the final
  ensemble is the best-scoring prefix. Round 1 is plain model / hyperparameter selection
  (the best single candidate); later rounds are leaderboard climbing.
- :func:`boosting_attack_on` (and :func:`boosting_attack`, on holdout labels): the "boosting
  attack" of Blum & Hardt (ICML 2015) on a :class:`~mlmyths.reuse.ReusableHoldout`: submit k
  random labelings, keep those that score above chance, submit their plurality vote. It learns
  nothing about the data (true accuracy 1/C) yet climbs a plain leaderboard.

The adaptivity gap of a selection is ``reported score - fresh accuracy`` of what was selected.

>>> rng = np.random.default_rng(0)
>>> labels = rng.integers(0, 2, 400)
>>> attack = boosting_attack(labels, queries=200, num_classes=2, mechanism="plain", rng=rng)
>>> attack.reported > 0.55            # far above the true accuracy of 0.5
True
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlmyths.errors import UserError
from mlmyths.reuse.holdout import ParameterFreeLadder, PlainHoldout, Thresholdout
from mlmyths.reuse.reusable import MECHANISMS, ReusableHoldout


@dataclass(frozen=True)
class ThresholdoutSettings:
    threshold: float = 0.04  #: T (Dwork et al. 2015, experiment)
    sigma: float = 0.01  #: noise rate sigma (Dwork et al. 2015, experiment)
    budget: int = 1000  #: B, holdout releases allowed before the mechanism answers None


@dataclass
class SelectionTrace:
    """What one run of :func:`greedy_selection` saw and chose."""

    mechanism: str
    chosen: list[int] = field(default_factory=list)  #: candidate added in each round
    reported: list[float] = field(default_factory=list)  #: score the analyst saw for each prefix
    holdout: list[float] = field(default_factory=list)  #: true holdout accuracy of each prefix
    fresh: list[float] = field(default_factory=list)  #: fresh accuracy of each prefix
    final_rounds: int = 0  #: length of the prefix finally selected
    queries: int = 0  #: holdout queries made
    holdout_releases: int | None = None  #: Thresholdout: budget spent

    def final(self) -> dict[str, Any]:
        i = self.final_rounds - 1
        return {"mechanism": self.mechanism, "rounds": self.final_rounds, "reported": self.reported[i],
                "holdout": self.holdout[i], "fresh": self.fresh[i], "gap": self.reported[i] - self.fresh[i],
                "queries": self.queries, "holdout_releases": self.holdout_releases}

    def first(self) -> dict[str, Any]:
        """The best single candidate (round 1: model / hyperparameter selection)."""
        return {"mechanism": self.mechanism, "candidate": self.chosen[0], "reported": self.reported[0],
                "holdout": self.holdout[0], "fresh": self.fresh[0], "gap": self.reported[0] - self.fresh[0]}


class _Votes:
    """Plurality-vote ensemble state on one set of examples; ties go to the smallest class."""

    def __init__(self, n: int, num_classes: int):
        self.counts = np.zeros((n, num_classes), dtype=np.int32)  # (N, C)
        self.top = np.zeros(n, dtype=np.int64)  # current plurality label (first max)
        self.rows = np.arange(n)

    def with_each(self, preds: np.ndarray) -> np.ndarray:
        """Ensemble predictions after adding each candidate: ``preds`` (M, N) -> (M, N)."""
        maxc = self.counts[self.rows, self.top]  # (N,)
        joined = self.counts[self.rows[None, :], preds] + 1  # (M, N) count of each candidate's label
        tie = np.minimum(preds, self.top[None, :])
        return np.where(joined > maxc, preds, np.where(joined == maxc, tie, self.top[None, :]))

    def add(self, pred: np.ndarray) -> None:
        self.top = self.with_each(pred[None, :])[0]
        self.counts[self.rows, pred] += 1


def greedy_selection(analyst_predictions: np.ndarray, analyst_labels: np.ndarray,
                     holdout_predictions: np.ndarray, holdout_labels: np.ndarray,
                     fresh_predictions: np.ndarray, fresh_labels: np.ndarray, *,
                     rounds: int, mechanism: str = "plain", num_classes: int | None = None,
                     thresholdout: ThresholdoutSettings = ThresholdoutSettings(),
                     rng: np.random.Generator | None = None) -> SelectionTrace:
    """Greedy ensemble selection of ``rounds`` rounds against the holdout, through ``mechanism``.

    Predictions are int ``(M, N_set)`` for the M candidates on each set. ``mechanism``:

    - ``"plain"``: the analyst sees each candidate ensemble's holdout accuracy;
    - ``"thresholdout"``: sees Thresholdout's answer (training value = accuracy on the
      analyst's set); stops when the budget is spent;
    - ``"ladder"``: submits the candidates in order to a parameter-free Ladder (0-1 loss) and
      sees only its leaderboard; takes the last submission that moved it, stops when none does.

    The final ensemble is the prefix with the best reported score (Caruana et al. 2004).
    """
    if mechanism not in MECHANISMS:
        raise UserError(f"unknown holdout mechanism {mechanism!r}; choose one of {', '.join(MECHANISMS)}")
    if rounds < 1:
        raise UserError(f"rounds must be >= 1, got {rounds}")
    sets = [(np.asarray(analyst_predictions), np.asarray(analyst_labels)),
            (np.asarray(holdout_predictions), np.asarray(holdout_labels)),
            (np.asarray(fresh_predictions), np.asarray(fresh_labels))]
    m = sets[0][0].shape[0]
    for p, y in sets:
        if p.ndim != 2 or p.shape[0] != m or p.shape[1] != len(y):
            raise UserError(f"greedy_selection: predictions {p.shape} do not match {m} candidates x {len(y)} labels")
    c = int(num_classes if num_classes is not None else max(int(p.max()) for p, _ in sets) + 1)
    rng = rng if rng is not None else np.random.default_rng()
    votes = [_Votes(len(y), c) for _, y in sets]
    mech: Any = {"plain": PlainHoldout, "ladder": ParameterFreeLadder}.get(mechanism)
    mech = (Thresholdout(thresholdout.threshold, thresholdout.sigma, thresholdout.budget, rng)
            if mechanism == "thresholdout" else mech())
    trace = SelectionTrace(mechanism)
    for _ in range(rounds):
        correct = [v.with_each(p) == y[None, :] for v, (p, y) in zip(votes, sets)]  # 3 x (M, N_set)
        acc_a, acc_h = correct[0].mean(1), correct[1].mean(1)
        if mechanism == "plain":
            answers = acc_h.copy()
            trace.queries += m
            pick = int(np.argmax(answers))
        elif mechanism == "thresholdout":
            answers = np.full(m, -np.inf)
            for j in range(m):
                a = mech.query(float(acc_a[j]), float(acc_h[j]))
                if a is None:
                    break
                answers[j] = a
                trace.queries += 1
            if not np.isfinite(answers).any():
                break
            pick = int(np.argmax(answers))
        else:
            pick, answers = -1, np.full(m, -np.inf)
            for j in range(m):
                released = mech.submit(1.0 - correct[1][j].astype(np.float64))
                trace.queries += 1
                if mech.improved:
                    pick, answers[j] = j, 1.0 - released
            if pick < 0:
                break
        for v, (p, _) in zip(votes, sets):
            v.add(p[pick])
        trace.chosen.append(pick)
        trace.reported.append(float(answers[pick]))
        trace.holdout.append(float(acc_h[pick]))
        trace.fresh.append(float(correct[2][pick].mean()))
    trace.final_rounds = int(np.argmax(trace.reported)) + 1 if trace.reported else 0
    if mechanism == "thresholdout":
        trace.holdout_releases = mech.overfit_events
    return trace


@dataclass(frozen=True)
class AttackResult:
    mechanism: str
    reported: float  #: leaderboard score (accuracy) of the final submission as released
    holdout: float  #: its true accuracy on the holdout
    true_accuracy: float  #: 1/C: random labelings carry no information about the data
    kept: int  #: random submissions that went into the vote

    @property
    def gap(self) -> float:
        return self.reported - self.true_accuracy


def boosting_attack_on(holdout: ReusableHoldout, *, queries: int, num_classes: int,
                       rng: np.random.Generator | None = None) -> AttackResult:
    """Blum & Hardt's boosting attack (ICML 2015, their first experiment) on a :class:`ReusableHoldout`.

    ``queries`` random labelings (uniform over ``num_classes``) of the holdout examples, and of the
    training examples when the holdout has them (Thresholdout compares the two), are scored. The
    attacker keeps those whose answer came from the holdout (``HoldoutQuery.from_holdout``: always
    for plain reuse, a leaderboard move for the Ladder, a release for Thresholdout) and exceeded
    chance ``1/C``, and submits their plurality vote (ties to the smallest class); its answer is
    ``reported``, beside its true holdout accuracy. The attack stops early to keep one unit of a
    finite budget for that last query. The labels carry no information a classifier could learn
    when they are random, so any ``reported`` above ``1/C`` is overfitting to the holdout.
    """
    if queries < 1 or num_classes < 2:
        raise UserError(f"boosting attack needs queries >= 1 and num_classes >= 2, got {queries}, {num_classes}")
    n, n_train = holdout.size, holdout.train_size
    rng = rng if rng is not None else np.random.default_rng()
    subs = rng.integers(0, num_classes, size=(queries, n + n_train))  # (k, n + n_train) random labelings
    chance = 1.0 / num_classes

    def ask(labeling: np.ndarray) -> float:
        return holdout.score(labeling[:n], train_predictions=labeling[n:] if n_train else None)

    keep = np.zeros(queries, dtype=bool)
    for i in range(queries):
        if holdout.budget_left is not None and holdout.budget_left <= 1:
            break
        answer = ask(subs[i])
        keep[i] = holdout.log[-1].from_holdout and answer > chance
    kept = subs[keep]
    if len(kept) == 0:
        final = subs[0]
    else:
        counts = np.zeros((n + n_train, num_classes), dtype=np.int32)  # (n + n_train, C) votes
        np.add.at(counts, (np.broadcast_to(np.arange(n + n_train), kept.shape), kept), 1)
        final = counts.argmax(1)
    reported = ask(final)
    return AttackResult(holdout.mechanism, reported, float((final[:n] == holdout.labels).mean()), chance,
                        int(keep.sum()))


def boosting_attack(labels: np.ndarray, *, queries: int, num_classes: int, mechanism: str = "plain",
                    rng: np.random.Generator | None = None) -> AttackResult:
    """Blum & Hardt's boosting attack on a leaderboard that scores with the holdout ``labels``:
    :func:`boosting_attack_on` a ``ReusableHoldout(labels, mechanism=mechanism)``, ``"plain"`` or
    the parameter-free ``"ladder"`` (Thresholdout needs training labels: use
    :func:`boosting_attack_on`)."""
    if mechanism not in ("plain", "ladder"):
        raise UserError(f"the boosting attack runs against 'plain' or 'ladder', got {mechanism!r}; for "
                        "Thresholdout use boosting_attack_on(ReusableHoldout(..., train_labels=...))")
    return boosting_attack_on(ReusableHoldout(labels, mechanism=mechanism), queries=queries,
                              num_classes=num_classes, rng=rng)


def random_partitions(pool_size: int, sizes: tuple[int, ...], repeats: int,
                      rng: np.random.Generator) -> list[tuple[np.ndarray, ...]]:
    """``repeats`` random partitions of ``range(pool_size)`` into parts of ``sizes`` plus the rest
    (sorted index arrays, ``len(sizes) + 1`` per partition)."""
    if any(size < 1 for size in sizes) or sum(sizes) >= pool_size:
        raise UserError(f"part sizes {sizes} must be >= 1 and leave a non-empty rest of the pool of {pool_size} "
                        "examples; lower them")
    bounds = np.cumsum((0, *sizes))
    out = []
    for _ in range(repeats):
        perm = rng.permutation(pool_size)
        parts = [perm[a:b] for a, b in zip(bounds[:-1], bounds[1:])] + [perm[bounds[-1]:]]
        out.append(tuple(np.sort(part) for part in parts))
    return out


def random_splits(pool_size: int, holdout_size: int, repeats: int,
                  rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """``repeats`` random (holdout, fresh) index splits of ``range(pool_size)``."""
    if not 0 < holdout_size < pool_size:
        raise UserError(f"holdout size must be between 1 and {pool_size - 1} (the pool has {pool_size} "
                        f"examples), got {holdout_size}")
    return random_partitions(pool_size, (holdout_size,), repeats, rng)  # type: ignore[return-value]
