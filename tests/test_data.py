import gzip
import hashlib
import io
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from mlmyths import data
from mlmyths.data import readers, store
from mlmyths.data.registry import DatasetSpec, RemoteFile
from mlmyths.errors import DataError

FASHION = Path("/usr/share/datasets/fashion-mnist")


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> None:
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def test_digits_is_embedded_with_a_fixed_split():
    ds = data.load("digits")
    assert ds.x_train.dtype == torch.uint8 and ds.y_train.dtype == torch.int64
    assert ds.x_train.shape == (1438, 1, 8, 8) and ds.x_test.shape == (359, 1, 8, 8)
    assert int(ds.x_train.max()) == 255 and ds.num_classes == 10
    again = data.load("digits")
    assert torch.equal(ds.x_test, again.x_test) and torch.equal(ds.y_train, again.y_train)
    assert sorted(torch.bincount(ds.y_test).tolist())[0] >= 25  # every class in the test split


def test_mnist_test_split_from_shared_copy(shared_data):
    folder = shared_data / "mnist-test"
    images = readers.read_idx(folder / "t10k-images-idx3-ubyte.gz")
    labels = readers.read_idx(folder / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    # the README's MD5 of the decompressed file
    with gzip.open(folder / "t10k-labels-idx1-ubyte.gz") as f:
        assert hashlib.md5(f.read()).hexdigest() == "27ae3e4e09519cfbb04c329615203637"


@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_the_debian_path():
    assert data.find("fashion-mnist") == ("system copy", FASHION)
    ds = data.load("fashion-mnist")
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert torch.bincount(ds.y_train).tolist() == [6000] * 10
    assert ds.y_test[:5].tolist() == [9, 2, 1, 1, 6] and ds.classes[9] == "Ankle boot"


def test_search_order_prefers_mlmyths_data(tmp_path, monkeypatch, shared_data):
    target = tmp_path / "mnist"
    target.mkdir()
    src = shared_data / "mnist-test"
    small = readers.read_idx(src / "t10k-images-idx3-ubyte.gz")[:100]
    small_labels = readers.read_idx(src / "t10k-labels-idx1-ubyte.gz")[:100]
    write_idx(target / "train-images-idx3-ubyte.gz", small[:60])
    write_idx(target / "train-labels-idx1-ubyte.gz", small_labels[:60])
    write_idx(target / "t10k-images-idx3-ubyte", small[60:], compress=False)  # uncompressed alias accepted
    write_idx(target / "t10k-labels-idx1-ubyte.gz", small_labels[60:])
    monkeypatch.setenv("MLMYTHS_DATA", str(tmp_path))
    assert data.find("mnist") == ("$MLMYTHS_DATA", target)
    ds = data.load("mnist")
    assert ds.x_train.shape == (60, 1, 28, 28) and ds.x_test.shape == (40, 1, 28, 28)
    assert ds.y_train[:5].tolist() == [7, 2, 1, 0, 4]
    permuted = data.load("permuted-mnist")
    assert permuted.name == "permuted-mnist"
    assert torch.equal(permuted.x_train.flatten(1).sort(1).values, ds.x_train.flatten(1).sort(1).values)
    assert not torch.equal(permuted.x_train, ds.x_train)
    assert torch.equal(data.load("permuted-mnist").x_test, permuted.x_test)  # one fixed permutation


@pytest.mark.parametrize("damage", ["truncated-gzip", "short-payload", "bad-magic"])
def test_corrupt_or_truncated_files_are_named(tmp_path, damage):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    write_idx(path, np.zeros((10, 28, 28), dtype=np.uint8))
    raw = path.read_bytes()
    if damage == "truncated-gzip":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "short-payload":
        header = bytes([0, 0, 8, 3]) + struct.pack(">3I", 10, 28, 28)
        path.write_bytes(gzip.compress(header + bytes(28 * 28 * 9)))
    else:
        path.write_bytes(gzip.compress(b"\x01\x02\x03\x04" + bytes(100)))
    with pytest.raises(DataError, match=str(path).replace(".", r"\.")):
        readers.read_idx(path)


def make_cifar_batch(n: int, seed: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 256, (n, 3072)).astype(np.uint8)
    return np.concatenate([labels[:, None], images], 1).tobytes(), images.reshape(n, 3, 32, 32), labels


def test_cifar10_binary_tarball_and_folder(tmp_path):
    batches = {f"data_batch_{i}.bin": make_cifar_batch(4, i) for i in range(1, 6)}
    batches["test_batch.bin"] = make_cifar_batch(3, 9)
    tar_path = tmp_path / "cifar-10-binary.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for name, (blob, _, _) in batches.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    parts = readers.read_cifar10(tar_path)
    x, y = parts["test"]
    np.testing.assert_array_equal(x, batches["test_batch.bin"][1])
    np.testing.assert_array_equal(y, batches["test_batch.bin"][2])
    assert parts["train"][0].shape == (20, 3, 32, 32)
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for name, (blob, _, _) in batches.items():
        (folder / name).write_bytes(blob)
    np.testing.assert_array_equal(readers.read_cifar10(folder)["train"][1], parts["train"][1])
    (folder / "test_batch.bin").write_bytes(batches["test_batch.bin"][0][:-5])
    with pytest.raises(DataError, match="test_batch.bin: corrupt or truncated CIFAR-10 batch"):
        readers.read_cifar10(folder)


@pytest.fixture
def fake_remote(tmp_path, monkeypatch):
    """A registry entry whose 'official' file is a local file:// URL."""
    payload = b"hello dataset" * 100
    source = tmp_path / "server" / "file.bin"
    source.parent.mkdir()
    source.write_bytes(payload)
    remote = RemoteFile("file.bin", source.as_uri(), hashlib.sha256(payload).hexdigest(), len(payload))
    spec = DatasetSpec("fake", "files", "a fake dataset", files=(remote,), install_hint="get it somewhere")
    monkeypatch.setitem(data.DATASETS, "fake", spec)
    monkeypatch.delenv("MLMYTHS_OFFLINE")
    return source, remote


def test_fetch_downloads_verifies_and_caches(fake_remote):
    directory = data.fetch("fake")
    assert directory == store.cache_dir() / "fake" and (directory / "file.bin").exists()
    assert data.find("fake") == ("user cache", directory)
    assert not list(directory.glob("*.part"))


def test_fetch_rejects_a_corrupt_download_and_keeps_nothing(fake_remote):
    source, _ = fake_remote
    source.write_bytes(b"tampered")
    with pytest.raises(DataError, match=r"downloaded file file.bin from file://.* is corrupt or truncated"):
        data.fetch("fake")
    assert not (store.cache_dir() / "fake" / "file.bin").exists()
    assert not list((store.cache_dir() / "fake").glob("*"))


def test_offline_without_a_copy_says_what_to_do(fake_remote, monkeypatch):
    source, _ = fake_remote
    source.unlink()
    with pytest.raises(DataError, match=r"dataset 'fake' is not available locally \(download of .* failed"):
        data.fetch("fake")
    monkeypatch.setenv("MLMYTHS_OFFLINE", "1")
    with pytest.raises(DataError, match=r"MLMYTHS_OFFLINE is set\): get it somewhere; or put file.bin in"):
        data.fetch("fake")


def test_unknown_and_wrong_kind_datasets():
    with pytest.raises(DataError, match="unknown dataset 'imagenet'; known datasets: digits, mnist"):
        data.load("imagenet")
    with pytest.raises(DataError, match="'fortunes' is not an image dataset"):
        data.load("fortunes")
    with pytest.raises(DataError, match="'digits' is not a text corpus"):
        data.load_text("digits")


def test_text_folder_reader_strips_separators_and_overstrike(tmp_path):
    (tmp_path / "a").write_text("first\n%\n_\bse\becond\n")  # underlined s, bold e
    (tmp_path / "a.dat").write_bytes(b"\x00\x01")
    (tmp_path / "b.u8").symlink_to(tmp_path / "a")
    assert readers.read_text_folder(tmp_path) == "first\n\nsecond\n"


def test_float_conversion_and_channel_stats():
    x = torch.tensor([[[[0, 255]]], [[[255, 255]]]], dtype=torch.uint8)
    assert data.to_float(x).tolist() == [[[[0.0, 1.0]]], [[[1.0, 1.0]]]]
    mean, std = data.channel_stats(x)
    assert mean.tolist() == [0.75]
    normalized = data.normalize(x, mean, std)
    assert abs(float(normalized.mean())) < 1e-6


def test_python_docs_corpus_is_always_available_and_cached():
    assert data.find("python-docs")[0] == "embedded"
    text = data.load_text("python-docs")
    assert len(text) > 1_000_000 and "Return" in text
    assert data.load_text("python-docs") == text  # second call reads the cache
    assert data.first_available(("enwik8", "python-docs")) == "python-docs"
