"""The published CIFAR-10.1 predictions: loading the real files, the paper's table, malformed inputs."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mlmyths.errors import DataError
from mlmyths.reuse import cifar101
from mlmyths.reuse.cifar101 import PAPER_ORIGINAL_ACCURACY, load_published, read_prediction_file


@pytest.fixture
def cifar101_dir(shared_data: Path) -> Path:
    path = shared_data / "cifar10.1"
    if not (path / "model_predictions").is_dir():
        pytest.skip(f"{path} has no model_predictions/ (the published CIFAR-10.1 predictions)")
    return path


def _accuracy(pub, model: str) -> float:
    i = pub.models.index(model)
    return 100.0 * float((pub.new[i] == pub.new_labels).mean())


def test_loads_the_real_published_predictions(cifar101_dir: Path):
    v6 = load_published(cifar101_dir, "v6")
    assert len(v6.models) == 30 and v6.new.shape == (30, 2000) and v6.original.shape == (30, 10_000)
    assert v6.new_labels.shape == (2000,) and np.array_equal(np.bincount(v6.new_labels), np.full(10, 200))
    v4 = load_published(cifar101_dir, "v4")
    assert v4.new.shape == (30, 2021) and v4.models == v6.models
    assert np.array_equal(v4.original, v6.original)  # the same original predictions
    # The paper's Table 1 (v4) new accuracies, recomputed from the predictions.
    assert _accuracy(v4, "shake_shake_26_2x64d_SSI_cutout16") == pytest.approx(93.0, abs=0.05)
    assert _accuracy(v4, "resnet_basic_110") == pytest.approx(85.2, abs=0.05)
    assert _accuracy(v4, "cudaconvnet") == pytest.approx(77.5, abs=0.05)
    assert _accuracy(v6, "shake_shake_26_2x64d_SSI_cutout16") == pytest.approx(93.1, abs=0.01)
    # Every model has a row in the paper's table.
    assert set(v6.models) == set(PAPER_ORIGINAL_ACCURACY)
    assert v6.paper_original() == pytest.approx([PAPER_ORIGINAL_ACCURACY[m][1] / 100 for m in v6.models])


def test_paper_table_agrees_with_the_papers_text(cifar101_dir: Path):
    """Recht et al. 2018, Sec. 4, checked against the transcribed Table 1 and the published predictions."""
    v4 = load_published(cifar101_dir, "v4")
    orig = {m: a for m, (_, a) in PAPER_ORIGINAL_ACCURACY.items()}
    new = {m: _accuracy(v4, m) for m in v4.models}
    ratio = {m: (100 - new[m]) / (100 - orig[m]) for m in v4.models}
    # "adding Cutout to shake_shake_64d adds only 0.12% on the original test set but about 1.5% on the new"
    assert orig["shake_shake_26_2x64d_SSI_cutout16"] - orig["shake_shake_26_2x64d_SSI"] == pytest.approx(0.1, abs=0.06)
    assert new["shake_shake_26_2x64d_SSI_cutout16"] - new["shake_shake_26_2x64d_SSI"] == pytest.approx(1.5, abs=0.1)
    # "adding Cutout to wide_resnet_28_10 improves the accuracy by about 1% ... and 2.2% on the new test set"
    assert orig["wrn_28_10_cutout16"] - orig["wrn_28_10"] == pytest.approx(1.0, abs=0.15)
    assert new["wrn_28_10_cutout16"] - new["wrn_28_10"] == pytest.approx(2.2, abs=0.1)
    # "DARC, shake_shake_32d, and resnext_29_4x64d see a 3x increase in their error rate"
    for m in ("darc", "shake_shake_26_2x32d_SSI", "resnext_29_4x64d"):
        assert ratio[m] == pytest.approx(3.0, abs=0.15)
    # "for simpler models such as VGG, AlexNet, or ResNet, the relative error increase is 1.7x to 2.3x"
    for m in ("vgg16_keras", "vgg_15_BN_64", "alexnet_tf_ben", "resnet_basic_32", "resnet_basic_110"):
        assert 1.65 <= ratio[m] <= 2.35
    # "the accuracies on the original CIFAR-10 test set range from about 80% to 97%"; drops of 4 to 15 points
    assert 80 <= min(orig.values()) and max(orig.values()) <= 97.5
    gaps = [orig[m] - new[m] for m in v4.models]
    assert 4.0 <= min(gaps) and max(gaps) <= 15.5


def test_load_published_finds_the_data_through_the_data_layer(cifar101_dir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MLMYTHS_DATA", str(cifar101_dir.parent))
    pub = load_published(None, "v6")
    assert pub.root == cifar101_dir and len(pub.models) == 30


def _copy(cifar101_dir: Path, tmp_path: Path) -> Path:
    root = tmp_path / "cifar10.1"
    shutil.copytree(cifar101_dir / "datasets", root / "datasets")
    shutil.copytree(cifar101_dir / "model_predictions", root / "model_predictions")
    for p in root.rglob("*"):
        p.chmod(0o644 if p.is_file() else 0o755)
    return root


@pytest.mark.parametrize("content, message", [
    ("[0, 1, 2", "not valid JSON"),
    ('{"predictions": [1, 2]}', "expected a JSON list of integer labels"),
    ("[0.5, 1.0]", "expected a JSON list of integer labels"),
    ("[true, false]", "expected a JSON list of integer labels"),
    (json.dumps([1] * 1999), "expected 2000 predictions, found 1999"),
    (json.dumps([1] * 1999 + [10]), "must be in 0..9, found 10"),
    (json.dumps([1] * 1999 + [-1]), "must be in 0..9, found -1"),
])
def test_malformed_prediction_files_name_the_file(cifar101_dir: Path, tmp_path: Path, content: str, message: str):
    root = _copy(cifar101_dir, tmp_path)
    bad = root / "model_predictions" / "v6_predictions" / "darc_predictions.json"
    bad.write_text(content)
    with pytest.raises(DataError, match=message) as err:
        load_published(root, "v6")
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_missing_or_bad_files_are_data_errors(cifar101_dir: Path, tmp_path: Path):
    root = _copy(cifar101_dir, tmp_path)
    (root / "model_predictions" / "original_predictions" / "nas_predictions.json").unlink()
    with pytest.raises(DataError, match="nas_predictions.json: missing prediction file"):
        load_published(root, "v4")
    np.save(root / "datasets" / "cifar10.1_v6_labels.npy", np.full(2000, 12))
    with pytest.raises(DataError, match=r"cifar10.1_v6_labels.npy: labels must be in 0..9, found 12"):
        load_published(root, "v6")
    np.save(root / "datasets" / "cifar10.1_v6_labels.npy", np.zeros(1500, dtype=np.int32))
    with pytest.raises(DataError, match="expected 2000 labels, found 1500"):
        load_published(root, "v6")
    with pytest.raises(DataError, match="unknown CIFAR-10.1 version"):
        load_published(root, "v5")
    with pytest.raises(DataError, match="missing label file"):
        load_published(tmp_path / "nowhere", "v6")


def test_read_prediction_file_standalone(tmp_path: Path):
    path = tmp_path / "m_predictions.json"
    path.write_text(json.dumps([0, 9, 3]))
    assert read_prediction_file(path, 3).tolist() == [0, 9, 3]


def write_fake_cifar10(root: Path, test_labels: np.ndarray) -> Path:
    """A CIFAR-10 binary folder (cifar-10-batches-bin) with 1 training record per batch."""
    folder = root / "cifar10" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    record = 1 + 3 * 32 * 32
    for i in range(1, 6):
        (folder / f"data_batch_{i}.bin").write_bytes(bytes([i % 10]) + bytes(record - 1))
    test = np.zeros((len(test_labels), record), dtype=np.uint8)
    test[:, 0] = test_labels
    (folder / "test_batch.bin").write_bytes(test.tobytes())
    return folder


def test_cifar10_test_labels_come_from_the_data_layer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MLMYTHS_DATA", str(tmp_path))
    assert cifar101.cifar10_test_labels() is None  # no copy: unavailable, never guessed
    labels = np.arange(10_000) % 10
    write_fake_cifar10(tmp_path, labels)
    assert np.array_equal(cifar101.cifar10_test_labels(), labels)
