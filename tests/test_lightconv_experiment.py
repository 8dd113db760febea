"""The `lightconv` experiment: configs, data, measurements, the claims on simulated runs with known truth
(the prerequisites that gate the key claims; the generic calibration is tests/test_verdicts.py), the plan,
and a smoke run through the CLI whose record follows the rules (never a particular outcome)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import read_results, run_cli
from mlmyths import claims, measure
from mlmyths.errors import ConfigError, DataError
from mlmyths.myths import lightconv as exp
from mlmyths.runs import RunContext


@pytest.mark.parametrize("scale", ["smoke", "small", "paper"])
def test_configs_build_and_match_parameters_from_below(scale):
    cfg = exp.config(scale)
    vocab = 205 if cfg.dataset == "enwik8" else 100
    dims = exp.ffn_dims(cfg, vocab)
    counts = {k: exp.build_lm(k, cfg, vocab, dims[k]).num_parameters() for k in exp.MODELS}
    for kind in exp.CONVS:
        assert counts[kind] <= counts["transformer"]
        # the widest FFN that fits: one more hidden unit would exceed the Transformer
        assert exp.build_lm(kind, cfg, vocab, dims[kind] + 1).num_parameters() > counts["transformer"]
        assert counts[kind] > 0.97 * counts["transformer"]
    if scale == "paper":
        assert cfg.dataset == "enwik8" and cfg.kernel_sizes == (3, 7, 15, 31, 31, 31) and cfg.layers == 6


def test_config_resolves_auto_and_rejects_bad_values_naming_the_key():
    assert exp.config("smoke").dataset in ("fortunes", "python-docs")
    assert exp.config("smoke", steps="7").steps == 7
    with pytest.raises(ConfigError, match="unknown config key 'step'"):
        exp.config("smoke", step=7)
    with pytest.raises(ConfigError, match=r"'seeds' must be at least 1, got 0"):
        exp.config("smoke", seeds=0)  # it used to fail inside run() with an IndexError
    with pytest.raises(ConfigError, match=r"'dim' must be a multiple of heads=4, got 30"):
        exp.config("smoke", dim=30)
    with pytest.raises(ConfigError, match=r"'kernel_sizes' must be kernel widths >= 1, one or one per layer \(2\)"):
        exp.config("smoke", kernel_sizes=(3, 5, 7))
    with pytest.raises(ConfigError, match="'dataset'"):
        exp.config("smoke", dataset="mnist")  # an image dataset is not a corpus


def test_rehearsal_keeps_the_paper_shapes_on_synthetic_text():
    paper = exp.config("paper")
    cfg = exp.rehearsal(paper)
    assert cfg.dataset == "rehearsal-enwik8"
    same = ("context", "dim", "layers", "heads", "kernel_sizes", "ffn_mult", "dropout", "weight_dropout", "lr",
            "recall_pairs", "recall_queries", "recall_dim", "recall_kernel_sizes")
    assert all(getattr(cfg, f) == getattr(paper, f) for f in same)
    assert cfg.steps < 10 and cfg.decode_tokens < 10 and cfg.decode_rounds >= 2


def test_windows_are_next_character_pairs_without_overlap():
    ids = torch.arange(1000)
    x, y = exp.windows(ids, 16, 0, np.random.default_rng(0))
    assert torch.equal(y, x + 1)
    starts = x[:, 0].sort().values
    assert bool((starts.diff() == 16).all()) and len(x) >= (1000 - 1 - 15) // 16
    x5, _ = exp.windows(ids, 16, 5, np.random.default_rng(0))
    assert x5.shape == (5, 16)


def test_bigram_baseline_known_values():
    """A deterministic cycle costs almost nothing; i.i.d. uniform characters cost log2(V) bits."""
    cycle = torch.tensor([0, 1, 2] * 400)
    assert exp.bigram_bpc(cycle, cycle[:-1], cycle[1:], 3) < 0.01
    # the closed form on a tiny table: counts n(0,1)=2, n(1,0)=1, n(0)=2 as a first character
    ids = torch.tensor([0, 1, 0, 1])
    unigram = np.array([3, 3]) / 6  # add-one
    p01 = (2 + unigram[1]) / (2 + 1)
    assert exp.bigram_bpc(ids, torch.tensor([0]), torch.tensor([1]), 2) == pytest.approx(-math.log2(p01))
    rng = np.random.default_rng(0)
    uniform = torch.from_numpy(rng.integers(0, 8, 200_000))
    held_out = torch.from_numpy(rng.integers(0, 8, 20_000))
    assert exp.bigram_bpc(uniform, held_out[:-1], held_out[1:], 8) == pytest.approx(3.0, abs=0.01)


def test_learning_curve_measures_half_the_budget():
    assert exp.curve_steps(exp.config("small")) == set(range(100, 800, 100))
    assert exp.curve_steps(exp.config("smoke", steps=30, curve_every=0)) == {15}
    assert 7 in exp.curve_steps(exp.config("smoke", steps=15, curve_every=10))


def test_recall_data_targets_are_the_asked_pairs_values():
    pairs, queries, values = 6, 5, 4
    x, y, distance = exp.recall_data(200, pairs, queries, values, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (200, pairs + queries)
    keys, vals = x[:, :pairs] // values, x[:, :pairs] % values
    assert all(len(set(row.tolist())) == pairs for row in keys)  # distinct keys
    assert bool((y[:, :pairs] == -100).all()) and bool((distance[:, :pairs] == -1).all())
    asked_keys = x[:, pairs:] - pairs * values
    for b in range(200):
        for q in range(queries):
            j = int((keys[b] == asked_keys[b, q]).nonzero())
            assert int(y[b, pairs + q]) == pairs * values + pairs + int(vals[b, j])
            assert int(distance[b, pairs + q]) == pairs + q - j
    assert int(x.max()) < exp.recall_vocab(exp.config("smoke", recall_pairs=pairs, recall_values=values))


# -- the claims on simulated runs ------------------------------------------------------------------------------


def _truth(**changes):
    truth = dict(exp.CALIBRATION["paper"])
    truth.update({k.replace("_", "-"): v for k, v in changes.items()})
    return truth


def _judged(truth, cfg=None, seed=0):
    cfg = cfg or exp.config("small")
    results = exp.evaluate(cfg, exp.simulate(cfg, truth, np.random.default_rng(seed)))
    return {r.claim.id: r for r in results}, claims.verdict(results).outcome


def test_claims_are_declared_with_their_roles():
    key = {c.id for c in exp.CLAIMS if c.key}
    assert key == {"lightconv-quality", "dynamicconv-quality", "dynamicconv-speed"}
    judged, verdict = _judged(exp.CALIBRATION["paper"])
    assert [r.outcome for r in judged.values()] == ["reproduced"] * len(exp.CLAIMS) and verdict == "refuted"


def test_models_that_learned_nothing_never_decide_the_verdict():
    """All three at a bigram's level (the issue's 30-step run): the convolutions may look ahead, but the
    quality claims are not tested and the verdict is inconclusive, never refuted or supported."""
    for quality in (-4.0, 6.0):
        judged, verdict = _judged(_truth(learned=0.5, lightconv_quality=quality, dynamicconv_quality=quality,
                                         dynamicconv_speed=1.1))
        assert judged["learned"].outcome == "contradicted"
        for kind in exp.CONVS:
            assert judged[f"{kind}-quality"].outcome == "not_tested"
            assert "prerequisite 'learned'" in judged[f"{kind}-quality"].reason
        assert verdict == "inconclusive"


def test_a_comparison_still_moving_is_not_tested():
    """The Transformer catching up by 6 points over the second half: LightConv's lead at the end is a
    snapshot, so its quality claim is not tested; DynamicConv's settled comparison still counts."""
    judged, _ = _judged(_truth(lightconv_stable=6.0, lightconv_quality=-8.0))
    assert judged["lightconv-stable"].outcome == "contradicted"
    assert judged["lightconv-quality"].outcome == "not_tested"
    assert "prerequisite 'lightconv-stable'" in judged["lightconv-quality"].reason
    assert judged["dynamicconv-quality"].outcome == "reproduced"
    judged, _ = _judged(_truth(lightconv_stable=-6.0))  # gaining ground does not threaten non-inferiority
    assert judged["lightconv-stable"].outcome == "reproduced"


