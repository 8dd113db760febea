"""The dataset-bias experiment: end to end through the CLI (digits, fonts, MNIST, image folders), its
configs, and its claims judged on simulated data with known truth (never a real run's outcome)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import read_results, run_cli, shared_data_dir

from mlmyths import claims
from mlmyths.bias import name_within_class, pseudo_datasets
from mlmyths.data.synthetic import font_digits
from mlmyths.errors import ConfigError
from mlmyths.myths import dataset_bias
from mlmyths.runs import RunContext

IDS = [c.id for c in dataset_bias.CLAIMS]


def _check_record_follows_the_rules(record: dict) -> None:
    """Every claim's outcome is its test applied to its interval; the verdict is the rule over the key claims."""
    assert [c["id"] for c in record["claims"]] == IDS
    for c in record["claims"]:
        if c["outcome"] == "not_tested":
            assert c["reason"], c["id"]
            continue
        low, high = c["ci"]
        code = claims.outcome_codes(c["test"], c["threshold"], np.array([low]), np.array([high]))[0]
        assert c["outcome"] == claims.OUTCOMES[code], c
        assert low <= c["estimate"] <= high
    key = [c["outcome"] for c in record["claims"] if c["key"]]
    assert record["verdict"]["outcome"] == claims.verdict_code(key)
    prerequisites = {c["id"]: c["outcome"] for c in record["claims"] if not c["key"]}
    if any(o != "reproduced" for o in prerequisites.values()):  # a broken instrument never decides the verdict
        assert set(key) == {"not_tested"} and record["verdict"]["outcome"] == "inconclusive"


def test_smoke_run_through_the_cli(tmp_path):
    args = ["run", "dataset-bias", "--scale", "smoke", "--out", str(tmp_path), "--quiet"]
    shared = shared_data_dir()
    names = ["digits", "fonts"]
    if shared is not None and (shared / "mnist-test").is_dir():  # the real MNIST test split as a third source
        args += ["--set", f"sources=digits,fonts,mnist={shared / 'mnist-test'}"]
        names.append("mnist")
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    record = read_results(tmp_path, "dataset-bias")
    assert record["status"] == "completed" and record["scale"] == "smoke" and record["schema"] == 2
    _check_record_follows_the_rules(record)
    assert record["differences"] and record["config"]["control_source"] == "digits"
    tables = record["tables"]
    pairs = {row["sources"]: row for row in tables["within_class_naming"]}
    n_pairs = len(names) * (len(names) - 1) // 2
    assert sum(row["role"] == "key pair" for row in pairs.values()) == n_pairs
    halves = pairs["digits-half1 vs digits-half2"]
    assert halves["role"].startswith("control: the two halves") and halves["chance"] == 0.5
    assert pairs["digits-half1 vs digits-half2 vs fonts"]["chance"] == pytest.approx(1 / 3)
    # the claim's point estimates are the tables' numbers
    by_id = {c["id"]: c for c in record["claims"]}
    assert by_id["halves-at-chance"]["estimate"] == pytest.approx(halves["accuracy"] - 0.5)
    key_rows = [row for row in pairs.values() if row["role"] == "key pair"]
    assert by_id["pairs-told-apart"]["estimate"] == pytest.approx(min(row["accuracy"] for row in key_rows))
    drops = tables["percent_drop"]
    assert len(drops) == 2 * n_pairs
    assert by_id["cross-dataset-drop"]["estimate"] == pytest.approx(min(d["percent drop"] for d in drops))
    for d in drops:
        assert d["percent drop"] == pytest.approx(100 * (1 - d["cross"] / d["self"]))
    # Fashion-MNIST, when installed, is a labelled row outside the claims
    content = [row for row in tables["name_that_dataset"] if "fashion-mnist" in row["sources"]]
    assert all(row["what"].startswith("content differs: not a claim") for row in content)
    assert all("fashion" not in c["statistic"] for c in record["claims"])
    assert sorted(record["figures"]) == ["figures/confusion.png", "figures/cross_dataset.png",
                                         "figures/learning_curve.png", "figures/pairs.png", "figures/samples.png"]
    run_dir = next((tmp_path / "dataset-bias").iterdir())
    assert all((run_dir / f).stat().st_size > 1000 for f in record["figures"])


