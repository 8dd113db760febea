"""The `saliency` experiment: config presets, the verdict rule, and a smoke run through the CLI."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import read_results, run_cli
from mlmyths.errors import ConfigError
from mlmyths.myths import saliency as experiment


def test_presets_build_and_reject_bad_values():
    for scale in ("smoke", "small", "paper"):
        cfg = experiment.config(scale)
        assert cfg.k >= 1 and cfg.epsilons and set(cfg.methods) <= {"gradient", "integrated_gradients", "deeplift"}
    paper = experiment.config("paper")
    assert paper.dataset == "cifar10" and paper.steps == 300 and max(paper.epsilons) == pytest.approx(8 / 255)
    assert experiment.config("small", steps="5", methods="gradient,deeplift").methods == ("gradient", "deeplift")
    with pytest.raises(ConfigError, match="'methods'.*lime"):
        experiment.config("small", methods="gradient,lime")
    with pytest.raises(ConfigError, match="'attacks'"):
        experiment.config("small", attacks="random")
    with pytest.raises(ConfigError, match="'epsilons'"):
        experiment.config("small", epsilons="0,0.1")
    with pytest.raises(ConfigError, match="unknown config key 'epsilon'"):
        experiment.config("small", epsilon="0.1")


def _outcomes(values: dict[tuple[str, float], tuple[float, float]], n: int = 10) -> dict:
    """Outcome arrays with the given (mean top-k intersection, fraction of labels kept) per (attack, eps)."""
    out = {}
    for (name, eps), (topk, kept) in values.items():
        k = np.zeros(n, dtype=np.float32)
        k[: int(round(kept * n))] = 1.0
        out[("gradient", None, name, eps)] = {"topk": np.full(n, topk), "kept": k}
    return out


@pytest.mark.parametrize("values, outcome, eps", [
    ({("random", 0.01): (0.8, 1.0), ("topk", 0.01): (0.2, 0.9),
      ("random", 0.03): (0.5, 1.0), ("topk", 0.03): (0.1, 1.0)}, "refuted", 0.01),
    ({("random", 0.01): (0.8, 1.0), ("topk", 0.01): (0.2, 0.3)}, "inconclusive", 0.01),  # labels mostly lost
    ({("random", 0.01): (0.9, 1.0), ("topk", 0.01): (0.7, 1.0),
      ("random", 0.03): (0.5, 1.0), ("topk", 0.03): (0.1, 1.0)}, "supported", 0.01),  # attack >= 0.6 where random is
    ({("random", 0.01): (0.7, 1.0), ("topk", 0.01): (0.45, 1.0)}, "inconclusive", 0.01),
    ({("random", 0.01): (0.5, 1.0), ("topk", 0.01): (0.1, 1.0)}, "inconclusive", 0.01),  # no eligible epsilon
])
def test_verdict_rule(values, outcome, eps):
    cfg = experiment.config("smoke", epsilons=tuple(sorted({e for _, e in values})))
    verdict, at = experiment._verdict(cfg, _outcomes(values))
    assert verdict.outcome == outcome
    assert at == eps
    assert any(ch.isdigit() for ch in verdict.reason)


def test_smoke_run_through_cli(tmp_path):
    proc = run_cli("run", "saliency", "--scale", "smoke", "--out", str(tmp_path), "--quiet")
    assert proc.returncode == 0, proc.stderr
    record = read_results(tmp_path, "saliency")
    assert record["status"] == "completed"
    cfg = experiment.config("smoke")
    assert record["verdict"]["outcome"] in ("refuted", "supported", "inconclusive")

    rows = record["tables"]["fragility"]
    assert {(r["method"], r["attack"]) for r in rows} == {
        (m, a) for m in cfg.methods for a in ("random", *cfg.attacks)}
    assert len(rows) == len(cfg.methods) * len(cfg.epsilons) * (1 + len(cfg.attacks))
    for r in rows:
        assert 0.0 <= r["label_kept"] <= 1.0 and r["n"] == cfg.images
        if r["topk_intersection"] is not None:
            assert 0.0 <= r["topk_intersection"] <= 1.0 and -1.0 <= r["rank_correlation"] <= 1.0
            assert r["center_shift_px"] >= 0.0

    # the verdict follows the documented rule from the table's numbers
    by = {(r["attack"], r["epsilon_255"]): r for r in rows if r["method"] == "gradient"}
    eligible = [e for (a, e), r in by.items() if a == "random" and r["topk_intersection"] is not None
                and r["topk_intersection"] >= experiment.ROBUST_ABOVE]
    attacked = {e: by[("topk", e)] for e in eligible}
    refuting = [e for e, r in attacked.items() if r["topk_intersection"] is not None
                and r["topk_intersection"] < experiment.REFUTE_BELOW and r["label_kept"] >= 0.5]
    if refuting:
        assert record["verdict"]["outcome"] == "refuted"
    elif eligible and all(by[("topk", e)]["topk_intersection"] >= experiment.ROBUST_ABOVE for e in eligible):
        assert record["verdict"]["outcome"] == "supported"
    else:
        assert record["verdict"]["outcome"] == "inconclusive"

    # the attack does more than random noise on simple gradient at every epsilon (the paper's qualitative finding)
    for e in cfg.epsilons:
        e255 = round(e * 255, 3)
        assert by[("topk", e255)]["topk_intersection"] < by[("random", e255)]["topk_intersection"]

    smoothing = record["tables"]["beta_smoothing"]
    assert any(r["explanation"].startswith("softplus beta=") for r in smoothing)
    targeted = {r["attack"]: r for r in record["tables"]["targeted"]}
    assert targeted["targeted"]["mass_in_region_after"] > targeted["targeted"]["mass_in_region_before"]
    assert {r["method"] for r in record["tables"]["sensitivity_max"]} == set(cfg.methods)
    assert record["metrics"]["test_accuracy"] > 0.8
    assert len(record["figures"]) == 2
    for fig in record["figures"]:
        assert (tmp_path / "saliency" / record["run_id"] / fig).stat().st_size > 1000


def test_mean_image_reference_matches_float_mean():
    import torch

    from mlmyths import data

    images = torch.randint(0, 256, (1000, 3, 4, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mean = experiment._mean_image(images, chunk=300)
    assert mean.shape == (1, 3, 4, 5)
    torch.testing.assert_close(mean, data.to_float(images).mean(0, keepdim=True), rtol=0, atol=1e-6)


def test_the_digits_fallback_uses_digit_sized_settings(tmp_path, monkeypatch):
    """Without Fashion-MNIST, 'auto' falls back to 8x8 digits: k and ε switch to digit-sized values, with a note."""
    from mlmyths import data
    from mlmyths.runs import RunContext

    monkeypatch.setattr(data, "first_available", lambda *a, **k: "digits")
    seen = {}

    def stop(cfg, ctx, ds):  # stop after the settings are chosen: the test is about them, not the attack
        seen["cfg"] = cfg
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "_train", stop)
    ctx = RunContext(tmp_path / "run", seed=0, scale="small")
    with pytest.raises(KeyboardInterrupt):
        experiment.run(experiment.config("small"), ctx)
    assert seen["cfg"].k == 4 and max(seen["cfg"].epsilons) == pytest.approx(32 / 255)
    with pytest.raises(KeyboardInterrupt):  # a dataset named explicitly keeps the settings asked for
        experiment.run(experiment.config("small", dataset="digits"), ctx)
    assert seen["cfg"].k == 16 and max(seen["cfg"].epsilons) == pytest.approx(8 / 255)
