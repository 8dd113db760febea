"""Models: small CNN/MLP, ResNets with normalization variants (incl. Fixup, SkipInit),
convert() for torchvision-layout ResNets (normfree.py),
LightConv/DynamicConv and a Transformer baseline.

Submodules are imported lazily, so ``import mlmyths.models`` stays cheap.
"""
from __future__ import annotations

import importlib
from typing import Any

from mlmyths.models.small import MLP, SmallCNN, count_parameters

# name -> submodule that defines it (imported on first access)
_LAZY = {
    "ResNet": "resnet", "fixup_param_groups": "resnet",  # the function resnet(): mlmyths.models.resnet.resnet
    "LightweightConv1d": "lightconv", "DynamicConv1d": "lightconv", "ConvBlock": "lightconv", "ConvLM": "lightconv",
    "TransformerLM": "transformer",
    "ResNet18": "resnet18",
    "convert": "normfree",
}

__all__ = ["MLP", "SmallCNN", "count_parameters", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
