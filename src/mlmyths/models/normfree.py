"""Turn a BatchNorm ResNet with torchvision's layout into Fixup, SkipInit or ReZero.

:func:`convert` takes a ResNet built like ``torchvision.models.resnet`` (or timm's and most
copies of it) -- a stem ``conv1 -> bn1 -> relu -> maxpool``, stages ``layer1..layer4`` of
``BasicBlock`` (``conv1/bn1/relu/conv2/bn2/downsample``) or ``Bottleneck``
(``conv1/bn1/conv2/bn2/conv3/bn3/downsample``) blocks, ``avgpool`` and ``fc`` -- removes every
normalization layer and initializes the network by the rule of the chosen method. Blocks are
found by these attribute names, not by class, so re-implementations of the layout convert too.

``norm="fixup"``
    Zhang, Dauphin & Ma, "Fixup Initialization", ICLR 2019, Sec. 3, with the official ImageNet
    code's placement (hongyi-zhang/Fixup, ``imagenet/models/fixup_resnet_imagenet.py``): a
    scalar bias (init 0) before each conv, before each activation and before the classifier,
    a scalar multiplier (init 1) per branch; the last conv of every branch and the classifier
    (weight and bias) initialized to 0; the other convs of a branch get He (fan-out)
    initialization scaled by ``L ** (-1 / (2m - 2))`` -- ``L`` residual branches of ``m``
    layers, so ``L ** -0.5`` for BasicBlocks (m = 2) and ``L ** -0.25`` for Bottlenecks (m = 3).
    The projection shortcut keeps its 1x1 conv (He, unscaled) and sees the branch input
    ``x + bias1a``, as in the official code. Train the scalars at lr/10:
    :func:`~mlmyths.models.resnet.fixup_param_groups`.
``norm="skipinit"``
    De & Smith, "Batch Normalization Biases Residual Blocks Towards the Identity Function in
    Deep Networks", NeurIPS 2020, Sec. 4: a scalar gain ``alpha`` (init 0) at the end of every
    branch, ``relu(x + alpha * F(x))``, all convs He-initialized. De & Smith also give their
    normalization-free networks biases; what we implement is Fixup's scalar biases (init 0) at
    Fixup's places, as :mod:`mlmyths.models.resnet`'s ``"skipinit"`` does -- not per-channel
    conv biases. At initialization both compute the same function (every bias is 0).
``norm="rezero"``
    Bachlechner et al., "ReZero is All You Need", 2020, Table 1: ``x + alpha * F(x)`` with
    ``alpha = 0`` and no activation after the addition; the same scalar biases as above.

In every variant the stem's ``bn1`` becomes a :class:`ScalarBias` (Fixup's ``bias1``, before the
stem's ReLU), ``avgpool`` is followed by another (``bias2``, before the classifier), and every
conv is re-initialized: :func:`convert` returns a network ready to train from scratch, not a
pretrained one without its BatchNorm. The stem conv gets He (fan-out) initialization, as
torchvision gives it (the official Fixup code leaves PyTorch's default there). SkipInit and
ReZero keep PyTorch's default initialization of the classifier. At initialization every
branch outputs exactly 0 in all three variants, so the network computes its identity path.

>>> import torch
>>> from torch import nn
>>> class Block(nn.Module):             # torchvision's BasicBlock, names and all
...     def __init__(self, c):
...         super().__init__()
...         self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
...         self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
...         self.relu, self.downsample = nn.ReLU(), None
>>> class Net(nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.conv1, self.bn1 = nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
...         self.layer1 = nn.Sequential(Block(4), Block(4))
...         self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(4, 10)
...     def forward(self, x):
...         x = self.layer1(self.bn1(self.conv1(x)).relu())
...         return self.fc(self.avgpool(x).flatten(1))
>>> net = convert(Net(), norm="fixup")
>>> [n for n, _ in net.named_modules() if "bn" in n]
['bn1']
>>> float(net(torch.randn(2, 3, 8, 8)).detach().abs().max())      # zero classifier at init
0.0
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Literal

import torch
from torch import Tensor, nn

from mlmyths.errors import UserError
from mlmyths.models.resnet import add_branch_scalars, he_std, residual_join, scalar_branch

__all__ = ["convert", "NormFreeBlock", "ScalarBias", "CONVERT_NORMS"]

ConvertNorm = Literal["fixup", "skipinit", "rezero"]
CONVERT_NORMS: tuple[str, ...] = ("fixup", "skipinit", "rezero")

#: Layers that :func:`convert` removes: BatchNorm (incl. SyncBatchNorm), InstanceNorm, GroupNorm, LayerNorm.
_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
_MODEL_ATTRIBUTES = ("conv1", "bn1", "avgpool", "fc")


class ScalarBias(nn.Module):
    """``x + bias`` with one learnable scalar, initialized to 0 (Fixup paper, Sec. 3, rule 3).

    Shape-preserving; takes the place of the stem's BatchNorm and follows the global pooling.
    """

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.bias


class NormFreeBlock(nn.Module):
    """A torchvision BasicBlock (``m = 2`` convs) or Bottleneck (``m = 3``) without normalization.

    Keeps the block's conv modules under their names (``conv1``, ``conv2``, ``conv3``) and its
    projection shortcut ``downsample`` without its normalization layer, and adds the scalars of
    :func:`~mlmyths.models.resnet.add_branch_scalars`. Computes, with ``shifted = x + bias1a``,
    ``relu(identity + branch(shifted))`` (ReZero: no ReLU) where ``identity`` is ``x``, or
    ``downsample(shifted)`` at a shape change; the branch is
    :func:`~mlmyths.models.resnet.scalar_branch`. ``(B, C_in, H, W) -> (B, C_out, H / s, W / s)``.
    """

    def __init__(self, convs: tuple[nn.Conv2d, ...], downsample: nn.Module | None, norm: ConvertNorm):
        super().__init__()
        self.norm, self.layers = norm, len(convs)
        add_branch_scalars(self, layers=len(convs))
        for i, conv in enumerate(convs, start=1):
            self.add_module(f"conv{i}", conv)
        self.downsample = downsample

    @property
    def convs(self) -> tuple[nn.Module, ...]:
        """The branch's convs in forward order."""
        return tuple(getattr(self, f"conv{i}") for i in range(1, self.layers + 1))

    def forward(self, x: Tensor) -> Tensor:
        shifted = x + self.bias1a
        branch = scalar_branch(self, shifted, self.convs)
        identity = x if self.downsample is None else self.downsample(shifted)
        return residual_join(self.norm, identity, branch)

    def extra_repr(self) -> str:
        return f"norm={self.norm!r}, layers={self.layers}"


