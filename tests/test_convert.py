"""mlmyths.models.convert: Fixup / SkipInit / ReZero for ResNets with torchvision's layout.

The networks come from tests/_torchvision_resnet.py, a re-implementation of torchvision's
ResNet layout with the same attribute names (torchvision itself does not import here; the
last test converts the real one where it does).
"""
from __future__ import annotations

import doctest
import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from _torchvision_resnet import build
from mlmyths.errors import UserError
from mlmyths.models import convert, normfree
from mlmyths.models.normfree import CONVERT_NORMS, NormFreeBlock, ScalarBias
from mlmyths.models.resnet import fixup_param_groups, he_std, scalar_parameters

NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
SCALAR_NAME = re.compile(r"(^|\.)(bias\d[ab]|scale)$|^bn1\.bias$|^avgpool\.1\.bias$")


def _net(name: str, norm: str | None = None, *, seed: int = 0, width: int = 8) -> nn.Module:
    torch.manual_seed(seed)
    net = build(name, width=width, num_classes=10)
    return convert(net, norm) if norm else net


def _blocks(net: nn.Module) -> list[NormFreeBlock]:
    return [m for m in net.modules() if isinstance(m, NormFreeBlock)]


def _identity_path(net: nn.Module, x: torch.Tensor, norm: str) -> torch.Tensor:
    """The residual stream after layer4 when every branch outputs zero: stem, max-pool, then
    per block the identity (or the 1x1 projection) and the block's final ReLU (none for ReZero)."""
    h = net.maxpool(F.relu(net.conv1(x)))
    for block in _blocks(net):
        if block.downsample is not None:
            h = block.downsample(h)
        h = h if norm == "rezero" else F.relu(h)
    return h


def _stream(net: nn.Module, x: torch.Tensor) -> list[float]:
    """Variance of the residual stream after the stem and after every block."""
    h = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    variances = [float(h.var())]
    for block in _blocks(net):
        h = block(h)
        variances.append(float(h.var()))
    return variances


# -- (1) names and shapes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
@pytest.mark.parametrize("norm", CONVERT_NORMS)
def test_parameters_keep_names_shapes_and_objects_except_the_removed_norms(name: str, norm: str) -> None:
    original = _net(name)
    norm_modules = [n for n, m in original.named_modules() if isinstance(m, NORM_TYPES)]
    kept = {n: p for n, p in original.named_parameters() if not any(n.startswith(f"{m}.") for m in norm_modules)}
    n_blocks = sum(1 for m in original.modules() if hasattr(m, "bn2"))
    n_projections = sum(1 for m in original.modules() if getattr(m, "downsample", None) is not None)
    layers = 3 if name == "resnet50" else 2
    assert n_projections == (4 if name == "resnet50" else 3)
    assert len(norm_modules) == 1 + n_blocks * layers + n_projections  # stem, per branch layer, per projection

    converted = convert(original, norm)
    assert converted is original
    params = dict(converted.named_parameters())
    for n, p in kept.items():  # convs (incl. downsample.0) and fc: same parameter objects, same shapes
        assert params[n] is p, n
    new = {n: p for n, p in params.items() if n not in kept}
    assert all(p.shape == (1,) and SCALAR_NAME.search(n) for n, p in new.items()), sorted(new)
    assert len(new) == n_blocks * (2 * layers + 1) + 2  # bias{i}a/b and scale per block; stem and head biases
    assert not any(isinstance(m, NORM_TYPES) for m in converted.modules())
    assert not any("running" in k or "num_batches" in k for k in converted.state_dict())
    assert "layer2.0.downsample.0.weight" in params and "layer2.0.downsample.1.weight" not in params
    assert isinstance(converted.bn1, ScalarBias)
    # The new scalars are exactly the group that fixup_param_groups trains at lr/10.
    assert {n for n, _ in scalar_parameters(converted)} == set(new)
    groups = fixup_param_groups(converted, lr=0.1)
    assert [len(g["params"]) for g in groups] == [len(kept), len(new)]


