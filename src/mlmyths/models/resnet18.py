"""The CIFAR ResNet-18 of the example-forgetting study (Toneva et al., ICLR 2019).

He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016, in the
CIFAR form used by Toneva et al. through DeVries & Taylor's Cutout code: a 3x3 stem of 64
channels with no max-pool, four stages of two BasicBlocks (64, 128, 256, 512 channels,
strides 1, 2, 2, 2), batch normalization, global average pooling and one linear layer.
Projection shortcuts (1x1 conv + BN) where the shape changes. 11,173,962 parameters for
10 classes at ``width=64``.

This is the BatchNorm ResNet-18 (ImageNet-style widths) that the paper's CIFAR numbers
come from; the CIFAR ResNet-(6n+2) family with Fixup lives in :mod:`mlmyths.models.resnet`.

>>> import torch
>>> ResNet18(num_classes=10)(torch.zeros(2, 3, 32, 32)).shape
torch.Size([2, 10])
"""
from __future__ import annotations

from torch import Tensor, nn

from mlmyths.errors import UserError


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut, ReLU after the sum."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(channels))

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, H, W) -> (B, C, H/stride, W/stride)
        out = self.bn1(self.conv1(x)).relu()
        out = self.bn2(self.conv2(out))
        return (out + self.shortcut(x)).relu()


class ResNet18(nn.Module):
    """CIFAR ResNet-18: ``(B, in_channels, H, W) -> (B, num_classes)`` for any H, W >= 8.

    Parameters
    ----------
    num_classes : output logits (10 for CIFAR-10).
    in_channels : input channels (3 for CIFAR, 1 for MNIST-like data).
    width : channels of the first stage; later stages double it (64 is the paper's network;
        smaller values give a cheaper network of the same shape).
    blocks : BasicBlocks per stage ((2, 2, 2, 2) is ResNet-18; (3, 4, 6, 3) would be ResNet-34).
    """

    def __init__(self, *, num_classes: int = 10, in_channels: int = 3, width: int = 64,
                 blocks: tuple[int, int, int, int] = (2, 2, 2, 2)):
        super().__init__()
        if width < 1 or num_classes < 1 or in_channels < 1 or len(blocks) != 4 or min(blocks) < 1:
            raise UserError(f"ResNet18: expected positive num_classes, in_channels, width and four positive block "
                            f"counts; got num_classes={num_classes}, in_channels={in_channels}, width={width}, "
                            f"blocks={blocks}")
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        stages: list[nn.Module] = []
        channels = width
        for stage, count in enumerate(blocks):
            out_channels = width * 2 ** stage
            stride = 1 if stage == 0 else 2
            layers = [BasicBlock(channels, out_channels, stride)]
            layers += [BasicBlock(out_channels, out_channels) for _ in range(count - 1)]
            stages.append(nn.Sequential(*layers))
            channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        features = self.stages(self.stem(x))  # (B, 8 * width, H/8, W/8)
        return self.fc(self.pool(features).flatten(1))  # (B, 8 * width) -> (B, num_classes)
