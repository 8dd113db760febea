"""The classifiers of a dataset-bias study: a linear SVM on HOG or pixels, or a small CNN.

Torralba & Efros (2011) trained linear SVMs on global image features; Liu & He (2025)
train a ConvNet end to end. :class:`Classifier` covers both behind one call,
:meth:`Classifier.fit_predict`, which trains on images and returns decision scores
on any number of test sets.

- ``hog``: HOG (:func:`mlmyths.bias.hog.hog`), standardized, scikit-learn's ``LinearSVC``.
- ``pixels``: the raw pixels, standardized, ``LinearSVC``.
- ``cnn``: :class:`mlmyths.models.SmallCNN` trained with :func:`mlmyths.train.fit`
  (Adam, cosine schedule) on per-channel standardized images.

>>> import torch
>>> x, y = torch.rand(40, 1, 16, 16), torch.arange(40) % 2
>>> [s.shape for s in Classifier("pixels").fit_predict(x, y, [x[:5]])]
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

    def featurize(self, images: Tensor) -> np.ndarray:
        """Feature vectors ``(N, D)`` for the linear SVM (``hog`` or ``pixels``)."""
        if self.features == "hog":
            feats = hog(images, orientations=self.hog_orientations, pixels_per_cell=self.hog_cell,
                        cells_per_block=self.hog_block)
        else:
            feats = images.reshape(len(images), -1)  # (N, C*H*W)
        return feats.to(torch.float64).numpy()

    def fit_predict(self, x_train: Tensor, y_train: Tensor, tests: Sequence[Tensor], *,
                    seed: int = 0) -> list[np.ndarray]:
        """Train on float images ``(N, C, H, W)`` with labels ``(N,)`` in ``0..K-1``; return the
        decision scores ``(M, K)`` of each test set (``K`` = ``y_train.max() + 1``; classes
        absent from training score ``-inf``)."""
        y = np.asarray(y_train, dtype=np.int64)
        present = np.unique(y)
        if len(present) < 2:
            raise UserError(f"a classifier needs at least two classes in its training set, got {present.tolist()}")
        k = int(y.max()) + 1
        if self.features == "cnn":
            return self._cnn(x_train, y, tests, k, seed)
        return self._svm(x_train, y, tests, k, present, seed)

    def _svm(self, x_train: Tensor, y: np.ndarray, tests: Sequence[Tensor], k: int, present: np.ndarray,
             seed: int) -> list[np.ndarray]:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import LinearSVC

        scaler = StandardScaler().fit(self.featurize(x_train))
        svm = LinearSVC(C=self.svm_c, dual=False, max_iter=5000, random_state=seed % (2 ** 32))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # primal liblinear; scores are still usable
            svm.fit(scaler.transform(self.featurize(x_train)), y)
        out = []
        for x in tests:
            raw = svm.decision_function(scaler.transform(self.featurize(x)))
            if raw.ndim == 1:  # binary: score of the positive class
                raw = np.stack([-raw, raw], 1)
            scores = np.full((len(x), k), -np.inf)
            scores[:, present] = raw
            out.append(scores)
        return out

    def _cnn(self, x_train: Tensor, y: np.ndarray, tests: Sequence[Tensor], k: int, seed: int) -> list[np.ndarray]:
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
        fit(model, (x_train - mean) / std, torch.as_tensor(y), cfg, device=device, seed=seed)
        return [predict(model, (x - mean) / std, device=device).cpu().numpy().astype(np.float64) for x in tests]