def _bars(n: int, thick: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class 0: a horizontal bar, class 1: a vertical one, thick or thin, at a random offset, 12x12."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.integers(0, 30, (n, 12, 12)).astype(np.uint8)
    width = 4 if thick else 1
    for i, y in enumerate(labels):
        at = int(rng.integers(2, 12 - width - 2))
        if y == 0:
            images[i, at:at + width, 2:10] = 230
        else:
            images[i, 2:10, at:at + width] = 230
    return images, labels


@pytest.mark.slow
def test_the_paper_preset_takes_image_folders_offline(tmp_path):
    """The paper's setup is the user's own object-dataset folders (NAME=PATH, PATH/CLASS/*.png): the
    path through folders, tested offline on tiny generated ones (one corrupt file among them)."""
    from PIL import Image

    specs = []
    for name, thick in (("thick", True), ("thin", False)):
        images, labels = _bars(120, thick, seed=len(name))
        for i, (image, label) in enumerate(zip(images, labels)):
            folder = tmp_path / name / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{i}.png")
        specs.append(f"{name}={tmp_path / name}")
    (tmp_path / "thin" / "1" / "broken.png").write_bytes(b"\x89PNG broken")
    (tmp_path / "thick" / "extra").mkdir()  # a class only one source has: outside the shared label space
    for i in range(10):
        Image.fromarray(np.eye(12, dtype=np.uint8) * 200).save(tmp_path / "thick" / "extra" / f"{i}.png")
    proc = run_cli("run", "dataset-bias", "--scale", "paper", "--out", str(tmp_path / "runs"), "--quiet",
                   "--set", f"sources={','.join(specs)}", "--set", "content_sources=",
                   "--set", "class_n_train=8", "--set", "class_n_test=4", "--set", "n_train=40", "--set", "n_test=20",
                   "--set", "curve=10", "--set", "seeds=2")
    assert proc.returncode == 0, proc.stderr
    record = read_results(tmp_path / "runs", "dataset-bias")
    assert record["status"] == "completed" and record["scale"] == "paper"
    assert record["config"]["control_source"] == "thick" and record["config"]["image_size"] == 32
    _check_record_follows_the_rules(record)
    sources = {row["source"]: row for row in record["tables"]["sources"]}
    assert sources["thick"]["origin"] == str(tmp_path / "thick") and sources["thick"]["native_size"] == "12x12"
    assert sources["thin"]["skipped_files"] == 1 and sources["thin"]["images"] == 120
    assert sources["thick"]["classes"] == 3 and record["metrics"]["shared_classes"] == 2
    assert {row["classes"] for row in record["tables"]["within_class_naming"]} == {2}
    assert any("'thin': 1 file(s) could not be decoded" in n for n in record["notes"])


def test_cli_reports_bad_sources_in_one_line(tmp_path):
    proc = run_cli("run", "dataset-bias", "--scale", "smoke", "--out", str(tmp_path), "--quiet",
                   "--set", f"sources=digits,mine={tmp_path / 'nowhere'}")
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "dataset-bias").exists() or not any((tmp_path / "dataset-bias").iterdir())


def test_configs_resolve_the_control_source_and_reject_bad_values():
    small = dataset_bias.config("small")
    assert small.control_source == "digits" and small.sources[-1] == "mnist?"
    paper = dataset_bias.config("paper")
    assert (paper.n_train, paper.n_test, paper.image_size, paper.control_source) == (1000, 300, 32, "mnist")
    folders = dataset_bias.config("paper", sources="sun=/data/sun,labelme=/data/labelme?")
    assert folders.control_source == "sun" and folders.sources == ("sun=/data/sun", "labelme=/data/labelme?")
    assert dataset_bias.config("small", control_source="fonts").control_source == "fonts"
    with pytest.raises(ConfigError, match="'sources': 'gist' is not a source"):
        dataset_bias.config("small", sources="digits,gist")
    with pytest.raises(ConfigError, match="'control_source' must be 'auto' or one of the sources"):
        dataset_bias.config("small", control_source="fashion-mnist")
    with pytest.raises(ConfigError, match=r"'curve' must be sizes in 1\.\.99"):
        dataset_bias.config("small", n_train=100)
    with pytest.raises(ConfigError, match="names used once"):
        dataset_bias.config("small", content_sources="digits=/x")
    with pytest.raises(ConfigError, match="'remove' expects"):
        dataset_bias.config("small", remove="resolution,colour")
    with pytest.raises(ConfigError, match="unknown config key 'sauces'"):
        dataset_bias.config("small", sauces="digits")


def test_sources_skip_missing_optional_ones_and_check_counts(tmp_path):
    cfg = dataset_bias.config("smoke", sources=f"digits,fonts,nothing={tmp_path / 'absent'}?",
                              content_sources="fashion-mnist?")
    ctx = RunContext(tmp_path / "run")
    sources, _, notes = dataset_bias._load(cfg, ctx)
    assert [s.name for s in sources] == ["digits", "fonts"]
    assert any("'nothing' skipped" in n for n in notes)
    with pytest.raises(ConfigError, match="source 'digits' has 1797 images, 174 in its smallest shared class"):
        dataset_bias._load(replace(cfg, class_n_train=80), ctx)  # the control source needs 2 x (80 + 10) per class


