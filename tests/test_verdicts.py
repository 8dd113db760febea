"""The verdict machinery: the three tests, the one rule, calibration by simulation, docs/VERDICTS.md.

Calibration (issue 15): each experiment's claim evaluation, fed 1,000 simulated runs at the
``small`` scale's sample sizes from known truths, gives a wrong-direction outcome (reproduced when
false, contradicted when true) in at most 5% of draws, for every claim.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from mlmyths import claims, myths
from mlmyths.claims import Claim, Estimate
from mlmyths.myths import verdicts

ROOT = Path(__file__).resolve().parents[1]
WRONG_DIRECTION_MAX = 0.05
#: Myths whose `small` sample sizes cannot bring every key claim to `reproduced` even when the paper
#: is right (power to come out `refuted` under 50%; stated in docs/VERDICTS.md and the README). fixup:
#: at 6 epochs Fixup's final accuracy varies by 3.5 points from seed to seed (first small run), and 4
#: seeds cannot put a difference inside +-1 point; test_an_underpowered_rule_can_still_refute shows
#: the rule itself reaches `refuted` once the data can resolve the margin.
UNDERPOWERED_AT_SMALL = ("fixup",)


def _claim(test="at_least", threshold=1.0, key=True, cid="c"):
    return Claim(cid, "s", "v", "Fig. 1", statistic="x", unit="seeds", test=test, threshold=threshold,
                 justification="j", key=key)


@pytest.mark.parametrize("test,threshold,low,high,expected", [
    ("at_least", 1.0, 1.0, 2.0, "reproduced"), ("at_least", 1.0, 0.99, 2.0, "inconclusive"),
    ("at_least", 1.0, 0.0, 0.99, "contradicted"), ("at_least", 1.0, 0.0, 1.0, "inconclusive"),
    ("at_most", 1.0, 0.0, 1.0, "reproduced"), ("at_most", 1.0, 1.01, 2.0, "contradicted"),
    ("at_most", 1.0, 0.5, 1.5, "inconclusive"),
    ("within", 0.5, -0.5, 0.5, "reproduced"), ("within", 0.5, -0.6, 0.1, "inconclusive"),
    ("within", 0.5, 0.51, 0.9, "contradicted"), ("within", 0.5, -0.9, -0.51, "contradicted"),
    ("within", 0.5, -0.9, 0.9, "inconclusive"),
])
def test_the_three_tests_follow_their_definitions(test, threshold, low, high, expected):
    c = _claim(test, threshold)
    r = c.judge(Estimate((low + high) / 2, low, high, n=3, method="m"))
    assert r.outcome == expected
    assert r.to_dict()["ci"] == [low, high] and r.to_dict()["outcome"] == expected


def test_missing_data_is_not_tested_with_the_reason():
    r = _claim().judge(None, reason="CIFAR-10.1 files absent")
    assert r.outcome == "not_tested" and r.reason == "CIFAR-10.1 files absent"
    assert r.to_dict()["estimate"] is None and r.to_dict()["ci"] is None
    nan = _claim().judge(Estimate(float("nan"), float("nan"), float("nan"), n=1, method="one seed"))
    assert nan.outcome == "not_tested"


def test_the_verdict_is_one_function_of_the_key_claims():
    def results(*outcomes, secondary="contradicted"):
        out = []
        for i, o in enumerate(outcomes):
            lo, hi = {"reproduced": (2, 3), "contradicted": (-1, 0), "inconclusive": (0, 2)}[o]
            out.append(_claim(cid=f"k{i}").judge(Estimate((lo + hi) / 2, lo, hi, 3, "m")))
        lo, hi = {"reproduced": (2, 3), "contradicted": (-1, 0), "inconclusive": (0, 2)}[secondary]
        out.append(_claim(cid="side", key=False).judge(Estimate((lo + hi) / 2, lo, hi, 3, "m")))
        return out

    assert claims.verdict(results("reproduced", "reproduced")).outcome == "refuted"
    assert claims.verdict(results("reproduced", "contradicted")).outcome == "supported"
    assert claims.verdict(results("inconclusive", "contradicted")).outcome == "supported"
    assert claims.verdict(results("reproduced", "inconclusive")).outcome == "inconclusive"
    # a secondary claim never moves the verdict
    assert claims.verdict(results("reproduced", secondary="contradicted")).outcome == "refuted"
    assert claims.verdict([_claim().judge(None, reason="r")]).outcome == "inconclusive"
    assert claims.verdict([]).outcome == "inconclusive"


def test_a_failed_prerequisite_leaves_key_claims_not_tested_never_supported():
    key = _claim(cid="effect").judge(Estimate(-1.0, -2.0, -0.5, 3, "m"))  # contradicted on its own
    sanity = _claim(cid="learned", key=False, threshold=0.2)
    at_chance = sanity.judge(Estimate(0.1, 0.08, 0.12, 3, "m"))
    out = claims.gated([key, at_chance], at_chance)
    assert [r.outcome for r in out] == ["not_tested", "contradicted"]
    assert "prerequisite 'learned' not reproduced" in out[0].reason
    assert claims.verdict(out).outcome == "inconclusive"
    learned = sanity.judge(Estimate(0.9, 0.85, 0.95, 3, "m"))
    assert claims.gated([key, learned], learned)[0].outcome == "contradicted"


def test_declarations_are_checked():
    with pytest.raises(ValueError, match="test must be one of"):
        _claim(test="above")
    with pytest.raises(ValueError, match="threshold must be finite"):
        _claim(test="within", threshold=-1.0)
    with pytest.raises(ValueError, match="duplicate claim id"):
        claims.check_claims([_claim(), _claim()])
    with pytest.raises(ValueError, match="at least one claim must be a key claim"):
        claims.check_claims([_claim(key=False)])


def test_calibration_of_a_t_interval_claim_matches_theory():
    """A mean over n normal draws judged by a 95% t interval: at the threshold each wrong direction
    has probability 2.5%; the power follows the noncentral t."""
    c = _claim("at_least", 0.0)

    def evaluate(values):
        from mlmyths.stats import t_interval

        m, lo, hi, n = t_interval(values)
        return [c.judge(Estimate(m, lo, hi, n, "t"))]

    truths = claims.scenarios([c], {"c": 1.0}, {"c": -1.0})
    assert truths == {"paper": {"c": 1.0}, "threshold:c": {"c": 0.0}, "other:c": {"c": -1.0}}
    cal = claims.calibrate([c], evaluate, lambda t, rng: t["c"] + rng.standard_normal(10), truths, draws=4000)
    at = cal.rates["threshold:c"]["c"]
    assert abs(at["reproduced"] - 0.025) < 0.01 and abs(at["contradicted"] - 0.025) < 0.01
    from scipy import stats

    crit = stats.t.ppf(0.975, 9)
    power = 1 - stats.nct.cdf(crit, 9, 1.0 * math.sqrt(10))
    assert abs(cal.power("c") - power) < 0.03
    assert cal.wrong_direction([c])["c"] < 0.04


# -- every experiment --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def calibrations():
    return {m: verdicts.calibrate_myth(myths.load(m)) for m in myths.MYTHS}


@pytest.mark.parametrize("myth_id", list(myths.MYTHS))
def test_each_experiment_is_calibrated(myth_id, calibrations):
    m = myths.load(myth_id)
    cal = calibrations[myth_id]
    worst = cal.wrong_direction(m.CLAIMS)
    too_often = {cid: rate for cid, rate in worst.items() if not rate <= WRONG_DIRECTION_MAX}
    assert not too_often, f"{myth_id}: wrong-direction outcomes above 5% of {cal.draws} draws: {too_often}"
    # the verdict can come out either way: some key claim on the other side makes it `supported`,
    # every claim on the paper's side makes it `refuted` (the generic scenarios keep prerequisites met)
    assert max(cal.verdicts[f"other:{c.id}"]["supported"] for c in m.CLAIMS if c.key) > 0.5
    if myth_id in UNDERPOWERED_AT_SMALL:  # the list tells the truth: the small sizes cannot refute it
        assert cal.verdicts["paper"]["refuted"] < 0.5
    else:
        assert cal.verdicts["paper"]["refuted"] > 0.5
    # the scenarios are what they say: the paper side is not a claim at its threshold
    for c in m.CLAIMS:
        paper, other = m.CALIBRATION["paper"][c.id], m.CALIBRATION["other"][c.id]
        if c.test == "at_least":
            assert paper > c.threshold > other, c.id
        elif c.test == "at_most":
            assert paper < c.threshold < other, c.id
        else:
            assert abs(paper) < c.threshold < abs(other), c.id


def test_an_underpowered_rule_can_still_refute(monkeypatch):
    """fixup at `small` cannot come out refuted (above); with both nets as stable across seeds as
    BatchNorm was measured (0.7 points) and 16 seeds, the same claims and rule refute more often than
    not, and wrong-direction outcomes stay rare: what blocks `refuted` at small is the data, not the rule."""
    m = myths.load("fixup")
    monkeypatch.setattr(m, "SEED_SD_FINAL", {k: m.SEED_SD_FINAL["batchnorm"] for k in m.SEED_SD_FINAL})
    cal = verdicts.calibrate_myth(m, draws=200, overrides={"seeds": 16})
    assert cal.verdicts["paper"]["refuted"] > 0.6
    assert max(cal.wrong_direction(m.CLAIMS).values()) <= 0.08  # 200 draws: a 5% rate reads up to ~8%


def test_docs_verdicts_is_generated_from_the_declarations(calibrations):
    path = ROOT / "docs" / "VERDICTS.md"
    assert path.exists(), "docs/VERDICTS.md is missing: python -m mlmyths.myths.verdicts docs/VERDICTS.md"
    text = path.read_text(encoding="utf-8")
    expected = verdicts.render(calibrations, verdicts.changelog_of(text))
    assert text == expected, "docs/VERDICTS.md is stale: run `python -m mlmyths.myths.verdicts docs/VERDICTS.md`"
    log = verdicts.changelog_of(text)
    assert log.startswith(verdicts.CHANGELOG_HEADING) and "20" in log  # dated entries


def test_simulated_runs_are_deterministic():
    m = myths.load(next(iter(myths.MYTHS)))
    cfg = m.config("small")
    a = m.simulate(cfg, m.CALIBRATION["paper"], np.random.default_rng(1))
    b = m.simulate(cfg, m.CALIBRATION["paper"], np.random.default_rng(1))
    assert repr(a) == repr(b)
