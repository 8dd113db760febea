"""The published CIFAR-10.1 predictions (Recht, Roelofs, Schmidt & Shankar 2018).

The official repository (github.com/modestyachts/CIFAR-10.1) ships, for each of 30 models,
its predicted labels on CIFAR-10's test set and on the two versions of the new test set::

    datasets/cifar10.1_{v4,v6}_labels.npy                       (2,021 / 2,000 labels)
    model_predictions/original_predictions/<model>_predictions.json   (10,000 labels)
    model_predictions/{v4,v6}_predictions/<model>_predictions.json    (2,021 / 2,000 labels)

v4 is the version of the paper's main text (Table 1); v6 (class-balanced, Appendix D) is the
one the authors recommend. ``mlmyths data fetch cifar10.1`` downloads all of it; a clone of
the repository in ``$MLMYTHS_DATA/cifar10.1`` works too.

CIFAR-10's own test labels are not part of that repository: :func:`cifar10_test_labels`
reads them from the data layer's CIFAR-10 (binary version) when a local copy exists, and
returns None otherwise; original accuracies are then unavailable, never guessed.
:data:`PAPER_ORIGINAL_ACCURACY` holds the original accuracies *as printed in the paper*,
for display and as an explicitly labelled fallback.

>>> sorted(NEW_TEST_SIZES.items())
[('v4', 2021), ('v6', 2000)]
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlmyths.errors import DataError

VERSIONS = ("v4", "v6")
NUM_CLASSES = 10
ORIGINAL_TEST_SIZE = 10_000
NEW_TEST_SIZES = {"v4": 2021, "v6": 2000}

#: Original CIFAR-10 test accuracy (percent) of the 30 models as printed in Recht et al. (2018),
#: "Do CIFAR-10 Classifiers Generalize to CIFAR-10?", arXiv:1806.00451, Table 1 (rounded to 0.1
#: there), keyed by the prediction file's model name, with the paper's name for the model.
#: Consistency with the paper's text is tested (tests/test_reuse_cifar101.py): e.g. cutout adds
#: about 0.1 points to shake_shake_64d and about 1 point to wide_resnet_28_10 on the original test
#: set (Sec. 4), DARC / shake_shake_32d / resnext_29_4x64d triple their error (Sec. 4).
PAPER_ORIGINAL_ACCURACY: dict[str, tuple[str, float]] = {
    "shake_shake_26_2x64d_SSI_cutout16": ("shake_shake_64d_cutout", 97.1),
    "shake_shake_26_2x96d_SSI": ("shake_shake_96d", 97.1),
    "shake_shake_26_2x64d_SSI": ("shake_shake_64d", 97.0),
    "wrn_28_10_cutout16": ("wide_resnet_28_10_cutout", 97.0),
    "shake_drop": ("shake_drop", 96.9),
    "shake_shake_26_2x32d_SSI": ("shake_shake_32d", 96.6),
    "darc": ("darc", 96.6),
    "resnext_29_4x64d": ("resnext_29_4x64d", 96.4),
    "pyramidnet_basic_110_270": ("pyramidnet_basic_110_270", 96.3),
    "resnext_29_8x64d": ("resnext_29_8x64d", 96.2),
    "wrn_28_10": ("wide_resnet_28_10", 95.9),
    "pyramidnet_basic_110_84": ("pyramidnet_basic_110_84", 95.7),
    "densenet_BC_100_12": ("densenet_BC_100_12", 95.5),
    "nas": ("neural_architecture_search", 95.4),
    "wide_resnet_tf": ("wide_resnet_tf_28_10", 95.0),
    "resnet_preact_bottleneck_164": ("resnet_v2_bottleneck_164", 94.2),
    "vgg16_keras": ("vgg16_keras", 93.6),
    "resnet_basic_110": ("resnet_basic_110", 93.5),
    "resnet_preact_basic_110": ("resnet_v2_basic_110", 93.4),
    "resnet_basic_56": ("resnet_basic_56", 93.3),
    "resnet_basic_44": ("resnet_basic_44", 93.0),
    "vgg_15_BN_64": ("vgg_15_BN_64", 93.0),
    "resnetv2_tf": ("resnet_preact_tf_32", 92.7),
    "resnet_basic_32": ("resnet_basic_32", 92.5),
    "cudaconvnet": ("cudaconvnet", 88.5),
    "random_features_256k_aug": ("random_features_256k_aug", 85.6),
    "random_features_32k_aug": ("random_features_32k_aug", 85.0),
    "random_features_256k_no_aug": ("random_features_256k", 84.2),
    "random_features_32k_no_aug": ("random_features_32k", 83.3),
    "alexnet_tf_ben": ("alexnet_tf", 82.0),
}
PAPER_CITATION = "Recht, Roelofs, Schmidt & Shankar (2018), arXiv:1806.00451, Table 1"


@dataclass(frozen=True)
class PublishedPredictions:
    """The published predictions of one CIFAR-10.1 version (models sorted by name)."""

    version: str
    models: tuple[str, ...]
    original: np.ndarray  #: int64 (M, 10000): predictions on CIFAR-10's test set
    new: np.ndarray  #: int64 (M, n): predictions on CIFAR-10.1 ``version``
    new_labels: np.ndarray  #: int64 (n,)
    root: Path

    def paper_original(self) -> np.ndarray | None:
        """:data:`PAPER_ORIGINAL_ACCURACY` as fractions in model order (None if a model is unknown)."""
        if not all(m in PAPER_ORIGINAL_ACCURACY for m in self.models):
            return None
        return np.array([PAPER_ORIGINAL_ACCURACY[m][1] / 100.0 for m in self.models])


def _check_labels(values: np.ndarray, path: Path, expected: int, what: str) -> np.ndarray:
    if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
        raise DataError(f"{path}: expected a flat list of integer {what}, got shape {values.shape} "
                        f"dtype {values.dtype}")
    if len(values) != expected:
        raise DataError(f"{path}: expected {expected} {what}, found {len(values)} (wrong file or truncated)")
    if len(values) and (values.min() < 0 or values.max() >= NUM_CLASSES):
        bad = values[(values < 0) | (values >= NUM_CLASSES)][0]
        raise DataError(f"{path}: {what} must be in 0..{NUM_CLASSES - 1}, found {int(bad)}")
    return values.astype(np.int64)


def read_prediction_file(path: Path, expected: int) -> np.ndarray:
    """A ``<model>_predictions.json`` file: a JSON list of ``expected`` labels in 0..9."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: missing prediction file (is the CIFAR-10.1 copy complete? "
                        "`mlmyths data fetch cifar10.1` downloads all of it)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: malformed prediction file, not valid JSON ({exc})") from None
    if not isinstance(raw, list) or not all(type(v) is int for v in raw):
        raise DataError(f"{path}: malformed prediction file, expected a JSON list of integer labels")
    return _check_labels(np.asarray(raw, dtype=np.int64), Path(path), expected, "predictions")


