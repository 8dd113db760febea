"""Signal propagation at initialization: how activations and gradients scale with depth.

The analysis of Zhang, Dauphin & Ma (ICLR 2019, Sec. 2) says that without normalization a
standard-initialized residual network's output variance grows geometrically with depth
(each block adds a branch whose variance is comparable to its input's), and with it the
gradient norm of some layers -- Theorem 1 bounds the classifier's gradient from below by a
quantity that grows with the scale of its input. BatchNorm, Fixup, SkipInit and ReZero keep
both bounded. This module measures exactly that, without training: one forward pass on a
batch (in training mode, as the first optimizer step sees it), one backward pass of the
cross-entropy loss, and the statistics along the way. Blocks are walked by iteration (no
hooks, no recursion), so a 10,000-layer net is fine.

Overflow is a result, not an error: for ``norm="none"`` the residual stream reaches ``inf``
in float32 at a few thousand layers; the statistics then hold ``inf``/``nan`` and
:attr:`SignalStats.overflow_block` says where it happened.

>>> import torch
>>> from mlmyths.models.resnet import resnet
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<torch._C.Generator object at ...>
>>> x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
>>> fixup = signal_propagation(resnet(56, norm="fixup", in_channels=1, width=4), x, y)
>>> none = signal_propagation(resnet(56, norm="none", in_channels=1, width=4), x, y)
>>> bool(none.output_var > 1e4 * fixup.output_var)
True
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlmyths.models.resnet import ResNet, resnet


@dataclass(frozen=True)
class SignalStats:
    """What one forward/backward pass at initialization shows.

    ``K = len(model.blocks)`` blocks; ``P = 2K + 2`` weight layers (stem conv, conv1 and conv2
    of each block, classifier), in forward order.
    """

    depth: int  #: layers of the network (6n + 2)
    norm: str  #: the normalization variant
    stream_var: np.ndarray  #: (K + 1,) variance of the residual stream after the stem and after each block
    output_var: float  #: variance of the last block's output, the features the classifier pools
    logit_var: float  #: variance of the logits
    loss: float  #: cross-entropy at initialization
    layer_names: tuple[str, ...]  #: (P,) names of the weight layers
    layer_grad_norms: np.ndarray  #: (P,) Frobenius norm of each weight layer's gradient
    grad_norm: float  #: norm of the gradient of all parameters together
    classifier_grad_norm: float  #: norm of the classifier weight's gradient (Theorem 1's quantity)

    @property
    def max_layer_grad_norm(self) -> float:
        """The largest per-layer gradient norm (``nan`` if any is ``nan``)."""
        return float(np.max(self.layer_grad_norms))

    @property
    def overflow_block(self) -> int | None:
        """Index into :attr:`stream_var` (0: stem) where the stream first became non-finite, or None."""
        bad = np.flatnonzero(~np.isfinite(self.stream_var))
        return int(bad[0]) if len(bad) else None

    def to_dict(self) -> dict[str, object]:
        return {
            "depth": self.depth, "norm": self.norm, "stream_var": self.stream_var, "output_var": self.output_var,
            "logit_var": self.logit_var, "loss": self.loss, "layer_names": list(self.layer_names),
            "layer_grad_norms": self.layer_grad_norms, "grad_norm": self.grad_norm,
            "classifier_grad_norm": self.classifier_grad_norm, "overflow_block": self.overflow_block,
        }


def _var(x: Tensor) -> Tensor:
    """Variance over all elements, in float64 (so that float32 values near overflow still square)."""
    return x.detach().double().var()


def weight_layers(model: ResNet) -> list[tuple[str, nn.Parameter]]:
    """The conv and linear weights of ``model`` in forward order: stem, (conv1, conv2) per block, classifier."""
    layers = [("stem.conv", model.stem.conv.weight)]
    for i, block in enumerate(model.blocks):
        layers += [(f"blocks.{i}.conv1", block.conv1.weight), (f"blocks.{i}.conv2", block.conv2.weight)]
    layers.append(("head.fc", model.head.fc.weight))
    return layers


def signal_propagation(model: ResNet, x: Tensor, y: Tensor) -> SignalStats:
    """One forward and one backward pass of ``model`` on ``(x, y)``: variances and gradient norms.

    ``x``: images ``(B, C, H, W)``; ``y``: labels ``(B,)``. The model runs in training mode
    (BatchNorm uses batch statistics, as in the first step of training); its gradients are
    overwritten. Variances are over all elements of a tensor (batch, channels, positions).
    """
    model.train()
    model.zero_grad(set_to_none=True)
    h = model.stem(x)
    variances = [_var(h)]
    for block in model.blocks:  # iterate, do not recurse: 10,000 layers are 1,667 blocks
        h = block(h)
        variances.append(_var(h))
    logits = model.head(h)
    loss = F.cross_entropy(logits.float(), y)
    loss.backward()
    layers = weight_layers(model)
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for _, p in layers]
    layer_norms = torch.stack([g.double().norm() for g in grads])  # (P,)
    all_grads = [p.grad.double().norm() for p in model.parameters() if p.grad is not None]
    total = torch.stack(all_grads).norm() if all_grads else torch.zeros((), dtype=torch.float64)
    stream_var = torch.stack(variances).numpy()  # (K + 1,)
    stats = SignalStats(
        depth=model.depth, norm=model.norm, stream_var=stream_var, output_var=float(stream_var[-1]),
        logit_var=float(_var(logits)), loss=float(loss.detach()), layer_names=tuple(n for n, _ in layers),
        layer_grad_norms=layer_norms.numpy(), grad_norm=float(total), classifier_grad_norm=float(layer_norms[-1]),
    )
    model.zero_grad(set_to_none=True)
    return stats


def measure(norm: str, depth: int, x: Tensor, y: Tensor, *, width: int = 4, num_classes: int = 10,
            seed: int = 0) -> SignalStats:
    """Build ``resnet(depth, norm, width=width)`` under ``torch.manual_seed(seed)`` and measure it.

    The network is built on the CPU (so that a seed gives the same weights on any device), moved
    to ``x``'s device, and freed when this returns: a sweep over depths holds one network at a time.
    """
    torch.manual_seed(seed)
    model = resnet(depth, norm=norm, num_classes=num_classes, in_channels=x.shape[1], width=width)  # type: ignore[arg-type]
    return signal_propagation(model.to(x.device), x, y)


def growth_per_block(stats: SignalStats) -> float:
    """Geometric mean factor by which the stream variance grows per block over the finite part
    (``exp`` of the least-squares slope of ``log stream_var`` against block index); 1 = flat."""
    v = stats.stream_var
    finite = np.flatnonzero(np.isfinite(v) & (v > 0))
    if len(finite) < 2:
        return float("nan")
    slope = np.polyfit(finite.astype(float), np.log(v[finite]), 1)[0]
    return float(math.exp(slope))
