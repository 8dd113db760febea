"""The seven experiments and their registry.

Every experiment module ``mlmyths.myths.<module>`` exposes the same things (checked for every
registered myth by ``tests/test_contract.py``):

- ``CLAIM``: a :class:`mlmyths.records.Headline` (use :func:`claim` to fill in the myth and paper);
- ``CLAIMS``: the :class:`mlmyths.claims.Claim` list, declared before anything runs (docs/VERDICTS.md
  is generated from them);
- ``Config``, ``SCALES`` and ``config(scale="small", **overrides)``: a frozen dataclass per scale
  (``smoke``: seconds, tests and CI; ``small``: minutes on 2 CPU cores, the default;
  ``paper``: the paper's setup, GPU and real datasets); every check in ``Config.__post_init__``,
  ``auto`` choices resolved in ``config()`` so the config recorded is the config that ran;
- ``run(cfg, ctx) -> Result``: ``ctx`` is a :class:`mlmyths.runs.RunContext`;
- ``evaluate(cfg, measurements) -> list[ClaimResult]``: the claims judged from the raw
  measurements (pure; ``run`` calls it), and ``simulate(cfg, truth, rng) -> measurements`` with
  ``CALIBRATION`` (the true values of each claim's statistic on the paper's side and on the other
  side): the calibration by simulation of :func:`mlmyths.claims.calibrate`.

Library code never imports from here.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from mlmyths.errors import UserError
from mlmyths.records import Headline


@dataclass(frozen=True)
class MythInfo:
    id: str  #: command-line id
    module: str  #: the experiment module's dotted path
    myth: str  #: the myth, as Chang (2019) words it
    paper: str  #: the study that refuted it


MYTHS: dict[str, MythInfo] = {
    info.id: info
    for info in [
        MythInfo("tensors", f"{__name__}.tensors", "TensorFlow is a tensor manipulation library.",
                 "Laue, Mitterreiter & Giesen, Computing Higher Order Derivatives of Matrix and Tensor "
                 "Expressions, NeurIPS 2018"),
        MythInfo("dataset-bias", f"{__name__}.dataset_bias", "Image datasets are representative of real images found in the wild.",
                 "Torralba & Efros, Unbiased Look at Dataset Bias, CVPR 2011"),
        MythInfo("test-reuse", f"{__name__}.test_reuse", "Machine learning researchers do not use the test set for validation.",
                 "Recht, Roelofs, Schmidt & Shankar, Do CIFAR-10 Classifiers Generalize to CIFAR-10?, 2018"),
        MythInfo("forgetting", f"{__name__}.forgetting", "Every datapoint is used in training a neural network.",
                 "Toneva et al., An Empirical Study of Example Forgetting during Deep Neural Network "
                 "Learning, ICLR 2019"),
        MythInfo("fixup", f"{__name__}.fixup", "We need (batch) normalization to train very deep residual networks.",
                 "Zhang, Dauphin & Ma, Fixup Initialization: Residual Learning Without Normalization, ICLR 2019"),
        MythInfo("lightconv", f"{__name__}.lightconv", "Attention > convolution.",
                 "Wu, Fan, Baevski, Dauphin & Auli, Pay Less Attention with Lightweight and Dynamic "
                 "Convolutions, ICLR 2019"),
        MythInfo("saliency", f"{__name__}.saliency", "Saliency maps are robust ways to interpret neural networks.",
                 "Ghorbani, Abid & Zou, Interpretation of Neural Networks is Fragile, AAAI 2019"),
    ]
}


def claim(myth_id: str, paper_result: str) -> Headline:
    """The experiment's CLAIM: the registry's myth and paper plus the paper's headline result."""
    info = MYTHS[myth_id]
    return Headline(myth=info.myth, paper=info.paper, paper_result=paper_result)


def info(myth_id: str) -> MythInfo:
    if myth_id not in MYTHS:
        raise UserError(f"unknown myth {myth_id!r}; choose one of {', '.join(MYTHS)} (or all)")
    return MYTHS[myth_id]


def load(myth_id: str) -> ModuleType:
    """The experiment module for ``myth_id``; a user error if unknown."""
    return importlib.import_module(info(myth_id).module)


def sentences() -> dict[str, str]:
    """Myth id -> the myth sentence (what the report's overview needs)."""
    return {m.id: m.myth for m in MYTHS.values()}
