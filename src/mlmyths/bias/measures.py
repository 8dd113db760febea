"""Name That Dataset, the pseudo-dataset control, cross-dataset generalization, dataset value.

Torralba & Efros, "Unbiased Look at Dataset Bias", CVPR 2011:

- **Name That Dataset** (Sec. 1): train a classifier to tell which dataset an image came
  from (paper: 12 datasets, 1000 training and 300 test images each, linear SVM on global
  features, 39% accuracy against 1/12 chance, still rising with more data).
  :func:`name_that_dataset` returns accuracy, chance, a Clopper-Pearson interval, the
  one-sided binomial p-value against chance, the confusion matrix, per-source recall and
  the learning curve.
- **Name That Dataset within one class** (the paper's car crops: the object held fixed, so
  what is left is how each dataset captured it): :func:`name_within_class` trains one
  classifier per class shared by the sources and keeps every test image's outcome
  (for intervals over test images); its test images can be fixed across training seeds.
- **Pseudo-datasets** (Liu & He, "A Decade's Battle on Dataset Bias: Are We There Yet?",
  ICLR 2025, Sec. 4.3): random splits of *one* dataset must be indistinguishable, so the
  same classifier must land at chance -- the control that shows the classifier learns
  datasets rather than memorizing images. :func:`pseudo_datasets` makes such splits.
- **Cross-dataset generalization** (Sec. 3.1, Table 2): train on each dataset, test on
  each; the table of self vs mean-others performance and the percent drop
  ``(self - mean others) / self``. :func:`cross_dataset_table`, :func:`percent_drop`; the
  outcome of every test image at the largest training size is kept (``correct``), so a
  drop can be measured paired over the same test images.
- **Dataset value** (Sec. "Measuring Dataset's Value", the "market value" of a training
  sample): how many training samples of the test dataset B one sample of dataset A is
  worth. :func:`dataset_value` reads it off learning curves: if training on ``n`` samples
  of A reaches score ``s`` on B, and B's own learning curve reaches ``s`` at ``m*``
  samples, the value of an A sample is ``m* / n`` (below 1: an A sample is worth less
  than a B sample on B's benchmark). B's curve is made monotone (running maximum) and
  ``m*`` is found by linear interpolation in ``log(m)`` between the two measured sizes
  that bracket ``s``; when ``s`` lies outside the measured curve, the value is a bound
  (``at_most`` below the smallest size, ``at_least`` above the largest).

>>> import torch
>>> from mlmyths.bias import name_that_dataset
>>> bright, dark = torch.full((60, 8, 8), 200, dtype=torch.uint8), torch.full((60, 8, 8), 50, dtype=torch.uint8)
>>> r = name_that_dataset({"bright": bright, "dark": dark}, features="pixels", n_train=30, n_test=30, size=8)
>>> r.accuracy, r.chance
(1.0, 0.5)
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mlmyths.stats import clopper_pearson
from mlmyths.bias.classifiers import Classifier
from mlmyths.bias.signatures import check_steps, remove_signatures
from mlmyths.bias.sources import Source, as_source, harmonize
from mlmyths.errors import UserError
from mlmyths.progress import ProgressFactory, no_progress

__all__ = ["prepare", "clopper_pearson", "binomial_p_value", "NamingResult", "name_that_dataset",
           "WithinClassNaming", "name_within_class", "shared_classes", "pseudo_datasets", "percent_drop", "DatasetValue", "dataset_value", "CrossDataset",
           "cross_dataset_table"]


# -- statistics ---------------------------------------------------------------------------------


def binomial_p_value(successes: int, trials: int, chance: float) -> float:
    """One-sided p-value of ``successes`` or more out of ``trials`` if each succeeds with ``chance``."""
    from scipy.stats import binomtest

    return float(binomtest(successes, trials, chance, alternative="greater").pvalue)


# -- shared preparation -------------------------------------------------------------------------


def prepare(sources: Sequence[Source], *, size: int = 16, channels: int | str = "auto",
            remove: Sequence[str] = ()) -> list[Tensor]:
    """Common size and layout (:func:`harmonize`), then the signature-removal steps ``remove``.

    With ``"resolution"`` in ``remove``, every image passes through the smallest native
    resolution among ``sources``. Returns one float tensor ``(N, C, size, size)`` per source.
    """
    steps = check_steps(remove)
    resolution = min(min(s.native_size) for s in sources) if "resolution" in steps else None
    return remove_signatures(harmonize(sources, size=size, channels=channels, resolution=resolution), steps)


def _sizes(n_train: int | Sequence[int]) -> tuple[int, ...]:
    sizes = (n_train,) if isinstance(n_train, int) else tuple(int(n) for n in n_train)
    if not sizes or min(sizes) < 1:
        raise UserError(f"n_train must be a positive int or a list of them, got {n_train!r}")
    return tuple(sorted(set(sizes)))


def _classifier(features: str, classifier: Classifier | None) -> Classifier:
    if classifier is None:
        return Classifier(features=features)  # type: ignore[arg-type]
    return classifier if classifier.features == features else replace(classifier, features=features)  # type: ignore[arg-type]


def _named(sources: Mapping[str, Any]) -> list[Source]:
    if not isinstance(sources, Mapping) or len(sources) < 2:
        raise UserError(f"sources must map at least two names to images, got {len(sources) if isinstance(sources, Mapping) else type(sources).__name__}")
    return [as_source(str(name), value) for name, value in sources.items()]


def _check_counts(named: Sequence[Source], need: int, what: str) -> None:
    for s in named:
        if len(s) < need:
            raise UserError(f"source {s.name!r} has {len(s)} images but {what} needs {need}; "
                            "lower n_train/n_test or give more images")


# -- Name That Dataset --------------------------------------------------------------------------


@dataclass(frozen=True)
class NamingResult:
    """The outcome of :func:`name_that_dataset` at the largest training size."""

    names: tuple[str, ...]  # the sources (classes of the dataset classifier)
    features: str  # hog | pixels | cnn
    remove: tuple[str, ...]  # signature-removal steps applied
    n_train: int  # training images per source
    n_test: int  # test images per source
    correct: int  # correctly named test images
    confusion: np.ndarray  # (S, S) counts: rows true source, columns predicted source
    confidence: float  # level of ``ci``
    curve_sizes: tuple[int, ...] = ()  # learning curve: training images per source
    curve_accuracy: tuple[float, ...] = ()  # learning curve: accuracy at each size
    extra: dict[str, Any] = field(default_factory=dict)  # anything else worth recording

    @property
    def total(self) -> int:
        return self.n_test * len(self.names)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total

    @property
    def chance(self) -> float:
        """Accuracy of guessing (balanced test set): 1 / number of sources."""
        return 1.0 / len(self.names)

    @property
    def ci(self) -> tuple[float, float]:
        return clopper_pearson(self.correct, self.total, alpha=1.0 - self.confidence)

    @property
    def p_value(self) -> float:
        return binomial_p_value(self.correct, self.total, self.chance)

    @property
    def recall(self) -> np.ndarray:
        return np.diag(self.confusion) / self.confusion.sum(1).clip(min=1)

    def above_chance(self) -> bool:
        """The whole confidence interval lies above chance."""
        return self.ci[0] > self.chance

    def at_chance(self) -> bool:
        """Chance lies inside the confidence interval."""
        low, high = self.ci
        return low <= self.chance <= high

    def to_dict(self) -> dict[str, Any]:
        low, high = self.ci
        return {"names": list(self.names), "features": self.features, "remove": list(self.remove),
                "n_train": self.n_train, "n_test": self.n_test, "accuracy": self.accuracy,
                "chance": self.chance, "ci_low": low, "ci_high": high, "confidence": self.confidence,
                "p_value": self.p_value, "confusion": self.confusion.tolist(), "recall": self.recall.tolist(),
                "curve_sizes": list(self.curve_sizes), "curve_accuracy": list(self.curve_accuracy), **self.extra}


def name_that_dataset(sources: Mapping[str, Any], *, features: str = "hog", n_train: int | Sequence[int] = 1000,
                      n_test: int = 300, seed: int = 0, size: int = 16, channels: int | str = "auto",
                      remove: Sequence[str] = (), classifier: Classifier | None = None,
                      confidence: float = 0.95, progress: ProgressFactory | None = None) -> NamingResult:
    """Train a classifier to tell which source each image came from (Torralba & Efros, Sec. 1).

    Parameters
    ----------
    sources : name -> images: uint8 arrays ``(N, H, W)`` / ``(N, C, H, W)``, ``(images, labels)``,
        :class:`Source`, ImageDataset, or a path to an image folder / IDX files.
    features : ``hog`` or ``pixels`` (linear SVM), or ``cnn`` (SmallCNN trained end to end).
    n_train : training images per source; a list gives the learning curve (nested subsets).
    n_test : test images per source (disjoint from training).
    seed : selects the images and seeds the classifier.
    size, channels : the common layout (:func:`prepare`).
    remove : signature-removal steps (:mod:`mlmyths.bias.signatures`).
    classifier : detailed settings (its ``features`` is replaced by ``features``).
    confidence : level of the Clopper-Pearson interval.

    Returns a :class:`NamingResult` (accuracy, chance, ci, p_value, confusion, recall, curve).
    """
    named = _named(sources)
    sizes = _sizes(n_train)
    if n_test < 1:
        raise UserError(f"n_test must be >= 1, got {n_test}")
    need = sizes[-1] + n_test
    _check_counts(named, need, f"n_train={sizes[-1]} + n_test={n_test}")
    clf = _classifier(features, classifier)
    rng = np.random.default_rng(seed)
    picked = [replace(s, images=s.images[torch.from_numpy(rng.permutation(len(s))[:need])], labels=None)
              for s in named]
    images = prepare(picked, size=size, channels=channels, remove=remove)
    images = [clf.represent(x) for x in images]  # HOG / pixel vectors, or the images for the CNN
    test_x = torch.cat([x[:n_test] for x in images])  # (S * n_test, ...)
    test_y = torch.arange(len(named)).repeat_interleave(n_test)
    curve: list[float] = []
    notes: list[str] = []
    with (progress or no_progress)(len(sizes), f"name that dataset ({clf.features})") as bar:
        for n in sizes:
            train_x = torch.cat([x[n_test:n_test + n] for x in images])
            train_y = torch.arange(len(named)).repeat_interleave(n)
            (scores,) = clf.fit_predict(train_x, train_y, [test_x], seed=seed, notes=notes)
            predicted = scores.argmax(1)
            curve.append(float((predicted == test_y.numpy()).mean()))
            bar.advance(1, n_train=n, accuracy=curve[-1])
    confusion = np.zeros((len(named), len(named)), dtype=np.int64)
    np.add.at(confusion, (test_y.numpy(), predicted), 1)
    return NamingResult(tuple(s.name for s in named), clf.features, check_steps(remove), sizes[-1], n_test,
                        int(np.trace(confusion)), confusion, confidence, sizes, tuple(curve),
                        {"notes": notes} if notes else {})


# -- Name That Dataset within one class -----------------------------------------------------------


@dataclass(frozen=True)
class WithinClassNaming:
    """The outcome of :func:`name_within_class`: every test image's outcome, per class and source."""

    names: tuple[str, ...]  # the sources (classes of each dataset classifier)
    classes: tuple[str, ...]  # the object classes shared by all sources, one classifier each
    features: str  # hog | pixels | cnn
    remove: tuple[str, ...]  # signature-removal steps applied
    n_train: int  # training images per source and class
    n_test: int  # test images per source and class
    correct: np.ndarray  # (C, S, n_test) bool: test image i of source s in class c named correctly
    confusion: np.ndarray  # (C, S, S) counts: per class, rows true source, columns predicted source
    test_index: np.ndarray  # (S, C, n_test) int: which image of each source was test image i of class c
    notes: tuple[str, ...] = ()  # problems met on the way (e.g. an SVM that did not converge)

    @property
    def accuracy(self) -> float:
        """Accuracy over every test image of every class."""
        return float(self.correct.mean())

    @property
    def chance(self) -> float:
        """Accuracy of guessing (balanced test sets): 1 / number of sources."""
        return 1.0 / len(self.names)

    @property
    def class_accuracy(self) -> np.ndarray:
        """``(C,)`` accuracy within each class."""
        return self.correct.reshape(len(self.classes), -1).mean(1)

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "classes": list(self.classes), "features": self.features,
                "remove": list(self.remove), "n_train": self.n_train, "n_test": self.n_test,
                "accuracy": self.accuracy, "chance": self.chance, "class_accuracy": self.class_accuracy.tolist(),
                "correct": self.correct.astype(np.uint8), "confusion": self.confusion, "test_index": self.test_index,
                "notes": list(self.notes)}