# -- (2) the function at initialization ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
@pytest.mark.parametrize("norm", CONVERT_NORMS)
def test_branches_contribute_zero_at_init_so_the_net_is_its_identity_path(name: str, norm: str) -> None:
    net = _net(name, norm)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        stream = net.layer4(net.layer3(net.layer2(net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(x))))))))
        expected = _identity_path(net, x, norm)
        assert torch.equal(stream, expected)
        logits = net(x)
        assert torch.equal(logits, net.fc(expected.mean(dim=(2, 3))))
    if norm == "fixup":
        assert torch.count_nonzero(logits) == 0  # zero classifier (rule 1)
    else:
        assert torch.count_nonzero(logits) == logits.numel()  # PyTorch's default classifier


@pytest.mark.parametrize("name, m", [("resnet18", 2), ("resnet50", 3)])
def test_fixup_scales_the_inner_layers_by_L_to_the_minus_1_over_2m_minus_2(name: str, m: int) -> None:
    """Rule 2 of Sec. 3: inner branch layers He-initialized times L^(-1/(2m-2)), the last one 0;
    the projection shortcut He-initialized, unscaled (as the official ImageNet code)."""
    torch.manual_seed(0)
    net = convert(build(name, width=16, num_classes=10), "fixup")
    blocks = _blocks(net)
    L = len(blocks)
    assert L == (8 if name == "resnet18" else 16)
    gain = L ** (-1.0 / (2 * m - 2))
    assert gain == pytest.approx(8 ** -0.5 if m == 2 else 16 ** -0.25)
    last = blocks[-1]  # layer4: the largest tensors, so sample std is close to the target
    for conv in last.convs[:-1]:
        assert float(conv.weight.detach().std()) == pytest.approx(he_std(conv) * gain, rel=0.05)
    assert torch.count_nonzero(last.convs[-1].weight) == 0
    projection = net.layer4[0].downsample[0]
    assert float(projection.weight.detach().std()) == pytest.approx(he_std(projection), rel=0.05)
    assert float(net.conv1.weight.detach().std()) == pytest.approx(he_std(net.conv1), rel=0.1)
    assert torch.count_nonzero(net.fc.weight) == 0 and torch.count_nonzero(net.fc.bias) == 0
    assert all(float(b.scale.detach()) == 1.0 for b in blocks)
    for norm in ("skipinit", "rezero"):  # alpha = 0, branches at plain He initialization
        torch.manual_seed(0)
        other = convert(build(name, width=16, num_classes=10), norm)
        other_last = _blocks(other)[-1]
        assert all(float(b.scale.detach()) == 0.0 for b in _blocks(other))
        for conv in other_last.convs:
            assert float(conv.weight.detach().std()) == pytest.approx(he_std(conv), rel=0.05)


# -- (3) signal propagation with depth -----------------------------------------------------------------------


def test_signal_stays_bounded_with_depth_unlike_the_unscaled_control() -> None:
    """Fixup paper, Sec. 2: without normalization and without its rescaling, the stream's variance
    grows geometrically with depth; converted nets keep it within a constant of the stem's at
    every depth (ResNet-18: 8 branches, ResNet-50: 16, ResNet-152: 50)."""
    torch.manual_seed(0)
    x = torch.randn(8, 3, 32, 32)
    worst = {}
    for name in ("resnet18", "resnet50", "resnet152"):
        for norm in CONVERT_NORMS:
            with torch.no_grad():
                variances = _stream(_net(name, norm), x)
            assert all(math.isfinite(v) for v in variances)
            worst[name, norm] = max(variances) / variances[0]
            assert worst[name, norm] < 20, (name, norm, variances)
    # Control: the same conversion with rules 1-2 undone (every conv at plain He init, scale 1).
    control = {}
    for name in ("resnet50", "resnet152"):
        net = _net(name, "fixup")
        with torch.no_grad():
            for conv in (m for m in net.modules() if isinstance(m, nn.Conv2d)):
                conv.weight.normal_(0.0, he_std(conv))
            control[name] = _stream(net, x)
    assert control["resnet152"][-1] > 1e6 * control["resnet152"][0]  # ~1e11 here
    assert control["resnet152"][-1] > 1e3 * control["resnet50"][-1]  # and it grows with depth


# -- (4) training -----------------------------------------------------------------------------------------


