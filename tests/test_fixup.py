"""The `fixup` experiment (mlmyths.myths.fixup) and the mixup helper it uses at paper scale.

No test asserts a real run's outcome: the claim logic is tested on constructed measurements with
known truth, and real runs are checked for the rules (outcome from interval and threshold, verdict
from the key claims), never for a particular verdict.
"""
from __future__ import annotations

import dataclasses
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import read_results, run_cli
from mlmyths import claims
from mlmyths.augment import Mixup
from mlmyths.errors import ConfigError
from mlmyths.myths import fixup
from mlmyths.runs import RunContext
from mlmyths.stats import crossed_mean_interval

# -- configuration -----------------------------------------------------------------------------


def test_presets_build_and_the_paper_preset_is_the_papers_setup() -> None:
    for scale in ("smoke", "small", "paper"):
        assert fixup.config(scale).dataset != "auto"
    paper = fixup.config("paper")
    assert paper.dataset == "cifar10" and paper.width == 16 and paper.batch_size == 128 and paper.lr == 0.1
    assert paper.final_depth == 110 and paper.final_epochs == 200 and paper.mixup == (False, True)
    assert paper.schedule == "step" and paper.milestones == (100, 150) and paper.augment == "crop-flip"
    assert paper.epochs == 1 and max(paper.depths) == 10_004  # Fig. 3: first-epoch accuracy up to 10,004 layers
    assert {"none", "batchnorm", "fixup", "skipinit", "rezero"} <= set(paper.variants)
    assert paper.scalar_lr_factor == 0.1 and paper.checkpoint_every > 0 and paper.image_size == 0


@pytest.mark.parametrize("found", ["fashion-mnist", "digits"])
def test_auto_dataset_is_resolved_in_config(monkeypatch: pytest.MonkeyPatch, found: str) -> None:
    monkeypatch.setattr(fixup.data, "first_available", lambda candidates: found)
    cfg = fixup.config("small")
    assert cfg.dataset == found
    if found == "digits":  # 8x8 digits at native size, all of them, with budgets for that small set
        assert {k: getattr(cfg, k) for k in fixup.DIGITS_FALLBACK} == fixup.DIGITS_FALLBACK
        assert fixup.config("small", final_epochs=30).final_epochs == 30  # an override wins over the fallback
    else:
        assert cfg.image_size == 14 and cfg.train_subset == fixup.SCALES["small"].train_subset


def test_bad_overrides_raise_config_errors_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"config key 'depths' must be .*6n\+2.*got \(8, 100\)"):
        fixup.config("smoke", depths="8,100")
    with pytest.raises(ConfigError, match=r"config key 'variants'.*got \('none', 'layernorm'\)"):
        fixup.config("smoke", variants="none,layernorm")
    with pytest.raises(ConfigError, match="config key 'epochs' must be at most final_epochs"):
        fixup.config("smoke", epochs=9)
    with pytest.raises(ConfigError, match="config key 'signal_inits' must be at least 2"):
        fixup.config("smoke", signal_inits=1)
    with pytest.raises(ConfigError, match="config key 'dataset'"):
        fixup.config("smoke", dataset="imagenet")
    with pytest.raises(ConfigError, match="unknown config key 'tolerance'"):  # thresholds live in CLAIMS only
        fixup.config("smoke", tolerance=1.5)


def test_cli_rejects_a_bad_depth_with_exit_code_2(tmp_path: Path) -> None:
    proc = run_cli("run", "fixup", "--scale", "smoke", "--set", "final_depth=100", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "config key 'final_depth'" in proc.stderr and "got 100" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "fixup").exists()


def test_rehearsal_keeps_the_papers_model_and_swaps_the_data() -> None:
    paper = fixup.config("paper")
    cfg = fixup.rehearsal(paper)
    assert cfg.dataset == "rehearsal-cifar10"
    same = ("width", "batch_size", "lr", "variants", "mixup", "augment", "schedule", "scalar_lr_factor")
    assert all(getattr(cfg, k) == getattr(paper, k) for k in same)
    assert max(cfg.depths) < 100 and cfg.final_epochs <= 2 and cfg.train_subset <= 512


def test_preprocess_pickles_and_resizes() -> None:
    pre = fixup.Preprocess(torch.tensor([0.4]), torch.tensor([0.2]), size=4)  # in [0, 1] units
    x = torch.full((2, 1, 8, 8), 153, dtype=torch.uint8)
    again = pickle.loads(pickle.dumps(pre))
    out = again(x)
    assert out.shape == (2, 1, 4, 4) and torch.allclose(out, torch.ones_like(out))  # (153/255 - 0.4)/0.2 = 1
    assert torch.equal(out, pre(x))