def _class_names(s: Source) -> np.ndarray:
    """The class name of every image of a labeled source."""
    assert s.labels is not None
    return np.array(s.classes, dtype=object)[s.labels.numpy()]


def shared_classes(sources: Sequence[Source]) -> tuple[str, ...]:
    """Class names every source has, in the first source's order (unlabeled sources share none)."""
    if any(not s.labeled for s in sources):
        return ()
    return tuple(c for c in sources[0].classes if all(c in s.classes for s in sources[1:]))


def name_within_class(sources: Mapping[str, Any], *, features: str = "hog", n_train: int = 50, n_test: int = 30,
                      seed: int = 0, test_seed: int | None = None, size: int = 16, channels: int | str = "auto",
                      remove: Sequence[str] = (), classifier: Classifier | None = None,
                      classes: Sequence[str] | None = None) -> WithinClassNaming:
    """Name That Dataset one object class at a time (Torralba & Efros's car crops): the content is
    held fixed, so a classifier that still tells the sources apart finds how each captured it.

    For every class shared by the labeled ``sources`` (or each of ``classes``), one classifier is
    trained on ``n_train`` images of that class per source and names the source of ``n_test``
    other images of it per source. The test images are drawn with ``test_seed`` alone (default:
    ``seed``) and the training images from the rest with ``seed``, so runs with different seeds
    and one ``test_seed`` share their test images (a crossed seeds x images design). Signature
    removal (``remove``, :func:`prepare`) is applied to all drawn images of the sources together.
    Other parameters as :func:`name_that_dataset`.

    >>> import numpy as np
    >>> y = np.arange(80) % 2
    >>> bright, dark = (np.full((80, 8, 8), 200, np.uint8), y), (np.full((80, 8, 8), 50, np.uint8), y)
    >>> r = name_within_class({"bright": bright, "dark": dark}, features="pixels", n_train=20, n_test=10, size=8)
    >>> r.classes, r.correct.shape, r.accuracy
    (('0', '1'), (2, 2, 10), 1.0)
    """
    named = _named(sources)
    unlabeled = [s.name for s in named if not s.labeled]
    if unlabeled:
        raise UserError(f"name_within_class needs labeled sources; {', '.join(unlabeled)} have no labels")
    common = shared_classes(named)
    chosen = tuple(common if classes is None else classes)
    missing = [c for c in chosen if c not in common]
    if missing or not chosen:
        raise UserError(f"classes {missing or list(chosen)} are not shared by every source; shared: {list(common)}")
    if n_train < 1 or n_test < 1:
        raise UserError(f"n_train and n_test must be >= 1, got {n_train}, {n_test}")
    test_rng = np.random.default_rng([seed if test_seed is None else test_seed, 0])
    train_rng = np.random.default_rng([seed, 1])
    picked, test_index = [], []
    for s in named:
        names = _class_names(s)
        tests, trains = [], []
        for c in chosen:
            members = np.flatnonzero(names == c)
            if len(members) < n_train + n_test:
                raise UserError(f"source {s.name!r} has {len(members)} images of class {c!r} but n_train={n_train} + "
                                f"n_test={n_test} needs {n_train + n_test}; lower them or give more images")
            members = members[test_rng.permutation(len(members))]
            tests.append(members[:n_test])
            rest = members[n_test:]
            trains.append(rest[train_rng.permutation(len(rest))[:n_train]])
        order = torch.from_numpy(np.concatenate(tests + trains))  # (C * n_test + C * n_train,): tests first
        picked.append(replace(s, images=s.images[order], labels=None))
        test_index.append(np.stack(tests))  # (C, n_test)
    clf = _classifier(features, classifier)
    reps = [clf.represent(x) for x in prepare(picked, size=size, channels=channels, remove=remove)]
    k, n_classes = len(named), len(chosen)
    correct = np.zeros((n_classes, k, n_test), dtype=bool)
    confusion = np.zeros((n_classes, k, k), dtype=np.int64)
    truth = np.repeat(np.arange(k), n_test)  # (S * n_test,)
    notes: list[str] = []
    start = n_classes * n_test  # where the training images begin
    for c in range(n_classes):
        train_x = torch.cat([r[start + c * n_train:start + (c + 1) * n_train] for r in reps])  # (S * n_train, ...)
        test_x = torch.cat([r[c * n_test:(c + 1) * n_test] for r in reps])  # (S * n_test, ...)
        (scores,) = clf.fit_predict(train_x, torch.arange(k).repeat_interleave(n_train), [test_x], seed=seed,
                                    notes=notes)
        predicted = scores.argmax(1)
        correct[c] = (predicted == truth).reshape(k, n_test)
        np.add.at(confusion[c], (truth, predicted), 1)
    return WithinClassNaming(tuple(s.name for s in named), chosen, clf.features, check_steps(remove), n_train, n_test,
                             correct, confusion, np.stack(test_index), tuple(dict.fromkeys(notes)))