def _train(net: nn.Module, steps: int, batch: int = 16, seed: int = 0) -> list[float]:
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.randn(batch, 3, 32, 32, generator=gen), torch.randint(0, 10, (batch,), generator=gen)
    opt = torch.optim.SGD(fixup_param_groups(net, lr=0.1), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
@pytest.mark.parametrize("norm", CONVERT_NORMS)
def test_a_few_sgd_steps_reduce_the_loss_without_nan(name: str, norm: str) -> None:
    losses = _train(_net(name, norm), steps=8)
    assert all(math.isfinite(v) for v in losses), losses
    assert losses[-1] < losses[0] - 0.1, losses
    if norm == "fixup":
        assert losses[0] == pytest.approx(math.log(10), abs=1e-6)  # zero classifier: uniform prediction


def test_fixup_resnet152_trains_where_the_unscaled_control_diverges() -> None:
    losses = _train(_net("resnet152", "fixup", width=4), steps=5, batch=8)
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0] - 0.1, losses
    control = _net("resnet152", "fixup", width=4)
    with torch.no_grad():
        for conv in (m for m in control.modules() if isinstance(m, nn.Conv2d)):
            conv.weight.normal_(0.0, he_std(conv))
    assert not all(math.isfinite(v) for v in _train(control, steps=5, batch=8))


def test_scalars_follow_the_models_dtype_and_mode() -> None:
    torch.manual_seed(0)
    net = build("resnet18", width=4, num_classes=10).double().eval()
    convert(net, "skipinit")
    assert {p.dtype for p in net.parameters()} == {torch.float64}
    assert not any(m.training for m in net.modules())
    assert net(torch.randn(2, 3, 32, 32, dtype=torch.float64)).dtype == torch.float64


# -- errors -------------------------------------------------------------------------------------------------


def test_bad_inputs_raise_user_errors_naming_the_value() -> None:
    with pytest.raises(UserError, match=r"norm must be one of 'fixup', 'skipinit', 'rezero'; got 'batchnorm'"):
        convert(build("resnet18", width=4), "batchnorm")  # type: ignore[arg-type]
    with pytest.raises(UserError, match=r"Sequential lacks torchvision's ResNet attribute\(s\) conv1, bn1, avgpool, fc"):
        convert(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), "fixup")

    class Plain(nn.Module):  # the right top-level names, but no residual blocks
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)
            self.layer1 = nn.Sequential(nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4))
            self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(4, 2)

    with pytest.raises(UserError, match="found no BasicBlock or Bottleneck in Plain"):
        convert(Plain(), "rezero")
    net = convert(build("resnet18", width=4), "fixup")
    with pytest.raises(UserError, match="ResNet is already normalization-free"):
        convert(net, "skipinit")
    extra = build("resnet18", width=4)
    extra.layer4.append(nn.BatchNorm2d(32))  # a norm outside the layout: refused before anything changes
    with pytest.raises(UserError, match=r"normalization layers outside torchvision's ResNet layout \(layer4.2\)"):
        convert(extra, "fixup")
    assert isinstance(extra.bn1, nn.BatchNorm2d) and isinstance(extra.layer1[0].bn1, nn.BatchNorm2d)
    odd = build("resnet18", width=4)
    odd.layer2[0].downsample = nn.Identity()
    with pytest.raises(UserError, match="downsample of type Identity"):
        convert(odd, "fixup")


# -- (5) torchvision itself -------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", CONVERT_NORMS)
def test_torchvision_resnets_convert(norm: str) -> None:
    try:
        from torchvision.models import resnet18, resnet50
    except Exception as exc:  # not installed, or built for another torch (RuntimeError on its C++ ops)
        pytest.skip(f"torchvision from the registry does not import beside the local CPU torch ({type(exc).__name__})")
    for factory, m in ((resnet18, 2), (resnet50, 3)):
        torch.manual_seed(0)
        net = factory(num_classes=10)
        before = {n: p.shape for n, p in net.named_parameters() if ".bn" not in n and not n.startswith("bn1")
                  and "downsample.1" not in n}
        convert(net, norm)
        after = dict(net.named_parameters())
        assert all(after[n].shape == shape for n, shape in before.items())
        assert all(b.layers == m for b in _blocks(net))
        x = torch.randn(2, 3, 64, 64)
        with torch.no_grad():
            logits = net(x)
            assert torch.equal(net.layer4(net.layer3(net.layer2(net.layer1(net.maxpool(net.relu(net.bn1(
                net.conv1(x)))))))), _identity_path(net, x, norm))
        if norm == "fixup":
            assert torch.count_nonzero(logits) == 0


def test_docstring_example_runs() -> None:
    failures, attempted = doctest.testmod(normfree)
    assert attempted > 0 and failures == 0