# -- the claims, on constructed measurements ------------------------------------------------------

N = 2000  # test examples of the constructed runs


def _runs(accuracy: float, seeds: int, rng: np.random.Generator, shared: np.ndarray | None = None) -> list:
    """Per-example correctness of ``seeds`` runs at ``accuracy`` percent (exactly, per run)."""
    out = []
    for _ in range(seeds):
        order = rng.permutation(N) if shared is None else shared
        c = np.zeros(N, dtype=np.uint8)
        c[order[:round(accuracy / 100 * N)]] = 1
        out.append(c)
    return out


def _measurements(bn=88.0, fixup_acc=87.8, deep_bn=60.0, deep_fixup=55.0, deep_none=None, growth=8.0,
                  seeds=4, diverged=(), seed=0) -> dict:
    rng = np.random.default_rng(seed)
    order = rng.permutation(N)  # the nets agree on which examples are hard: a paired design pays off

    def runs(acc, k):
        return [None] * k if acc is None else _runs(acc, k, rng, shared=order)

    final = {"batchnorm": runs(bn, seeds), "fixup": runs(fixup_acc, seeds)}
    for v in diverged:
        final[v] = [None] * seeds
    low = np.full(6, 0.5)
    return {"num_classes": 10, "final_examples": N, "deep_examples": N, "final": final, "final_mixup": {},
            "deep": {"batchnorm": runs(deep_bn, 3), "fixup": runs(deep_fixup, 3), "none": runs(deep_none, 3)},
            "signal": {"low": low, "high": low * 10.0 ** growth, "low_depth": 8, "high_depth": 110}}


def _outcomes(m: dict) -> dict[str, str]:
    return {r.claim.id: r.outcome for r in fixup.evaluate(fixup.config("smoke"), m)}


def _verdict(m: dict) -> str:
    return claims.verdict(fixup.evaluate(fixup.config("smoke"), m)).outcome


def test_the_papers_findings_reproduce_when_the_data_show_them() -> None:
    m = _measurements()
    out = _outcomes(m)
    assert out["batchnorm-learned"] == out["fixup-matches-batchnorm"] == out["deep-fixup-trains"] == "reproduced"
    assert out["deep-standard-init-fails"] == out["signal-gradient-grows"] == "reproduced"
    assert out["fixup-matches-batchnorm-mixup"] == "not_tested"  # no mixup runs
    assert _verdict(m) == "refuted"


def test_fixup_falling_clearly_behind_without_diverging_supports_the_myth() -> None:
    m = _measurements(fixup_acc=84.0)  # trains, but 4 points behind BatchNorm
    assert all(c is not None for c in m["final"]["fixup"])
    assert _outcomes(m)["fixup-matches-batchnorm"] == "contradicted"
    assert _verdict(m) == "supported"


def test_fixup_diverging_is_scored_at_chance_and_supports_the_myth() -> None:
    m = _measurements(diverged=("fixup",))
    results = {r.claim.id: r for r in fixup.evaluate(fixup.config("smoke"), m)}
    gap = results["fixup-matches-batchnorm"]
    assert gap.outcome == "contradicted" and gap.estimate.value == pytest.approx(10.0 - 88.0)
    assert _verdict(m) == "supported"


def test_a_baseline_that_did_not_learn_leaves_the_key_claims_untested() -> None:
    for m in (_measurements(bn=11.0, fixup_acc=11.0), _measurements(diverged=("batchnorm", "fixup"))):
        results = fixup.evaluate(fixup.config("smoke"), m)
        assert all(r.outcome == "not_tested" and "batchnorm-learned" in r.reason for r in results if r.claim.key)
        assert claims.verdict(results).outcome == "inconclusive"


def test_depth_too_hard_for_batchnorm_too_says_nothing_about_normalization() -> None:
    m = _measurements(deep_bn=12.0, deep_fixup=11.0)
    out = {r.claim.id: r for r in fixup.evaluate(fixup.config("smoke"), m)}
    assert out["deep-batchnorm-trains"].outcome == "contradicted"
    assert out["deep-fixup-trains"].outcome == "not_tested" and "deep-batchnorm-trains" in out["deep-fixup-trains"].reason
    assert _verdict(m) == "inconclusive"
    m = _measurements(deep_fixup=11.0)  # BatchNorm trains there, Fixup does not
    assert _outcomes(m)["deep-fixup-trains"] == "contradicted" and _verdict(m) == "supported"