# -- the claims on simulated data with known truth -------------------------------------------------------------


def _evaluate(**truth: float) -> list:
    cfg = dataset_bias.config("small")
    values = {**dataset_bias.CALIBRATION["paper"], **truth}
    return dataset_bias.evaluate(cfg, dataset_bias.simulate(cfg, values, np.random.default_rng(0)))


def test_the_paper_side_is_refuted_and_one_indistinguishable_pair_is_supported():
    results = _evaluate()
    assert [r.outcome for r in results] == ["reproduced"] * 4 and claims.verdict(results).outcome == "refuted"
    cfg = dataset_bias.config("small")
    m = dataset_bias.simulate(cfg, dataset_bias.CALIBRATION["paper"], np.random.default_rng(1))
    m["pairs"]["fonts|mnist"] = dataset_bias._bernoulli(np.random.default_rng(2), 0.5, cfg.seeds, 600)  # at chance
    results = dataset_bias.evaluate(cfg, m)
    told = results[0]
    assert told.outcome == "contradicted" and "fonts|mnist" in told.reason
    assert claims.verdict(results).outcome == "supported"


@pytest.mark.parametrize("broken", [{"halves-at-chance": 0.3}, {"task-learned": 0.0}])
def test_a_broken_instrument_gives_inconclusive_never_supported(broken):
    results = _evaluate(**{"pairs-told-apart": 0.5, "cross-dataset-drop": 0.0}, **broken)  # keys would be contradicted
    by_id = {r.claim.id: r for r in results}
    assert by_id["pairs-told-apart"].outcome == by_id["cross-dataset-drop"].outcome == "not_tested"
    assert f"prerequisite '{next(iter(broken))}' not reproduced" in by_id["pairs-told-apart"].reason
    assert claims.verdict(results).outcome == "inconclusive"


def test_missing_sources_and_control_are_not_tested_with_the_reason():
    cfg = dataset_bias.config("small")
    m = {"classes": 10, "pairs": {}, "cross": {}, "halves": None}
    results = dataset_bias.evaluate(cfg, m)
    assert {r.outcome for r in results} == {"not_tested"}
    assert "fewer than two sources" in results[3].reason and "mixture control did not run" in results[2].reason


def _font_source(n: int, seed: int, mark: bool = False) -> tuple[np.ndarray, np.ndarray]:
    images, labels = font_digits(n, size=16, seed=seed)
    if mark:  # a planted capture bias: a bright strip along the bottom edge, which no signature step removes
        images[:, :, -2:, :] = np.maximum(images[:, :, -2:, :], 150)
    return images, labels


def test_a_planted_bias_pair_is_told_apart_and_random_halves_of_a_mixture_are_not():
    """Real classifiers on simulated sources: a planted capture bias is detected by the key claim, the random
    halves of a source beside it stay at chance (the control), while the 3-way mixture of the halves and the
    biased source reads far above its 1/3 chance -- why the claims are pairwise."""
    cfg = dataset_bias.config("small")
    plain = _font_source(1500, seed=1)
    biased = _font_source(600, seed=2, mark=True)
    lookalike = _font_source(600, seed=3)
    halves = list(pseudo_datasets(plain, 2, seed=0, name="half", by_class=True).values())
    options = dict(features="hog", n_train=20, n_test=30, test_seed=7, size=16, remove=cfg.remove,
                   classes=("0", "1", "2", "3", "5", "7"))
    seeds = 4

    def outcomes(group: dict) -> np.ndarray:
        return np.stack([name_within_class(group, seed=s, **options).correct.ravel() for s in range(seeds)])

    m = dataset_bias.simulate(replace(cfg, seeds=seeds), dataset_bias.CALIBRATION["paper"], np.random.default_rng(0))
    m["pairs"] = {"half1|biased": outcomes({"half1": halves[0], "biased": biased})}  # (seeds, 6 x 2 x 30)
    m["halves"] = outcomes({"half1": halves[0], "half2": halves[1]})
    told, _, control, _ = dataset_bias.evaluate(cfg, m)
    assert control.outcome == "reproduced" and abs(control.estimate.value) < 0.1, control.reason
    assert told.outcome == "reproduced" and told.estimate.value > 0.9, told.reason
    mixture = name_within_class({"half1": halves[0], "half2": halves[1], "biased": biased}, seed=0, **options)
    assert mixture.accuracy > 0.6 > mixture.chance + 0.2
    # two independent draws of one process are not told apart: the key claim does not come out reproduced
    m["pairs"] = {"half1|lookalike": outcomes({"half1": halves[0], "lookalike": lookalike})}
    assert dataset_bias.evaluate(cfg, m)[0].outcome != "reproduced"
