"""A small float64 conv net and a batch of images shared by the saliency tests (Captum, robustness)."""
from __future__ import annotations

import torch
from torch import nn


def conv_net(activation: type[nn.Module] = nn.ReLU, seed: int = 0) -> nn.Module:
    """Conv-conv-linear-linear on 1x8x8 inputs, 5 classes, float64, eval mode (no max-pooling, where
    Captum's DeepLift differs from the rule)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), activation(), nn.Conv2d(4, 6, 3, padding=1), activation(),
                         nn.Flatten(), nn.Linear(384, 12), activation(), nn.Linear(12, 5)).double().eval()


def image_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Six random float64 images (6, 1, 8, 8) in [0, 1] and a target class for each."""
    g = torch.Generator().manual_seed(1)
    return torch.rand(6, 1, 8, 8, generator=g, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 4, 0])