def test_a_diverged_run_fails_the_sanity_claim():
    cfg = exp.config("small")
    m = exp.simulate(cfg, exp.CALIBRATION["paper"], np.random.default_rng(1))
    m["bpc"]["transformer"][1] = math.nan
    judged = {r.claim.id: r for r in exp.evaluate(cfg, m)}
    assert judged["learned"].outcome == "not_tested" and "Transformer" in judged["learned"].reason
    assert judged["dynamicconv-quality"].outcome == "not_tested"
    assert judged["dynamicconv-speed"].outcome == "reproduced"  # speed does not need trained weights


def test_recall_gap_needs_attention_to_have_learned_the_task():
    judged, _ = _judged(_truth(recall_learned=1.0, recall_gap=0.0))
    assert judged["recall-learned"].outcome == "contradicted"
    assert judged["recall-gap"].outcome == "not_tested" and "recall-learned" in judged["recall-gap"].reason
    judged, _ = _judged(_truth(recall_gap=-20.0))  # the convolutions ahead: the limitation is contradicted
    assert judged["recall-gap"].outcome == "contradicted"


def test_one_seed_or_one_round_gives_no_interval_and_no_outcome():
    judged, verdict = _judged(exp.CALIBRATION["paper"], cfg=exp.config("small", seeds=1, decode_rounds=1))
    assert all(judged[c].outcome == "not_tested" for c in ("learned", "lightconv-quality", "dynamicconv-speed"))
    assert verdict == "inconclusive"