def test_standard_init_training_at_depth_contradicts_only_a_secondary_claim() -> None:
    m = _measurements(deep_none=55.0)
    assert _outcomes(m)["deep-standard-init-fails"] == "contradicted"
    assert _verdict(m) == "refuted"  # no normalization needed either way


def test_the_comparison_is_paired_and_crossed_over_seeds_and_examples() -> None:
    m = _measurements(fixup_acc=86.0, seeds=3)
    table = 100.0 * (np.stack(m["final"]["fixup"]).astype(float) - np.stack(m["final"]["batchnorm"]))
    mean, low, high, k, n = crossed_mean_interval(table)
    est = {r.claim.id: r for r in fixup.evaluate(fixup.config("smoke"), m)}["fixup-matches-batchnorm"].estimate
    assert (est.value, est.low, est.high) == pytest.approx((mean, low, high)) and mean == pytest.approx(-2.0)
    assert "3 seed(s) x 2000 test examples" in est.method
    # pairing matters: the same accuracies on unrelated examples give a wider interval
    unpaired = dict(m, final={"batchnorm": m["final"]["batchnorm"],
                              "fixup": _runs(86.0, 3, np.random.default_rng(9))})
    wide = {r.claim.id: r for r in fixup.evaluate(fixup.config("smoke"), unpaired)}["fixup-matches-batchnorm"]
    assert wide.estimate.high - wide.estimate.low > 2 * (est.high - est.low)


def test_signal_growth_counts_overflow_as_a_lower_bound() -> None:
    m = _measurements()
    m["signal"] = {"low": [1.0, 2.0, 1.5, 1.0], "high": [float("inf"), float("nan"), 3e36, 1e37], "low_depth": 8,
                   "high_depth": 110}
    r = {r.claim.id: r for r in fixup.evaluate(fixup.config("smoke"), m)}["signal-gradient-grows"]
    top = np.finfo(np.float32).max
    expected = np.log10([top / 1.0, top / 2.0, 3e36 / 1.5, 1e37]).mean()
    assert r.outcome == "reproduced" and r.estimate.value == pytest.approx(expected) and r.estimate.n == 4
    m["signal"] = {"low": [1.0, 1.0], "high": [1.0, 1.0], "low_depth": 20, "high_depth": 20}
    r = {r.claim.id: r for r in fixup.evaluate(fixup.config("smoke"), m)}["signal-gradient-grows"]
    assert r.outcome == "not_tested" and "beyond" in r.reason


def test_simulate_gives_what_evaluate_reads_at_the_configs_sizes() -> None:
    cfg = dataclasses.replace(fixup.config("smoke"), seeds=3, sweep_seeds=2, mixup=(False, True))
    m = fixup.simulate(cfg, fixup.CALIBRATION["paper"], np.random.default_rng(0))
    assert len(m["final"]["fixup"]) == 3 and len(m["final_mixup"]["batchnorm"]) == 3
    assert len(m["deep"]["none"]) == 2 and len(m["final"]["fixup"][0]) == m["final_examples"] == 359
    acc = 100 * np.mean(m["final"]["batchnorm"])
    assert acc == pytest.approx(10 + fixup.CALIBRATION["paper"]["batchnorm-learned"], abs=3)
    assert {r.claim.id for r in fixup.evaluate(cfg, m)} == {c.id for c in fixup.CLAIMS}


# -- mixup (paper scale) ---------------------------------------------------------------------------


def test_mixup_mixes_inputs_and_targets_consistently() -> None:
    mix = Mixup(alpha=1.0)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(16, 1, 4, 4)
    y = torch.randint(0, 10, (16,))
    mixed = mix(x, g)
    perm, lam = mix._pending  # what this batch was mixed with
    assert 0.0 < lam < 1.0 and sorted(perm.tolist()) == list(range(16))
    assert torch.allclose(mixed, lam * x + (1 - lam) * x[perm])
    logits = torch.randn(16, 10)
    expected = lam * F.cross_entropy(logits, y) + (1 - lam) * F.cross_entropy(logits, y[perm])
    assert float(mix.loss(logits, y)) == pytest.approx(float(expected), rel=1e-6)
    # the next loss call (evaluation) has no pending mix: plain cross-entropy
    assert float(mix.loss(logits, y)) == pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-6)
    # repeatable under the generator's seed
    again = Mixup(alpha=1.0)(x, torch.Generator().manual_seed(5))
    assert torch.equal(again, mixed)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        Mixup(alpha=0.0)


