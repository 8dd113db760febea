"""mlmyths.bias: HOG, signature removal, Name That Dataset, controls, cross-dataset table, dataset value."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mlmyths.bias import (
    Classifier, CrossDataset, as_source, clopper_pearson, cross_dataset_table, dataset_value, harmonize, hog,
    match_histograms, match_moments, name_that_dataset, name_within_class, normalize_framing, percent_drop, prepare,
    pseudo_datasets, remove_signatures, shared_classes,
)
from mlmyths.bias.measures import _test_then_train
from mlmyths.bias.signatures import reference_quantiles
from mlmyths.data.synthetic import font_digits
from mlmyths.errors import UserError

# -- HOG: equal to scikit-image's, the oracle ------------------------------------------------------


@pytest.mark.parametrize("shape,cell,block,orientations,norm", [
    ((1, 16, 16), 4, 2, 9, "L2-Hys"),
    ((1, 17, 23), (3, 4), (2, 3), 8, "L1"),
    ((3, 32, 32), 8, 3, 9, "L2"),
    ((3, 20, 20), 5, 1, 6, "L1-sqrt"),
])
def test_hog_equals_scikit_image(shape, cell, block, orientations, norm):
    skimage_hog = pytest.importorskip("skimage.feature").hog
    x = np.random.default_rng(0).random((4, *shape))
    ours = hog(torch.from_numpy(x), orientations=orientations, pixels_per_cell=cell, cells_per_block=block,
               block_norm=norm).numpy()
    def pair(v):
        return v if isinstance(v, tuple) else (v, v)

    ref = np.stack([skimage_hog(xi.transpose(1, 2, 0) if shape[0] == 3 else xi[0], orientations=orientations,
                                pixels_per_cell=pair(cell), cells_per_block=pair(block), block_norm=norm,
                                channel_axis=-1 if shape[0] == 3 else None) for xi in x])
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-6)  # scikit-image sums cells in float32


def test_hog_of_integer_images_and_batching_agree():
    skimage_hog = pytest.importorskip("skimage.feature").hog
    x = np.random.default_rng(1).integers(0, 256, (7, 1, 16, 16)).astype(np.float64)  # ties on bin edges
    ours = hog(torch.from_numpy(x), pixels_per_cell=4, cells_per_block=2, batch_size=3).numpy()
    ref = np.stack([skimage_hog(xi[0], pixels_per_cell=(4, 4), cells_per_block=(2, 2)) for xi in x])
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_hog_is_invariant_to_brightness_offset_and_rejects_small_images():
    x = torch.rand(3, 1, 16, 16, dtype=torch.float64)
    torch.testing.assert_close(hog(x, pixels_per_cell=4, cells_per_block=2),
                               hog(x + 0.3, pixels_per_cell=4, cells_per_block=2))
    with pytest.raises(UserError, match="too small"):
        hog(torch.rand(2, 1, 8, 8), pixels_per_cell=8, cells_per_block=3)
    with pytest.raises(UserError, match="block_norm"):
        hog(x, block_norm="L3")


# -- signature removal -------------------------------------------------------------------------------


def test_histogram_matching_gives_every_image_the_reference_histogram():
    torch.manual_seed(0)
    x = torch.rand(5, 2, 6, 6, dtype=torch.float64)  # no ties
    reference = torch.sort(torch.rand(2, 36, dtype=torch.float64), -1).values
    out = match_histograms(x, reference)
    torch.testing.assert_close(out.flatten(2).sort(-1).values, reference.expand(5, 2, 36))
    # rank-based: any strictly increasing transform of the input gives the same output
    torch.testing.assert_close(match_histograms(torch.exp(3 * x) - 7, reference), out)
    # ranks are kept: the brightest input pixel gets the brightest reference value
    assert torch.equal(out.flatten(2).argmax(-1), x.flatten(2).argmax(-1))


def test_histogram_matching_averages_the_reference_over_ties():
    x = torch.tensor([[[[0.0, 0.0], [0.0, 1.0]]]], dtype=torch.float64)  # three tied zeros
    reference = torch.tensor([[1.0, 2.0, 3.0, 10.0]], dtype=torch.float64)
    out = match_histograms(x, reference)
    torch.testing.assert_close(out, torch.tensor([[[[2.0, 2.0], [2.0, 10.0]]]], dtype=torch.float64))
    # every image's mean equals the reference mean, ties or not
    images = torch.randint(0, 4, (20, 1, 4, 4)).double()
    ref = reference_quantiles([images, torch.rand(9, 1, 4, 4, dtype=torch.float64)])
    torch.testing.assert_close(match_histograms(images, ref).mean((1, 2, 3)), ref.mean().expand(20))


def test_moment_matching_equalizes_means_and_stds_across_sources():
    a = torch.rand(30, 1, 8, 8, dtype=torch.float64)
    b = 0.2 * torch.rand(40, 1, 8, 8, dtype=torch.float64) + 0.7
    a2, b2 = match_moments([a, b])
    torch.testing.assert_close(a2.mean((1, 2, 3)), b2.mean((1, 2, 3))[:30])
    torch.testing.assert_close(a2.std((1, 2, 3), correction=0), b2.std((1, 2, 3), correction=0)[:30],
                               atol=1e-5, rtol=1e-5)


def test_framing_centres_and_scales_the_object_box():
    x = torch.zeros(2, 1, 20, 20)
    x[0, 0, 1:5, 2:4] = 1.0  # a 4x2 bar near the top-left corner
    x[1, 0, 12:16, 14:16] = 1.0  # the same bar elsewhere
    out = normalize_framing(x, fill=0.8)
    torch.testing.assert_close(out[0], out[1], atol=1e-5, rtol=0)  # position no longer tells them apart
    rows = torch.nonzero(out[0, 0] > 0.5)[:, 0]
    assert rows.min() >= 1 and rows.max() <= 18 and rows.max() - rows.min() + 1 >= 14  # ~0.8 * 20 tall
    assert abs(float(rows.float().mean()) - 9.5) < 0.6  # centred
    blank = torch.full((1, 1, 8, 8), 0.25)
    torch.testing.assert_close(normalize_framing(blank), blank)


def test_unknown_signature_step_is_a_user_error():
    with pytest.raises(UserError, match="unknown signature-removal step.*'colour'"):
        remove_signatures([torch.rand(2, 1, 4, 4)], ("colour",))


def test_harmonize_layout_and_resolution_bottleneck():
    grey = as_source("grey", np.full((3, 28, 28), 255, dtype=np.uint8))
    rgb = np.zeros((2, 3, 10, 10), dtype=np.uint8)
    rgb[:, 0] = 255  # pure red
    colour = as_source("colour", rgb)
    g, c = harmonize([grey, colour], size=16)
    assert g.shape == (3, 1, 16, 16) and c.shape == (2, 1, 16, 16)  # mixed -> grey
    torch.testing.assert_close(c, torch.full_like(c, 0.299))  # luma of red
    (c3,) = harmonize([colour], size=16)
    assert c3.shape == (2, 3, 16, 16)  # all colour -> colour
    checker = ((np.indices((28, 28)).sum(0) % 2) * 255).astype(np.uint8)[None]
    (sharp,) = harmonize([as_source("c", checker)], size=28)
    (blurred,) = harmonize([as_source("c", checker)], size=28, resolution=7)
    assert float(sharp.std()) > 0.45 and float(blurred.std()) < 0.02  # detail above 7x7 is gone


# -- statistics --------------------------------------------------------------------------------------


def test_clopper_pearson_known_values():
    low, high = clopper_pearson(0, 10)
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-9)
    low, high = clopper_pearson(10, 10)
    assert high == 1.0 and low == pytest.approx(0.025 ** (1 / 10), abs=1e-9)
    from scipy.stats import binomtest

    ref = binomtest(37, 120).proportion_ci(0.9, method="exact")
    assert clopper_pearson(37, 120, alpha=0.1) == pytest.approx((ref.low, ref.high), abs=1e-9)
    with pytest.raises(UserError, match="got k=11, n=10"):
        clopper_pearson(11, 10)


# -- Name That Dataset and the pseudo-dataset control --------------------------------------------------


def _fonts(n: int, seed: int) -> np.ndarray:
    return font_digits(n, size=16, seed=seed)[0]


def test_planted_brightness_bias_is_found_and_removed_by_histogram_matching():
    a = _fonts(240, seed=1)
    b = (_fonts(240, seed=2).astype(np.float32) * 0.6 + 60).round().astype(np.uint8)  # dimmer, grey background
    sources = {"a": a, "b": b}
    raw = name_that_dataset(sources, features="pixels", n_train=160, n_test=80, seed=0)
    assert raw.accuracy > 0.95 and raw.above_chance()
    for step in ("moments", "histogram"):
        fair = name_that_dataset(sources, features="pixels", n_train=160, n_test=80, seed=0, remove=(step,))
        assert fair.at_chance(), (step, fair.accuracy, fair.ci)
        assert abs(fair.accuracy - 0.5) < 0.12


def test_planted_structural_bias_survives_signature_removal():
    a = _fonts(300, seed=3)
    b = _fonts(300, seed=4)
    b[:, :, -3:, :] = np.maximum(b[:, :, -3:, :], 160)  # a bright strip along the bottom edge
    r = name_that_dataset({"a": a, "b": b}, features="hog", n_train=(20, 200), n_test=100, seed=0,
                          remove=("moments", "histogram"))
    assert r.accuracy > 0.9 and r.above_chance() and r.p_value < 1e-6
    assert r.curve_sizes == (20, 200) and len(r.curve_accuracy) == 2
    assert r.confusion.sum() == 200 and r.confusion.shape == (2, 2)
    np.testing.assert_allclose(r.recall, np.diag(r.confusion) / 100)


def test_pseudo_datasets_of_one_source_stay_at_chance():
    images = _fonts(1200, seed=5)
    parts = pseudo_datasets(images, 3, seed=0)
    assert list(parts) == ["part1", "part2", "part3"] and all(len(p) == 400 for p in parts.values())
    flat = torch.cat([p.images.reshape(400, -1) for p in parts.values()])
    assert len(torch.unique(flat, dim=0)) == len(torch.unique(torch.from_numpy(images).reshape(1200, -1), dim=0))
    r = name_that_dataset(parts, features="hog", n_train=250, n_test=150, seed=0, remove=("histogram",))
    assert r.chance == pytest.approx(1 / 3)
    assert r.at_chance(), (r.accuracy, r.ci)
    assert r.p_value > 0.025


def test_name_that_dataset_input_errors():
    a = np.zeros((50, 8, 8), dtype=np.uint8)
    with pytest.raises(UserError, match="at least two"):
        name_that_dataset({"a": a})
    with pytest.raises(UserError, match="source 'b' has 50 images but .* needs 130"):
        name_that_dataset({"a": np.zeros((200, 8, 8), np.uint8), "b": a}, n_train=100, n_test=30, size=8)
    with pytest.raises(UserError, match="features must be one of"):
        name_that_dataset({"a": a, "b": a}, features="gist", n_train=10, n_test=10, size=8)
    with pytest.raises(UserError, match="uint8"):
        name_that_dataset({"a": a.astype(np.float32), "b": a}, n_train=10, n_test=10, size=8)


def test_pseudo_datasets_by_class_split_every_class_evenly_and_keep_labels():
    images, labels = font_digits(203, size=8, seed=0)  # 20 or 21 of each digit
    parts = pseudo_datasets((images, labels), 2, seed=1, name="half", by_class=True)
    a, b = parts["half1"], parts["half2"]
    assert a.classes == b.classes == tuple(str(d) for d in range(10))
    assert np.bincount(a.labels.numpy()).tolist() == np.bincount(b.labels.numpy()).tolist() == [10] * 10
    both = torch.cat([a.images, b.images]).reshape(200, -1)
    assert len(torch.unique(both, dim=0)) == len(torch.unique(both, dim=0, sorted=False))  # disjoint draws
    assert pseudo_datasets(images, 2, seed=1)["part1"].labels is None  # unlabeled in, unlabeled out


def _planted(n: int, seed: int, mark: bool) -> tuple[np.ndarray, np.ndarray]:
    images, labels = font_digits(n, size=16, seed=seed)
    if mark:
        images[:, :, -3:, :] = np.maximum(images[:, :, -3:, :], 160)  # a bright strip along the bottom edge
    return images, labels


def test_name_within_class_tells_a_planted_bias_apart_per_class_with_one_test_set_for_every_seed():
    a, b, c = _planted(300, 1, False), _planted(300, 2, True), _planted(300, 3, False)
    options = dict(features="hog", n_train=12, n_test=8, test_seed=5, size=16, remove=("histogram",))
    r0 = name_within_class({"a": a, "b": b}, seed=0, **options)
    r1 = name_within_class({"a": a, "b": b}, seed=1, **options)
    assert r0.classes == tuple(str(d) for d in range(10)) and r0.chance == 0.5
    assert r0.correct.shape == (10, 2, 8) and r0.test_index.shape == (2, 10, 8)
    np.testing.assert_array_equal(r0.test_index, r1.test_index)  # the seed redraws training images only
    for s, (images, labels) in enumerate((a, b)):  # test image i of class c is an image of class c
        assert (labels[r0.test_index[s]] == np.arange(10)[:, None]).all()
    np.testing.assert_array_equal(r0.correct.sum(2), np.diagonal(r0.confusion, axis1=1, axis2=2))
    assert r0.accuracy > 0.85 and r0.class_accuracy.min() > 0.6
    same = name_within_class({"a": a, "c": c}, seed=0, **options)  # one process, two draws: near chance
    assert abs(same.accuracy - 0.5) < 0.15
    record = r0.to_dict()
    assert record["correct"].dtype == np.uint8 and record["classes"] == list(r0.classes)


def test_name_within_class_input_errors():
    a = _planted(40, 0, False)
    with pytest.raises(UserError, match="needs labeled sources; b have no labels"):
        name_within_class({"a": a, "b": a[0]})
    with pytest.raises(UserError, match=r"classes \['x'\] are not shared"):
        name_within_class({"a": a, "b": a}, classes=("x",))
    with pytest.raises(UserError, match="has 4 images of class '0' but n_train=3 \\+ n_test=2 needs 5"):
        name_within_class({"a": a, "b": a}, n_train=3, n_test=2, size=16)
    fashion_like = (a[0], (a[1] + 1) % 10)  # the same names, other images: classes are matched by name
    assert shared_classes([as_source("a", a), as_source("f", fashion_like)]) == tuple(str(d) for d in range(10))
    assert shared_classes([as_source("a", a), as_source("u", a[0])]) == ()


# -- cross-dataset generalization, percent drop, dataset value ----------------------------------------


def test_percent_drop_on_hand_made_tables():
    out = percent_drop([[0.9, 0.6], [0.3, 0.6]])
    np.testing.assert_allclose(out["self"], [0.9, 0.6])
    np.testing.assert_allclose(out["mean_others"], [0.6, 0.3])
    np.testing.assert_allclose(out["percent_drop"], [100 / 3, 50.0])
    out = percent_drop(np.array([[80.0, 40, 20], [10, 50, 30], [60, 60, 60]]))
    np.testing.assert_allclose(out["mean_others"], [30, 20, 60])
    np.testing.assert_allclose(out["percent_drop"], [62.5, 60.0, 0.0])
    with pytest.raises(UserError, match="square"):
        percent_drop([[1.0, 2.0]])


def test_dataset_value_arithmetic():
    v = dataset_value([10, 100, 1000], [0.5, 0.7, 0.9], 0.6)  # m* = sqrt(10 * 100) in log space
    assert v.bound == "exact" and v.equivalent == pytest.approx(math.sqrt(1000)) and v.value == pytest.approx(
        math.sqrt(1000) / 1000)
    assert dataset_value([10, 100, 1000], [0.5, 0.7, 0.9], 0.9).value == pytest.approx(1.0)
    v = dataset_value([10, 100, 1000], [0.5, 0.7, 0.9], 0.8, n=100)  # value per sample of a 100-sample set
    assert v.equivalent == pytest.approx(10 ** 2.5) and v.value == pytest.approx(10 ** 0.5)
    low = dataset_value([10, 100, 1000], [0.5, 0.7, 0.9], 0.3)
    assert (low.value, low.equivalent, low.bound) == (0.01, 10.0, "at_most")
    high = dataset_value([10, 100, 1000], [0.5, 0.7, 0.9], 0.95)
    assert (high.value, high.equivalent, high.bound) == (1.0, 1000.0, "at_least")
    # a dip in the curve is ignored (running maximum): 0.75 is first reached between 10 and 100
    v = dataset_value([10, 100, 1000, 2000], [0.6, 0.9, 0.8, 0.95], 0.75, n=2000)
    assert v.equivalent == pytest.approx(10 * 10 ** 0.5)
    with pytest.raises(UserError, match="ascending"):
        dataset_value([100, 10], [0.5, 0.7], 0.6)


def test_cross_dataset_summary_values_and_drops_from_hand_made_scores():
    sizes = (10, 100, 1000)
    scores = np.zeros((2, 2, 3))
    scores[0, 0] = [0.5, 0.7, 0.9]
    scores[1, 1] = [0.4, 0.6, 0.8]
    scores[0, 1] = [0.3, 0.4, 0.5]  # A -> B: B's own curve reaches 0.5 at sqrt(10 * 100)
    scores[1, 0] = [0.5, 0.6, 0.95]  # B -> A beats A's own 0.9: no drop, value >= 1
    table = CrossDataset(("A", "B"), ("0", "1"), "accuracy", sizes, scores, np.array([0.5, 0.5]), 100)
    np.testing.assert_allclose(table.summary()["percent_drop"], [100 * (0.9 - 0.5) / 0.9, 100 * (0.8 - 0.95) / 0.8])
    assert table.drops().tolist() == [[True, True], [False, True]]
    values = table.values()
    assert values[0][0].value == 1.0 and values[1][1].value == 1.0
    assert values[0][1].value == pytest.approx(math.sqrt(1000) / 1000) and values[0][1].bound == "exact"
    assert values[1][0].bound == "at_least" and values[1][0].value == pytest.approx(1.0)
    record = table.to_dict()
    assert record["value_bounds"][1][0] == "at_least" and record["matrix"][1][0] == 0.95


def _coded(n: int, positions: list[int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class c is a bright square at corner ``positions[c]`` (plus noise)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(positions)
    images = rng.integers(0, 40, (n, 16, 16)).astype(np.uint8)
    for c, p in enumerate(positions):
        r, col = divmod(p, 2)
        images[labels == c, r * 10:r * 10 + 6, col * 10:col * 10 + 6] = 220
    return images, labels


def test_cross_dataset_table_finds_a_drop_only_where_sources_differ():
    same_a, same_b = _coded(400, [0, 1, 2, 3], seed=0), _coded(400, [0, 1, 2, 3], seed=1)
    swapped = _coded(400, [3, 2, 1, 0], seed=2)  # the same classes, drawn the other way round
    table = cross_dataset_table({"a": same_a, "b": same_b, "swapped": swapped}, features="pixels",
                                n_train=(8, 40, 200), n_test=100, seed=0, size=16)
    m = table.matrix
    assert table.classes == ("0", "1", "2", "3") and table.metric == "accuracy"
    assert m[0, 0] > 0.95 and m[0, 1] > 0.95 and m[1, 0] > 0.95  # a and b generalize to each other
    assert m[0, 2] < 0.3 and m[2, 0] < 0.3  # and not to the swapped source
    drops = table.drops()
    assert drops[0, 2] and drops[2, 0] and drops[1, 2] and drops[2, 1]
    assert table.summary()["percent_drop"][2] > 60
    np.testing.assert_allclose(table.chance, 0.25)
    # one class against the rest, scored by average precision
    binary = cross_dataset_table({"a": same_a, "swapped": swapped}, task="1", features="pixels", n_train=100,
                                 n_test=100, seed=0, size=16)
    assert binary.metric == "average_precision" and binary.classes == ("1",)
    assert binary.matrix[0, 0] > 0.95 and binary.matrix[0, 1] < 0.6
    np.testing.assert_allclose(binary.chance, 0.5)  # test sets are drawn class-balanced


def test_cross_dataset_draws_one_test_set_for_every_seed_and_keeps_each_images_outcome():
    labels = np.arange(40) % 4
    rng_a, rng_b = np.random.default_rng(0), np.random.default_rng(1)
    first = _test_then_train(labels, 8, 12, rng_a, np.random.default_rng([3, 0]))
    second = _test_then_train(labels, 8, 12, rng_b, np.random.default_rng([3, 0]))
    np.testing.assert_array_equal(first[:8], second[:8])  # the same test images
    assert not set(first[8:]) & set(first[:8]) and np.bincount(labels[first[:8]]).tolist() == [2] * 4
    assert np.bincount(labels[first[8:]]).tolist() == [3] * 4 and len(set(first)) == 20
    a, b = _coded(300, [0, 1, 2, 3], seed=0), _coded(300, [3, 2, 1, 0], seed=1)
    tables = [cross_dataset_table({"a": a, "b": b}, features="pixels", n_train=(20, 60), n_test=40, seed=s,
                                  test_seed=9, size=16) for s in (0, 1)]
    for table in tables:
        assert table.correct.shape == (2, 2, 40)
        np.testing.assert_allclose(table.correct.mean(2), table.matrix)  # the outcomes behind the largest size
    assert tables[0].to_dict()["correct"].dtype == np.uint8


def test_cross_dataset_table_input_errors():
    a = _coded(100, [0, 1], seed=0)
    with pytest.raises(UserError, match="needs labeled sources; b have no labels"):
        cross_dataset_table({"a": a, "b": a[0]}, n_train=10, n_test=10)
    with pytest.raises(UserError, match=r"task classes \['7'\] are not in every source"):
        cross_dataset_table({"a": a, "b": a}, task=("0", "7"), n_train=10, n_test=10)


# -- classifiers ------------------------------------------------------------------------------------


def test_classifiers_learn_font_digits():
    x, y = font_digits(700, size=16, seed=7)
    (images,) = prepare([as_source("f", x)], size=16)
    labels = torch.from_numpy(y)
    for clf in (Classifier("hog"), Classifier("cnn", cnn_epochs=6)):
        rep = clf.represent(images)
        (scores,) = clf.fit_predict(rep[:500], labels[:500], [rep[500:]], seed=0)
        accuracy = float((scores.argmax(1) == y[500:]).mean())
        assert accuracy > 0.85, (clf.features, accuracy)
    with pytest.raises(UserError, match="at least two classes"):
        Classifier("pixels").fit_predict(torch.rand(5, 4), torch.zeros(5), [torch.rand(2, 4)])
