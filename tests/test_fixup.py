"""The `fixup` experiment (mlmyths.myths.fixup) and the mixup helper it uses at paper scale."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import read_results, run_cli
from mlmyths.augment import Mixup
from mlmyths.errors import ConfigError
from mlmyths.myths import fixup
from mlmyths.runs import OUTCOMES, RunContext


# -- configuration -----------------------------------------------------------------------------


def test_presets_build_and_the_paper_preset_is_the_papers_setup() -> None:
    for scale in ("smoke", "small", "paper"):
        fixup.config(scale)
    small = fixup.config("small")
    assert max(small.depths) >= 110 and small.final_depth >= 110 and max(small.signal_depths) >= 10_000
    paper = fixup.config("paper")
    assert paper.dataset == "cifar10" and paper.width == 16 and paper.batch_size == 128 and paper.lr == 0.1
    assert paper.final_depth == 110 and paper.final_epochs == 200 and paper.mixup == (False, True)
    assert paper.schedule == "step" and paper.milestones == (100, 150) and paper.augment == "crop-flip"
    assert paper.epochs == 1 and max(paper.depths) == paper.deep_depth == 10_004  # Fig. 1: first-epoch accuracy
    assert {"none", "batchnorm", "fixup", "skipinit", "rezero"} <= set(paper.variants)
    assert paper.scalar_lr_factor == 0.1 and paper.checkpoint_every > 0


def test_bad_overrides_raise_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"depth must be 6n\+2.*got 100"):
        fixup.config("smoke", depths="8,100")
    with pytest.raises(ConfigError, match=r"unknown variant\(s\) 'layernorm'"):
        fixup.config("smoke", variants="none,batchnorm,layernorm")
    with pytest.raises(ConfigError, match="must include 'batchnorm'"):
        fixup.config("smoke", variants="none,fixup")
    with pytest.raises(ConfigError, match="deep_epochs"):
        fixup.config("small", deep_epochs=50)
    with pytest.raises(ConfigError, match="unknown config key 'depth'"):
        fixup.config("smoke", depth=8)


def test_cli_rejects_a_bad_depth_with_exit_code_2(tmp_path: Path) -> None:
    proc = run_cli("run", "fixup", "--scale", "smoke", "--set", "final_depth=100", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "depth must be 6n+2" in proc.stderr and "got 100" in proc.stderr
    assert "Traceback" not in proc.stderr


# -- the verdict rule ---------------------------------------------------------------------------


def _s(acc: float | None, diverged_at: int | None = None) -> dict:
    return {"acc": acc, "diverged": diverged_at is not None, "diverged_at": diverged_at}


def test_decide_refuted_when_fixup_is_close_and_none_fails() -> None:
    v = fixup.decide({"none": _s(None, 2), "batchnorm": _s(98.6), "fixup": _s(97.5), "skipinit": _s(96.0)}, depth=110)
    assert v.outcome == "refuted"
    assert "fixup" in v.reason and "1.10 points below BatchNorm" in v.reason and "none diverged at step 2" in v.reason
    # SkipInit alone suffices; 'far behind' without diverging also counts
    v = fixup.decide({"none": _s(60.0), "batchnorm": _s(90.0), "fixup": _s(80.0), "skipinit": _s(89.0)}, depth=56)
    assert v.outcome == "refuted" and "skipinit" in v.reason and "1.00 points below" in v.reason
    v = fixup.decide({"none": _s(None, 2), "batchnorm": _s(97.5), "fixup": _s(97.8)}, depth=110)
    assert v.outcome == "refuted" and "0.30 points above BatchNorm" in v.reason


@pytest.mark.parametrize("final,outcome,phrase", [
    ({"none": _s(None, 3), "batchnorm": _s(98.0), "fixup": _s(96.0)}, "inconclusive", "ends 2.00 points below"),
    ({"none": _s(95.0), "batchnorm": _s(98.0), "fixup": _s(97.9)}, "inconclusive", "neither diverged nor fell"),
    ({"none": _s(None, 3), "batchnorm": _s(None, 9), "fixup": _s(97.9)}, "inconclusive", "BatchNorm baseline did not"),
    ({"none": _s(None, 3), "batchnorm": _s(98.0), "fixup": _s(None, 5), "skipinit": _s(None, 7)}, "supported",
     "every normalization-free variant diverges"),
    ({"none": _s(None, 3), "batchnorm": _s(98.0), "rezero": _s(98.0)}, "inconclusive", "no normalization-free"),
    ({"batchnorm": _s(98.0), "fixup": _s(98.0)}, "inconclusive", "'none' control was not run"),
])
def test_decide_other_outcomes(final: dict, outcome: str, phrase: str) -> None:
    v = fixup.decide(final, depth=110)
    assert v.outcome == outcome and phrase in v.reason


def test_summarize_final_over_seeds() -> None:
    runs = [
        {"variant": "fixup", "final_acc": 97.0, "diverged_at": None},
        {"variant": "fixup", "final_acc": 98.0, "diverged_at": None},
        {"variant": "none", "final_acc": None, "diverged_at": 4},
        {"variant": "none", "final_acc": 90.0, "diverged_at": None},
    ]
    s = fixup.summarize_final(runs)
    assert s["fixup"] == {"acc": 97.5, "std": 0.5, "n": 2, "diverged": False, "diverged_at": None}
    assert s["none"]["diverged"] and s["none"]["diverged_at"] == 4 and s["none"]["acc"] == 90.0


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


def test_a_diverging_run_is_recorded_and_the_experiment_goes_on(tmp_path: Path) -> None:
    cfg = fixup.config("smoke", variants="none,batchnorm,fixup", depths="110", epochs=1, final_depth=110,
                       final_epochs=1, width=2, batch_size=128, train_subset=512, test_subset=128,
                       signal_depths="8", signal_variants="none")
    ctx = RunContext(tmp_path / "run", seed=0, scale="smoke", interactive=False)
    result = fixup.run(cfg, ctx)
    rows = {r["variant"]: r for r in result.tables["trainability"]}
    # standard init without normalization at 110 layers and lr 0.1: NaN/inf loss within a few steps
    assert re.fullmatch(r"diverged at step \d", rows["none"]["status"])
    assert rows["none"]["final_acc"] is None and result.metrics["final_diverged_at_none"] <= 9
    # ...and the other variants still trained, evaluated and were plotted
    for v in ("batchnorm", "fixup"):
        assert rows[v]["status"] == "trained" and rows[v]["steps"] == 4
        assert 0.0 <= rows[v]["final_acc"] <= 100.0
    assert all((ctx.run_dir / f).exists() for f in result.figures) and len(result.figures) == 3
    assert result.verdict.outcome in OUTCOMES


def test_smoke_run_through_the_cli(tmp_path: Path) -> None:
    proc = run_cli("run", "fixup", "--scale", "smoke", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = read_results(tmp_path, "fixup")
    assert res["status"] == "completed" and res["scale"] == "smoke"
    cfg = fixup.config("smoke")
    # the verdict is the documented rule applied to the recorded final-depth numbers
    final = {}
    for row in res["tables"]["final"]:
        diverged = row["status"].startswith("diverged")
        final[row["variant"]] = {"acc": row["test_acc"], "diverged": diverged,
                                 "diverged_at": int(row["status"].split()[-1]) if diverged else None}
    expected = fixup.decide(final, depth=cfg.final_depth, tolerance=cfg.tolerance, far_behind=cfg.far_behind)
    assert res["verdict"] == {"outcome": expected.outcome, "reason": expected.reason}
    assert res["verdict"]["outcome"] in OUTCOMES
    m = res["metrics"]
    assert m["dataset"] == "digits" and m["final_depth"] == cfg.final_depth
    assert 0 <= m["final_test_acc_batchnorm"] <= 100
    # every (variant, depth) trained or recorded its divergence
    sweep = res["tables"]["trainability"]
    assert len(sweep) == len(cfg.variants) * len(cfg.depths)
    assert all(r["status"] == "trained" or re.fullmatch(r"diverged at step \d+", r["status"]) for r in sweep)
    # at initialization, 'none' is far larger than Fixup and BatchNorm at 326 layers
    assert m["signal_output_var_none_at_326"] is None or \
        m["signal_output_var_none_at_326"] > 1e6 * m["signal_output_var_fixup_at_326"]
    assert m["signal_output_var_fixup_at_326"] < 10 and m["signal_output_var_batchnorm_at_326"] < 10
    assert len(res["tables"]["signal"]) == len(cfg.signal_variants) * len(cfg.signal_depths)
    assert len(res["figures"]) == 3
    for fig in res["figures"]:
        assert (tmp_path / "fixup" / res["run_id"] / fig).stat().st_size > 1000
