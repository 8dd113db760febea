"""SqueezeNet 1.0/1.1: torchvision's parameter counts and names, weights files, explainability."""
from __future__ import annotations

import pytest
import torch

from mlmyths import saliency
from mlmyths.errors import UserError
from mlmyths.models.squeezenet import IMAGENET_MEAN, IMAGENET_STD, SqueezeNet, load_weights, squeezenet


@pytest.mark.parametrize("version, params", [("1_0", 1_248_424), ("1_1", 1_235_496)])
def test_parameter_counts_are_the_published_ones(version, params):
    """torchvision documents 1,248,424 and 1,235,496 parameters for 1000 classes."""
    net = SqueezeNet(version)
    assert sum(p.numel() for p in net.parameters()) == params


def test_state_dict_names_follow_torchvision():
    keys = set(SqueezeNet("1_0").state_dict())
    for key in ("features.0.weight", "features.3.squeeze.weight", "features.3.expand1x1.bias",
                "features.12.expand3x3.weight", "classifier.1.weight", "classifier.1.bias"):
        assert key in keys
    assert "mean" not in keys and "std" not in keys  # normalization is not part of the weights
    assert "features.12.squeeze.weight" in set(SqueezeNet("1_1").state_dict())


def test_paper_input_size_gives_one_logit_per_class():
    net = SqueezeNet("1_0").eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, 227, 227))
    assert out.shape == (2, 1000) and bool((out >= 0).all())  # ReLU before the average pool


def test_inputs_are_standardized_inside():
    torch.manual_seed(0)
    plain = SqueezeNet("1_1", num_classes=5).eval()
    inside = squeezenet("1_1", num_classes=5)
    inside.load_state_dict(plain.state_dict())
    inside.eval()
    x = torch.rand(2, 3, 40, 40)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(inside(x), plain((x - mean) / std))


def test_weights_file_round_trip_and_clear_errors(tmp_path):
    torch.manual_seed(1)
    source = SqueezeNet("1_1", num_classes=7)
    path = tmp_path / "w.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    loaded = squeezenet("1_1", num_classes=7, weights=path, imagenet_input=False).eval()
    x = torch.rand(1, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), source.eval()(x))
    with pytest.raises(UserError, match="does not fit SqueezeNet.*wrong shape: classifier.1"):
        load_weights(SqueezeNet("1_1", num_classes=10), path)
    with pytest.raises(UserError, match="does not fit SqueezeNet.*missing: features.5.expand1x1.bias.*wrong shape: features.0.bias"):
        load_weights(SqueezeNet("1_0", num_classes=7), path)
    with pytest.raises(UserError, match="does not exist"):
        load_weights(source, tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read weights file"):
        load_weights(source, tmp_path / "junk.pt")


def test_saliency_methods_run_on_it():
    """Simple gradient equals autograd's; DeepLIFT sums to the logit difference (ceil-mode pools)."""
    torch.manual_seed(2)
    net = squeezenet("1_1", num_classes=4).eval()
    x = torch.rand(2, 3, 35, 35, dtype=torch.float64)
    net = net.double()
    g = saliency.attribute(net, x, target=1, raw=True)
    xr = x.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(net(xr)[:, 1].sum(), xr)
    torch.testing.assert_close(g, ref)
    base = torch.full_like(x[:1], 0.5)
    dl = saliency.attribute(net, x, target=1, method="deeplift", raw=True, baseline=base)
    with torch.no_grad():
        delta = net(x)[:, 1] - net(base)[:, 1]
    torch.testing.assert_close(dl.sum((1, 2, 3)), delta, atol=1e-8, rtol=1e-6)
