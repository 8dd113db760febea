"""ResNet variants (mlmyths.models.resnet) and signal propagation at init (mlmyths.models.signal)."""
from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mlmyths.errors import ConfigError
from mlmyths.models import resnet as resnet_module
from mlmyths.models import signal as signal_module
from mlmyths.models.resnet import (NORMS, SCALAR_NORMS, ResNet, fixup_param_groups, he_std, nearest_depth, resnet,
                                   scalar_parameters, shortcut)
from mlmyths.models.signal import growth_per_block, measure, signal_propagation, weight_layers


def _inputs(batch: int = 8, channels: int = 1, side: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, side, side, generator=g), torch.randint(0, 10, (batch,), generator=g)


def test_docstring_examples_run() -> None:
    for module in (resnet_module, signal_module):
        failures, attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert attempted > 0 and failures == 0, module.__name__


# -- architecture --------------------------------------------------------------------------------


@pytest.mark.parametrize("depth,blocks", [(8, 3), (20, 9), (56, 27), (110, 54)])
def test_depth_counts_layers(depth: int, blocks: int) -> None:
    net = resnet(depth, norm="fixup", width=4)
    assert len(net.blocks) == net.num_branches == blocks
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert len(convs) + len(linears) == depth  # 2 per block + stem + classifier


@pytest.mark.parametrize("norm", NORMS)
def test_shapes_and_stage_widths(norm: str) -> None:
    net = resnet(20, norm=norm, num_classes=7, in_channels=3, width=4)
    x = torch.randn(2, 3, 16, 16)
    h = net.forward_blocks(net.stem(x))
    assert h.shape == (2, 16, 4, 4)  # width 4 -> 4 * width channels, two stride-2 stages
    assert net(x).shape == (2, 7)


def test_shortcut_is_parameter_free_option_a() -> None:
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    out = shortcut(x, 6, 2)
    assert out.shape == (2, 6, 2, 2)
    assert torch.equal(out[:, :3], x[:, :, ::2, ::2])
    assert torch.count_nonzero(out[:, 3:]) == 0
    assert torch.equal(shortcut(x, 3, 1), x)
    for norm in NORMS:  # no parameters live in any shortcut: only convs, BN, scalars and the classifier
        net = resnet(20, norm=norm, width=4)
        named = [n for n, _ in net.named_parameters()]
        assert not any("shortcut" in n or "downsample" in n for n in named)


def test_bad_arguments_raise_config_errors_naming_the_value() -> None:
    with pytest.raises(ConfigError, match=r"depth must be 6n\+2.*got 9"):
        resnet(9)
    with pytest.raises(ConfigError, match="depth must be 6n"):
        resnet(2)
    with pytest.raises(ConfigError, match=r"norm must be one of .*got 'layernorm'"):
        resnet(8, norm="layernorm")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="width must be a positive integer; got 0"):
        resnet(8, width=0)
    with pytest.raises(ConfigError, match="checkpoint_every must be >= 0"):
        resnet(8, checkpoint_every=-1)


def test_nearest_depth() -> None:
    assert nearest_depth(10000) == 9998
    assert nearest_depth(100) == 98
    assert nearest_depth(1) == 8
    assert all((nearest_depth(d) - 2) % 6 == 0 for d in range(1, 300, 7))


# -- initialization rules --------------------------------------------------------------------------


