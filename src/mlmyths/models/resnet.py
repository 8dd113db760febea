"""CIFAR-style ResNet-(6n+2) with interchangeable normalization: BatchNorm, Fixup, SkipInit, ReZero, none.

The architecture is the *original* (post-activation) ResNet of He et al. (2016, Sec. 4.2),
as in the official Fixup CIFAR code (hongyi-zhang/Fixup, ``cifar/models/``): a 3x3 stem,
three stages of ``n`` basic blocks with ``width``, ``2 width`` and ``4 width`` channels (the
first block of stages 2 and 3 has stride 2), global average pooling and a linear classifier.
A basic block computes ``relu(shortcut(x) + branch(x))`` with ``branch = conv3x3 -> relu ->
conv3x3``. Every variant uses the option-A shortcut of He et al. (2016, Sec. 4.2): identity, or
at a stage change a stride-2 subsampling padded with zero channels -- no parameters.

``norm`` picks what happens inside the branch and how it is initialized:

``"batchnorm"``
    conv -> BN -> relu -> conv -> BN (and BN after the stem). He (fan-out) initialization; the
    last BN of each branch has its scale initialized to 0, as in the official baseline
    (``zero_init_residual``; Goyal et al. 2017).
``"fixup"``
    No normalization. Zhang, Dauphin & Ma (ICLR 2019), Sec. 3, rules 1-3: the classification
    layer and the last conv of every branch are initialized to 0; the first conv of each
    branch gets He (fan-out) initialization scaled by ``L ** (-1 / (2m - 2)) = L ** -0.5``
    (``L`` branches of ``m = 2`` layers); a scalar bias (init 0) before each conv, the
    activation and the classifier, and a scalar multiplier (init 1) per branch. The paper's
    recipe trains the scalars at lr/10: :func:`fixup_param_groups`.
``"skipinit"``
    No normalization, standard He initialization, and a scalar gain ``alpha`` (init 0) at
    the end of every branch (De & Smith, NeurIPS 2020, Sec. 4): ``relu(x + alpha * F(x))``.
``"rezero"``
    Bachlechner et al. (2020), Table 1: ``x + alpha * F(x)`` with ``alpha = 0`` and *no*
    activation after the addition (the residual stream stays linear).
``"none"``
    The same modules as Fixup (scalar biases, multiplier 1) with standard initialization:
    He for every conv, PyTorch's default for the classifier. It differs from ``"fixup"`` only
    in its initialization, so it is the "no normalization, standard init" control whose
    output scale grows geometrically with depth (Fixup paper, Sec. 2).

Deviation from the official code, on purpose: the stem conv gets He initialization in every
variant (the official Fixup net leaves it at PyTorch's default), and the BatchNorm baseline's
stage-change shortcut carries no BN (the official baseline adds one there), so that the
shortcut is parameter-free everywhere.

Blocks are kept in one flat :class:`~torch.nn.ModuleList` and run by iteration, never by
recursion, so depth 10,000 (1,667 blocks) is fine; ``checkpoint_every=k`` recomputes each run
of ``k`` blocks in the backward pass (activation checkpointing) to train very deep nets in
bounded memory.

>>> import torch
>>> net = resnet(20, norm="fixup", in_channels=1, width=8)
>>> net(torch.randn(4, 1, 8, 8)).shape
torch.Size([4, 10])
>>> with torch.no_grad():
...     float(net(torch.randn(4, 1, 8, 8)).abs().max())   # Fixup: zero classifier at init
0.0
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from mlmyths.errors import ConfigError

Norm = Literal["fixup", "batchnorm", "none", "skipinit", "rezero"]
NORMS: tuple[str, ...] = ("fixup", "batchnorm", "none", "skipinit", "rezero")
#: Variants without normalization layers: their branches carry scalar biases and a multiplier.
SCALAR_NORMS: tuple[str, ...] = ("fixup", "none", "skipinit", "rezero")


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


def he_std(conv: nn.Conv2d) -> float:
    """He et al. (2015) standard deviation in fan-out mode, ``sqrt(2 / (C_out * k * k))``,
    the initialization of the official CIFAR ResNets."""
    c_out, _, kh, kw = conv.weight.shape
    return math.sqrt(2.0 / (c_out * kh * kw))


def shortcut(x: Tensor, out_channels: int, stride: int) -> Tensor:
    """Option-A shortcut (He et al. 2016, Sec. 4.2): subsample by ``stride``, pad channels with zeros.

    ``(B, C, H, W) -> (B, out_channels, ceil(H / stride), ceil(W / stride))``; no parameters.
    """
    if stride > 1:
        x = x[:, :, ::stride, ::stride]
    extra = out_channels - x.shape[1]
    if extra > 0:
        x = F.pad(x, (0, 0, 0, 0, 0, extra))  # (B, out_channels, H', W')
    return x


def add_branch_scalars(block: nn.Module, layers: int) -> None:
    """Register Fixup's scalars on a residual block whose branch has ``layers`` convs (Sec. 3, rule 3).

    ``bias{i}a`` (before conv ``i``) and ``bias{i}b`` (after it), ``i = 1..layers``, initialized
    to 0, then the branch multiplier ``scale`` (init 1; SkipInit's and ReZero's ``alpha``, which
    their initialization sets to 0). The names are those of the official Fixup code, so that
    :func:`scalar_parameters` finds them.
    """
    for i in range(1, layers + 1):
        block.register_parameter(f"bias{i}a", nn.Parameter(torch.zeros(1)))
        block.register_parameter(f"bias{i}b", nn.Parameter(torch.zeros(1)))
    block.register_parameter("scale", nn.Parameter(torch.ones(1)))


def scalar_branch(block: nn.Module, shifted: Tensor, convs: tuple[nn.Module, ...]) -> Tensor:
    """The residual branch of a normalization-free block (Fixup paper, Sec. 3, rule 3).

    ``shifted = x + bias1a`` is the block input already shifted by the first scalar bias (the
    stage-change shortcut sees it too). With ``m = len(convs)`` and the scalars of
    :func:`add_branch_scalars` on ``block``::

        h = relu(conv_1(shifted) + bias1b)
        h = relu(conv_i(h + bias{i}a) + bias{i}b)          for i = 2 .. m - 1
        branch = scale * conv_m(h + bias{m}a) + bias{m}b
    """
    h = shifted
    for i, conv in enumerate(convs, start=1):
        if i > 1:
            h = h + getattr(block, f"bias{i}a")
        h = conv(h)
        if i < len(convs):
            h = F.relu(h + getattr(block, f"bias{i}b"))
    return h * block.scale + getattr(block, f"bias{len(convs)}b")


def residual_join(norm: str, identity: Tensor, branch: Tensor) -> Tensor:
    """``relu(identity + branch)``; ReZero keeps the stream linear: ``identity + branch``."""
    if norm == "rezero":
        return identity + branch
    return F.relu(identity + branch)


class BasicBlock(nn.Module):
    """One residual block ``relu(shortcut(x) + branch(x))`` (``x + alpha * branch(x)`` for ReZero).

    ``(B, in_channels, H, W) -> (B, out_channels, H / stride, W / stride)``.
    Scalar variants (``SCALAR_NORMS``) compute (Fixup paper Sec. 3, rule 3)::

        h = relu(conv1(x + bias1a) + bias1b)
        branch = scale * conv2(h + bias2a) + bias2b

    The identity shortcut carries ``x`` itself; at a stage change the option-A shortcut sees
    ``x + bias1a``, as in the official code.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, norm: Norm = "fixup"):
        super().__init__()
        self.norm, self.stride, self.out_channels = norm, stride, out_channels
        self.downsample = stride != 1 or in_channels != out_channels
        self.conv1 = _conv3x3(in_channels, out_channels, stride)
        self.conv2 = _conv3x3(out_channels, out_channels)
        if norm == "batchnorm":
            self.bn1 = nn.BatchNorm2d(out_channels)
            self.bn2 = nn.BatchNorm2d(out_channels)
        else:
            add_branch_scalars(self, layers=2)

    def forward(self, x: Tensor) -> Tensor:
        if self.norm == "batchnorm":
            h = F.relu(self.bn1(self.conv1(x)))
            h = self.bn2(self.conv2(h))
            identity = shortcut(x, self.out_channels, self.stride) if self.downsample else x
            return F.relu(identity + h)
        shifted = x + self.bias1a
        h = scalar_branch(self, shifted, (self.conv1, self.conv2))
        identity = shortcut(shifted, self.out_channels, self.stride) if self.downsample else x
        return residual_join(self.norm, identity, h)


