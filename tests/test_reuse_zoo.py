"""The from-scratch model zoo: every family trains, closed forms and kNN match references, configs validate."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mlmyths import data
from mlmyths.errors import ConfigError
from mlmyths.reuse.zoo import (
    FAMILIES, ZooConfig, _knn_predictions, _principal_directions, _ridge_predictions, train_family,
)


@pytest.fixture(scope="module")
def digits():
    ds = data.load("digits")
    return ds.x_train, ds.y_train, ds.x_test, ds.y_test.numpy()


def test_every_family_learns_digits(digits):
    x, y, xt, yt = digits
    cfg = ZooConfig(epochs=3, snapshots=(1, 3), feature_widths=(128, 256), forest_trees=(3, 10))
    names = []
    for family in FAMILIES:
        preds = train_family(family, x, y, xt, cfg, seed=0)
        assert preds, family
        for name, p in preds.items():
            assert p.shape == (len(yt),) and p.dtype == np.int64 and 0 <= p.min() and p.max() <= 9
            names.append(name)
        best = max(float((p == yt).mean()) for p in preds.values())
        assert best > 0.5, f"{family}: best candidate only {best:.2f} on digits"
    assert len(FAMILIES) >= 12 and len(set(names)) == len(names) >= 30
    assert "cnn-medium@3ep" in names and "knn(k=1)" in names


def test_principal_directions_span_the_same_subspace_either_way():
    """Fewer images than pixels takes the SVD of the data; the scatter matrix's eigenvectors span the same
    top-k subspace (equal projectors), so kNN on the projections is the same."""
    rng = np.random.default_rng(1)
    scales = np.linspace(3.0, 0.1, 40)  # distinct variances: a well-defined top-5 subspace
    data_ = rng.normal(size=(25, 40)) * scales
    centred = (data_ - data_.mean(0)).astype(np.float32)
    thin = _principal_directions(centred, 5)  # N = 25 < D = 40: SVD
    tall = _principal_directions(np.vstack([centred, -centred]), 5)  # N = 50 >= D: eigh, same scatter up to 2x
    assert thin.shape == tall.shape == (40, 5)
    np.testing.assert_allclose(thin @ thin.T, tall @ tall.T, atol=1e-4)
    np.testing.assert_allclose(thin.T @ thin, np.eye(5), atol=1e-5)


def test_ridge_matches_the_normal_equations():
    rng = np.random.default_rng(0)
    f, y = rng.normal(size=(200, 6)).astype(np.float32), rng.integers(0, 3, 200)
    fe = rng.normal(size=(50, 6)).astype(np.float32)
    got = _ridge_predictions(f, y, fe, (0.01, 1.0), 3)
    a = np.hstack([f, np.ones((200, 1))])
    t = -np.ones((200, 3))
    t[np.arange(200), y] = 1
    for lam, pred in zip((0.01, 1.0), got):
        w = np.linalg.solve(a.T @ a + lam * 200 * np.eye(7), a.T @ t)
        assert np.array_equal(pred, (np.hstack([fe, np.ones((50, 1))]) @ w).argmax(1))


def test_knn_matches_scikit_learn():
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(300, 5)).astype(np.float32), rng.integers(0, 4, 300)
    q = rng.normal(size=(80, 5)).astype(np.float32)
    k1, k5 = _knn_predictions(x, y, q, (1, 5), 4, chunk=32)
    assert np.array_equal(k1, KNeighborsClassifier(1).fit(x, y).predict(q))
    # k = 5: equal wherever the vote has a single winner; ties go to the nearest neighbour's label
    ref = KNeighborsClassifier(5).fit(x, y)
    nearest = ref.kneighbors(q, return_distance=False)  # (80, 5), nearest first
    counts = np.stack([(y[nearest] == c).sum(1) for c in range(4)], 1)
    unique = (counts == counts.max(1, keepdims=True)).sum(1) == 1
    assert unique.sum() > 40 and np.array_equal(k5[unique], ref.predict(q)[unique])
    tied = ~unique
    assert np.all(counts[tied, k5[tied]] == counts[tied].max(1))  # a tied winner ...
    nearest_wins = counts[tied, y[nearest[tied, 0]]] == counts[tied].max(1)
    assert np.array_equal(k5[tied][nearest_wins], y[nearest[tied, 0]][nearest_wins])  # ... the nearest when it can
    assert np.array_equal(_knn_predictions(x, y, x, (1,), 4)[0], y)  # each training point is its own neighbour


def test_families_are_deterministic_under_a_seed(digits):
    x, y, xt, _ = digits
    cfg = ZooConfig(feature_widths=(64, 128))
    a = train_family("random-relu", x, y, xt, cfg, seed=3)
    b = train_family("random-relu", x, y, xt, cfg, seed=3)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    a = train_family("mlp-small", x, y, xt, ZooConfig(epochs=1, snapshots=(1,)), seed=3)
    b = train_family("mlp-small", x, y, xt, ZooConfig(epochs=1, snapshots=(1,)), seed=3)
    assert np.array_equal(a["mlp-small@1ep"], b["mlp-small@1ep"])


def test_zoo_config_validation():
    with pytest.raises(ConfigError, match="unknown model families"):
        ZooConfig(families=("ridge", "svm"))
    with pytest.raises(ConfigError, match="snapshots"):
        ZooConfig(epochs=3, snapshots=(4,))
    with pytest.raises(ConfigError, match="unknown model family"):
        train_family("svm", torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64),
                     torch.zeros(1, 1, 2, 2, dtype=torch.uint8), ZooConfig())