def read_label_file(path: Path, expected: int) -> np.ndarray:
    """A ``cifar10.1_<version>_labels.npy`` file (no pickle allowed)."""
    from mlmyths.data import readers

    if not Path(path).exists():
        raise DataError(f"{path}: missing label file (`mlmyths data fetch cifar10.1` downloads it)")
    return _check_labels(readers.read_npy(Path(path)), Path(path), expected, "labels")


def prediction_path(root: Path, folder: str, model: str) -> Path:
    return Path(root) / "model_predictions" / f"{folder}_predictions" / f"{model}_predictions.json"


def model_names(root: Path, version: str) -> tuple[str, ...]:
    """Models with a prediction file for ``version`` (sorted)."""
    folder = Path(root) / "model_predictions" / f"{version}_predictions"
    if not folder.is_dir():
        raise DataError(f"{folder}: missing folder of published predictions "
                        "(`mlmyths data fetch cifar10.1` downloads it)")
    suffix = "_predictions.json"
    names = sorted(p.name[: -len(suffix)] for p in folder.glob(f"*{suffix}"))
    if not names:
        raise DataError(f"{folder}: no *_predictions.json files found")
    return tuple(names)


def load_published(root: Path | None = None, version: str = "v6") -> PublishedPredictions:
    """Load the labels and the 30 models' predictions of CIFAR-10.1 ``version``.

    ``root`` defaults to wherever :func:`mlmyths.data.fetch` finds ``cifar10.1``. Every file is
    validated: a malformed file, a wrong count of predictions or a label out of range raises
    :class:`~mlmyths.errors.DataError` naming the file.
    """
    if version not in VERSIONS:
        raise DataError(f"unknown CIFAR-10.1 version {version!r}; choose one of {', '.join(VERSIONS)}")
    if root is None:
        from mlmyths import data

        root = data.fetch("cifar10.1")
    root = Path(root)
    n_new = NEW_TEST_SIZES[version]
    labels = read_label_file(root / "datasets" / f"cifar10.1_{version}_labels.npy", n_new)
    models = model_names(root, version)
    new = np.stack([read_prediction_file(prediction_path(root, version, m), n_new) for m in models])
    original = np.stack([read_prediction_file(prediction_path(root, "original", m), ORIGINAL_TEST_SIZE)
                         for m in models])
    return PublishedPredictions(version, models, original, new, labels, root)


def cifar10_test_labels() -> np.ndarray | None:
    """CIFAR-10's 10,000 test labels from a local copy of the binary version, else None.

    Never downloads (``mlmyths data fetch cifar10`` does, 163 MB).
    """
    from mlmyths import data

    if not data.available("cifar10"):
        return None
    labels = data.load("cifar10").y_test.numpy().astype(np.int64)
    if len(labels) != ORIGINAL_TEST_SIZE:
        raise DataError(f"CIFAR-10 test split has {len(labels)} labels, expected {ORIGINAL_TEST_SIZE}")
    return labels