def pseudo_datasets(source: Any, k: int, *, seed: int = 0, name: str = "part",
                    by_class: bool = False) -> dict[str, Source]:
    """``k`` disjoint random parts of one source, of equal size (Liu & He 2025's control).

    Name That Dataset on these parts must give chance accuracy: they come from one
    distribution, so anything above chance is memorization or a bug. Labels are kept;
    with ``by_class`` (a labeled source) every class is split evenly among the parts, so
    each part has the class counts a within-class comparison needs.

    >>> import numpy as np
    >>> parts = pseudo_datasets((np.zeros((10, 4, 4), np.uint8), np.arange(10) % 2), 2, by_class=True)
    >>> [p.labels.tolist().count(0) for p in parts.values()]
    [2, 2]
    """
    src = as_source(name, source)
    if k < 2 or len(src) < k:
        raise UserError(f"pseudo_datasets needs 2 <= k <= number of images, got k={k} for {len(src)} images")
    rng = np.random.default_rng(seed)
    if by_class and src.labels is not None:
        parts: list[list[np.ndarray]] = [[] for _ in range(k)]
        for c in np.unique(src.labels.numpy()):
            members = rng.permutation(np.flatnonzero(src.labels.numpy() == c))
            per = len(members) // k
            for i in range(k):
                parts[i].append(members[i * per:(i + 1) * per])
        order = [torch.from_numpy(np.sort(np.concatenate(p))) for p in parts]
    else:
        per = len(src) // k
        order = list(torch.from_numpy(rng.permutation(len(src))[:per * k]).reshape(k, per))  # k x (per,)
    return {f"{name}{i + 1}": replace(src, name=f"{name}{i + 1}", images=src.images[idx],
                                      labels=src.labels[idx] if src.labels is not None else None,
                                      origin=f"random part {i + 1}/{k} of {src.origin or src.name}")
            for i, idx in enumerate(order)}