def test_fixup_initialization_rules() -> None:
    torch.manual_seed(0)
    net = resnet(56, norm="fixup", in_channels=3, width=16)  # L = 27 branches
    L = net.num_branches
    assert L == 27
    # rule 2: classification layer and last conv of every branch are zero
    assert torch.count_nonzero(net.head.fc.weight) == 0 and torch.count_nonzero(net.head.fc.bias) == 0
    for block in net.blocks:
        assert torch.count_nonzero(block.conv2.weight) == 0
    # rule 2: the other conv of each branch: He (fan-out) std times L^(-1/(2m-2)) = L^(-1/2) for m = 2
    by_shape: dict[tuple[int, ...], list[torch.Tensor]] = {}
    for block in net.blocks:
        by_shape.setdefault(tuple(block.conv1.weight.shape), []).append(block.conv1.weight.detach().flatten())
    for shape, weights in by_shape.items():
        w = torch.cat(weights)
        expected = math.sqrt(2.0 / (shape[0] * shape[2] * shape[3])) * L ** -0.5
        assert abs(float(w.std()) / expected - 1) < 0.03, shape  # >= 4,600 samples per shape
        assert abs(float(w.mean())) < 0.05 * expected
    # rule 3: scalar biases (0) before each conv, activation and the classifier; one multiplier (1) per branch
    for block in net.blocks:
        for name in ("bias1a", "bias1b", "bias2a", "bias2b"):
            assert getattr(block, name).shape == (1,) and float(getattr(block, name).detach()) == 0.0
        assert block.scale.shape == (1,) and float(block.scale.detach()) == 1.0
    assert float(net.stem.bias.detach()) == 0.0 and float(net.head.bias.detach()) == 0.0
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())


def test_standard_init_variants() -> None:
    torch.manual_seed(0)
    nets = {norm: resnet(20, norm=norm, width=16) for norm in ("none", "skipinit", "rezero", "batchnorm")}
    for norm, net in nets.items():
        conv2 = torch.cat([b.conv2.weight.detach().flatten() for b in net.blocks[:3]])  # stage 1: (16, 16, 3, 3)
        assert abs(float(conv2.std()) / he_std(net.blocks[0].conv2) - 1) < 0.05, norm
        assert torch.count_nonzero(net.head.fc.weight) > 0
    assert all(b.scale.item() == 1.0 for b in nets["none"].blocks)
    assert all(b.scale.item() == 0.0 for b in nets["skipinit"].blocks)
    assert all(b.scale.item() == 0.0 for b in nets["rezero"].blocks)
    bn = nets["batchnorm"]
    assert all(torch.count_nonzero(b.bn2.weight) == 0 for b in bn.blocks)  # zero_init_residual
    assert all(torch.all(b.bn1.weight == 1) for b in bn.blocks)
    assert list(scalar_parameters(bn)) == []


def test_reset_parameters_repeats_under_a_seed() -> None:
    torch.manual_seed(3)
    a = resnet(20, norm="fixup", width=4)
    torch.manual_seed(3)
    b = resnet(20, norm="fixup", width=4)
    for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(p, q), name


# -- the forward pass at initialization ---------------------------------------------------------------


def _stem_then_shortcuts(net: ResNet, x: torch.Tensor) -> torch.Tensor:
    """What the residual stream must be when every branch outputs zero: the first layer's
    output carried through the option-A shortcuts."""
    h = F.relu(F.conv2d(x, net.stem.conv.weight, padding=1))
    for block in net.blocks:
        if block.downsample:
            h = shortcut(h, block.out_channels, block.stride)
    return h


@pytest.mark.parametrize("norm", ["fixup", "skipinit", "rezero"])
def test_forward_at_init_is_identity_plus_first_layer(norm: str) -> None:
    torch.manual_seed(1)
    net = resnet(56, norm=norm, in_channels=1, width=4)
    x, _ = _inputs(6)
    with torch.no_grad():
        stream = net.forward_blocks(net.stem(x))
        expected = _stem_then_shortcuts(net, x)
        assert torch.equal(stream, expected)
        logits = net(x)
    if norm == "fixup":
        assert torch.count_nonzero(logits) == 0  # zero classifier
    else:
        assert torch.allclose(logits, net.head.fc(expected.mean(dim=(2, 3))), atol=1e-6)