class Stem(nn.Module):
    """conv3x3 -> (BN | scalar bias) -> relu: ``(B, in_channels, H, W) -> (B, width, H, W)``."""

    def __init__(self, in_channels: int, width: int, norm: Norm):
        super().__init__()
        self.normalized = norm == "batchnorm"
        self.conv = _conv3x3(in_channels, width)
        if self.normalized:
            self.bn = nn.BatchNorm2d(width)
        else:
            self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv(x)
        h = self.bn(h) if self.normalized else h + self.bias
        return F.relu(h)


class Head(nn.Module):
    """Global average pooling, (scalar bias,) linear classifier: ``(B, C, H, W) -> (B, num_classes)``."""

    def __init__(self, channels: int, num_classes: int, norm: Norm):
        super().__init__()
        self.normalized = norm == "batchnorm"
        if not self.normalized:
            self.bias = nn.Parameter(torch.zeros(1))
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        pooled = x.mean(dim=(2, 3))  # (B, C)
        if not self.normalized:
            pooled = pooled + self.bias
        return self.fc(pooled)


class ResNet(nn.Module):
    """CIFAR ResNet-(6n+2), ``forward = head(blocks(stem(x)))``. Build it with :func:`resnet`.

    Parameters
    ----------
    depth : ``6n + 2`` (8, 20, 32, 44, 56, 110, 1202, ...): 2 layers per block plus stem and classifier.
    norm : ``"fixup"`` (default), ``"batchnorm"``, ``"none"``, ``"skipinit"`` or ``"rezero"`` (module docstring).
    num_classes, in_channels : classifier outputs and input channels (3 for CIFAR, 1 for MNIST-like).
    width : channels of the first stage (16 in the paper); stages have ``width, 2 width, 4 width``.
    checkpoint_every : 0 (default) keeps every activation for the backward pass; ``k > 0`` keeps
        only every k-th block's input and recomputes the rest (training only). With BatchNorm the
        recomputation updates the running statistics a second time (outputs are unaffected).

    Attributes ``stem``, ``blocks`` (flat ``ModuleList``) and ``head`` are public so that
    analyses (:mod:`mlmyths.models.signal`) can walk the residual stream block by block.
    """

    def __init__(self, depth: int = 110, norm: Norm = "fixup", num_classes: int = 10, in_channels: int = 3,
                 width: int = 16, checkpoint_every: int = 0):
        super().__init__()
        n = blocks_per_stage(depth)
        if norm not in NORMS:
            raise ConfigError(f"norm must be one of {', '.join(NORMS)}; got {norm!r}")
        for name, value in (("num_classes", num_classes), ("in_channels", in_channels), ("width", width)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer; got {value!r}")
        if checkpoint_every < 0:
            raise ConfigError(f"checkpoint_every must be >= 0 (0: off); got {checkpoint_every!r}")
        self.depth, self.norm, self.width, self.checkpoint_every = depth, norm, width, checkpoint_every
        self.stem = Stem(in_channels, width, norm)
        blocks: list[BasicBlock] = []
        channels = width
        for stage, out_channels in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(channels, out_channels, stride, norm))
                channels = out_channels
        self.blocks = nn.ModuleList(blocks)
        self.head = Head(channels, num_classes, norm)
        self.reset_parameters()

    @property
    def num_branches(self) -> int:
        """``L`` of the Fixup rule: the number of residual branches (blocks), ``3n``."""
        return len(self.blocks)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Initialize every parameter by the rule of ``self.norm`` (module docstring)."""
        scale = self.num_branches ** -0.5  # L^(-1/(2m-2)) with m = 2 layers per branch
        nn.init.normal_(self.stem.conv.weight, 0.0, he_std(self.stem.conv))
        for block in self.blocks:
            for conv in (block.conv1, block.conv2):
                nn.init.normal_(conv.weight, 0.0, he_std(conv))
            if self.norm == "batchnorm":
                for bn in (block.bn1, block.bn2):
                    bn.reset_parameters()
                nn.init.zeros_(block.bn2.weight)  # zero_init_residual, as the official baseline
                continue
            for bias in (block.bias1a, block.bias1b, block.bias2a, block.bias2b):
                nn.init.zeros_(bias)
            if self.norm == "fixup":
                block.conv1.weight.mul_(scale)
                nn.init.zeros_(block.conv2.weight)
                nn.init.ones_(block.scale)
            elif self.norm == "none":
                nn.init.ones_(block.scale)
            else:  # skipinit, rezero
                nn.init.zeros_(block.scale)
        if self.norm == "batchnorm":
            self.stem.bn.reset_parameters()
        else:
            nn.init.zeros_(self.stem.bias)
            nn.init.zeros_(self.head.bias)
        self.head.fc.reset_parameters()  # PyTorch default (uniform +-1/sqrt(fan_in))
        if self.norm == "fixup":
            nn.init.zeros_(self.head.fc.weight)
            nn.init.zeros_(self.head.fc.bias)

    def _segment(self, x: Tensor, start: int, stop: int) -> Tensor:
        for i in range(start, stop):
            x = self.blocks[i](x)
        return x

    def forward_blocks(self, x: Tensor) -> Tensor:
        """Run the residual stream ``(B, width, H, W) -> (B, 4 width, H / 4, W / 4)``."""
        k = self.checkpoint_every
        if k and self.training and torch.is_grad_enabled():
            for start in range(0, len(self.blocks), k):
                x = checkpoint(self._segment, x, start, min(start + k, len(self.blocks)), use_reentrant=False)
            return x
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, num_classes)
        return self.head(self.forward_blocks(self.stem(x)))

    def extra_repr(self) -> str:
        return f"depth={self.depth}, norm={self.norm!r}, width={self.width}, blocks={len(self.blocks)}"


def blocks_per_stage(depth: int) -> int:
    """``n`` of a ResNet-(6n+2); a :class:`ConfigError` for any other depth."""
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 8 or (depth - 2) % 6:
        raise ConfigError(f"depth must be 6n+2 with n >= 1 (8, 20, 32, 56, 110, 1202, ...); got {depth!r}")
    return (depth - 2) // 6


def nearest_depth(depth: float) -> int:
    """The ``6n + 2`` depth (n >= 1) closest to ``depth``: ``nearest_depth(10000) == 9998``."""
    return 6 * max(1, round((depth - 2) / 6)) + 2


def resnet(depth: int = 110, norm: Norm = "fixup", num_classes: int = 10, in_channels: int = 3, width: int = 16,
           checkpoint_every: int = 0) -> ResNet:
    """A CIFAR-style ResNet-``depth`` with normalization variant ``norm`` (see :class:`ResNet`).

    >>> net = resnet(110, norm="batchnorm", width=4)
    >>> len(net.blocks), net.num_branches
    (54, 54)
    """
    return ResNet(depth, norm, num_classes=num_classes, in_channels=in_channels, width=width,
                  checkpoint_every=checkpoint_every)


def scalar_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """The Fixup scalars (biases and multipliers/gains, one element each) of ``model``."""
    for name, p in model.named_parameters():
        if p.numel() == 1 and name.rsplit(".", 1)[-1].startswith(("bias", "scale")):
            yield name, p


def fixup_param_groups(model: nn.Module, lr: float, scalar_lr_factor: float = 0.1) -> list[dict[str, Any]]:
    """Optimizer parameter groups with the scalar biases and multipliers at ``lr * scalar_lr_factor``.

    The official Fixup CIFAR training trains the scalars at lr/10 (``cifar_train.py``);
    everything else (convs, the classifier, BatchNorm parameters) stays at ``lr``. Pass the
    result to :func:`mlmyths.train.fit` as ``param_groups=``; the schedule and warm-up scale
    both groups alike. A model without scalars gives one group.

    >>> groups = fixup_param_groups(resnet(8, norm="fixup", in_channels=1), lr=0.1)
    >>> [g["lr"] for g in groups], [len(g["params"]) for g in groups]
    ([0.1, 0.010000000000000002], [9, 17])
    """
    scalars = {id(p) for _, p in scalar_parameters(model)}
    others = [p for p in model.parameters() if id(p) not in scalars]
    groups: list[dict[str, Any]] = [{"params": others, "lr": lr}]
    if scalars:
        groups.append({"params": [p for p in model.parameters() if id(p) in scalars], "lr": lr * scalar_lr_factor})
    return groups