# -- the experiment --------------------------------------------------------------------------------


def _check_rules(claim_rows: list[dict], verdict: dict) -> None:
    """Each outcome is the claim's test applied to its interval; the verdict is the rule on the key claims."""
    assert {c["id"] for c in claim_rows} == {c.id for c in fixup.CLAIMS}
    for c in claim_rows:
        if c["ci"] is None:
            assert c["outcome"] == "not_tested" and c["reason"]
            continue
        low, high = c["ci"]
        code = claims.outcome_codes(c["test"], c["threshold"], np.array([low]), np.array([high]))[0]
        expected = claims.OUTCOMES[int(code)]
        gated_out = c["outcome"] == "not_tested" and "prerequisite" in c["reason"]
        assert c["outcome"] == expected or (c["key"] and gated_out), c
    key = [c["outcome"] for c in claim_rows if c["key"]]
    assert verdict["outcome"] == claims.verdict_code(key)


@pytest.mark.slow
def test_a_diverging_run_is_recorded_and_the_experiment_goes_on(tmp_path: Path) -> None:
    cfg = fixup.config("smoke", variants="none,batchnorm,fixup", depths="110", epochs=1, sweep_seeds=1,
                       final_depth=8, final_epochs=1, seeds=2, width=2, batch_size=128, train_subset=512,
                       test_subset=128, signal_depths="8", signal_variants="none", signal_inits=2)
    ctx = RunContext(tmp_path / "run", seed=0, interactive=False)
    result = fixup.run(cfg, ctx)
    rows = {r["variant"]: r for r in result.tables["trainability"]}
    # standard init without normalization at 110 layers and lr 0.1: NaN/inf loss within a few steps
    assert re.fullmatch(r"diverged at step \d", rows["none"]["status"]) and rows["none"]["test_acc"] is None
    assert result.metrics["deep_diverged_runs_none"] == 1
    # ...scored at chance in its claim, and the other variants still trained, evaluated and were plotted
    none_claim = next(r for r in result.claims if r.claim.id == "deep-standard-init-fails")
    assert none_claim.estimate.value == 0.0
    for v in ("batchnorm", "fixup"):
        assert rows[v]["status"] == "trained" and rows[v]["steps"] == 4 and 0.0 <= rows[v]["test_acc"] <= 100.0
    assert len(result.tables["final"]) == 4 and all(r["steps"] == 4 for r in result.tables["final"])
    assert all((ctx.run_dir / f).exists() for f in result.figures) and len(result.figures) == 3
    assert result.differences


@pytest.mark.slow
def test_smoke_run_through_the_cli(tmp_path: Path) -> None:
    proc = run_cli("run", "fixup", "--scale", "smoke", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = read_results(tmp_path, "fixup")
    assert res["status"] == "completed" and res["scale"] == "smoke" and res["schema"] == 2
    _check_rules(res["claims"], res["verdict"])
    cfg = fixup.config("smoke")
    m = res["metrics"]
    assert m["dataset"] == "digits" and m["final_depth"] == cfg.final_depth and m["test_images"] == 359
    assert 0 <= m["final_test_acc_batchnorm"] <= 100
    # every (variant, depth, seed) of the sweep trained or recorded its divergence
    sweep = res["tables"]["trainability"]
    assert len(sweep) == len(cfg.variants) * (len(cfg.depths) - 1 + cfg.sweep_seeds)
    assert all(r["status"] == "trained" or re.fullmatch(r"diverged at step \d+", r["status"]) for r in sweep)
    assert len(res["tables"]["final"]) == 2 * cfg.seeds
    # at initialization, 'none' is far larger than Fixup and BatchNorm at 326 layers
    assert m["signal_output_var_none_at_326"] is None or \
        m["signal_output_var_none_at_326"] > 1e6 * m["signal_output_var_fixup_at_326"]
    assert m["signal_output_var_fixup_at_326"] < 10 and m["signal_output_var_batchnorm_at_326"] < 10
    assert res["differences"] and len(res["figures"]) == 3
    for fig in res["figures"]:
        assert (tmp_path / "fixup" / res["run_id"] / fig).stat().st_size > 1000
