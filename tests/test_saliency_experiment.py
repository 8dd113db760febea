"""The `saliency` experiment: config resolution, the claims on simulated data with known truth, the
image-folder path, and a smoke run through the CLI whose claims follow the rules (never a pinned outcome)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from conftest import read_results, run_cli
from mlmyths import claims, config as configs
from mlmyths.errors import ConfigError, DataError
from mlmyths.myths import saliency as experiment

KEY = [c.id for c in experiment.CLAIMS if c.key]
FRAGILITY = ["topk-gradient", "topk-deeplift", "center-gradient", "topk-integrated-gradients", "rank-gradient",
             "resolution"]


# -- config: resolved in config(), never rewritten in run() -------------------------------------------------


def test_config_resolves_dataset_size_and_k_and_keeps_a_users_k():
    cfg = experiment.config("small", dataset="fashion-mnist")
    assert (cfg.image_size, cfg.k) == (28, round(1000 / 227 ** 2 * 784)) == (28, 15)
    assert experiment.config("small", dataset="fashion-mnist", k="7").k == 7  # --set k= always wins
    paper = experiment.config("paper")
    assert (paper.dataset, paper.model, paper.image_size, paper.k, paper.steps) == ("folder", "squeezenet1_0", 227, 1000, 300)
    assert max(paper.epsilons) == pytest.approx(8 / 255) and paper.step_255 == 0.5 and paper.upsample == ()
    digits = experiment.config("small", dataset="digits")
    assert digits.image_size == 8 and digits.k == 1 and digits.epsilons == experiment.config("small").epsilons


@pytest.mark.parametrize("overrides, key", [
    ({"epsilons": "0.1"}, "epsilons"),  # 25.5/255: outside the paper's range (the old digits fallback used 32/255)
    ({"epsilons": "0,0.01"}, "epsilons"),
    ({"methods": "gradient,lime"}, "methods"),
    ({"attacks": "random"}, "attacks"),
    ({"model": "squeezenet1_0"}, "model"),  # a pretrained model explains a folder, not a dataset trained here
    ({"weights": "/no/such/file.pt"}, "weights"),
    ({"image_folder": "/tmp"}, "image_folder"),  # read only with dataset=folder
    ({"dataset": "digits", "image_size": "16"}, "image_size"),  # only folders are resized
    ({"dataset": "folder", "model": "squeezenet1_1"}, "upsample"),  # no per-resolution models for a pretrained one
    ({"dataset": "digits", "k": "65"}, "k"),
    ({"images": "1"}, "images"),
])
def test_bad_values_are_rejected_naming_the_key(overrides, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        experiment.config("small", **overrides)


def test_run_takes_only_a_resolved_config(tmp_path):
    from mlmyths.runs import RunContext

    raw = experiment.Config(dataset="digits")  # k and image_size still automatic
    with pytest.raises(ConfigError, match="still automatic"):
        experiment.run(raw, RunContext(tmp_path / "run"))
    resolved = experiment.resolve(raw)
    assert experiment.resolve(resolved) == resolved and configs.to_dict(resolved)["k"] == 1


def test_models_of_every_resolution_share_parameters_and_initial_weights():
    cfg = experiment.config("small", dataset="fashion-mnist")
    nets = []
    for side in (28, 56, 112):
        torch.manual_seed(3)
        net = experiment._build(cfg, 1, 10)
        assert net(torch.zeros(2, 1, side, side)).shape == (2, 10)
        nets.append(net)
    for net in nets[1:]:
        for (name, a), (_, b) in zip(nets[0].state_dict().items(), net.state_dict().items()):
            assert torch.equal(a, b), name
    assert [experiment._k_at(cfg, s) for s in (28, 56, 112)] == [15, 60, 240]  # a fixed fraction of the pixels


def test_upsampling_keeps_pixels_in_range_and_is_the_identity_at_the_native_size():
    x = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    native = experiment._pixels(x, 28)
    torch.testing.assert_close(native, x.float() / 255)
    up = experiment._pixels(x, 112)
    assert up.shape == (3, 1, 112, 112) and float(up.min()) >= 0 and float(up.max()) <= 1
    torch.testing.assert_close(torch.nn.functional.avg_pool2d(up, 4).mean(), native.mean(), atol=2e-3, rtol=0)


def test_mean_image_reference_matches_float_mean():
    from mlmyths import data

    images = torch.randint(0, 256, (1000, 3, 4, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mean = experiment._mean_image(images, chunk=300)
    assert mean.shape == (1, 3, 4, 5)
    torch.testing.assert_close(mean, data.to_float(images).mean(0, keepdim=True), rtol=0, atol=1e-6)


# -- claims on simulated data with known truth --------------------------------------------------------------


def _simulated(truth=None, seed=0, **changes):
    cfg = experiment.config("small", dataset="fashion-mnist")
    m = experiment.simulate(cfg, {**experiment.CALIBRATION["paper"], **(truth or {})}, np.random.default_rng(seed))
    m.update(changes)
    return cfg, m


def _outcomes(results):
    return {r.claim.id: r.outcome for r in results}


def test_the_paired_estimate_is_the_mean_per_image_difference_over_kept_images():
    cfg, m = _simulated()
    per = m["native"]["gradient"]
    per["random"]["kept"][:] = 1.0
    per["random"]["kept"][:5] = 0.0  # five images lost their label under random noise: out of every key claim
    kept = experiment._kept_all(m["native"], m["images"])
    r = {x.claim.id: x for x in experiment.evaluate(cfg, m)}["topk-gradient"]
    diff = (per["random"]["topk"] - per["topk"]["topk"])[kept]
    assert r.estimate.n == kept.sum() == m["images"] - 5
    assert r.estimate.value == pytest.approx(diff.mean())
    from scipy import stats as sps

    half = diff.std(ddof=1) / np.sqrt(len(diff)) * sps.t.ppf(0.975, len(diff) - 1)
    assert r.estimate.high - r.estimate.low == pytest.approx(2 * half, rel=1e-9)
    center = {x.claim.id: x for x in experiment.evaluate(cfg, m)}["center-gradient"]
    shift = ((per["mass_center"]["shift"] - per["random"]["shift"]) / m["side"])[kept]
    assert center.estimate.value == pytest.approx(shift.mean())


def test_a_model_at_chance_makes_the_key_claims_not_tested_never_a_verdict():
    for side in ("paper", "other"):
        cfg, m = _simulated({**experiment.CALIBRATION[side], "model-learned": 0.0, "labels-kept": 0.99})
        results = experiment.evaluate(cfg, m)
        out = _outcomes(results)
        assert out["model-learned"] == "contradicted"
        assert all(out[k] == "not_tested" for k in KEY)
        assert claims.verdict(results).outcome == "inconclusive"
        assert "prerequisite 'model-learned'" in {r.claim.id: r for r in results}["topk-gradient"].reason


def test_perturbations_that_lose_labels_gate_the_key_claims():
    cfg, m = _simulated({"labels-kept": 0.4})
    results = experiment.evaluate(cfg, m)
    assert _outcomes(results)["labels-kept"] == "contradicted"
    assert all(_outcomes(results)[k] == "not_tested" for k in KEY)
    assert claims.verdict(results).outcome == "inconclusive"


def test_images_too_small_are_not_tested_with_the_reason_never_a_larger_epsilon():
    digits = experiment.config("small", dataset="digits")
    reason = experiment._regime(digits)
    assert "64 pixels" in reason and "grey-level step" in reason and "larger ε" in reason
    assert experiment._regime(experiment.config("small", dataset="fashion-mnist")) == ""
    cfg, m = _simulated(regime=reason)
    out = {r.claim.id: r for r in experiment.evaluate(cfg, m)}
    for cid in FRAGILITY:
        assert out[cid].outcome == "not_tested" and out[cid].reason == reason
    assert out["model-learned"].outcome == "reproduced"


def test_a_method_or_sweep_that_did_not_run_is_not_tested():
    cfg, m = _simulated()
    del m["native"]["deeplift"]
    m["sweep"] = None
    out = {r.claim.id: r for r in experiment.evaluate(cfg, m)}
    assert out["topk-deeplift"].outcome == "not_tested" and "was not run" in out["topk-deeplift"].reason
    assert out["resolution"].outcome == "not_tested" and "no resolution sweep" in out["resolution"].reason
    assert out["topk-gradient"].outcome == "reproduced"
    assert claims.verdict(list(out.values())).outcome == "inconclusive"


def test_the_resolution_claim_follows_the_sign_of_the_extra_damage():
    for truth, expected in ((0.2, "reproduced"), (-0.2, "contradicted")):
        cfg, m = _simulated({"resolution": truth})
        assert _outcomes(experiment.evaluate(cfg, m))["resolution"] == expected
    cfg, m = _simulated()
    m["sweep_accuracy"] = [[1000, 10_000, 0.1]]  # an upsampled model at chance: the sweep says nothing
    r = {x.claim.id: x for x in experiment.evaluate(cfg, m)}["resolution"]
    assert r.outcome == "not_tested" and "not clearly trained" in r.reason


def test_evaluate_and_simulate_are_deterministic_and_complete():
    cfg, a = _simulated(seed=4)
    _, b = _simulated(seed=4)
    ra, rb = experiment.evaluate(cfg, a), experiment.evaluate(cfg, b)
    assert [r.to_dict() for r in ra] == [r.to_dict() for r in rb]
    assert [r.claim.id for r in ra] == [c.id for c in experiment.CLAIMS]


# -- the image-folder path (the paper preset) ----------------------------------------------------------------


def test_folder_labels_follow_class_indices_or_the_synset_folders():
    assert experiment._folder_labels(("7", "281"), 1000).tolist() == [7, 281]
    assert experiment._folder_labels(tuple(f"n{i:08d}" for i in range(1000)), 1000).tolist() == list(range(1000))
    assert experiment._folder_labels(("cat", "dog"), 1000) is None
    assert experiment._folder_labels(("3", "1000"), 1000) is None  # not a class index


def _folder(root, classes, n=2, side=40):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in classes:
        d = root / c if c else root
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (side, side + 8), dtype=np.uint8)).save(d / f"{i}.png")  # grey
    return root


def test_an_image_folder_loads_as_colour_images_of_the_papers_size_with_labels(tmp_path):
    cfg = experiment.config("paper", image_folder=str(_folder(tmp_path / "imgs", ["5", "7"])))
    ds, labelled = experiment._load(cfg)
    assert labelled and ds.x_test.shape == (4, 3, 227, 227) and ds.num_classes == 1000
    assert sorted(ds.y_test.tolist()) == [5, 5, 7, 7]
    flat = experiment.config("paper", image_folder=str(_folder(tmp_path / "flat", [""])))
    ds, labelled = experiment._load(flat)
    assert not labelled and (ds.y_test == -1).all()
    with pytest.raises(DataError, match="'image_folder' is empty"):
        experiment._load(experiment.config("paper"))


def test_the_rehearsal_keeps_the_papers_model_and_shapes():
    paper = experiment.config("paper")
    cfg = experiment.rehearsal(paper)
    assert (cfg.model, cfg.image_size, cfg.k, cfg.dataset) == (paper.model, 227, 1000, "folder")
    assert cfg.image_folder and not cfg.weights and cfg.steps < paper.steps
    small = experiment.rehearsal(experiment.config("small", dataset="fashion-mnist"))
    assert small.dataset == "rehearsal-fashion-mnist" and small.image_size == 28


# -- a smoke run through the command line ---------------------------------------------------------------------


@pytest.mark.slow
def test_smoke_run_through_cli(tmp_path):
    proc = run_cli("run", "saliency", "--scale", "smoke", "--out", str(tmp_path), "--quiet", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    record = read_results(tmp_path, "saliency")
    assert record["status"] == "completed" and record["schema"] == 2
    cfg = experiment.config("smoke")
    assert record["config"] == configs.to_dict(cfg)  # the config recorded is the config that ran

    declared = {c.id: c for c in experiment.CLAIMS}
    assert [c["id"] for c in record["claims"]] == list(declared)
    for c in record["claims"]:
        if c["outcome"] == "not_tested":
            assert c["reason"]
            continue
        low, high = c["ci"]
        assert low <= c["estimate"] <= high
        if "prerequisite" not in c["reason"]:
            assert declared[c["id"]].outcome(low, high) == c["outcome"], c["id"]  # the three rules, exactly
    key = [c["outcome"] for c in record["claims"] if c["key"]]
    assert record["verdict"]["outcome"] == claims.verdict_code(key)  # the verdict follows the key claims
    assert record["differences"]

    rows = record["tables"]["fragility"]
    assert {(r["method"], r["attack"]) for r in rows} == {(m, a) for m in cfg.methods for a in ("random", *cfg.attacks)}
    for r in rows:
        assert 0.0 <= r["label_kept"] <= 1.0 and r["n"] == cfg.images
        if r["topk_intersection"] is not None:
            assert 0.0 <= r["topk_intersection"] <= 1.0 and -1.0 <= r["rank_correlation"] <= 1.0
            assert r["center_shift_px"] >= 0.0
    sides = [r["side"] for r in record["tables"]["resolution"]]
    assert sides == [cfg.image_size * f for f in (1, *cfg.upsample)]
    assert [r["k"] for r in record["tables"]["resolution"]] == [experiment._k_at(cfg, s) for s in sides]
    assert len(record["figures"]) == 3
    for fig in record["figures"]:
        assert (tmp_path / "saliency" / record["run_id"] / fig).stat().st_size > 1000


def test_config_fields_round_trip_through_the_record_form():
    cfg = experiment.config("smoke")
    again = experiment.config("smoke", **configs.to_dict(cfg))
    assert again == cfg and dataclasses.asdict(again) == dataclasses.asdict(cfg)
