"""Attack-based robustness metrics with Quantus's call convention (mlmyths.saliency.robustness)."""
from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch
from torch import nn

from _saliency_nets import conv_net, image_batch
from mlmyths.errors import UserError
from mlmyths.saliency import (
    MassCenterDislocation, SpearmanRankCorrelation, TopKIntersection, attack, center_of_mass_shift, rank_correlation,
    robustness, topk_intersection,
)

@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    return image_batch()


def test_docstring_examples_run():
    failures, attempted = doctest.testmod(robustness, optionflags=doctest.ELLIPSIS)
    assert attempted > 0 and failures == 0


def test_an_explanation_compared_with_itself_is_perfectly_robust(batch):
    """epsilon = 0: the attack cannot move, so intersection 1, rank correlation 1, dislocation 0."""
    x, y = batch
    net = conv_net()
    for attack_name in ("topk", "random"):
        common = dict(epsilon=0.0, attack=attack_name, k=4, steps=2, step_size=0.01)
        assert TopKIntersection(**common)(net, x, y) == [1.0] * 6
        assert SpearmanRankCorrelation(**common)(net, x, y) == pytest.approx([1.0] * 6, abs=1e-12)
        assert MassCenterDislocation(**common)(net, x, y) == [0.0] * 6


def test_known_maps_give_hand_computed_scores():
    """A linear model's gradient never moves: each score compares a_batch with |w| = [[4, 3], [2, 1]]."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, bias=False)).double()
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[4.0, -3.0, 2.0, -1.0], [1.0, 1.0, 1.0, 1.0]]))
    x = torch.full((3, 1, 2, 2), 0.5, dtype=torch.float64)
    a_batch = np.array([[[4.0, 3.0], [2.0, 1.0]],    # the model's own map
                        [[1.0, 2.0], [3.0, 4.0]],    # its mirror image
                        [[4.0, 1.0], [3.0, 2.0]]])   # half of the top 2 kept
    kw = dict(epsilon=0.2, k=2, steps=3, surrogate_beta=None)
    y = np.zeros(3, dtype=np.int64)  # explain class 0
    assert TopKIntersection(**kw)(net, x, y, a_batch=a_batch) == [1.0, 0.0, 0.5]
    # Spearman: ranks [4, 1, 3, 2] vs [4, 3, 2, 1] give 1 - 6 * 6 / (4 * 15) = 0.4
    assert SpearmanRankCorrelation(**kw)(net, x, y, a_batch=a_batch) == pytest.approx([1.0, -1.0, 0.4])
    # centers (row, column): the model's map (0.3, 0.4); the mirror (0.7, 0.6); the third (0.5, 0.3)
    assert MassCenterDislocation(**kw)(net, x, y, a_batch=a_batch) == pytest.approx(
        [0.0, math.sqrt(0.4 ** 2 + 0.2 ** 2), math.sqrt(0.2 ** 2 + 0.1 ** 2)])
    # the same maps as (B, C, H, W), signed: compared as |a| summed over channels
    signed = np.stack([a_batch, -a_batch], axis=1) / 2  # (3, 2, 2, 2)
    assert TopKIntersection(**kw)(net, x, y, a_batch=signed) == [1.0, 0.0, 0.5]


@pytest.mark.parametrize("metric_class, measure, attack_name", [
    (TopKIntersection, lambda a, b: topk_intersection(a, b, 4), "topk"),
    (SpearmanRankCorrelation, rank_correlation, "topk"),
    (MassCenterDislocation, center_of_mass_shift, "mass_center"),
    (TopKIntersection, lambda a, b: topk_intersection(a, b, 4), "random"),
])
def test_scores_are_the_metrics_of_the_attack(batch, metric_class, measure, attack_name):
    x, y = batch
    net = conv_net()
    metric = metric_class(epsilon=0.1, attack=attack_name if attack_name != metric_class.default_attack else None,
                          k=4, steps=4, step_size=0.02, seed=5)
    scores = metric(model=net, x_batch=x, y_batch=y)
    r = attack(net, x, "gradient", attack_name, epsilon=0.1, k=4, steps=4, step_size=0.02, target=y,
               generator=torch.Generator().manual_seed(5))
    expected = measure(r.original_map, r.perturbed_map)
    assert scores == pytest.approx(expected.tolist(), abs=1e-12)
    assert metric.last_label_kept == r.label_kept.tolist() and metric.all_results == [scores]
    assert scores != pytest.approx(measure(r.original_map, r.original_map).tolist())  # the attack moved the maps
    aggregate = metric_class(epsilon=0.1, attack=metric.attack, k=4, steps=4, step_size=0.02, seed=5,
                             return_aggregate=True, aggregate_func=np.median)(net, x, y)
    assert aggregate == [pytest.approx(float(np.median(scores)))]


def test_batches_layouts_and_captum_objects_give_the_same_scores(batch):
    x, y = batch
    net = conv_net()
    metric = TopKIntersection(epsilon=0.1, k=4, steps=4, step_size=0.02)
    scores = metric(net, x, y)
    assert metric(net, x.numpy(), y.numpy(), batch_size=4) == scores  # NumPy, two batches (no randomness)
    assert metric(net, x.permute(0, 2, 3, 1).numpy(), y.numpy()) == scores  # channel last, inferred
    assert metric(net, x.permute(0, 2, 3, 1), y, channel_first=False) == scores
    captum_attr = pytest.importorskip("captum.attr", reason="captum (a dev dependency) is the peer")
    assert metric(net, x, y, explain_func=captum_attr.Saliency(net)) == pytest.approx(scores, abs=1e-12)
    ig = metric(net, x, y, explain_func="integrated_gradients", explain_func_kwargs={"n_steps": 4})
    ig_captum = metric(net, x, y, explain_func=captum_attr.IntegratedGradients(net),
                       explain_func_kwargs={"n_steps": 4})
    assert ig_captum == pytest.approx(ig, abs=1e-12)
    with pytest.raises(UserError, match="NoiseTunnel\\(Saliency\\) cannot be attacked"):
        metric(net, x, y, explain_func=captum_attr.NoiseTunnel(captum_attr.Saliency(net)))


def test_quantus_style_misuse_is_refused(batch):
    x, y = batch
    net = conv_net()
    metric = TopKIntersection(epsilon=0.1, k=4, steps=1)

    def explain(model, inputs, targets, **kwargs):  # a Quantus explain_func returns arrays
        return np.zeros(inputs.shape)

    with pytest.raises(UserError, match="explain_func must be a method name .* got 'explain'"):
        metric(net, x, y, explain_func=explain)
    with pytest.raises(UserError, match="model_predict_kwargs"):
        metric(net, x, y, model_predict_kwargs={"train": False})
    with pytest.raises(UserError, match="unknown argument\\(s\\) nr_samples"):
        metric(net, x, y, nr_samples=5)
    with pytest.raises(UserError, match="y_batch must hold one integer class per image"):
        metric(net, x, y.double())
    with pytest.raises(UserError, match="a_batch must hold one explanation per image"):
        metric(net, x, y, a_batch=np.zeros((6, 7, 8)))
    with pytest.raises(UserError, match="x_batch must be float images"):
        metric(net, x[0], y)
    with pytest.raises(UserError, match="attack must be one of topk, mass_center, random"):
        TopKIntersection(epsilon=0.1, attack="targeted")
    with pytest.raises(UserError, match="epsilon must be a number >= 0"):
        MassCenterDislocation(epsilon=-1.0)
    assert metric(net, x, y, softmax=True, s_batch=np.ones((6, 1, 8, 8)), custom_batch=[0] * 6) == metric(net, x, y)
