"""SqueezeNet 1.0 and 1.1, the ImageNet classifier whose saliency maps Ghorbani et al. attack.

Iandola, Han, Moskewicz, Ashraf, Dally & Keutzer, "SqueezeNet: AlexNet-level accuracy with 50x
fewer parameters and <0.5MB model size", arXiv 1602.07360 (2016), Table 1 (v1.0); v1.1 is the
variant of the authors' repository (3x3 stem of 64 channels, pooling earlier: 2.4x less
computation, same accuracy). Ghorbani, Abid & Zou (AAAI 2019) explain a pretrained SqueezeNet on
227x227 ImageNet images.

The module layout and parameter names follow torchvision's ``squeezenet1_0``/``squeezenet1_1``
(``features.N.squeeze``, ``features.N.expand1x1``, ``features.N.expand3x3``, ``classifier.1``),
so a state dict saved from torchvision (``torch.save(model.state_dict(), path)``) loads here
without torchvision: :func:`squeezenet` with ``weights=path``. Activations are ``nn.ReLU``
modules (not in place), as :mod:`mlmyths.saliency` needs for β-smoothing and DeepLIFT.

``mean``/``std`` standardize the input inside the network (non-persistent buffers, not part of
the state dict), so that the model takes images in [0, 1] and perturbation radii stay in pixel
units, as in the paper (ε = 8 on the 0-255 scale).

>>> import torch
>>> net = SqueezeNet("1_1", num_classes=10)
>>> net(torch.zeros(2, 3, 64, 64)).shape
torch.Size([2, 10])
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from mlmyths.errors import UserError

Version = Literal["1_0", "1_1"]
VERSIONS: tuple[str, ...] = ("1_0", "1_1")
#: Per-channel mean and std of ImageNet in [0, 1] units (torchvision's pretrained models expect them).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Fire(nn.Module):
    """A 1x1 "squeeze" convolution, then 1x1 and 3x3 "expand" convolutions side by side (Sec. 3.2)."""

    def __init__(self, in_channels: int, squeeze: int, expand1x1: int, expand3x3: int):
        super().__init__()
        self.squeeze = nn.Conv2d(in_channels, squeeze, 1)
        self.squeeze_activation = nn.ReLU()
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, 1)
        self.expand1x1_activation = nn.ReLU()
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, 3, padding=1)
        self.expand3x3_activation = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, H, W) -> (B, e1 + e3, H, W)
        s = self.squeeze_activation(self.squeeze(x))
        return torch.cat([self.expand1x1_activation(self.expand1x1(s)),
                          self.expand3x3_activation(self.expand3x3(s))], 1)


def _pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(3, stride=2, ceil_mode=True)


class SqueezeNet(nn.Module):
    """SqueezeNet ``version`` "1_0" (96-channel 7x7 stem, 1,248,424 parameters for 1000 classes) or
    "1_1" (64-channel 3x3 stem, 1,235,496 parameters): eight Fire modules, then dropout, a 1x1
    convolution to the classes, ReLU and global average pooling. Takes (B, 3, H, W) images
    (227x227 in the paper; any H, W >= 32 work), returns (B, num_classes) logits."""

    def __init__(self, version: Version = "1_0", num_classes: int = 1000, dropout: float = 0.5,
                 mean: tuple[float, float, float] | None = None, std: tuple[float, float, float] | None = None):
        super().__init__()
        if version not in VERSIONS:
            raise UserError(f"SqueezeNet version must be one of {', '.join(VERSIONS)}, got {version!r}")
        if num_classes < 1:
            raise UserError(f"num_classes must be >= 1, got {num_classes}")
        self.version = version
        if version == "1_0":
            self.features = nn.Sequential(
                nn.Conv2d(3, 96, 7, stride=2), nn.ReLU(), _pool(),
                Fire(96, 16, 64, 64), Fire(128, 16, 64, 64), Fire(128, 32, 128, 128), _pool(),
                Fire(256, 32, 128, 128), Fire(256, 48, 192, 192), Fire(384, 48, 192, 192), Fire(384, 64, 256, 256),
                _pool(), Fire(512, 64, 256, 256),
            )
        else:
            self.features = nn.Sequential(
                nn.Conv2d(3, 64, 3, stride=2), nn.ReLU(), _pool(),
                Fire(64, 16, 64, 64), Fire(128, 16, 64, 64), _pool(),
                Fire(128, 32, 128, 128), Fire(256, 32, 128, 128), _pool(),
                Fire(256, 48, 192, 192), Fire(384, 48, 192, 192), Fire(384, 64, 256, 256), Fire(512, 64, 256, 256),
            )
        final = nn.Conv2d(512, num_classes, 1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), final, nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        for m in self.modules():  # the initialization of the reference implementation
            if isinstance(m, nn.Conv2d):
                if m is final:
                    nn.init.normal_(m.weight, mean=0.0, std=0.01)
                else:
                    nn.init.kaiming_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        self.register_buffer("mean", None if mean is None else torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", None if std is None else torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:  # (B, 3, H, W) -> (B, num_classes)
        if self.mean is not None:
            x = x - self.mean
        if self.std is not None:
            x = x / self.std
        return self.classifier(self.features(x)).flatten(1)  # (B, K, 1, 1) -> (B, K)


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a state-dict file (``torch.save(model.state_dict(), path)``, or a checkpoint holding one
    under ``"state_dict"``/``"model"``) into ``model``, strictly; read with ``weights_only=True``,
    so no code in the file runs. :class:`UserError` naming the file and the mismatch otherwise."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist; give the path of a saved state dict "
                        "(torch.save(model.state_dict(), PATH))")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged or foreign file: say which, never a traceback
        raise UserError(f"cannot read weights file {path} as a PyTorch state dict ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise UserError(f"weights file {path} does not hold a state dict (a mapping of parameter names to tensors)")
    state = {k.removeprefix("module."): v for k, v in state.items()}  # saved from DataParallel
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shapes:
        parts = [f"{name}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
                 for name, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)) if keys]
        raise UserError(f"weights file {path} does not fit {type(model).__name__} ({'; '.join(parts)}); "
                        "check the model version and the number of classes")
    model.load_state_dict(state)
    return model


def squeezenet(version: Version = "1_0", num_classes: int = 1000, *, weights: str | Path | None = None,
               imagenet_input: bool = True) -> SqueezeNet:
    """A SqueezeNet, with the weights of a state-dict file when ``weights`` is given (random otherwise).

    ``imagenet_input`` standardizes inputs with ImageNet's mean and std inside the network, so it
    takes images in [0, 1] (what torchvision's pretrained weights expect after standardization).
    """
    model = SqueezeNet(version, num_classes, mean=IMAGENET_MEAN if imagenet_input else None,
                       std=IMAGENET_STD if imagenet_input else None)
    if weights:
        load_weights(model, weights)
    return model
