"""The classifiers of a dataset-bias study: a linear SVM on HOG or pixels, or a small CNN.

Torralba & Efros (2011) trained linear SVMs on global image features; Liu & He (2025)
train a ConvNet end to end. :class:`Classifier` covers both behind one call,
:meth:`Classifier.fit_predict`, which trains on the images' representation
(:meth:`Classifier.represent`, computed once per image set) and returns decision
scores on any number of test sets.

- ``hog``: HOG (:func:`mlmyths.bias.hog.hog`), standardized, scikit-learn's ``LinearSVC``
  (liblinear, one-vs-rest, squared hinge loss; the primal problem when there are more training
  images than features, the dual otherwise -- the same optimum, found up to 25x faster on
  32x32 HOG vectors).
- ``pixels``: the raw pixels, standardized, ``LinearSVC``.
- ``cnn``: :class:`mlmyths.models.SmallCNN` trained with :func:`mlmyths.train.fit`
  (Adam, cosine schedule) on per-channel standardized images.

>>> import torch
>>> x, y = torch.rand(40, 1, 16, 16), torch.arange(40) % 2
>>> clf = Classifier("hog")
>>> [s.shape for s in clf.fit_predict(clf.represent(x), y, [clf.represent(x[:5])])]
[(5, 2)]
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from mlmyths.bias.hog import hog
from mlmyths.errors import UserError

__all__ = ["FEATURES", "Classifier"]

FEATURES = ("hog", "pixels", "cnn")


@dataclass(frozen=True)
class Classifier:
    """What to train on the images: a linear SVM on HOG or pixels, or a small CNN."""

    features: Literal["hog", "pixels", "cnn"] = "hog"  # the representation (see module docstring)
    svm_c: float = 0.05  # LinearSVC regularization C (on standardized features)
    svm_max_iter: int = 1000  # LinearSVC iterations; a fit that hits the limit adds a note
    hog_orientations: int = 9  # HOG orientation bins
    hog_cell: int = 4  # HOG pixels per cell (16x16 images: 4x4 cells)
    hog_block: int = 2  # HOG cells per block
    cnn_width: float = 0.5  # SmallCNN width multiplier
    cnn_epochs: int = 12  # CNN epochs (at least cnn_min_steps optimizer steps in total)
    cnn_min_steps: int = 150  # lower bound on CNN optimizer steps, for small training sets
    cnn_batch_size: int = 64  # CNN minibatch size
    cnn_lr: float = 2e-3  # CNN peak learning rate (Adam, cosine decay)
    device: str = "cpu"  # where the CNN trains ("cpu", "cuda")

    def __post_init__(self) -> None:
        if self.features not in FEATURES:
            raise UserError(f"features must be one of {', '.join(FEATURES)}, got {self.features!r}")
        if self.svm_c <= 0 or self.cnn_epochs < 1 or self.cnn_batch_size < 1 or self.cnn_lr <= 0:
            raise UserError(f"invalid Classifier settings: svm_c={self.svm_c}, cnn_epochs={self.cnn_epochs}, "
                            f"cnn_batch_size={self.cnn_batch_size}, cnn_lr={self.cnn_lr}")

    def represent(self, images: Tensor) -> Tensor:
        """What the classifier trains on: HOG vectors or flattened pixels ``(N, D)`` (float64),
        or the images themselves for the CNN. Compute once, slice for every training size."""
        if self.features == "hog":
            feats = hog(images, orientations=self.hog_orientations, pixels_per_cell=self.hog_cell,
                        cells_per_block=self.hog_block)
            return feats.to(torch.float64)
        if self.features == "pixels":
            return images.reshape(len(images), -1).to(torch.float64)  # (N, C*H*W)
        return images

    def fit_predict(self, train: Tensor, y_train: Tensor, tests: Sequence[Tensor], *, seed: int = 0,
                    notes: list[str] | None = None) -> list[np.ndarray]:
        """Train on representations (:meth:`represent`) with labels ``(N,)`` in ``0..K-1``; return
        the decision scores ``(M, K)`` of each test set (``K = y_train.max() + 1``; classes absent
        from training score ``-inf``). Problems worth reporting (an SVM that did not converge)
        are appended to ``notes``."""
        y = torch.as_tensor(y_train).to(torch.int64)
        present = torch.unique(y)
        if len(present) < 2:
            raise UserError(f"a classifier needs at least two classes in its training set, got {present.tolist()}")
        k = int(y.max()) + 1
        if self.features == "cnn":
            return self._cnn(train, y, tests, k, seed)
        return self._svm(train, y, tests, k, present, seed, notes)

    def _svm(self, train: Tensor, y: Tensor, tests: Sequence[Tensor], k: int, present: Tensor,
             seed: int, notes: list[str] | None) -> list[np.ndarray]:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import LinearSVC

        scaler = StandardScaler().fit(train.numpy())
        svm = LinearSVC(C=self.svm_c, dual="auto", max_iter=self.svm_max_iter, random_state=seed % 2 ** 32)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            svm.fit(scaler.transform(train.numpy()), y.numpy())
        if notes is not None and any(issubclass(w.category, ConvergenceWarning) for w in caught):
            notes.append(f"LinearSVC on {len(train)} {self.features} vectors stopped at svm_max_iter="
                         f"{self.svm_max_iter} before converging")
        out = []
        for x in tests:
            raw = svm.decision_function(scaler.transform(x.numpy()))
            if raw.ndim == 1:  # binary: the score of the larger label
                raw = np.stack([-raw, raw], 1)
            scores = np.full((len(x), k), -np.inf)
            scores[:, present.numpy()] = raw
            out.append(scores)
        return out

    def _cnn(self, x_train: Tensor, y: Tensor, tests: Sequence[Tensor], k: int, seed: int) -> list[np.ndarray]:
        from mlmyths.models import SmallCNN
        from mlmyths.train import TrainConfig, fit, predict

        c, h = x_train.shape[1], x_train.shape[2]
        mean = x_train.mean((0, 2, 3), keepdim=True)  # (1, C, 1, 1)
        std = x_train.std((0, 2, 3), keepdim=True).clamp_min(1e-6)
        steps_per_epoch = math.ceil(len(x_train) / self.cnn_batch_size)
        epochs = max(self.cnn_epochs, math.ceil(self.cnn_min_steps / steps_per_epoch))
        torch.manual_seed(seed)
        model = SmallCNN(in_channels=c, num_classes=k, image_size=h, width=self.cnn_width)
        cfg = TrainConfig(epochs=epochs, batch_size=self.cnn_batch_size, optimizer="adam", lr=self.cnn_lr,
                          schedule="cosine", weight_decay=0.0)
        device = torch.device(self.device)
        fit(model, (x_train - mean) / std, y, cfg, device=device, seed=seed)
        return [predict(model, (x - mean) / std, device=device).cpu().numpy().astype(np.float64) for x in tests]