def test_the_speed_statistic_is_the_geometric_mean_throughput_ratio():
    cfg = exp.config("small", decode_rounds=3)
    m = exp.simulate(cfg, exp.CALIBRATION["paper"], np.random.default_rng(2))
    m["decode_seconds"] = {"transformer": [2.0, 4.0, 2.0], "lightconv": [1.0, 1.0, 1.0], "dynamicconv": [2.0, 2.0, 4.0]}
    judged = {r.claim.id: r for r in exp.evaluate(cfg, m)}
    assert judged["lightconv-speed"].estimate.value == pytest.approx((2 * 4 * 2) ** (1 / 3))
    assert judged["dynamicconv-speed"].estimate.value == pytest.approx(1.0)


# -- measurements -------------------------------------------------------------------------------------------


def test_peak_memory_sees_a_known_allocation():
    device = torch.device("cpu")
    with measure.peak_memory(device) as measured:
        block = torch.ones(10_000_000)  # 40 MB, touched
        del block
    if measured["bytes"] is None:
        pytest.skip("resident-set peak (/proc/self/clear_refs) not available on this system")
    assert 38e6 <= measured["bytes"] <= 60e6


def test_sublayers_run_forward_backward_and_are_timed():
    for kind in exp.MODELS:
        module = exp.sublayer(kind, 16, 4, 7)
        x = torch.randn(1, 32, 16, requires_grad=True)
        seconds, _ = measure.time_and_memory(measure.forward_backward(module, x), torch.device("cpu"), repeats=2)
        assert seconds > 0 and x.grad is not None and x.grad.shape == x.shape
    rows = [{"T": 1024, "model": "transformer", "time_ms": 10.0}, {"T": 1024, "model": "lightconv", "time_ms": 2.0},
            {"T": 1024, "model": "dynamicconv", "time_ms": 5.0}, {"T": 2048, "model": "lightconv", "time_ms": 4.0}]
    ratios = exp.speed_ratios(rows)
    assert ratios[0] == {"T": 1024, "attention/lightconv": 5.0, "attention/dynamicconv": 2.0}
    assert ratios[1]["attention/lightconv"] is None  # attention not measured at 2048


