"""Myth 2: "Image datasets are representative of real images in the wild" -- dataset bias.

Torralba & Efros, "Unbiased Look at Dataset Bias", CVPR 2011, and Liu & He, "A Decade's
Battle on Dataset Bias: Are We There Yet?", ICLR 2025. The study's methods as components:

- :func:`name_that_dataset`: can a classifier tell which dataset an image came from?
  (accuracy, chance, Clopper-Pearson interval, confusion, recall, learning curve);
  :func:`pseudo_datasets` for the control that must stay at chance;
  :func:`name_within_class` for one object class at a time (outcomes per test image).
- :func:`cross_dataset_table`: train on each dataset, test on each; self vs mean-others
  and percent drop (:func:`percent_drop`).
- :func:`dataset_value`: the "market value" of a training sample, read off learning curves.
- :func:`prepare` / :func:`remove_signatures`: common size and layout, and equalized
  trivial signatures (resolution, framing, moments, grey-level histogram).
- :func:`hog`: vectorized HOG features; :class:`Classifier`: linear SVM on HOG or pixels,
  or a small CNN.
- Sources: arrays, :class:`mlmyths.data.ImageDataset`, image folders ``root/CLASS/*.png``
  (:func:`load_image_folder`; corrupt files are skipped and counted), IDX files
  (:func:`load_idx`), font-rendered digits (:func:`mlmyths.data.synthetic.font_digits`).

Layout: ``sources.py`` (loading, common layout), ``signatures.py`` (signature removal),
``hog.py``, ``classifiers.py``, ``measures.py`` (the study's measurements).

>>> import numpy as np
>>> from mlmyths.bias import percent_drop
>>> percent_drop(np.array([[0.9, 0.6], [0.3, 0.6]]))["percent_drop"].round(1).tolist()
[33.3, 50.0]
"""
from __future__ import annotations

from mlmyths.bias.classifiers import FEATURES, Classifier
from mlmyths.bias.hog import hog
from mlmyths.bias.measures import (
    CrossDataset, DatasetValue, NamingResult, WithinClassNaming, binomial_p_value, clopper_pearson,
    cross_dataset_table, dataset_value, name_that_dataset, name_within_class, percent_drop, prepare, pseudo_datasets,
    shared_classes,
)
from mlmyths.bias.signatures import STEPS, match_histograms, match_moments, normalize_framing, remove_signatures
from mlmyths.bias.sources import (
    Source, as_source, harmonize, load_idx, load_image_folder, load_source, subsample,
)

__all__ = [
    "FEATURES", "STEPS", "Classifier", "CrossDataset", "DatasetValue", "NamingResult", "Source", "WithinClassNaming",
    "as_source", "binomial_p_value", "clopper_pearson", "cross_dataset_table", "dataset_value", "harmonize",
    "hog", "load_idx", "load_image_folder", "load_source", "match_histograms", "match_moments",
    "name_that_dataset", "name_within_class", "normalize_framing", "percent_drop", "prepare", "pseudo_datasets",
    "remove_signatures", "shared_classes", "subsample",
]
