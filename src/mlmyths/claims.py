"""Claims declared before anything runs, judged by three symmetric tests, and the one verdict rule.

A *claim* is one finding of the refuting paper that an experiment re-measures: the paper's
sentence and number (with where it is printed), the statistic we measure and its unit of
replication, and one test with a threshold fixed in advance and justified from the paper:

- ``at_least t``: **reproduced** iff the interval's low end is >= ``t``; **contradicted** iff
  its high end is < ``t``;
- ``at_most t``: reproduced iff high <= ``t``; contradicted iff low > ``t``;
- ``within m`` (equivalence, two one-sided tests): reproduced iff the interval lies inside
  ``[-m, m]``; contradicted iff it lies wholly outside it;

otherwise **inconclusive**; a claim whose data are missing is **not_tested**, with the reason.
The interval is two-sided at the claim's confidence (95% unless the claim says why not), so
both directions are held to the same level: when the true value sits exactly at the threshold,
each wrong-direction outcome has probability at most ``(1 - confidence) / 2``.

The myth's verdict is one fixed function of the *key* claims, the same for every myth
(:func:`verdict`): ``refuted`` (the paper reproduced: the myth is false here) iff every key claim
is reproduced; ``supported`` iff some key claim is contradicted; ``inconclusive`` otherwise.

>>> c = Claim("drop", "Removing the easy examples costs nothing.", "0.1 points", "Fig. 5",
...           statistic="accuracy drop (points)", unit="seeds", test="within", threshold=0.5,
...           justification="the paper's seed-to-seed spread")
>>> c.judge(Estimate(0.1, -0.2, 0.4, n=5, method="t interval")).outcome
'reproduced'
>>> c.judge(Estimate(0.9, 0.6, 1.2, n=5, method="t interval")).outcome
'contradicted'
>>> verdict([c.judge(Estimate(0.1, -0.2, 0.4, n=5, method="t"))]).outcome
'refuted'
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

import numpy as np

Test = Literal["at_least", "at_most", "within"]
Outcome = Literal["reproduced", "contradicted", "inconclusive", "not_tested"]
VerdictOutcome = Literal["refuted", "supported", "inconclusive"]

TESTS: tuple[str, ...] = get_args(Test)
OUTCOMES: tuple[str, ...] = get_args(Outcome)
VERDICTS: tuple[str, ...] = get_args(VerdictOutcome)


@dataclass(frozen=True)
class Estimate:
    """Our measurement of a claim's statistic: a point estimate and a two-sided interval."""

    value: float  #: the point estimate
    low: float  #: lower end of the interval
    high: float  #: upper end of the interval
    n: int  #: how many units of replication went into it (seeds, examples, models)
    method: str  #: how the interval was made, e.g. "paired t interval over 5 seeds"
    confidence: float = 0.95  #: the interval's (family-wise) coverage

    def __post_init__(self) -> None:
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence!r}")
        if all(map(math.isfinite, (self.value, self.low, self.high))) and not self.low <= self.high:
            raise ValueError(f"interval low {self.low!r} is above high {self.high!r}")

    @property
    def finite(self) -> bool:
        return all(math.isfinite(float(v)) for v in (self.value, self.low, self.high))


