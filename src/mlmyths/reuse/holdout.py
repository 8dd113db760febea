"""Holdout-query mechanisms: how an analyst's repeated questions to a holdout set are answered.

- :class:`PlainHoldout`: the usual practice, the holdout's empirical value, every time.
- :class:`Thresholdout`: Dwork, Feldman, Hardt, Pitassi, Reingold & Roth, "The reusable holdout:
  Preserving validity in adaptive data analysis", Science 349 (2015), the Thresholdout box:
  answer with the training-set value unless it differs from the holdout value by more than a
  noisy threshold; then answer with the holdout value plus Laplace noise and spend one unit of
  budget. Threshold ``T = 0.04`` and noise rate ``sigma = 0.01`` are the values of the paper's
  experiment; the paper leaves the budget ``B`` to the analysis (it bounds how often overfitting
  may be detected), so it is a parameter here (default 1,000) and its use is reported.
- :class:`Ladder`: Blum & Hardt, "The Ladder: A Reliable Leaderboard for Machine Learning
  Competitions", ICML 2015, Algorithm 1: release a new leaderboard loss only when a submission
  beats the best so far by more than a step ``eta``, rounded to a multiple of ``eta``.
- :class:`ParameterFreeLadder`: the same paper's parameter-free variant: the step is one
  standard error of the paired loss differences against the best submission so far,
  ``s / sqrt(n)``, and the released loss is rounded to ``1/n``.

Values are means in [0, 1] (accuracies for Thresholdout, losses for the Ladders, as in the
papers). All randomness comes from the ``rng`` given (a ``numpy.random.Generator``).

>>> t = Thresholdout(threshold=0.04, sigma=0.01, budget=10, rng=np.random.default_rng(0))
>>> t.query(train_value=0.91, holdout_value=0.90)      # close: the training value is returned
0.91
>>> ladder = Ladder(step=0.01)
>>> ladder.submit(0.30), ladder.submit(0.295), ladder.submit(0.25)
(0.3, 0.3, 0.25)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from mlmyths.errors import UserError


def _laplace(rng: np.random.Generator, scale: float) -> float:
    return float(rng.laplace(0.0, scale)) if scale > 0 else 0.0


class PlainHoldout:
    """Answers every query with the holdout's empirical value (standard holdout reuse)."""

    name = "plain"

    def __init__(self) -> None:
        self.queries = 0

    def query(self, train_value: float | None, holdout_value: float) -> float:
        self.queries += 1
        return float(holdout_value)


class Thresholdout:
    """The reusable holdout of Dwork et al. (Science 2015), Thresholdout box.

    Parameters
    ----------
    threshold : T, the allowed difference between training and holdout values (default 0.04).
    sigma : noise rate; the noises are ``gamma ~ Lap(2 sigma)`` on the threshold (redrawn after
        each overfitting event), ``eta ~ Lap(4 sigma)`` per query and ``xi ~ Lap(sigma)`` on
        released holdout values (default 0.01).
    budget : B, the number of times the holdout value may be released before the mechanism
        answers ``None`` (the paper's ``⊥``).
    rng : numpy Generator for the Laplace noises.

    Attributes: ``budget_left``, ``overfit_events`` (holdout values released), ``queries``.
    """

    name = "thresholdout"

    def __init__(self, threshold: float = 0.04, sigma: float = 0.01, budget: int = 1000,
                 rng: np.random.Generator | None = None):
        if threshold < 0 or sigma < 0:
            raise UserError(f"Thresholdout needs threshold >= 0 and sigma >= 0, got threshold={threshold!r}, "
                            f"sigma={sigma!r}")
        if budget < 0:
            raise UserError(f"Thresholdout budget must be >= 0, got {budget!r}")
        self.threshold, self.sigma, self.budget = float(threshold), float(sigma), int(budget)
        self.rng = rng if rng is not None else np.random.default_rng()
        self.budget_left = self.budget
        self.overfit_events = 0
        self.queries = 0
        self._noisy_threshold = self.threshold + _laplace(self.rng, 2 * self.sigma)

    def query(self, train_value: float, holdout_value: float) -> float | None:
        """The answer to one query (None once the budget is spent)."""
        if self.budget_left < 1:
            return None
        self.queries += 1
        eta = _laplace(self.rng, 4 * self.sigma)
        if abs(holdout_value - train_value) > self._noisy_threshold + eta:
            xi = _laplace(self.rng, self.sigma)
            self._noisy_threshold = self.threshold + _laplace(self.rng, 2 * self.sigma)
            self.budget_left -= 1
            self.overfit_events += 1
            return float(holdout_value) + xi
        return float(train_value)


def round_to(value: float, step: float) -> float:
    """``[value]_step``: ``value`` rounded to the nearest integer multiple of ``step``."""
    return round(value / step) * step


@dataclass
class Ladder:
    """Blum & Hardt (2015), Algorithm 1, on a loss (lower is better).

    ``submit(loss)`` returns the released leaderboard loss ``R_t``: ``[loss]_step`` when
    ``loss < R_{t-1} - step``, else ``R_{t-1}``; ``R_0 = inf``. ``improved`` tells whether the
    last submission changed the leaderboard.
    """

    step: float = 0.01  #: eta; the paper's analysis suggests about (log(k n) / n)^(1/3)
    best: float = math.inf  #: R_t, the released leaderboard loss
    improved: bool = False
    submissions: int = 0
    name: str = field(default="ladder", init=False)

    def __post_init__(self) -> None:
        if not self.step > 0:
            raise UserError(f"Ladder step must be > 0, got {self.step!r}")

    def submit(self, loss: float) -> float:
        self.submissions += 1
        self.improved = loss < self.best - self.step
        if self.improved:
            self.best = round_to(float(loss), self.step)
        return self.best


@dataclass
class ParameterFreeLadder:
    """Blum & Hardt (2015), the parameter-free Ladder, on per-example losses.

    ``submit(losses)`` takes the submission's loss on each of the n holdout examples. It is
    accepted when its mean loss is below ``R_{t-1} - s / sqrt(n)``, where ``s`` is the sample
    standard deviation of the paired differences between its losses and those of the best
    submission so far; the released loss is then rounded to a multiple of ``1/n``. The first
    submission is always accepted.
    """

    best: float = math.inf
    improved: bool = False
    submissions: int = 0
    name: str = field(default="ladder", init=False)
    _best_losses: np.ndarray | None = field(default=None, repr=False)

    def submit(self, losses: np.ndarray) -> float:
        losses = np.asarray(losses, dtype=np.float64)
        if losses.ndim != 1 or len(losses) < 2:
            raise UserError(f"ParameterFreeLadder.submit needs per-example losses (n >= 2), got shape {losses.shape}")
        n = len(losses)
        if self._best_losses is not None and len(self._best_losses) != n:
            raise UserError(f"submission has {n} losses, earlier ones had {len(self._best_losses)}")
        self.submissions += 1
        loss = float(losses.mean())
        if self._best_losses is None:
            step = 0.0
        else:
            step = float(np.std(losses - self._best_losses, ddof=1)) / math.sqrt(n)
        self.improved = loss < self.best - step
        if self.improved:
            self.best = round_to(loss, 1.0 / n)
            self._best_losses = losses
        return self.best