def test_plan_lists_every_wave_with_its_work():
    cfg = exp.config("small")
    waves = exp.plan(cfg)
    assert [w.tasks for w in waves] == [3 * cfg.seeds, 1] + [1] * len(cfg.scaling_lengths) + [3]
    assert [w.stage for w in waves] == list(range(1, len(waves) + 1))  # every wave waits for the one before
    assert waves[0].units_per_task == cfg.steps and waves[-1].units_per_task == cfg.recall_steps
    assert [w.key_prefix for w in waves[2:-1]] == [f"scaling-T{T}" for T in sorted(cfg.scaling_lengths)]
    tiny = exp.config("smoke", dim=16, layers=1, kernel_sizes=(3,), context=8, batch_size=2, decode_batch=2,
                      recall_dim=8, recall_pairs=4, recall_queries=2, recall_batch_size=2)
    for wave in exp.plan(tiny):
        if wave.probe is not None:
            wave.probe(torch.device("cpu"))  # one unit of the wave's work runs


def test_decode_speed_times_every_model_in_every_round(tmp_path):
    cfg = exp.config("smoke", context=8, dim=16, layers=1, kernel_sizes=(3,), decode_batch=2, decode_rounds=3)
    dims = exp.ffn_dims(cfg, 20)
    seconds = exp.decode_speed(cfg, RunContext(tmp_path), 20, dims)
    assert set(seconds) == set(exp.MODELS)
    assert all(len(v) == 3 and all(s > 0 for s in v) for v in seconds.values())


def test_a_corpus_too_short_for_the_context_is_a_data_error():
    with pytest.raises(DataError, match=r"has 100 characters: too short for context=64"):
        exp.char_corpus(exp.config("smoke", max_chars=100, context=64))


# -- the smoke run through the command line ----------------------------------------------------------------------


def test_smoke_run_records_claims_that_follow_the_rules(tmp_path):
    proc = run_cli("run", "lightconv", "--scale", "smoke", "--out", str(tmp_path), "--quiet")
    assert proc.returncode == 0, proc.stderr
    record = read_results(tmp_path, "lightconv")
    assert record["status"] == "completed" and record["schema"] == 2
    judged = {c["id"]: c for c in record["claims"]}
    assert list(judged) == [c.id for c in exp.CLAIMS]
    declared = {c.id: c for c in exp.CLAIMS}
    for cid, c in judged.items():
        assert c["key"] == declared[cid].key and c["threshold"] == declared[cid].threshold
        if c["reason"].startswith("prerequisite"):
            assert c["outcome"] == "not_tested", cid
        elif c["ci"] is None:
            assert c["outcome"] == "not_tested" and c["reason"], cid
        else:
            assert c["outcome"] == declared[cid].outcome(*c["ci"]), cid  # the three rules, exactly
    gates = {"lightconv-quality": ("learned", "lightconv-stable"), "dynamicconv-quality": ("learned", "dynamicconv-stable"),
             "recall-gap": ("recall-learned",)}
    for cid, prerequisites in gates.items():
        if any(judged[p]["outcome"] != "reproduced" for p in prerequisites):
            assert judged[cid]["outcome"] == "not_tested"
    assert record["verdict"]["outcome"] == claims.verdict_code([c["outcome"] for c in record["claims"] if c["key"]])
    metrics = record["metrics"]
    for kind in exp.MODELS:
        assert 0 < metrics[f"{kind}_val_bpc"] < 8 and metrics[f"{kind}_params"] > 0
        assert metrics[f"{kind}_decode_s_median"] > 0
    assert metrics["bigram_bpc"] < metrics["uniform_bpc"]
    for kind in exp.CONVS:
        assert metrics[f"{kind}_params"] <= metrics["transformer_params"]
    tables = record["tables"]
    assert len(tables["decoding"]) == exp.config("smoke").decode_rounds
    assert {r["T"] for r in tables["scaling"]} == {256, 1024} and len(tables["recall"]) == 3
    steps = {r["step"] for r in tables["learning_curve"]}
    assert exp.config("smoke").steps // 2 in steps and exp.config("smoke").steps in steps
    assert record["differences"] and len(record["figures"]) == 3
    assert all((tmp_path / "lightconv" / record["run_id"] / f).exists() for f in record["figures"])

