"""Myth 7 component: saliency maps, the attacks that change them, and how to measure the change.

Ghorbani, Abid & Zou, "Interpretation of Neural Networks is Fragile", AAAI 2019, with the
β-smoothing defence of Dombrowski et al., "Explanations can be manipulated and geometry is to
blame", NeurIPS 2019.

- :mod:`~mlmyths.saliency.attributions`: ``attribute(model, x, target, method=...)`` for
  gradient, gradient × input, integrated gradients, SmoothGrad and DeepLIFT; batched,
  differentiable (``create_graph=True``), optionally β-smoothed.
- :mod:`~mlmyths.saliency.attacks`: ``attack(model, x, method=..., attack="topk"|"mass_center"|
  "targeted"|"random", epsilon=...)``.
- :mod:`~mlmyths.saliency.metrics`: top-k intersection, Spearman rank correlation, center-of-mass
  shift, mass in a region, max-sensitivity.
- :mod:`~mlmyths.saliency.captum_adapter`: Captum attribution objects (``IntegratedGradients(model)``,
  ``Saliency(model)``, ...) wherever a method is taken, and which of them can be attacked.
- :mod:`~mlmyths.saliency.robustness`: :class:`TopKIntersection`, :class:`SpearmanRankCorrelation`,
  :class:`MassCenterDislocation` under an attack budget, called like Quantus's metrics
  (``metric(model, x_batch, y_batch, a_batch=None, ...)``).

>>> import torch
>>> from torch import nn
>>> from mlmyths import saliency
>>> net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3))
>>> x = torch.rand(2, 1, 4, 4)
>>> maps = saliency.attribute(net, x, target=0, method="integrated_gradients")
>>> saliency.topk_intersection(maps, maps, k=3).tolist()
[1.0, 1.0]
"""
from mlmyths.saliency.attacks import ATTACKS, AttackResult, attack
from mlmyths.saliency.attributions import METHODS, attribute, integration_points, saliency_map, smoothed
from mlmyths.saliency.captum_adapter import DIFFERENTIABLE as CAPTUM_DIFFERENTIABLE
from mlmyths.saliency.metrics import (
    center_of_mass,
    center_of_mass_shift,
    mass_in_region,
    rank_correlation,
    sensitivity_max,
    topk_intersection,
)
from mlmyths.saliency.robustness import MassCenterDislocation, SpearmanRankCorrelation, TopKIntersection

__all__ = [
    "ATTACKS", "METHODS", "AttackResult", "attack", "attribute", "integration_points", "saliency_map", "smoothed",
    "center_of_mass", "center_of_mass_shift", "mass_in_region", "rank_correlation", "sensitivity_max",
    "topk_intersection", "CAPTUM_DIFFERENTIABLE", "MassCenterDislocation", "SpearmanRankCorrelation",
    "TopKIntersection",
]