def test_scalar_bias_placement_matches_the_official_block() -> None:
    """bias1a shifts the branch input (and the stage-change shortcut's), never the identity path."""
    torch.manual_seed(0)
    net = resnet(20, norm="fixup", in_channels=1, width=2)
    plain, down = net.blocks[1], net.blocks[3]  # stage 1 block 2; first block of stage 2
    assert not plain.downsample and down.downsample
    x = torch.rand(2, 2, 8, 8)  # non-negative, like a post-ReLU stream
    with torch.no_grad():
        for block in (plain, down):
            block.bias1a.fill_(0.5)
        # conv2 = 0 at Fixup init: the branch is bias2b = 0, the block returns relu(identity)
        assert torch.equal(plain(x), x)
        expected = F.relu(shortcut(x + 0.5, down.out_channels, 2))
        assert torch.equal(down(x), expected)
        assert torch.count_nonzero(expected[:, 2:]) == 0  # padded channels stay zero
        plain.bias2b.fill_(-0.25)
        assert torch.allclose(plain(x), F.relu(x - 0.25))
        plain.scale.fill_(2.0)
        plain.conv2.weight.normal_()
        h = F.relu(F.conv2d(x + 0.5, plain.conv1.weight, padding=1) + plain.bias1b)
        branch = 2.0 * F.conv2d(h + plain.bias2a, plain.conv2.weight, padding=1) - 0.25
        assert torch.allclose(plain(x), F.relu(x + branch), atol=1e-6)


def test_batchnorm_zero_init_residual_is_identity_in_training_mode() -> None:
    torch.manual_seed(1)
    net = resnet(20, norm="batchnorm", in_channels=1, width=4).train()
    x, _ = _inputs(16)
    with torch.no_grad():
        stem = net.stem(x)
        stream = net.forward_blocks(stem)
    expected = stem
    for block in net.blocks:
        if block.downsample:
            expected = shortcut(expected, block.out_channels, block.stride)
    assert torch.allclose(stream, expected, atol=1e-6)


def test_none_branch_output_is_nonzero_at_init() -> None:
    torch.manual_seed(1)
    net = resnet(20, norm="none", in_channels=1, width=4)
    x, _ = _inputs(4)
    with torch.no_grad():
        assert not torch.allclose(net.forward_blocks(net.stem(x)), _stem_then_shortcuts(net, x))


# -- activation checkpointing ---------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["none", "batchnorm"])
def test_checkpointing_gives_the_same_loss_and_gradients(norm: str) -> None:
    x, y = _inputs(8)
    grads = []
    for every in (0, 4):
        torch.manual_seed(2)
        net = resnet(32, norm=norm, in_channels=1, width=4, checkpoint_every=every).train()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        grads.append((loss.item(), [p.grad.clone() for p in net.parameters()]))
    (loss0, g0), (loss1, g1) = grads
    assert loss0 == pytest.approx(loss1, rel=1e-6)
    for a, b in zip(g0, g1):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)


# -- parameter groups -----------------------------------------------------------------------------------


def test_fixup_param_groups_put_exactly_the_scalars_at_lr_over_10() -> None:
    net = resnet(20, norm="fixup", in_channels=1, width=4)
    groups = fixup_param_groups(net, lr=0.1)
    assert [g["lr"] for g in groups] == [0.1, pytest.approx(0.01)]
    others, scalars = ({id(p) for p in g["params"]} for g in groups)
    assert not others & scalars
    assert others | scalars == {id(p) for p in net.parameters()}
    assert len(scalars) == 5 * net.num_branches + 2  # 4 biases + 1 multiplier per branch, stem and head biases
    assert all(p.numel() == 1 for g in groups[1:] for p in g["params"])
    assert id(net.head.fc.bias) in others  # the classifier bias is a vector, trained at lr
    optimizer = torch.optim.SGD(groups, lr=0.1)
    assert len(optimizer.param_groups) == 2
    bn_groups = fixup_param_groups(resnet(20, norm="batchnorm", width=4), lr=0.1, scalar_lr_factor=0.5)
    assert len(bn_groups) == 1 and bn_groups[0]["lr"] == 0.1


# -- signal propagation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["fixup", "skipinit", "batchnorm"])
def test_depth_1000_outputs_and_gradients_are_finite(norm: str) -> None:
    x, y = _inputs(4)
    stats = measure(norm, 1004, x, y, width=2, seed=0)
    assert stats.overflow_block is None
    assert np.all(np.isfinite(stats.stream_var))
    assert math.isfinite(stats.output_var) and 0 < stats.output_var < 10
    assert math.isfinite(stats.loss) and abs(stats.loss - math.log(10)) < 1.0
    assert np.all(np.isfinite(stats.layer_grad_norms)) and math.isfinite(stats.grad_norm)
    assert len(stats.stream_var) == 1 + 501 and len(stats.layer_names) == 2 * 501 + 2


