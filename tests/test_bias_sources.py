"""mlmyths.bias sources: image folders (with corrupt files), IDX files, specifications; font digits."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mlmyths.bias import as_source, load_idx, load_image_folder, load_source, subsample
from mlmyths.data.synthetic import Jitter, digit_fonts, font_digits, render_glyphs
from mlmyths.errors import DataError, UserError

Image = pytest.importorskip("PIL.Image")


def _write_folder(root, *, rgb: bool = False, size: int = 12) -> None:
    rng = np.random.default_rng(0)
    for cls, count in (("cat", 3), ("dog", 4)):
        (root / cls).mkdir(parents=True)
        for i in range(count):
            shape = (size, size, 3) if rgb else (size, size)
            arr = rng.integers(0, 256, shape).astype(np.uint8)
            Image.fromarray(arr).save(root / cls / f"{i}.{'jpg' if i == 0 and rgb else 'png'}")


def test_image_folder_skips_corrupt_files_and_counts_them(tmp_path):
    root = tmp_path / "set"
    _write_folder(root)
    (root / "cat" / "garbage.png").write_bytes(b"this is not a png")
    good = (root / "dog" / "0.png").read_bytes()
    (root / "dog" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "dog" / "notes.txt").write_text("ignored: not an image extension")
    src = load_image_folder(root)
    assert src.classes == ("cat", "dog")
    assert len(src) == 7 and src.labels.tolist() == [0, 0, 0, 1, 1, 1, 1]
    assert src.images.shape == (7, 1, 12, 12) and src.images.dtype == torch.uint8
    assert sorted(p.rsplit("/", 1)[-1] for p in src.skipped) == ["garbage.png", "truncated.png"]
    expected = np.array(Image.open(root / "dog" / "0.png"))
    assert torch.equal(src.images[3, 0], torch.from_numpy(expected))


def test_image_folder_colour_sizes_and_limits(tmp_path):
    root = tmp_path / "colour"
    _write_folder(root, rgb=True, size=10)
    src = load_image_folder(root)
    assert src.images.shape == (7, 3, 10, 10) and src.native_size == (10, 10)
    Image.fromarray(np.zeros((20, 14, 3), np.uint8)).save(root / "dog" / "big.png")
    with pytest.raises(DataError, match="different sizes.*pass size="):
        load_image_folder(root)
    resized = load_image_folder(root, size=8)
    assert resized.images.shape == (8, 3, 8, 8) and resized.native_size == (10, 10)
    limited = load_image_folder(root, size=8, limit=5, seed=1)
    assert len(limited) == 5 and limited.labels is not None
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.fromarray(np.zeros((6, 6), np.uint8)).save(flat / "a.png")
    unlabeled = load_image_folder(flat)
    assert unlabeled.labels is None and unlabeled.classes == () and len(unlabeled) == 1


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_source(f"x={tmp_path / 'missing'}")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no .png/.jpg/.jpeg files"):
        load_image_folder(empty)
    broken = tmp_path / "broken" / "a"
    broken.mkdir(parents=True)
    (broken / "x.png").write_bytes(b"junk")
    with pytest.raises(DataError, match="none of the 1 image files"):
        load_image_folder(broken.parent)


def test_load_source_specifications(tmp_path):
    root = tmp_path / "pets"
    _write_folder(root)
    src = load_source(f"pets={root}")
    assert src.name == "pets" and src.classes == ("cat", "dog")
    digits = load_source("digits", limit=100, seed=3)
    assert len(digits) == 100 and digits.native_size == (8, 8) and digits.classes[0] == "0"
    fonts = load_source("fonts", limit=30)
    assert len(fonts) == 30 and fonts.images.shape[1:] == (1, 28, 28) and fonts.labels.max() == 9
    with pytest.raises(UserError, match="unknown source 'svhn'"):
        load_source("svhn")
    with pytest.raises(UserError, match="has no name"):
        load_source("=/tmp")


def test_load_idx_reads_the_shared_mnist_test_split(shared_data):
    folder = shared_data / "mnist-test"
    src = load_source(f"mnist={folder}")
    assert len(src) == 10_000 and src.images.shape[1:] == (1, 28, 28)
    assert src.classes == tuple(str(d) for d in range(10))
    assert np.bincount(src.labels.numpy()).min() > 850
    single = load_idx(folder / "t10k-images-idx3-ubyte.gz")
    assert torch.equal(single.images, src.images) and torch.equal(single.labels, src.labels)


def test_load_idx_without_labels_and_with_a_corrupt_file(tmp_path):
    import gzip
    import struct

    x = np.arange(2 * 4 * 5, dtype=np.uint8).reshape(2, 4, 5)
    path = tmp_path / "foo-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + struct.pack(">3I", 2, 4, 5) + x.tobytes())
    src = load_idx(path)
    assert src.labels is None and torch.equal(src.images[:, 0], torch.from_numpy(x))
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + struct.pack(">3I", 2, 4, 5) + x.tobytes()[:-3])
    with pytest.raises(DataError, match="truncated"):
        load_idx(path)


def test_as_source_layouts_and_subsample():
    channels_last = np.zeros((4, 9, 9, 3), dtype=np.uint8)
    assert as_source("c", channels_last).images.shape == (4, 3, 9, 9)
    labeled = as_source("l", (np.zeros((6, 5, 5), np.uint8), [0, 1, 2, 0, 1, 2]))
    assert labeled.classes == ("0", "1", "2") and labeled.native_size == (5, 5)
    with pytest.raises(UserError, match="6 images but 5 labels"):
        as_source("l", (np.zeros((6, 5, 5), np.uint8), [0, 1, 2, 0, 1]))
    with pytest.raises(UserError, match=r"got shape \(6, 2, 5, 5\)"):
        as_source("bad", np.zeros((6, 2, 5, 5), np.uint8))
    small = subsample(labeled, 3, seed=0)
    assert len(small) == 3 and small.labels is not None
    assert subsample(labeled, 10) is labeled


# -- font-rendered digits ---------------------------------------------------------------------------


def test_font_digits_are_deterministic_balanced_and_white_on_black():
    a, la = font_digits(200, size=28, seed=0)
    b, lb = font_digits(200, size=28, seed=0)
    c, _ = font_digits(200, size=28, seed=1)
    assert np.array_equal(a, b) and np.array_equal(la, lb) and not np.array_equal(a, c)
    assert a.dtype == np.uint8 and a.shape == (200, 1, 28, 28)
    assert np.bincount(la).tolist() == [20] * 10
    border = np.concatenate([a[:, 0, 0], a[:, 0, -1], a[:, 0, :, 0], a[:, 0, :, -1]], axis=1)
    assert border.mean() < 5 and a.max() == 255  # dark background, bright strokes
    ink = (a > 128).mean((1, 2, 3))
    assert 0.03 < ink.mean() < 0.4 and ink.min() > 0  # every image shows a glyph


def test_glyphs_are_centred_and_jitter_zero_reproduces_them():
    fonts = digit_fonts()
    assert len(fonts) >= 10
    glyphs = render_glyphs("0123456789", fonts[:2], 56)
    assert glyphs.shape == (2, 10, 56, 56)
    rows = np.nonzero(glyphs[0, 8].max(1))[0]
    assert abs((rows.min() + rows.max()) / 2 - 27.5) <= 1.5  # bounding box centred
    still = Jitter(rotation=0, scale=(1, 1), aspect=0, shear=0, translate=0)
    images, labels = font_digits(10, size=28, seed=0, jitter=still, fonts=fonts[:1])
    expected = torch.nn.functional.avg_pool2d(torch.from_numpy(glyphs[0]).float()[labels][:, None], 2)
    assert np.abs(images.astype(float) - expected.numpy()).max() <= 1.0
    with pytest.raises(DataError, match="invalid Jitter"):
        Jitter(scale=(0.0, 1.0))