@dataclass(frozen=True)
class Claim:
    """One pre-registered claim: what the paper found, what we measure, and the test."""

    id: str  #: short id, unique within the experiment (``[a-z0-9-]``)
    statement: str  #: the paper's finding, in its words
    paper_value: str  #: the paper's number(s), in words
    paper_source: str  #: where the paper prints it: table, figure or section
    statistic: str  #: the statistic we measure, with its unit (points, bits/char, ratio)
    unit: str  #: unit of replication of the interval: seeds, test examples, models, ...
    test: Test  #: at_least / at_most / within
    threshold: float  #: t (at_least, at_most) or the margin m (within, m > 0)
    justification: str  #: why this threshold, from the paper (never from our data)
    key: bool = True  #: whether the myth's verdict depends on it
    confidence: float = 0.95  #: the interval's confidence; another value says why in ``justification``

    def __post_init__(self) -> None:
        if self.test not in TESTS:
            raise ValueError(f"claim {self.id!r}: test must be one of {TESTS}, got {self.test!r}")
        if not math.isfinite(self.threshold) or (self.test == "within" and self.threshold <= 0):
            raise ValueError(f"claim {self.id!r}: threshold must be finite (and > 0 for 'within'), "
                             f"got {self.threshold!r}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"claim {self.id!r}: confidence must be in (0, 1), got {self.confidence!r}")
        for name in ("id", "statement", "paper_value", "paper_source", "statistic", "unit", "justification"):
            if not str(getattr(self, name)).strip():
                raise ValueError(f"claim {self.id!r}: {name} is empty")

    @property
    def rule(self) -> str:
        """The test in words, e.g. ``at least 0.5`` or ``within ±0.3``."""
        t = f"{self.threshold:g}"
        return {"at_least": f"at least {t}", "at_most": f"at most {t}", "within": f"within ±{t}"}[self.test]

    def outcome(self, low: float, high: float) -> Outcome:
        """The outcome of the test for an interval ``[low, high]`` (vectorised by :func:`outcome_codes`)."""
        return OUTCOMES[int(outcome_codes(self.test, self.threshold, np.array([low]), np.array([high]))[0])]

    def judge(self, estimate: Estimate | None, reason: str = "") -> ClaimResult:
        """The claim's outcome for ``estimate``; ``None`` (or a non-finite one) is ``not_tested``
        and needs a ``reason``."""
        if estimate is None or not estimate.finite:
            why = reason or "no finite estimate"
            return ClaimResult(self, estimate, "not_tested", why)
        out = self.outcome(estimate.low, estimate.high)
        words = {"reproduced": "the interval satisfies", "contradicted": "the interval excludes",
                 "inconclusive": "the interval straddles"}[out]
        text = (f"{estimate.value:.4g} [{estimate.low:.4g}, {estimate.high:.4g}] ({estimate.method}, "
                f"n={estimate.n}): {words} '{self.rule}'")
        return ClaimResult(self, estimate, out, text + (f"; {reason}" if reason else ""))


def outcome_codes(test: str, threshold: float, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Outcome index into :data:`OUTCOMES` for arrays of intervals (the three rules, vectorised)."""
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    t = float(threshold)
    if test == "at_least":
        reproduced, contradicted = low >= t, high < t
    elif test == "at_most":
        reproduced, contradicted = high <= t, low > t
    elif test == "within":
        reproduced, contradicted = (low >= -t) & (high <= t), (high < -t) | (low > t)
    else:
        raise ValueError(f"unknown test {test!r}; choose one of {TESTS}")
    codes = np.full(low.shape, OUTCOMES.index("inconclusive"))
    codes[reproduced] = OUTCOMES.index("reproduced")
    codes[contradicted] = OUTCOMES.index("contradicted")
    codes[~(np.isfinite(low) & np.isfinite(high))] = OUTCOMES.index("not_tested")
    return codes


@dataclass(frozen=True)
class ClaimResult:
    """A claim with our estimate and its outcome."""

    claim: Claim
    estimate: Estimate | None
    outcome: Outcome
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """The schema-2 record entry (see :data:`mlmyths.records.CLAIM_FIELDS`)."""
        c, e = self.claim, self.estimate
        finite = e is not None and e.finite
        return {
            "id": c.id, "key": c.key, "statement": c.statement, "paper_value": c.paper_value,
            "paper_source": c.paper_source, "statistic": c.statistic, "unit": c.unit, "test": c.test,
            "threshold": c.threshold, "justification": c.justification,
            "estimate": float(e.value) if finite else None,
            "ci": [float(e.low), float(e.high)] if finite else None,
            "confidence": e.confidence if e is not None else c.confidence,
            "n": e.n if e is not None else None, "method": e.method if e is not None else None,
            "outcome": self.outcome, "reason": self.reason,
        }


@dataclass(frozen=True)
class Verdict:
    """``refuted`` (the paper's findings reproduced: the myth is false here), ``supported`` (a key
    finding contradicted) or ``inconclusive``, with a reason quoting the claims."""

    outcome: VerdictOutcome
    reason: str

    def __post_init__(self) -> None:
        if self.outcome not in VERDICTS:
            raise ValueError(f"verdict outcome must be one of {VERDICTS}, got {self.outcome!r}")
        if not self.reason.strip():
            raise ValueError("a verdict needs a reason")


def verdict_code(outcomes: Sequence[str]) -> str:
    """The verdict for the outcomes of the key claims: the rule, and nothing else."""
    if outcomes and all(o == "reproduced" for o in outcomes):
        return "refuted"
    if any(o == "contradicted" for o in outcomes):
        return "supported"
    return "inconclusive"


def verdict(results: Sequence[ClaimResult]) -> Verdict:
    """The myth's verdict from its claims' outcomes (only key claims count): ``refuted`` iff every
    key claim is reproduced, ``supported`` iff some key claim is contradicted, else ``inconclusive``."""
    key = [r for r in results if r.claim.key]
    if not key:
        return Verdict("inconclusive", "no key claim was declared, so nothing decides the verdict")
    outcome = verdict_code([r.outcome for r in key])

    def listed(rs: Sequence[ClaimResult]) -> str:
        return "; ".join(f"{r.claim.id}: {_short(r)}" for r in rs)

    if outcome == "refuted":
        return Verdict("refuted", f"all {len(key)} key claims reproduced ({listed(key)})")
    if outcome == "supported":
        against = [r for r in key if r.outcome == "contradicted"]
        return Verdict("supported", f"key claim(s) contradicted: {listed(against)}")
    open_ = [r for r in key if r.outcome != "reproduced"]
    done = len(key) - len(open_)
    return Verdict("inconclusive", f"{done} of {len(key)} key claims reproduced, none contradicted; "
                                   f"undecided: {listed(open_)}")


def _short(r: ClaimResult) -> str:
    e = r.estimate
    if r.outcome == "not_tested" or e is None or not e.finite:
        return f"not tested ({r.reason})"
    return f"{e.value:.3g} [{e.low:.3g}, {e.high:.3g}] vs {r.claim.rule}, {r.outcome}"


def gated(results: Sequence[ClaimResult], prerequisite: ClaimResult) -> list[ClaimResult]:
    """``results`` with every *key* claim turned ``not_tested`` unless ``prerequisite`` is reproduced.

    For sanity conditions without which the key claims mean nothing -- "the model learned at all"
    (above chance), "training converged": such a condition failing says nothing about the myth, so
    it must not read as ``supported``. Declare the prerequisite as a secondary claim (``key=False``)
    and gate the key claims on it; the prerequisite itself is kept in the list.
    """
    if prerequisite.outcome == "reproduced":
        return list(results)
    why = f"prerequisite '{prerequisite.claim.id}' not reproduced ({prerequisite.outcome}: {prerequisite.reason})"
    out = []
    for r in results:
        if r.claim.key and r.claim.id != prerequisite.claim.id:
            r = ClaimResult(r.claim, r.estimate, "not_tested", why)
        out.append(r)
    return out


def check_claims(claims: Sequence[Claim]) -> None:
    """Ids unique and well formed; at least one key claim."""
    ids = [c.id for c in claims]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValueError(f"duplicate claim id(s): {', '.join(dupes)}")
    bad = [i for i in ids if not i or not all(ch.isalnum() or ch == "-" for ch in i) or i != i.lower()]
    if bad:
        raise ValueError(f"claim ids must be lower-case letters, digits and '-': {bad}")
    if not any(c.key for c in claims):
        raise ValueError("at least one claim must be a key claim")


def by_id(claims: Sequence[Claim]) -> dict[str, Claim]:
    check_claims(claims)
    return {c.id: c for c in claims}


# -- calibration by simulation --------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """Outcome frequencies of each claim (and of the verdict) under simulated truths.

    Scenarios: ``paper`` (every statistic on the paper's side), and for each claim ``c``
    ``threshold:c`` (``c`` exactly at its threshold) and ``other:c`` (``c`` well on the other side),
    with every other claim on the paper's side, so a claim gated by a prerequisite is calibrated
    with its prerequisite met.
    """

    draws: int
    rates: dict[str, dict[str, dict[str, float]]]  #: scenario -> claim id -> outcome -> frequency
    verdicts: dict[str, dict[str, float]]  #: scenario -> verdict -> frequency
    truths: dict[str, dict[str, float]] = field(default_factory=dict)  #: scenario -> claim id -> true value

    def wrong_direction(self, claims: Sequence[Claim]) -> dict[str, float]:
        """Per claim, the largest frequency of a wrong-direction outcome: contradicted when the claim
        is true (on the paper's side, or exactly at its threshold, where it holds just) and reproduced
        when it is false (on the other side) or only just true (at the threshold)."""
        worst: dict[str, float] = {}
        for c in claims:
            at, other = self.rates[f"threshold:{c.id}"][c.id], self.rates[f"other:{c.id}"][c.id]
            worst[c.id] = max(self.rates["paper"][c.id]["contradicted"], at["contradicted"], at["reproduced"],
                              other["reproduced"])
        return worst

    def power(self, claim_id: str) -> float:
        """How often a true claim at the paper's effect comes out reproduced."""
        return self.rates["paper"][claim_id]["reproduced"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def scenarios(claims: Sequence[Claim], paper: Mapping[str, float], other: Mapping[str, float]
              ) -> dict[str, dict[str, float]]:
    """The scenarios of :class:`Calibration`: ``paper``, and per claim ``threshold:ID`` (its statistic
    exactly at the threshold -- the margin's edge on the side of ``other`` for ``within``) and
    ``other:ID``, every other claim on the paper's side."""
    out = {"paper": dict(paper)}
    for c in claims:
        edge = c.threshold if c.test != "within" else math.copysign(c.threshold, other[c.id] or 1.0)
        out[f"threshold:{c.id}"] = {**paper, c.id: edge}
        out[f"other:{c.id}"] = {**paper, c.id: other[c.id]}
    return out


def calibrate(claims: Sequence[Claim], evaluate: Callable[[Any], Sequence[ClaimResult]],
              simulate: Callable[[Mapping[str, float], np.random.Generator], Any],
              truths: Mapping[str, Mapping[str, float]], *, draws: int = 1000, seed: int = 0) -> Calibration:
    """Feed ``evaluate`` (an experiment's claim evaluation) ``draws`` simulated measurements per
    scenario and count the outcomes.

    ``truths[scenario][claim_id]`` is the true value of each claim's statistic in that scenario (see
    :func:`scenarios`); ``simulate(truth, rng)`` returns the measurements ``evaluate`` takes, with
    realistic noise at the run's sample sizes.
    """
    index = by_id(claims)
    rates: dict[str, dict[str, dict[str, float]]] = {}
    verdicts: dict[str, dict[str, float]] = {}
    for s_i, (scenario, truth) in enumerate(truths.items()):
        unknown = set(truth) - set(index)
        if unknown:
            raise ValueError(f"truths for unknown claim(s): {sorted(unknown)}")
        rng = np.random.default_rng([seed, s_i])
        counts = {cid: dict.fromkeys(OUTCOMES, 0) for cid in index}
        vcounts = dict.fromkeys(VERDICTS, 0)
        for _ in range(draws):
            results = evaluate(simulate(truth, rng))
            for r in results:
                counts[r.claim.id][r.outcome] += 1
            vcounts[verdict(results).outcome] += 1
        rates[scenario] = {cid: {o: n / draws for o, n in c.items()} for cid, c in counts.items()}
        verdicts[scenario] = {o: n / draws for o, n in vcounts.items()}
    return Calibration(draws, rates, verdicts, {s: dict(t) for s, t in truths.items()})
