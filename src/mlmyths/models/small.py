"""Small image classifiers for CPU-scale experiments: a CNN and an MLP."""
from __future__ import annotations

from torch import Tensor, nn


class SmallCNN(nn.Module):
    """Two 3x3 conv blocks (conv-ReLU-maxpool), then a hidden linear layer.

    A LeNet-style net: conv 20 -> conv 50 -> fc 500 with ``width=1`` (Toneva et al.'s MNIST
    code uses 5x5 convs 10 -> 20 and fc 50, about ``width=0.5, hidden=100``); ``width``
    scales every layer. Works for any image size >= 4.

    >>> import torch
    >>> SmallCNN(in_channels=1, num_classes=10, image_size=8)(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28, width: float = 1.0,
                 hidden: int = 500, dropout: float = 0.0):
        super().__init__()
        c1, c2, h = max(4, int(20 * width)), max(8, int(50 * width)), max(16, int(hidden * width))
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        side = image_size // 4
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(c2 * side * side, h), nn.ReLU(), nn.Dropout(dropout), nn.Linear(h, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, num_classes)
        return self.classifier(self.features(x))


class MLP(nn.Module):
    """Fully connected ReLU network on flattened inputs.

    >>> import torch
    >>> MLP(64, 10, hidden=(32,))(torch.zeros(3, 1, 8, 8)).shape
    torch.Size([3, 10])
    """

    def __init__(self, in_features: int, num_classes: int = 10, hidden: tuple[int, ...] = (256,),
                 activation: type[nn.Module] = nn.ReLU):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), activation()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
