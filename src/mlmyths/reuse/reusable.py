"""A holdout set to query instead of scoring on it directly: Thresholdout or the Ladder behind one object.

Scoring models on the same holdout set again and again, each next model chosen after seeing the
earlier scores, turns the holdout into training data: its scores stop estimating accuracy on new
data. Blum & Hardt's boosting attack ("The Ladder: A Reliable Leaderboard for Machine Learning
Competitions", ICML 2015, their first experiment) makes the point with labels that are pure coin
flips, which no classifier can predict: submit random labelings, keep those that score above
chance, submit their majority vote. Its holdout score climbs above 50% by an amount that grows
like sqrt(k/n) with k queries on n examples. Answered through a reusable holdout, the same attack
learns next to nothing:

>>> import numpy as np
>>> from mlmyths.reuse import ReusableHoldout, boosting_attack_on
>>> rng = np.random.default_rng(0)
>>> y_holdout, y_train = rng.integers(0, 2, 1000), rng.integers(0, 2, 1000)   # coin flips
>>> def attack(holdout):
...     result = boosting_attack_on(holdout, queries=1000, num_classes=2, rng=np.random.default_rng(1))
...     return round(result.reported, 2)
>>> attack(ReusableHoldout(y_holdout, mechanism="plain"))          # the naive holdout: fooled
0.71
>>> attack(ReusableHoldout(y_holdout, mechanism="ladder"))         # the parameter-free Ladder
0.55
>>> attack(ReusableHoldout(y_holdout, mechanism="thresholdout", train_labels=y_train, budget=20, seed=1))
0.51

The Ladder's 0.55 is the luck of the best single labeling among 1,000 (about
0.5 + sqrt(ln(k) / 2n) = 0.56), which it reports honestly; what it denies the attacker is the
vote's gain. Every query is logged, and the budget is visible:

>>> holdout = ReusableHoldout(y_holdout, mechanism="thresholdout", train_labels=y_train, budget=5, seed=0)
>>> holdout.score(y_holdout, train_predictions=y_train)             # train and holdout agree: the train score
1.0
>>> round(holdout.score(y_holdout, train_predictions=1 - y_train), 2)   # far apart: holdout + Lap(sigma)
0.97
>>> [(q.train_score, q.from_holdout, q.budget_spent) for q in holdout.log], holdout.budget_left
([(1.0, False, 0), (0.0, True, 1)], 4)

Mechanisms (the one implementation of each is in :mod:`mlmyths.reuse.holdout`):

- ``"thresholdout"``: Dwork, Feldman, Hardt, Pitassi, Reingold & Roth, "The reusable holdout:
  Preserving validity in adaptive data analysis", Science 349 (2015), the Thresholdout box. Each
  query also gives the predictions on the analyst's training set (``train_labels`` at
  construction); the answer is the training accuracy unless it differs from the holdout accuracy
  by more than a noisy threshold ``threshold`` (T), in which case it is the holdout accuracy plus
  Laplace noise of scale ``sigma``, and one unit of ``budget`` (the paper's B, the number of such
  overfitting events) is spent.
- ``"ladder"``: Blum & Hardt (2015). The answer is the leaderboard accuracy: it moves only when a
  submission beats the best so far by more than a step, and is then rounded. ``step=None`` (the
  default) is the paper's parameter-free Ladder (the step is one standard error of the paired
  differences with the best submission, answers rounded to 1/n); ``step=η`` is Algorithm 1 with a
  fixed step. Every submission spends one unit of ``budget`` (the paper's k).
- ``"plain"``: the holdout accuracy itself, every time: the naive reuse, for comparison. Every
  query spends one unit of ``budget``.

``budget=None`` (the default) sets no limit. The guarantees weaken as the budget grows (for the
Ladder the leaderboard error is O((log(kn)/n)^(1/3)) after k submissions; for Thresholdout the
holdout size needed grows roughly like sqrt(B) log k), so a budget is how an analyst keeps them.
Once it is spent, :meth:`ReusableHoldout.score` raises :class:`HoldoutBudgetSpent`.
"""
from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass

import numpy as np

from mlmyths.errors import UserError
from mlmyths.reuse.holdout import Ladder, ParameterFreeLadder, PlainHoldout, Thresholdout

MECHANISMS = ("plain", "thresholdout", "ladder")


class HoldoutBudgetSpent(UserError):
    """A :class:`ReusableHoldout` was queried after its budget was spent."""


@dataclass(frozen=True)
class HoldoutQuery:
    """One query of a :class:`ReusableHoldout`, as the analyst may see it (no raw holdout score)."""

    index: int  #: 0-based position in the log
    asked: str  #: SHA-256 (first 16 hex digits) of the holdout predictions and training predictions submitted
    train_score: float | None  #: training accuracy of the query (Thresholdout), else None
    answer: float  #: the accuracy answered
    from_holdout: bool  #: the answer reveals the holdout (Thresholdout: released; Ladder: the board moved; plain)
    budget_spent: int  #: units of budget the query consumed (0 or 1)


def _labels(values: object, name: str, size: int | None = None) -> np.ndarray:
    """``values`` as a 1-D int64 array of class labels (of length ``size`` when given)."""
    a = np.asarray(values)
    if a.ndim != 1 or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.bool_)):
        raise UserError(f"{name} must be a 1-D array of integer class labels, got shape {a.shape}, dtype {a.dtype}; "
                        "pass predicted labels (e.g. scores.argmax(1)), not scores")
    if size is not None and len(a) != size:
        raise UserError(f"{name} has {len(a)} entries, the labels it is scored against have {size}")
    return a.astype(np.int64)


