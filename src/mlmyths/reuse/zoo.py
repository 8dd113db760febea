"""A small, diverse model zoo trained from scratch, for holdout-reuse experiments.

Fifteen families spanning the kinds of models in Recht et al.'s CIFAR-10 zoo, from shallow to
deep: linear (ridge, softmax regression, nearest centroid, Gaussian naive Bayes), random
features (random ReLU features as in the paper's ``random_features`` models, random Fourier
features), k-nearest neighbours (pixels and PCA), a random forest, MLPs and CNNs of three sizes.
Each family yields a few *candidates* (hyperparameter settings or training snapshots), so a
selection procedure has a realistic menu. :func:`train_family` returns each candidate's predicted
labels on the evaluation images; nothing else is kept.

Closed-form models share one Gram matrix across their regularization strengths; kNN
shares one distance computation across k; neural nets give one candidate per snapshot epoch.

>>> import torch
>>> x = torch.randint(0, 256, (60, 1, 8, 8), dtype=torch.uint8); y = torch.arange(60) % 3
>>> preds = train_family("nearest-centroid", x, y, x[:5], ZooConfig(), seed=0)
>>> list(preds), preds["nearest-centroid"].shape
(['nearest-centroid'], (5,))
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch
from torch import nn

from mlmyths.errors import ConfigError
from mlmyths.progress import ProgressFactory

Family = Literal[
    "ridge", "logistic", "nearest-centroid", "naive-bayes", "random-relu", "random-fourier", "knn",
    "knn-pca", "random-forest", "mlp-small", "mlp-wide", "mlp-deep", "cnn-tiny", "cnn-small", "cnn-medium",
]
FAMILIES: tuple[str, ...] = get_args(Family)


@dataclass(frozen=True)
class ZooConfig:
    families: tuple[str, ...] = FAMILIES  #: which families to train
    epochs: int = 6  #: training epochs of the MLPs, CNNs and softmax regression
    snapshots: tuple[int, ...] = (2, 6)  #: epochs whose predictions become candidates (<= epochs)
    batch_size: int = 128  #: minibatch size of the neural nets
    lr: float = 3e-3  #: Adam learning rate of the neural nets
    ridge_lambdas: tuple[float, ...] = (1e-3, 1e-1, 1e1)  #: ridge penalties, times the number of examples
    feature_widths: tuple[int, ...] = (512, 2048)  #: random ReLU feature counts
    fourier_width: int = 1024  #: random Fourier feature count
    fourier_bandwidths: tuple[float, ...] = (0.5, 1.0)  #: RBF bandwidths, times the median pair distance
    knn_ks: tuple[int, ...] = (1, 5, 15)  #: neighbours for kNN on pixels
    pca_dims: int = 30  #: dimensions for kNN on PCA features
    pca_ks: tuple[int, ...] = (3, 9)  #: neighbours for kNN on PCA features
    forest_trees: tuple[int, ...] = (10, 50)  #: random-forest sizes (the small one is a prefix of the big one)

    def __post_init__(self) -> None:
        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown:
            raise ConfigError(f"unknown model families {unknown}; choose from {', '.join(FAMILIES)}")
        if not self.snapshots or max(self.snapshots) > self.epochs or min(self.snapshots) < 1:
            raise ConfigError(f"snapshots must be epochs in 1..epochs={self.epochs}, got {self.snapshots}")


# -- features --------------------------------------------------------------------------------------


def _flat(x: torch.Tensor) -> np.ndarray:
    return x.reshape(len(x), -1).numpy().astype(np.float32) / 255.0  # (N, D) in [0, 1]


def _standardize(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mean, std = train.mean(0), train.std(0) + 1e-3
    return [(a - mean) / std for a in (train, *others)]


def _ridge_predictions(features: np.ndarray, y: np.ndarray, eval_features: np.ndarray,
                       lambdas: tuple[float, ...], num_classes: int) -> list[np.ndarray]:
    """One-vs-all ridge regression on +-1 targets with a bias, one Cholesky solve per lambda * N."""
    from scipy.linalg import cho_factor, cho_solve

    n = len(features)
    f = np.hstack([features, np.ones((n, 1), np.float32)]).astype(np.float32)  # (N, D+1)
    fe = np.hstack([eval_features, np.ones((len(eval_features), 1), np.float32)]).astype(np.float32)
    targets = -np.ones((n, num_classes), np.float32)
    targets[np.arange(n), y] = 1.0
    gram = (f.T @ f).astype(np.float64)  # (D+1, D+1)
    rhs = (f.T @ targets).astype(np.float64)  # (D+1, C)
    eye = np.eye(len(gram))
    out = []
    for lam in lambdas:
        weights = cho_solve(cho_factor(gram + lam * n * eye), rhs).astype(np.float32)  # (D+1, C)
        out.append((fe @ weights).argmax(1))
    return out


def _knn_predictions(train: np.ndarray, y: np.ndarray, queries: np.ndarray, ks: tuple[int, ...],
                     num_classes: int, chunk: int = 2048) -> list[np.ndarray]:
    """Majority vote of the k nearest (Euclidean) training points, for every k at once."""
    xt = torch.from_numpy(train)
    sq = (xt * xt).sum(1)
    kmax = min(max(ks), len(train))
    out = {k: [] for k in ks}
    yt = torch.from_numpy(y)
    for start in range(0, len(queries), chunk):
        q = torch.from_numpy(queries[start:start + chunk])
        d = sq[None, :] - 2.0 * q @ xt.T  # (B, N) squared distance up to a per-row constant
        nearest = d.topk(kmax, dim=1, largest=False).indices  # (B, kmax), nearest first
        labels = yt[nearest]
        for k in ks:
            votes = torch.nn.functional.one_hot(labels[:, :min(k, kmax)], num_classes).sum(1)  # (B, C)
            # break ties towards the nearest neighbour's label: it gets half a vote extra
            votes = votes.float() + 0.5 * torch.nn.functional.one_hot(labels[:, 0], num_classes)
            out[k].append(votes.argmax(1).numpy())
    return [np.concatenate(out[k]) for k in ks]


def _principal_directions(centred: np.ndarray, k: int) -> np.ndarray:
    """The top ``k`` principal directions ``(D, k)`` of centred data ``(N, D)``: eigenvectors of the
    ``(D, D)`` scatter matrix, or, with fewer images than pixels (N < D), the right singular vectors of
    the data itself, which span the same subspace at ``O(N^2 D)`` instead of ``O(D^3)``."""
    n, dim = centred.shape
    if n < dim:
        _, _, vt = np.linalg.svd(centred.astype(np.float64), full_matrices=False)  # (N, D), descending
        return vt[:k].T.astype(np.float32)
    _, vecs = np.linalg.eigh((centred.T @ centred).astype(np.float64))  # ascending eigenvalues
    return vecs[:, ::-1][:, :k].astype(np.float32)  # (D, k)


# -- neural nets -------------------------------------------------------------------------------------


def _net(family: str, shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    from mlmyths.models import MLP, SmallCNN

    c, h, w = shape
    if family == "logistic":
        return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, num_classes))
    if family.startswith("mlp"):
        hidden = {"mlp-small": (64,), "mlp-wide": (512,), "mlp-deep": (256, 256, 256)}[family]
        return MLP(c * h * w, num_classes, hidden=hidden)
    width = {"cnn-tiny": 0.25, "cnn-small": 0.5, "cnn-medium": 1.0}[family]
    return SmallCNN(in_channels=c, num_classes=num_classes, image_size=h, width=width, hidden=128)


def _train_net(family: str, x: torch.Tensor, y: torch.Tensor, x_eval: torch.Tensor, cfg: ZooConfig,
               seed: int, num_classes: int, device: torch.device | str,
               progress: ProgressFactory | None) -> dict[str, np.ndarray]:
    from mlmyths import data
    from mlmyths.train import TrainConfig, fit, predict

    mean, std = data.channel_stats(x)
    transform = lambda b: data.normalize(b, mean.to(b.device), std.to(b.device))  # noqa: E731
    torch.manual_seed(seed)
    model = _net(family, tuple(x.shape[1:]), num_classes)  # type: ignore[arg-type]
    out: dict[str, np.ndarray] = {}

    def snapshot(epoch: int, net: nn.Module) -> None:
        if epoch in cfg.snapshots:
            logits = predict(net, x_eval, device=device, transform=transform)
            out[f"{family}@{epoch}ep"] = logits.argmax(1).cpu().numpy()

    fit(model, x, y, TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, optimizer="adam", lr=cfg.lr,
                                 momentum=0.9),
        transform=transform, epoch_callbacks=[snapshot], device=device, seed=seed, progress=progress,
        description=family)
    return out


# -- the families ------------------------------------------------------------------------------------


def train_family(family: str, x_fit: torch.Tensor, y_fit: torch.Tensor, x_eval: torch.Tensor, cfg: ZooConfig,
                 *, seed: int = 0, num_classes: int | None = None, device: torch.device | str = "cpu",
                 progress: ProgressFactory | None = None) -> dict[str, np.ndarray]:
    """Train every candidate of ``family`` on uint8 images ``x_fit`` ``(N, C, H, W)`` with labels
    ``y_fit`` ``(N,)`` and return ``{candidate name: int64 predictions on x_eval (E,)}``."""
    if family not in FAMILIES:
        raise ConfigError(f"unknown model family {family!r}; choose from {', '.join(FAMILIES)}")
    c = int(num_classes if num_classes is not None else int(y_fit.max()) + 1)
    y = y_fit.numpy().astype(np.int64)
    rng = np.random.default_rng(seed)
    if family in ("logistic", "mlp-small", "mlp-wide", "mlp-deep", "cnn-tiny", "cnn-small", "cnn-medium"):
        preds = _train_net(family, x_fit, y_fit, x_eval, cfg, seed, c, device, progress)
        return {k: v.astype(np.int64) for k, v in preds.items()}
    raw, raw_eval = _flat(x_fit), _flat(x_eval)
    std, std_eval = _standardize(raw, raw_eval)
    if family == "ridge":
        preds = _ridge_predictions(std, y, std_eval, cfg.ridge_lambdas, c)
        names = [f"ridge(l={lam:g})" for lam in cfg.ridge_lambdas]
    elif family == "nearest-centroid":
        centroids = np.stack([std[y == k].mean(0) if np.any(y == k) else np.full(std.shape[1], 1e6, dtype=np.float32)
                              for k in range(c)])  # (C, D)
        d = (std_eval ** 2).sum(1)[:, None] - 2 * std_eval @ centroids.T + (centroids ** 2).sum(1)[None, :]
        preds, names = [d.argmin(1)], ["nearest-centroid"]
    elif family == "naive-bayes":
        from sklearn.naive_bayes import GaussianNB

        preds, names = [], []
        for smoothing in (1e-9, 1e-1):
            preds.append(GaussianNB(var_smoothing=smoothing).fit(raw, y).predict(raw_eval))
            names.append(f"naive-bayes(s={smoothing:g})")
    elif family == "random-relu":
        preds, names = [], []
        for width in cfg.feature_widths:
            w = rng.standard_normal((std.shape[1], width)).astype(np.float32) / np.sqrt(std.shape[1])
            b = rng.standard_normal(width).astype(np.float32)
            feats = lambda a: np.maximum(a @ w + b, 0.0)  # noqa: E731
            lams = cfg.ridge_lambdas[-2:]
            preds += _ridge_predictions(feats(std), y, feats(std_eval), lams, c)
            names += [f"random-relu(w={width},l={lam:g})" for lam in lams]
    elif family == "random-fourier":
        sub = std[rng.choice(len(std), size=min(500, len(std)), replace=False)]
        dist = np.sqrt(np.maximum((sub ** 2).sum(1)[:, None] - 2 * sub @ sub.T + (sub ** 2).sum(1)[None, :], 0))
        median = float(np.median(dist[np.triu_indices(len(sub), 1)]))
        preds, names = [], []
        for bw in cfg.fourier_bandwidths:
            w = rng.standard_normal((std.shape[1], cfg.fourier_width)).astype(np.float32) / (bw * median)
            b = rng.uniform(0, 2 * np.pi, cfg.fourier_width).astype(np.float32)
            feats = lambda a: np.cos(a @ w + b) * np.sqrt(2.0 / cfg.fourier_width)  # noqa: E731
            preds += _ridge_predictions(feats(std), y, feats(std_eval), cfg.ridge_lambdas[:1], c)
            names.append(f"random-fourier(bw={bw:g})")
    elif family == "knn":
        preds = _knn_predictions(raw, y, raw_eval, cfg.knn_ks, c)
        names = [f"knn(k={k})" for k in cfg.knn_ks]
    elif family == "knn-pca":
        mean = raw.mean(0)
        basis = _principal_directions(raw - mean, cfg.pca_dims)
        preds = _knn_predictions((raw - mean) @ basis, y, (raw_eval - mean) @ basis, cfg.pca_ks, c)
        names = [f"knn-pca{cfg.pca_dims}(k={k})" for k in cfg.pca_ks]
    else:  # random-forest
        from sklearn.ensemble import RandomForestClassifier

        forest = RandomForestClassifier(n_estimators=max(cfg.forest_trees), max_features="sqrt",
                                        random_state=int(rng.integers(2 ** 31)), n_jobs=1).fit(raw, y)
        votes = np.zeros((len(raw_eval), len(forest.classes_)))
        preds, names = [], []
        for i, tree in enumerate(forest.estimators_, start=1):
            votes += tree.predict_proba(raw_eval)
            if i in cfg.forest_trees:
                preds.append(forest.classes_[votes.argmax(1)])
                names.append(f"random-forest(trees={i})")
    return {name: np.asarray(p, dtype=np.int64) for name, p in zip(names, preds)}