def _is_norm(module: nn.Module | None) -> bool:
    return isinstance(module, _NORM_TYPES)


def _branch_convs(module: nn.Module) -> tuple[nn.Conv2d, ...] | None:
    """The convs of a torchvision-layout block (conv1/bn1/conv2/bn2[/conv3/bn3]), else None."""
    if hasattr(module, "conv3") != hasattr(module, "bn3"):
        return None  # not the layout: never drop a conv3 from the forward pass
    m = 3 if hasattr(module, "conv3") else 2
    convs = tuple(getattr(module, f"conv{i}", None) for i in range(1, m + 1))
    norms = tuple(getattr(module, f"bn{i}", None) for i in range(1, m + 1))
    if all(isinstance(c, nn.Conv2d) for c in convs) and all(_is_norm(n) for n in norms):
        return convs  # type: ignore[return-value]
    return None


def _without_norms(downsample: nn.Module | None) -> nn.Module | None:
    """The projection shortcut without its normalization; child names (``downsample.0``) kept."""
    if downsample is None:
        return None
    if isinstance(downsample, nn.Sequential):
        return nn.Sequential(OrderedDict((name, m) for name, m in downsample.named_children() if not _is_norm(m)))
    if isinstance(downsample, nn.Conv2d):
        return downsample
    raise UserError(f"convert: cannot remove the normalization from a downsample of type {type(downsample).__name__}; "
                    "expected an nn.Sequential (torchvision: conv1x1 then BatchNorm2d) or an nn.Conv2d")


def _check_model(model: nn.Module, norm: str) -> None:
    if norm not in CONVERT_NORMS:
        raise UserError(f"convert: norm must be one of {', '.join(map(repr, CONVERT_NORMS))}; got {norm!r}")
    if not isinstance(model, nn.Module):
        raise UserError(f"convert: model must be a torch.nn.Module, got {type(model).__name__}")
    if any(isinstance(m, NormFreeBlock) for m in model.modules()):
        raise UserError(f"convert: {type(model).__name__} is already normalization-free (it holds NormFreeBlocks); "
                        "convert a BatchNorm ResNet once")
    missing = [a for a in _MODEL_ATTRIBUTES if not hasattr(model, a)]
    if missing:
        raise UserError(f"convert: {type(model).__name__} lacks torchvision's ResNet attribute(s) {', '.join(missing)} "
                        "(expected conv1, bn1, relu, maxpool, layer1..layer4, avgpool, fc)")
    if not isinstance(model.conv1, nn.Conv2d) or not _is_norm(model.bn1) or not isinstance(model.fc, nn.Linear):
        raise UserError(f"convert: {type(model).__name__} should have conv1 an nn.Conv2d, bn1 a normalization layer and "
                        f"fc an nn.Linear; got {type(model.conv1).__name__}, {type(model.bn1).__name__}, "
                        f"{type(model.fc).__name__}")