class ReusableHoldout:
    """A holdout set answered through Thresholdout, the Ladder or plainly (see the module docstring).

    Parameters
    ----------
    labels : the holdout labels, int (n,).
    mechanism : ``"thresholdout"`` (default), ``"ladder"`` or ``"plain"``.
    budget : Thresholdout: holdout releases allowed (B); Ladder and plain: queries allowed (k);
        None: no limit.
    threshold, sigma : Thresholdout's T and noise rate (defaults 0.04 and 0.01, the values of
        Dwork et al.'s experiment).
    step : the Ladder's step η (None: the parameter-free Ladder).
    train_labels : the analyst's training labels, int (n_train,); Thresholdout needs them.
    seed : seeds Thresholdout's Laplace noise (None: fresh entropy).

    Attributes: ``log`` (list of :class:`HoldoutQuery`), ``budget_left`` (None: no limit),
    ``queries``, ``size``, ``train_size``.
    """

    def __init__(self, labels: object, *, mechanism: str = "thresholdout", budget: int | None = None,
                 threshold: float = 0.04, sigma: float = 0.01, step: float | None = None,
                 train_labels: object | None = None, seed: int | None = None):
        if mechanism not in MECHANISMS:
            raise UserError(f"unknown holdout mechanism {mechanism!r}; choose one of {', '.join(MECHANISMS)}")
        if budget is not None and not (isinstance(budget, (int, np.integer)) and budget >= 1):
            raise UserError(f"budget must be an integer >= 1 or None (no limit), got {budget!r}")
        self._y = _labels(labels, "labels")
        if len(self._y) < 2:
            raise UserError(f"labels must hold at least 2 holdout examples, got {len(self._y)}")
        self._y_train = None if train_labels is None else _labels(train_labels, "train_labels")
        if mechanism == "thresholdout" and self._y_train is None:
            raise UserError("mechanism 'thresholdout' compares each holdout score with the training score: pass "
                            "train_labels= (the analyst's training labels), or use mechanism='ladder'")
        if mechanism != "ladder" and step is not None:
            raise UserError(f"step={step!r} is the Ladder's; mechanism {mechanism!r} does not take it")
        self.mechanism, self.budget = mechanism, None if budget is None else int(budget)
        self.log: list[HoldoutQuery] = []
        self._spent = 0
        self._mechanism: Thresholdout | Ladder | ParameterFreeLadder | PlainHoldout
        if mechanism == "thresholdout":
            self._mechanism = Thresholdout(threshold, sigma, sys.maxsize if budget is None else int(budget),
                                           np.random.default_rng(seed))
        elif mechanism == "ladder":
            self._mechanism = ParameterFreeLadder() if step is None else Ladder(step=step)
        else:
            self._mechanism = PlainHoldout()

    @property
    def size(self) -> int:
        """Number of holdout examples."""
        return len(self._y)

    @property
    def train_size(self) -> int:
        """Number of training examples (0 without ``train_labels``)."""
        return 0 if self._y_train is None else len(self._y_train)

    @property
    def labels(self) -> np.ndarray:
        """The holdout labels, for the experimenter (an analyst who reads them defeats the mechanism)."""
        return self._y.copy()

    @property
    def queries(self) -> int:
        return len(self.log)

    @property
    def budget_left(self) -> int | None:
        """Budget units left (None: no limit)."""
        return None if self.budget is None else self.budget - self._spent

    def score(self, predictions: object, train_predictions: object | None = None) -> float:
        """The accuracy of ``predictions`` (int (n,)) on the holdout, as the mechanism answers it.

        Thresholdout also needs ``train_predictions`` (int (n_train,)); the Ladder and plain reuse
        ignore them. Raises :class:`HoldoutBudgetSpent` once the budget is spent.
        """
        p = _labels(predictions, "predictions", self.size)
        p_train = None if train_predictions is None else _labels(train_predictions, "train_predictions",
                                                                 self.train_size or None)
        if self.mechanism == "thresholdout" and p_train is None:
            raise UserError("mechanism 'thresholdout' needs train_predictions= (the same model's predictions on the "
                            f"{self.train_size} training examples) at every score()")
        if self.budget_left is not None and self.budget_left < 1:
            raise HoldoutBudgetSpent(
                f"the holdout's budget of {self.budget} is spent after {self.queries} queries ({self.mechanism}); "
                "further answers would no longer be guaranteed to generalize. Score on a fresh holdout set, or "
                "start a ReusableHoldout with a larger budget (a weaker guarantee)")
        digest = hashlib.sha256(np.ascontiguousarray(p).tobytes())
        if p_train is not None:
            digest.update(b"|" + np.ascontiguousarray(p_train).tobytes())
        holdout_accuracy = float((p == self._y).mean())
        mech = self._mechanism
        train_score = None
        if isinstance(mech, Thresholdout):
            train_score = float((p_train == self._y_train).mean())
            released = mech.overfit_events
            answer = mech.query(train_score, holdout_accuracy)
            from_holdout = mech.overfit_events > released
            spent = int(from_holdout)
        elif isinstance(mech, ParameterFreeLadder):
            answer, from_holdout, spent = 1.0 - mech.submit(1.0 - (p == self._y).astype(np.float64)), mech.improved, 1
        elif isinstance(mech, Ladder):
            answer, from_holdout, spent = 1.0 - mech.submit(1.0 - holdout_accuracy), mech.improved, 1
        else:
            answer, from_holdout, spent = mech.query(None, holdout_accuracy), True, 1
        self._spent += spent
        self.log.append(HoldoutQuery(len(self.log), digest.hexdigest()[:16], train_score, float(answer),  # type: ignore[arg-type]
                                     bool(from_holdout), spent))
        return float(answer)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        left = "no limit" if self.budget is None else f"{self.budget_left} of {self.budget} left"
        return f"ReusableHoldout({self.mechanism}, n={self.size}, {self.queries} queries, budget {left})"
