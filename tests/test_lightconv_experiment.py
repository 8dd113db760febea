"""The `lightconv` experiment: configs, matched parameters, data, measurement, verdict rule, CLI smoke run."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import read_results, run_cli
from mlmyths import measure
from mlmyths.errors import ConfigError
from mlmyths.myths import lightconv as exp


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


def test_config_overrides_are_strict():
    assert exp.config("smoke", steps="7").steps == 7
    with pytest.raises(ConfigError, match="unknown config key 'step'"):
        exp.config("smoke", step=7)


def test_windows_are_next_character_pairs_without_overlap():
    ids = torch.arange(1000)
    x, y = exp.windows(ids, 16, 0, np.random.default_rng(0))
    assert torch.equal(y, x + 1)
    starts = x[:, 0].sort().values
    assert bool((starts.diff() == 16).all()) and len(x) >= (1000 - 1 - 15) // 16
    x5, _ = exp.windows(ids, 16, 5, np.random.default_rng(0))
    assert x5.shape == (5, 16)


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


def _lm(bpc, params):
    return {"val_bpc": bpc, "params": params}


def _ratios(light, dynamic, lengths=(256, 1024, 4096)):
    return [{"T": T, "attention/lightconv": light, "attention/dynamicconv": dynamic} for T in lengths]


def test_verdict_rule():
    tr = _lm(2.00, 1000)
    refuted = exp.verdict({"transformer": tr, "lightconv": _lm(2.03, 990), "dynamicconv": _lm(2.30, 1000)},
                          _ratios(3.0, 1.5))
    assert refuted.outcome == "refuted" and "LightConv" in refuted.reason and "2.030" in refuted.reason
    supported = exp.verdict({"transformer": tr, "lightconv": _lm(2.05, 990), "dynamicconv": _lm(2.10, 1000)},
                            _ratios(3.0, 1.5))
    assert supported.outcome == "supported"
    slow = exp.verdict({"transformer": tr, "lightconv": _lm(2.01, 990), "dynamicconv": _lm(2.5, 990)},
                       _ratios(0.8, 0.5))
    assert slow.outcome == "inconclusive" and "not faster" in slow.reason
    heavy = exp.verdict({"transformer": tr, "lightconv": _lm(2.5, 990), "dynamicconv": _lm(1.9, 1001)},
                        _ratios(3.0, 3.0))
    assert heavy.outcome == "inconclusive" and "more parameters" in heavy.reason
    short = exp.verdict({"transformer": tr, "lightconv": _lm(1.9, 990), "dynamicconv": _lm(1.9, 990)},
                        _ratios(3.0, 3.0, lengths=(256, 512)))
    assert short.outcome == "inconclusive" and "no T>=1024 measured" in short.reason
    diverged = exp.verdict({"transformer": _lm(math.nan, 1000), "lightconv": _lm(1.9, 990),
                            "dynamicconv": _lm(1.9, 990)}, _ratios(3.0, 3.0))
    assert diverged.outcome == "inconclusive" and "diverged" in diverged.reason


def test_recall_finding_follows_the_accuracies():
    cfg = exp.config("smoke")

    def rows(t, light, dynamic):
        return [{"model": m, "accuracy": a, "accuracy_beyond_receptive_field": a}
                for m, a in [("Transformer", t), ("LightConv", light), ("DynamicConv", dynamic)]]

    assert "Attention wins" in exp.recall_finding(rows(0.95, 0.07, 0.08), 5, 1 / 16, cfg)
    assert "No model learned" in exp.recall_finding(rows(0.07, 0.06, 0.06), 5, 1 / 16, cfg)
    assert "keep up" in exp.recall_finding(rows(0.9, 0.85, 0.5), 5, 1 / 16, cfg)


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
        step = exp.forward_backward(module, x)
        seconds, _ = measure.time_and_memory(step, torch.device("cpu"), repeats=2)
        assert seconds > 0 and x.grad is not None and x.grad.shape == x.shape
    rows = [{"T": 1024, "model": "transformer", "time_ms": 10.0}, {"T": 1024, "model": "lightconv", "time_ms": 2.0},
            {"T": 1024, "model": "dynamicconv", "time_ms": 5.0}, {"T": 2048, "model": "lightconv", "time_ms": 4.0}]
    ratios = exp.speed_ratios(rows)
    assert ratios[0] == {"T": 1024, "attention/lightconv": 5.0, "attention/dynamicconv": 2.0}
    assert ratios[1]["attention/lightconv"] is None  # attention not measured at 2048


def test_smoke_run_through_the_cli(tmp_path):
    proc = run_cli("run", "lightconv", "--scale", "smoke", "--out", str(tmp_path), "--quiet")
    assert proc.returncode == 0, proc.stderr
    record = read_results(tmp_path, "lightconv")
    assert record["status"] == "completed"
    assert record["verdict"]["outcome"] in ("refuted", "supported", "inconclusive")
    assert "Transformer" in record["verdict"]["reason"] and "bpc" in record["verdict"]["reason"]
    metrics = record["metrics"]
    for kind in exp.MODELS:
        assert 0 < metrics[f"{kind}_val_bpc"] < 8 and metrics[f"{kind}_params"] > 0
        assert metrics[f"{kind}_train_tokens_per_s"] > 0 and metrics[f"{kind}_generate_tokens_per_s"] > 0
    for kind in exp.CONVS:
        assert metrics[f"{kind}_params"] <= metrics["transformer_params"]
        assert metrics[f"speedup_{kind}_T1024"] > 0
    # the verdict follows the documented rule applied to the recorded numbers
    lm = {k: {"val_bpc": metrics[f"{k}_val_bpc"], "params": metrics[f"{k}_params"]} for k in exp.MODELS}
    assert exp.verdict(lm, record["tables"]["speed_ratio"]).outcome == record["verdict"]["outcome"]
    assert {r["T"] for r in record["tables"]["scaling"]} == {256, 1024}
    assert len(record["tables"]["recall"]) == 3
    assert all((tmp_path / "lightconv" / record["run_id"] / f).exists() for f in record["figures"])
    assert len(record["figures"]) == 3


def test_a_corpus_too_short_for_the_context_is_a_data_error():
    from mlmyths.errors import DataError

    with pytest.raises(DataError, match=r"has 100 characters: too short for context=64"):
        exp.char_corpus(exp.config("smoke", max_chars=100, context=64))
    assert exp.corpus_name(exp.config("smoke", dataset="enwik8")) == "enwik8"
    assert exp.corpus_name(exp.config("smoke")) in ("fortunes", "python-docs")
