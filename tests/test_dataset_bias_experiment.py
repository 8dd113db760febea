"""The dataset-bias experiment: end to end through the CLI, its configs, sources and verdict rule."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import read_results, run_cli, shared_data_dir

from mlmyths.errors import ConfigError
from mlmyths.myths import dataset_bias
from mlmyths.runs import RunContext


def test_smoke_run_through_the_cli(tmp_path):
    args = ["run", "dataset-bias", "--scale", "smoke", "--out", str(tmp_path), "--quiet"]
    shared = shared_data_dir()
    if shared is not None and (shared / "mnist-test").is_dir():  # the real MNIST test split as a fourth source
        args += ["--set", f"sources=digits,fonts,mnist={shared / 'mnist-test'},fashion-mnist?"]
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    record = read_results(tmp_path, "dataset-bias")
    assert record["status"] == "completed" and record["scale"] == "smoke"
    metrics, tables = record["metrics"], record["tables"]
    names = [row["source"] for row in tables["sources"]]
    assert names[:2] == ["digits", "fonts"] and metrics["n_sources"] == len(names) >= 2
    chance = metrics["chance"]
    assert chance == pytest.approx(1 / len(names))
    # Name That Dataset beats chance, before and after signature removal, with both classifiers
    for features in ("hog", "cnn"):
        assert metrics[f"ntd_{features}_removed_ci_low"] > chance
        assert metrics[f"ntd_{features}_raw_accuracy"] > chance + 0.2
    # the pseudo-dataset control stays at chance
    control = tables["pseudo_dataset_control"]
    assert [row["features"] for row in control] == ["hog", "cnn"]
    assert all(row["at_chance"] and row["ci_low"] <= chance <= row["ci_high"] for row in control)
    # the cross-dataset table over the digit sources, with percent drops
    cross = tables["cross_dataset_hog_removed"]
    digit_sources = metrics["cross_sources"].split(",")
    assert [row["train on"] for row in cross] == digit_sources and "fashion-mnist" not in digit_sources
    for row in cross:
        others = [row[f"test {n}"] for n in digit_sources if n != row["train on"]]
        assert row["mean others"] == pytest.approx(np.mean(others))
        assert row["percent drop"] == pytest.approx(100 * (row["self"] - row["mean others"]) / row["self"])
    assert len(tables["dataset_value_hog_removed"]) == len(digit_sources)
    # the verdict follows the documented rule from these numbers
    expected = "refuted" if metrics["cross_hog_removed_all_drop"] else "inconclusive"
    assert record["verdict"]["outcome"] == expected
    assert "before" in record["verdict"]["reason"] and "after removing" in record["verdict"]["reason"]
    assert sorted(record["figures"]) == ["figures/confusion.png", "figures/cross_dataset.png",
                                         "figures/learning_curve.png", "figures/samples.png",
                                         "figures/signature_removal.png"]
    run_dir = next((tmp_path / "dataset-bias").iterdir())
    assert all((run_dir / f).stat().st_size > 1000 for f in record["figures"])


def test_cli_reports_bad_sources_in_one_line(tmp_path):
    proc = run_cli("run", "dataset-bias", "--scale", "smoke", "--out", str(tmp_path), "--quiet",
                   "--set", f"sources=digits,mine={tmp_path / 'nowhere'}")
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "dataset-bias").exists() or not any((tmp_path / "dataset-bias").iterdir())


def test_configs_build_and_reject_bad_values():
    for scale in ("smoke", "small", "paper"):
        cfg = dataset_bias.config(scale)
        assert cfg.remove and max(cfg.curve) <= cfg.n_train
    paper = dataset_bias.config("paper")
    assert (paper.n_train, paper.n_test, paper.image_size) == (1000, 300, 32)  # the paper's 1000 + 300 per dataset
    assert "mnist" in paper.sources and "cnn" in paper.cross_features
    small = dataset_bias.config("small", sources="digits,fonts,x=/data/x?")
    assert small.sources == ("digits", "fonts", "x=/data/x?")
    with pytest.raises(ConfigError, match="'features', 'cross_features' and 'curve_features' take hog, pixels, cnn"):
        dataset_bias.config("small", features="hog,gist")
    with pytest.raises(ConfigError, match="'remove' takes steps"):
        dataset_bias.config("small", remove="resolution,colour")
    with pytest.raises(ConfigError, match="'curve' needs sizes in 1..n_train=100"):
        dataset_bias.config("small", n_train=100)
    with pytest.raises(ConfigError, match="unknown config key 'sauces'"):
        dataset_bias.config("small", sauces="digits")


def test_sources_skip_missing_optional_ones_and_report_corrupt_files(tmp_path):
    from PIL import Image

    root = tmp_path / "mine"
    for cls in ("0", "1"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((10, 10), 40 * i, np.uint8)).save(root / cls / f"{i}.png")
    (root / "1" / "bad.png").write_bytes(b"\x89PNG broken")
    cfg = dataset_bias.config("smoke", sources=f"digits,mine={root},nothing={tmp_path / 'absent'}?")
    ctx = RunContext(tmp_path / "run")
    sources, notes = dataset_bias._load_sources(cfg, ctx, need=50)
    assert [s.name for s in sources] == ["digits", "mine"] and len(sources[0]) == 50 and len(sources[1]) == 6
    assert any("'mine': 1 file(s) could not be decoded" in n and "bad.png" in n for n in notes)
    assert any("'nothing' skipped" in n for n in notes)
    with pytest.raises(ConfigError, match="names a source twice"):
        dataset_bias._load_sources(dataset_bias.config("smoke", sources="digits,digits=/x"), ctx, need=5)


def _naming(accuracy: float, chance: float = 0.25, half_width: float = 0.03) -> dict:
    return {"accuracy": accuracy, "chance": chance, "ci_low": accuracy - half_width, "ci_high": accuracy + half_width}


def _verdict(after: float, control: float, drops: bool | None) -> str:
    cfg = dataset_bias.config("smoke", features="hog,cnn", seeds=2)
    ntd = {(f, tag, s): _naming(0.9 if tag == "raw" else after) for f in cfg.features
           for tag in ("raw", "removed") for s in range(2)}
    controls = {(f, s): _naming(control) for f in cfg.features for s in range(2)}
    cross = {} if drops is None else {
        ("hog", "removed", s): {"drops": [[True, drops], [True, True]], "percent_drop": [40.0, 30.0]}
        for s in range(2)}
    return dataset_bias._verdict(cfg, ntd, controls, cross, 0.99).outcome


def test_verdict_rule_on_hand_made_numbers():
    assert _verdict(after=0.8, control=0.26, drops=True) == "refuted"
    assert _verdict(after=0.8, control=0.26, drops=False) == "inconclusive"  # no cross-dataset drop
    assert _verdict(after=0.8, control=0.26, drops=None) == "inconclusive"  # no cross-dataset table
    assert _verdict(after=0.8, control=0.40, drops=True) == "inconclusive"  # the control beats chance
    assert _verdict(after=0.26, control=0.25, drops=False) == "supported"  # removal kills the effect
    assert _verdict(after=0.26, control=0.25, drops=True) == "supported"