# -- cross-dataset generalization and dataset value ---------------------------------------------


def percent_drop(matrix: Any) -> dict[str, np.ndarray]:
    """Self, mean-others and percent drop per training dataset of a cross-dataset matrix.

    ``matrix[i, j]``: score of training on dataset i, testing on dataset j (square).
    ``self = matrix[i, i]``; ``mean_others`` = mean of row i off the diagonal;
    ``percent_drop = 100 * (self - mean_others) / self`` (Torralba & Efros, Table 2).
    """
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 2:
        raise UserError(f"percent_drop needs a square matrix of at least 2x2, got shape {m.shape}")
    own = np.diag(m).copy()
    others = (m.sum(1) - own) / (m.shape[0] - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        drop = np.where(own != 0, 100.0 * (own - others) / own, np.nan)
    return {"self": own, "mean_others": others, "percent_drop": drop}


@dataclass(frozen=True)
class DatasetValue:
    """The value of one training sample of a dataset, in samples of the test dataset."""

    value: float  # equivalent / n; with bound != "exact" the value is a bound
    equivalent: float  # m*: test-dataset samples that reach the same score
    bound: str  # "exact", "at_most" (score below the curve's start) or "at_least" (above its end)


def dataset_value(sizes: Sequence[int], self_curve: Sequence[float], cross_score: float,
                  n: int | None = None) -> DatasetValue:
    """Market value of a sample of dataset A on dataset B (Torralba & Efros, "Measuring Dataset's Value").

    Parameters
    ----------
    sizes : training-set sizes of B's own learning curve (ascending).
    self_curve : B's score (trained on B, tested on B) at each size; higher is better.
    cross_score : score on B of a model trained on ``n`` samples of A.
    n : number of A samples behind ``cross_score`` (default: the largest size).

    The curve is made monotone with a running maximum; ``m*`` interpolates linearly in
    ``log(m)``; value = ``m* / n``.

    >>> dataset_value([10, 100, 1000], [0.5, 0.7, 0.9], 0.6).value  # m* = sqrt(10 * 100)
    0.0316...
    """
    m = np.asarray(sizes, dtype=float)
    s = np.asarray(self_curve, dtype=float)
    if m.ndim != 1 or len(m) < 1 or m.shape != s.shape or (m <= 0).any() or (np.diff(m) <= 0).any():
        raise UserError(f"dataset_value needs ascending positive sizes and one score per size, got sizes={list(sizes)}, "
                        f"self_curve={list(self_curve)}")
    n = float(m[-1] if n is None else n)
    s = np.maximum.accumulate(s)
    if cross_score > s[-1]:
        return DatasetValue(m[-1] / n, m[-1], "at_least")
    if cross_score < s[0]:
        return DatasetValue(m[0] / n, m[0], "at_most")
    k = int(np.argmax(s >= cross_score))  # first size whose score reaches cross_score
    if k == 0:
        return DatasetValue(m[0] / n, m[0], "exact")
    t = (cross_score - s[k - 1]) / (s[k] - s[k - 1])
    equivalent = math.exp(math.log(m[k - 1]) + t * (math.log(m[k]) - math.log(m[k - 1])))
    return DatasetValue(equivalent / n, equivalent, "exact")


@dataclass(frozen=True)
class CrossDataset:
    """Train on each source, test on each (Torralba & Efros, Sec. 3.1)."""

    names: tuple[str, ...]  # the sources, rows (training) and columns (testing)
    classes: tuple[str, ...]  # the task's classes (a single class: one-vs-rest)
    metric: str  # "accuracy" (multi-class) or "average_precision" (one class vs the rest)
    sizes: tuple[int, ...]  # training images per source on the learning curve
    scores: np.ndarray  # (S, S, len(sizes)): train i, test j, size k
    chance: np.ndarray  # (S,) score of guessing on each test set
    n_test: int  # test images per source
    notes: tuple[str, ...] = ()  # problems met on the way (e.g. an SVM that did not converge)
    correct: np.ndarray | None = None  # (S, S, n_test) bool at the largest size: trained on i, test image k of j right

    @property
    def matrix(self) -> np.ndarray:
        """``(S, S)`` scores at the largest training size."""
        return self.scores[:, :, -1]

    def summary(self) -> dict[str, np.ndarray]:
        """:func:`percent_drop` of :attr:`matrix`."""
        return percent_drop(self.matrix)

    def drops(self) -> np.ndarray:
        """``(S, S)`` bool: off-diagonal entries below both their row's and their column's self
        score (worse than training on the test dataset itself and than testing where trained).
        The diagonal is True."""
        m = self.matrix
        own = np.diag(m)
        out = (m < own[:, None]) & (m < own[None, :])
        np.fill_diagonal(out, True)
        return out

    def values(self) -> list[list[DatasetValue]]:
        """``values()[i][j]``: value of one sample of source i on test source j (diagonal: 1)."""
        out = []
        for i in range(len(self.names)):
            row = []
            for j in range(len(self.names)):
                if i == j:
                    row.append(DatasetValue(1.0, float(self.sizes[-1]), "exact"))
                else:
                    row.append(dataset_value(self.sizes, self.scores[j, j], float(self.scores[i, j, -1])))
            out.append(row)
        return out

    def to_dict(self) -> dict[str, Any]:
        summary = self.summary()
        values = self.values()
        return {"names": list(self.names), "classes": list(self.classes), "metric": self.metric,
                "sizes": list(self.sizes), "n_test": self.n_test, "matrix": self.matrix.tolist(),
                "scores": self.scores.tolist(), "chance": self.chance.tolist(),
                "self": summary["self"].tolist(), "mean_others": summary["mean_others"].tolist(),
                "percent_drop": summary["percent_drop"].tolist(), "drops": self.drops().tolist(),
                "values": [[v.value for v in row] for row in values],
                "value_bounds": [[v.bound for v in row] for row in values], "notes": list(self.notes),
                **({"correct": self.correct.astype(np.uint8)} if self.correct is not None else {})}


def _task_labels(s: Source, task: str | Sequence[str] | None, common: Sequence[str]) -> tuple[Tensor, Tensor]:
    """(kept image indices, task labels) of one source."""
    assert s.labels is not None
    names = np.array(s.classes, dtype=object)[s.labels.numpy()]
    if isinstance(task, str):
        return torch.arange(len(s)), torch.from_numpy((names == task).astype(np.int64))
    lookup = {c: i for i, c in enumerate(common)}
    mapped = np.array([lookup.get(n, -1) for n in names], dtype=np.int64)
    keep = np.flatnonzero(mapped >= 0)
    return torch.from_numpy(keep), torch.from_numpy(mapped[keep])


def _balanced_order(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random order in which classes take turns (the first n indices are as balanced as possible)."""
    perm = rng.permutation(len(labels))
    shuffled = labels[perm]
    rank = np.zeros(len(labels), dtype=np.int64)  # position of each item within its class
    for c in np.unique(shuffled):
        where = shuffled == c
        rank[where] = np.arange(int(where.sum()))
    return perm[np.argsort(rank, kind="stable")]


def _test_then_train(labels: np.ndarray, n_test: int, n_train: int, rng: np.random.Generator,
                     test_rng: np.random.Generator | None) -> np.ndarray:
    """Indices: ``n_test`` test images, then ``n_train`` training images, each draw class-balanced.
    With ``test_rng`` the test draw is made with it alone and the training draw with ``rng`` from
    the rest; without, one balanced order from ``rng`` gives both."""
    if test_rng is None:
        return _balanced_order(labels, rng)[:n_test + n_train]
    test = _balanced_order(labels, test_rng)[:n_test]
    rest = np.setdiff1d(np.arange(len(labels)), test)
    return np.concatenate([test, rest[_balanced_order(labels[rest], rng)[:n_train]]])


def cross_dataset_table(sources: Mapping[str, Any], *, task: str | Sequence[str] | None = None,
                        features: str = "hog", n_train: int | Sequence[int] = 1000, n_test: int = 300,
                        seed: int = 0, test_seed: int | None = None, size: int = 16, channels: int | str = "auto",
                        remove: Sequence[str] = (), classifier: Classifier | None = None,
                        progress: ProgressFactory | None = None) -> CrossDataset:
    """Train on each labeled source and test on every source (Torralba & Efros, Sec. 3.1).

    Parameters
    ----------
    task : ``None``: classification over the classes every source has (by name); a class
        name: that class against the rest of the same source (scored by average
        precision, like the paper's "car" and "person"); a list of class names:
        classification over those.
    n_train : training images per source; a list gives learning curves, needed by
        :meth:`CrossDataset.values`. Test and training images are drawn with the classes
        taking turns, so both are as class-balanced as the source allows.
    test_seed : draw the test images with this seed alone (and the training images from the rest
        with ``seed``), so runs with different seeds share their test images; default: both
        drawn with ``seed``.
    Other parameters as :func:`name_that_dataset`. The outcome of every test image at the largest
    training size is kept in :attr:`CrossDataset.correct` (paired comparisons over test images).
    """
    from sklearn.metrics import average_precision_score

    named = _named(sources)
    unlabeled = [s.name for s in named if not s.labeled]
    if unlabeled:
        raise UserError(f"cross_dataset_table needs labeled sources; {', '.join(unlabeled)} have no labels")
    common = list(shared_classes(named))
    if task is None:
        classes = tuple(common)
    else:
        classes = (task,) if isinstance(task, str) else tuple(task)
        missing = [c for c in classes if c not in common]
        if missing:
            raise UserError(f"task classes {missing} are not in every source; classes shared by all: {common}")
    if len(classes) < (1 if isinstance(task, str) else 2):
        raise UserError(f"the sources share too few classes for a task: {common}")
    binary = isinstance(task, str)
    sizes = _sizes(n_train)
    need = sizes[-1] + n_test
    rng = np.random.default_rng(seed)
    test_rng = None if test_seed is None else np.random.default_rng([test_seed, 0])
    picked, labels = [], []
    for s in named:
        keep, y = _task_labels(s, task, classes)
        if len(keep) < need:
            raise UserError(f"source {s.name!r} has {len(keep)} images of the task's classes but "
                            f"n_train={sizes[-1]} + n_test={n_test} needs {need}")
        chosen = torch.from_numpy(_test_then_train(y.numpy(), n_test, sizes[-1], rng, test_rng))
        picked.append(replace(s, images=s.images[keep[chosen]], labels=None))
        labels.append(y[chosen])
    clf = _classifier(features, classifier)
    images = [clf.represent(x) for x in prepare(picked, size=size, channels=channels, remove=remove)]
    tests = [x[:n_test] for x in images]
    test_labels = [y[:n_test].numpy() for y in labels]
    scores = np.zeros((len(named), len(named), len(sizes)))
    correct = np.zeros((len(named), len(named), n_test), dtype=bool)
    notes: list[str] = []
    with (progress or no_progress)(len(named) * len(sizes), f"cross-dataset ({clf.features})") as bar:
        for i in range(len(named)):
            for k, n in enumerate(sizes):
                out = clf.fit_predict(images[i][n_test:n_test + n], labels[i][n_test:n_test + n], tests, seed=seed,
                                      notes=notes)
                for j, (sc, yt) in enumerate(zip(out, test_labels)):
                    correct[i, j] = sc.argmax(1) == yt
                    if binary:
                        scores[i, j, k] = average_precision_score(yt == 1, sc[:, 1])
                    else:
                        scores[i, j, k] = float((sc.argmax(1) == yt).mean())
                bar.advance(1)
    if binary:
        chance = np.array([float((y == 1).mean()) for y in test_labels])
    else:
        chance = np.array([float(np.bincount(y, minlength=len(classes)).max() / len(y)) for y in test_labels])
    return CrossDataset(tuple(s.name for s in named), classes, "average_precision" if binary else "accuracy",
                        sizes, scores, chance, n_test, tuple(notes), correct)
