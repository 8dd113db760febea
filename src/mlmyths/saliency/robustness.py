"""Robustness of explanations to an interpretation attack, called the way Quantus calls its metrics.

Quantus (Hedström et al., "Quantus: An Explainable AI Toolkit for Responsible Evaluation of
Neural Network Explanations", JMLR 2023) evaluates explanations with metric objects configured
once and called on a batch::

    scores = metric(model=model, x_batch=x, y_batch=y, a_batch=None,
                    explain_func=..., explain_func_kwargs={...})   # one score per example

Its robustness metrics (``MaxSensitivity``, ``AvgSensitivity``, ``LocalLipschitzEstimate``, ...)
perturb the inputs at random. The metrics here perturb them adversarially, with the attacks of
Ghorbani, Abid & Zou ("Interpretation of Neural Networks is Fragile", AAAI 2019, Sec. 3) under an
L∞ budget ``epsilon`` (:func:`~mlmyths.saliency.attack`), and score each example with the paper's
measures (Sec. 3.1) between the explanation of ``x`` and that of the attacked ``x``:

- :class:`TopKIntersection`: fraction of the k most salient pixels still among the top k
  (1 = robust); the top-k attack by default. Not Quantus's localisation metric of the same
  name, which compares an explanation with a segmentation mask.
- :class:`SpearmanRankCorrelation`: rank correlation of the two maps (1 = robust); the top-k attack.
- :class:`MassCenterDislocation`: distance in pixels between the maps' centers of mass
  (0 = robust); the mass-center attack.

``attack="random"`` gives the paper's random-sign baseline at the same budget, so the three can
stand beside Quantus's random-perturbation metrics. No measure is computed here: each metric
calls :func:`~mlmyths.saliency.attack` and one function of :mod:`mlmyths.saliency.metrics`.
Quantus is not needed, and not imported.

The call takes Quantus's arguments with these meanings:

- ``model``: an ``nn.Module`` mapping images to logits.
- ``x_batch``: images (B, C, H, W), or (B, H, W, C) with ``channel_first=False``, as a tensor or
  NumPy array; ``channel_first=None`` takes the layout with fewer entries in the channel position.
- ``y_batch``: the classes to explain, (B,) (None: the predicted labels). The attack keeps the
  predicted label either way.
- ``a_batch``: the explanations of ``x_batch`` that the attacked explanations are compared with,
  (B, H, W), (B, 1, H, W) or (B, C, H, W) (compared as |a| summed over channels, like the maps of
  :func:`~mlmyths.saliency.saliency_map`); None: computed with ``explain_func``.
- ``explain_func``: what explains, and is attacked: a name of :data:`~mlmyths.saliency.METHODS`
  (default ``"gradient"``) or a Captum attribution object built on ``model`` whose attribution is
  differentiable (:mod:`~mlmyths.saliency.captum_adapter`). A function returning arrays, such as
  ``quantus.explain``, cannot be attacked: the attack differentiates the explanation.
- ``explain_func_kwargs``: the method's options (e.g. ``{"n_steps": 16}``).
- ``device``: where the images go (default: the model's device); ``batch_size``: images per attack.
- ``softmax`` is accepted and has no effect (the predicted label is the same); ``s_batch`` and
  ``custom_batch`` are accepted and unused, as in Quantus's robustness metrics;
  ``model_predict_kwargs`` must be empty (the model is called on the images alone).

The call returns a list of floats, or ``[aggregate_func(scores)]`` with ``return_aggregate=True``;
``last_results``, ``all_results`` and ``last_label_kept`` (whether a label-preserving perturbation
was found; where not, the example is scored at its unperturbed input, as
:class:`~mlmyths.saliency.AttackResult` does) are kept on the object.

>>> import torch
>>> from torch import nn
>>> _ = torch.manual_seed(0)
>>> net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))          # linear: its gradient never moves
>>> x = torch.rand(4, 1, 4, 4)
>>> metric = TopKIntersection(epsilon=0.1, k=3, steps=5, surrogate_beta=None)
>>> metric(model=net, x_batch=x, y_batch=torch.tensor([0, 1, 2, 0]))
[1.0, 1.0, 1.0, 1.0]
>>> MassCenterDislocation(epsilon=0.1, steps=5, surrogate_beta=None, return_aggregate=True)(net, x, None)
[0.0]
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from mlmyths.errors import UserError
from mlmyths.saliency.attacks import ATTACKS, attack, default_k
from mlmyths.saliency.attributions import METHODS, saliency_map
from mlmyths.saliency.captum_adapter import is_captum_attribution
from mlmyths.saliency.metrics import center_of_mass_shift, rank_correlation, topk_intersection

#: The attacks a metric can run (the targeted attack needs a region, which these metrics do not take).
METRIC_ATTACKS = tuple(a for a in ATTACKS if a != "targeted")


def _as_tensor(values: object, name: str) -> Tensor:
    if isinstance(values, Tensor):
        return values.detach()
    try:
        return torch.as_tensor(np.asarray(values))
    except (TypeError, ValueError, RuntimeError):
        raise UserError(f"{name} must be a tensor or NumPy array, got a {type(values).__name__}") from None


def _images(x_batch: object, channel_first: bool | None) -> Tensor:
    """``x_batch`` as float images (B, C, H, W)."""
    x = _as_tensor(x_batch, "x_batch")
    if x.ndim != 4 or not x.is_floating_point():
        raise UserError(f"x_batch must be float images (B, C, H, W) or (B, H, W, C), got shape {tuple(x.shape)}, "
                        f"dtype {x.dtype}; add a batch dimension with x[None] and convert integer images to float")
    if channel_first is None:
        channel_first = x.shape[1] <= x.shape[-1]
    return x if channel_first else x.permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)


def _reference_maps(a_batch: object, batch: int, height: int, width: int) -> Tensor:
    """``a_batch`` as maps (B, H, W): |a| summed over channels."""
    a = _as_tensor(a_batch, "a_batch")
    if not a.is_floating_point():
        a = a.to(torch.float32)
    if a.ndim == 4 and a.shape[0] == batch and a.shape[2:] == (height, width):
        return saliency_map(a)
    if a.ndim == 3 and a.shape == (batch, height, width):
        return a.abs()
    raise UserError(f"a_batch must hold one explanation per image, (B, H, W) = ({batch}, {height}, {width}) or "
                    f"(B, C, H, W), got shape {tuple(a.shape)}")


class AttackedExplanationMetric(ABC):
    """Base of the metrics: configuration, the Quantus call, and one measure per subclass.

    Parameters
    ----------
    epsilon : L∞ budget of the attack in input units (the paper: 8/255 of the 0-1 range).
    attack : ``"topk"``, ``"mass_center"`` or ``"random"`` (default: the metric's own).
    k : top-k size of the top-k attack and of :class:`TopKIntersection` (default 2% of the pixels).
    steps, step_size, surrogate_beta, beta, clip : as for :func:`~mlmyths.saliency.attack`
        (defaults 100 steps of epsilon / 10, softplus surrogate β = 10, pixel range [0, 1]).
    seed : seeds the generator of the random attack and of SmoothGrad's noise, anew at every call.
    return_aggregate, aggregate_func : return ``[aggregate_func(scores)]`` instead of the scores
        (Quantus's names; default ``np.mean``).
    """

    #: the attack run when none is given
    default_attack: ClassVar[str] = "topk"

    def __init__(self, epsilon: float, *, attack: str | None = None, k: int | None = None, steps: int = 100,
                 step_size: float | None = None, surrogate_beta: float | None = 10.0, beta: float | None = None,
                 clip: tuple[float, float] = (0.0, 1.0), seed: int = 0, return_aggregate: bool = False,
                 aggregate_func: Callable[[list[float]], float] = np.mean):
        attack = self.default_attack if attack is None else attack
        if attack not in METRIC_ATTACKS:
            raise UserError(f"attack must be one of {', '.join(METRIC_ATTACKS)} for {type(self).__name__}, "
                            f"got {attack!r}")
        if not (isinstance(epsilon, (int, float)) and epsilon >= 0):
            raise UserError(f"epsilon must be a number >= 0 (an L-infinity budget in input units), got {epsilon!r}")
        self.epsilon, self.attack, self.k, self.steps, self.step_size = float(epsilon), attack, k, steps, step_size
        self.surrogate_beta, self.beta, self.clip, self.seed = surrogate_beta, beta, clip, seed
        self.return_aggregate, self.aggregate_func = return_aggregate, aggregate_func
        self.last_results: list[float] = []
        self.all_results: list[list[float]] = []
        self.last_label_kept: list[bool] = []

    @abstractmethod
    def measure(self, reference: Tensor, attacked: Tensor, k: int) -> Tensor:
        """The score of each pair of maps (B, H, W) x2 -> (B,); each metric defines its own."""

    def __call__(self, model: nn.Module, x_batch: object, y_batch: object | None, a_batch: object | None = None,
                 s_batch: object | None = None, channel_first: bool | None = None, explain_func: object = None,
                 explain_func_kwargs: dict[str, Any] | None = None,
                 model_predict_kwargs: dict[str, Any] | None = None, softmax: bool | None = False,
                 device: str | torch.device | None = None, batch_size: int = 64, custom_batch: object = None,
                 **kwargs: object) -> list[float]:
        """Scores of the explanations of ``x_batch`` under the attack, one per example (see the module)."""
        if kwargs:
            raise UserError(f"unknown argument(s) {', '.join(sorted(kwargs))} for {type(self).__name__}(); "
                            "it takes Quantus's model, x_batch, y_batch, a_batch, explain_func, explain_func_kwargs, "
                            "channel_first, device and batch_size")
        if model_predict_kwargs:
            raise UserError(f"model_predict_kwargs={model_predict_kwargs!r} is not supported: the model is called on "
                            "the images alone; wrap it to bind extra arguments")
        method = "gradient" if explain_func is None else explain_func
        if not (isinstance(method, str) or is_captum_attribution(method)):
            name = getattr(method, "__name__", type(method).__name__)
            raise UserError(f"explain_func must be a method name ({', '.join(METHODS)}) or a Captum attribution "
                            f"object built on the model, e.g. captum.attr.Saliency(model); got {name!r}. The "
                            "attack differentiates the explanation, which a function returning arrays does not allow")
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise UserError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        options = dict(explain_func_kwargs or {})
        parameter = next(iter(model.parameters()), None)
        target_device = torch.device(device) if device is not None else (
            parameter.device if parameter is not None else torch.device("cpu"))
        x = _images(x_batch, channel_first)
        x = x.to(device=target_device, dtype=parameter.dtype if parameter is not None else x.dtype)
        B, _, H, W = x.shape
        y = None if y_batch is None else _as_tensor(y_batch, "y_batch").to(target_device)
        if y is not None and (y.ndim != 1 or len(y) != B or y.is_floating_point()):
            raise UserError(f"y_batch must hold one integer class per image, ({B},), got shape {tuple(y.shape)}, "
                            f"dtype {y.dtype}")
        reference = None if a_batch is None else _reference_maps(a_batch, B, H, W).to(target_device)
        k = default_k(H, W) if self.k is None else self.k
        generator = torch.Generator(device=target_device).manual_seed(self.seed)
        scores, kept = [], []
        for start in range(0, B, batch_size):
            part = slice(start, start + batch_size)
            r = attack(model, x[part], method, self.attack, epsilon=self.epsilon, step_size=self.step_size,
                       steps=self.steps, k=k, beta=self.beta, surrogate_beta=self.surrogate_beta, clip=self.clip,
                       generator=generator, target=None if y is None else y[part], **options)
            ref = r.original_map if reference is None else reference[part].to(r.perturbed_map.dtype)
            scores.append(self.measure(ref, r.perturbed_map, k))
            kept.append(r.label_kept)
        self.last_results = [float(v) for v in torch.cat(scores).tolist()]
        self.last_label_kept = [bool(v) for v in torch.cat(kept).tolist()]
        if self.return_aggregate:
            self.last_results = [float(self.aggregate_func(self.last_results))]
        self.all_results.append(self.last_results)
        return self.last_results


class TopKIntersection(AttackedExplanationMetric):
    """Fraction of the k most salient pixels that stay in the top k after the attack, in [0, 1]
    (Ghorbani et al. 2019, Sec. 3.1; :func:`~mlmyths.saliency.topk_intersection`)."""

    default_attack = "topk"

    def measure(self, reference: Tensor, attacked: Tensor, k: int) -> Tensor:
        return topk_intersection(reference, attacked, k)


class SpearmanRankCorrelation(AttackedExplanationMetric):
    """Spearman's rank correlation between the explanation and the attacked one, in [-1, 1]
    (Ghorbani et al. 2019, Sec. 3.1; :func:`~mlmyths.saliency.rank_correlation`)."""

    default_attack = "topk"

    def measure(self, reference: Tensor, attacked: Tensor, k: int) -> Tensor:
        return rank_correlation(reference, attacked)


class MassCenterDislocation(AttackedExplanationMetric):
    """Distance in pixels between the centers of mass of the explanation and the attacked one
    (Ghorbani et al. 2019, Sec. 3.1; :func:`~mlmyths.saliency.center_of_mass_shift`); the
    mass-center attack by default."""

    default_attack = "mass_center"

    def measure(self, reference: Tensor, attacked: Tensor, k: int) -> Tensor:
        return center_of_mass_shift(reference, attacked)