@torch.no_grad()
def convert(model: nn.Module, norm: ConvertNorm = "fixup") -> nn.Module:
    """Make a torchvision-layout ResNet normalization-free with ``norm``'s initialization, in place.

    Parameters
    ----------
    model : a ResNet with torchvision's attribute names (module docstring). Every module with
        ``conv1/bn1/conv2/bn2`` (BasicBlock) or also ``conv3/bn3`` (Bottleneck) is replaced by a
        :class:`NormFreeBlock` holding the same conv modules; the stem's ``bn1`` by a
        :class:`ScalarBias`; ``avgpool`` by ``Sequential(avgpool, ScalarBias())``.
    norm : ``"fixup"`` (default), ``"skipinit"`` or ``"rezero"`` (module docstring).

    Returns
    -------
    The same ``model`` object, converted and re-initialized: conv and classifier parameters keep
    their names and shapes (``layer1.0.conv1.weight``, ``layer2.0.downsample.0.weight``,
    ``fc.weight``, ...), every normalization layer's parameters are gone, and the new scalars
    live on the device and in the dtype of the model's weights. Build the optimizer afterwards;
    :func:`~mlmyths.models.resnet.fixup_param_groups` puts the scalars at lr/10.

    Raises
    ------
    UserError : an unknown ``norm``, a model without torchvision's ResNet attributes, or one in
        which no BasicBlock or Bottleneck is found.
    """
    _check_model(model, norm)
    found: list[tuple[nn.Module, str, nn.Module, tuple[nn.Conv2d, ...]]] = []  # (parent, name, block, convs)
    for parent in model.modules():
        for name, child in parent.named_children():
            convs = _branch_convs(child)
            if convs is not None:
                found.append((parent, name, child, convs))
    if not found:
        raise UserError(f"convert: found no BasicBlock or Bottleneck in {type(model).__name__} (modules with "
                        "conv1/bn1/conv2/bn2, and conv3/bn3 for a Bottleneck, as in torchvision.models.resnet)")
    _check_every_norm_is_covered(model, [child for _, _, child, _ in found])
    weight = model.conv1.weight
    blocks: list[NormFreeBlock] = []
    for parent, name, child, convs in found:
        block = NormFreeBlock(convs, _without_norms(getattr(child, "downsample", None)), norm)
        block.to(device=weight.device, dtype=weight.dtype).train(child.training)
        setattr(parent, name, block)
        blocks.append(block)
    model.bn1 = ScalarBias().to(device=weight.device, dtype=weight.dtype).train(model.training)
    model.avgpool = nn.Sequential(model.avgpool, ScalarBias().to(device=weight.device, dtype=weight.dtype))
    model.avgpool.train(model.training)
    _initialize(model, blocks, norm)
    return model


def _check_every_norm_is_covered(model: nn.Module, blocks: list[nn.Module]) -> None:
    """Refuse, before changing anything, a model with normalization layers that the conversion
    would leave behind (outside the stem, the blocks' branches and their projection shortcuts)."""
    removed = {id(model.bn1)}
    for block in blocks:
        removed |= {id(getattr(block, f"bn{i}")) for i in (1, 2, 3) if hasattr(block, f"bn{i}")}
        downsample = getattr(block, "downsample", None)
        removed |= {id(m) for m in (downsample.modules() if downsample is not None else ()) if _is_norm(m)}
    left = [name for name, m in model.named_modules() if _is_norm(m) and id(m) not in removed]
    if left:
        shown = ", ".join(left[:5]) + (f" and {len(left) - 5} more" if len(left) > 5 else "")
        raise UserError(f"convert: {type(model).__name__} has normalization layers outside torchvision's ResNet "
                        f"layout ({shown}); convert handles the stem's bn1 and the bn1..bn3/downsample layers of "
                        "BasicBlocks and Bottlenecks only")


def _he_(conv: nn.Conv2d, gain: float = 1.0) -> None:
    """He (fan-out) normal initialization times ``gain``; a conv bias, if any, to 0."""
    nn.init.normal_(conv.weight, 0.0, he_std(conv) * gain)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def _zero_(layer: nn.Conv2d | nn.Linear) -> None:
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def _initialize(model: nn.Module, blocks: list[NormFreeBlock], norm: str) -> None:
    """The initialization rule of ``norm`` (module docstring) over the converted ``model``."""
    _he_(model.conv1)
    num_branches = len(blocks)  # L
    for block in blocks:
        *inner, last = block.convs
        gain = num_branches ** (-1.0 / (2 * block.layers - 2)) if norm == "fixup" else 1.0  # L^(-1/(2m-2))
        for conv in inner:
            _he_(conv, gain)
        if norm == "fixup":
            _zero_(last)
        else:
            _he_(last)
        if block.downsample is not None:
            for conv in block.downsample.modules():
                if isinstance(conv, nn.Conv2d):
                    _he_(conv)
        for name, p in block.named_parameters(recurse=False):
            if name.startswith("bias"):
                nn.init.zeros_(p)
        nn.init.constant_(block.scale, 1.0 if norm == "fixup" else 0.0)  # SkipInit/ReZero: alpha = 0
    for bias in (model.bn1, model.avgpool[1]):
        nn.init.zeros_(bias.bias)
    if norm == "fixup":
        _zero_(model.fc)
    else:
        model.fc.reset_parameters()  # PyTorch's default, as in mlmyths.models.resnet