def test_none_output_scale_grows_geometrically_with_depth() -> None:
    x, y = _inputs(8)
    depths = (20, 56, 110)
    none = [measure("none", d, x, y, width=4, seed=0) for d in depths]
    fixup = [measure("fixup", d, x, y, width=4, seed=0) for d in depths]
    # geometric: equal steps in depth multiply the variance by (roughly) equal large factors
    ratios = [none[i + 1].output_var / none[i].output_var for i in range(2)]
    assert all(r > 1e2 for r in ratios), ratios
    per_block = [r ** (1 / 18 if i == 0 else 1 / 27) for i, r in enumerate(ratios)]
    assert all(f > 1.15 for f in per_block), per_block
    assert growth_per_block(none[-1]) > 1.15
    # Fixup's residual stream keeps the first layer's scale at any depth
    fixup_vars = [s.output_var for s in fixup]
    assert max(fixup_vars) / min(fixup_vars) < 3
    assert 0.9 < growth_per_block(fixup[-1]) < 1.01


def test_none_overflows_at_a_thousand_layers_and_that_is_recorded() -> None:
    x, y = _inputs(4)
    stats = measure("none", 1004, x, y, width=2, seed=0)
    assert stats.overflow_block is not None and 10 < stats.overflow_block < 501  # inf inside the net
    assert not math.isfinite(stats.output_var)
    assert np.all(np.isfinite(stats.stream_var[:stats.overflow_block]))
    assert stats.stream_var[stats.overflow_block - 1] > 1e30  # it got there by growing, not by a bug


def test_gradient_norms_grow_with_depth_for_none_and_stay_bounded_for_fixup() -> None:
    x, y = _inputs(8)
    depths = (8, 20, 56, 110)
    none = [measure("none", d, x, y, width=4, seed=0).grad_norm for d in depths]
    fixup = [measure("fixup", d, x, y, width=4, seed=0) for d in depths]
    assert all(b > 3 * a for a, b in zip(none, none[1:])), none
    assert none[-1] > 1e3
    fixup_norms = [s.grad_norm for s in fixup] + [measure("fixup", 1004, x, y, width=4, seed=0).grad_norm]
    assert max(fixup_norms) < 1.0 and max(fixup_norms) / min(fixup_norms) < 3, fixup_norms
    # at init only the classifier (and scalars) of a Fixup net get gradient: the branches are zero
    for s in fixup:
        assert s.layer_grad_norms[-1] > 0 and np.all(s.layer_grad_norms[:-1] == 0)
        assert s.classifier_grad_norm == s.max_layer_grad_norm


def test_signal_propagation_matches_a_plain_backward_pass() -> None:
    torch.manual_seed(4)
    net = resnet(20, norm="none", in_channels=1, width=4)
    x, y = _inputs(8)
    stats = signal_propagation(net, x, y)
    assert all(p.grad is None for p in net.parameters())  # gradients are not left behind
    loss = F.cross_entropy(net(x), y)
    loss.backward()
    assert stats.loss == pytest.approx(loss.item(), rel=1e-6)
    expected = [float(p.grad.norm()) for _, p in weight_layers(net)]
    assert np.allclose(stats.layer_grad_norms, expected, rtol=1e-5)
    total = math.sqrt(sum(float(p.grad.double().norm()) ** 2 for p in net.parameters()))
    assert stats.grad_norm == pytest.approx(total, rel=1e-6)
    with torch.no_grad():
        assert stats.output_var == pytest.approx(float(net.forward_blocks(net.stem(x)).double().var()), rel=1e-6)


def test_scalar_norms_listing() -> None:
    assert set(SCALAR_NORMS) == set(NORMS) - {"batchnorm"}
