"""LightweightConv1d / DynamicConv1d, ConvLM and TransformerLM: fast paths vs the reference,
causality, incremental decoding, kernel normalization, DropConnect, padding masks, parameter counts."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mlmyths.errors import ConfigError, UserError
from mlmyths.models import ConvBlock, ConvLM, DynamicConv1d, LightweightConv1d, TransformerLM
from mlmyths.models.lightconv import ConvLMConfig, dynamic_conv, reference_conv
from mlmyths.models.transformer import TransformerLMConfig

CONVS = [LightweightConv1d, DynamicConv1d]
SHAPES = [(1, 3, 1), (7, 5, 2), (33, 31, 4), (100, 4, 8), (64, 1, 2), (5, 9, 2)]  # (T, K, H); K > T too


def _grads(out, inputs, seed=0):
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
    return torch.autograd.grad(out, inputs, g)


@pytest.mark.parametrize("cls", CONVS)
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("T,K,H", SHAPES)
def test_fast_path_equals_reference(cls, causal, T, K, H):
    torch.manual_seed(T * 100 + K)
    conv = cls(16, K, H, causal=causal, bias=True)
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(3, T, 16, requires_grad=True)
    fast, ref = conv(x), conv(x, reference=True)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
    params = [x, *conv.parameters()]
    for g_fast, g_ref in zip(_grads(fast, params), _grads(ref, params)):
        torch.testing.assert_close(g_fast, g_ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method,block", [("unfold", 32), ("band", 1), ("band", 5), ("band", 32), ("band", 512)])
@pytest.mark.parametrize("T", [1, 6, 50])
def test_dynamic_methods_equal_reference(method, block, T):
    torch.manual_seed(T)
    K, H, C = 7, 4, 16
    x_padded = torch.randn(2, T + K - 1, C, dtype=torch.float64, requires_grad=True)
    kernel = torch.randn(2, T, H, K, dtype=torch.float64, requires_grad=True)
    fast = dynamic_conv(x_padded, kernel, method, block)
    ref = reference_conv(x_padded, kernel)
    torch.testing.assert_close(fast, ref, rtol=1e-12, atol=1e-12)
    for a, b in zip(_grads(fast, [x_padded, kernel]), _grads(ref, [x_padded, kernel])):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("chunk_elements", [1, 2 * 16 * 9, 2 * 16 * 21])
@pytest.mark.parametrize("causal", [True, False])
def test_band_path_in_chunks_equals_reference(monkeypatch, chunk_elements, causal):
    """Long CPU sequences go through the band path in chunks of about CHUNK_ELEMENTS inputs
    (chunks overlap by K-1 inputs): chunked outputs and gradients equal the reference, whether
    the chunks are one block, several, or do not divide T."""
    import mlmyths.models.lightconv_ops as ops

    monkeypatch.setattr(ops, "CHUNK_ELEMENTS", chunk_elements)
    torch.manual_seed(chunk_elements)
    conv = DynamicConv1d(16, 7, 4, causal=causal, method="band", block_size=4).double()
    x = torch.randn(2, 50, 16, dtype=torch.float64, requires_grad=True)
    fast, ref = conv(x), conv(x, reference=True)
    torch.testing.assert_close(fast, ref, rtol=1e-12, atol=1e-12)
    params = [x, *conv.parameters()]
    for a, b in zip(_grads(fast, params), _grads(ref, params)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls", CONVS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_kernel_softmax_precision(cls, dtype):
    """The kernel softmax runs in at least float32: float64 stays float64 (it used to go through
    float32, an error of ~1e-8), bfloat16 is computed in float32 and rounded once."""
    torch.manual_seed(7)
    conv = cls(8, 5, 2).to(dtype)
    x = torch.randn(3, 6, 8, dtype=dtype)
    logits = conv.weight if cls is LightweightConv1d else conv.kernel_proj(x).view(3, 6, 2, 5)
    kernel = conv.kernel(x)
    assert kernel.dtype == dtype
    expected = torch.softmax(logits.detach().double(), -1).to(dtype)
    tolerance = 1e-15 if dtype == torch.float64 else 0.0
    torch.testing.assert_close(kernel.detach(), expected, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("cls", CONVS)
def test_bfloat16_autocast_matches_float32(cls):
    """Under bfloat16 autocast (the GPU training mode; here on the CPU, same code paths of the
    custom Functions) outputs and gradients stay within bfloat16's error of float32: the kernel
    gradient sums thousands of products and is accumulated in float32 (in bfloat16 it was 2.5% off)."""
    torch.manual_seed(0)
    conv, proj = cls(32, 7, 4), torch.nn.Linear(32, 32)
    x = torch.randn(2, 100, 32, requires_grad=True)
    params = [x, *conv.parameters()]
    ref = conv(proj(x))
    ref_grads = torch.autograd.grad(ref.sum(), params)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(proj(x))
    assert y.dtype == torch.bfloat16
    assert float((y.float() - ref).detach().abs().max()) < 0.02
    for got, want in zip(torch.autograd.grad(y.float().sum(), params), ref_grads):
        assert got.dtype == torch.float32
        assert float((got - want).abs().max() / want.abs().max()) < 0.01


def test_bfloat16_dynamic_conv_matches_float32():
    """A DynamicConv1d held in bfloat16 (no autocast: the CPU's one-function path, softmax and its
    gradient computed in float32) stays within bfloat16's error of the float32 layer."""
    torch.manual_seed(1)
    conv = DynamicConv1d(32, 7, 4)
    x = torch.randn(2, 100, 32, requires_grad=True)
    ref = conv(x)
    ref_grads = torch.autograd.grad(ref.sum(), [x, conv.kernel_proj.weight])
    half = DynamicConv1d(32, 7, 4).to(torch.bfloat16)
    half.load_state_dict(conv.state_dict())
    xb = x.detach().to(torch.bfloat16).requires_grad_()
    y = half(xb)
    assert y.dtype == torch.bfloat16
    assert float((y.float() - ref).detach().abs().max()) < 0.03
    for got, want in zip(torch.autograd.grad(y.float().sum(), [xb, half.kernel_proj.weight]), ref_grads):
        assert got.dtype == torch.bfloat16
        assert float((got.float() - want).abs().max() / want.abs().max()) < 0.015


@pytest.mark.parametrize("cls", CONVS)
def test_empty_sequence(cls):
    """T = 0 (an empty batch of text, or a decoding step with no new token) gives an empty output."""
    conv = cls(8, 3, 2)
    x = torch.randn(2, 0, 8, requires_grad=True)
    y = conv(x)
    assert y.shape == (2, 0, 8)
    y.sum().backward()
    assert x.grad.shape == (2, 0, 8)
    state = conv.init_state(2)
    out, new_state = conv.step(x, state)
    assert out.shape == (2, 0, 8) and torch.equal(new_state, state)


def test_reference_matches_numpy_convolution():
    """Known values: one head, raw kernel [1, 2, 3] (no softmax), causal: y_t = x_{t-2} + 2 x_{t-1} + 3 x_t."""
    conv = LightweightConv1d(1, 3, 1, causal=True, weight_softmax=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, 2.0, 3.0]]))
    x = np.array([1.0, -2.0, 0.5, 4.0, 3.0], dtype=np.float32)
    expected = np.convolve(x, [3.0, 2.0, 1.0])[:5]  # np.convolve flips the kernel
    got = conv(torch.from_numpy(x).view(1, 5, 1)).detach().view(5).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    centered = LightweightConv1d(1, 3, 1, causal=False, weight_softmax=False)
    with torch.no_grad():
        centered.weight.copy_(torch.tensor([[1.0, 2.0, 3.0]]))
    got = centered(torch.from_numpy(x).view(1, 5, 1)).detach().view(5).numpy()
    np.testing.assert_allclose(got, np.convolve(x, [3.0, 2.0, 1.0])[1:6], rtol=1e-6)


@pytest.mark.parametrize("cls", CONVS)
@pytest.mark.parametrize("causal,K,left,right", [(True, 5, 4, 0), (False, 5, 2, 2), (False, 4, 1, 2), (True, 1, 0, 0)])
def test_receptive_window_is_exact(cls, causal, K, left, right):
    """Output t depends on inputs t-left … t+right and on nothing else (Jacobian support);
    an even centered kernel reaches one step further right (fairseq's convention)."""
    torch.manual_seed(0)
    conv = cls(8, K, 2, causal=causal)
    T, t = 12, 6
    x = torch.randn(1, T, 8, requires_grad=True)
    (grad,) = torch.autograd.grad(conv(x)[0, t].sum(), x)
    touched = grad[0].abs().sum(-1) > 0
    assert conv.padding == (left, right)
    expected = torch.zeros(T, dtype=torch.bool)
    expected[t - left: t + right + 1] = True
    if cls is DynamicConv1d:  # the kernel at t is predicted from x_t, which is in the window anyway
        expected[t] = True
    assert torch.equal(touched, expected)


@pytest.mark.parametrize("cls", CONVS)
def test_causality_future_changes_nothing_in_the_past(cls):
    torch.manual_seed(1)
    conv = cls(16, 7, 4).eval()
    x = torch.randn(2, 40, 16)
    x2 = x.clone()
    x2[:, 25:] = torch.randn(2, 15, 16) * 5
    y, y2 = conv(x), conv(x2)
    torch.testing.assert_close(y[:, :25], y2[:, :25], rtol=0, atol=0)
    assert not torch.allclose(y[:, 25:], y2[:, 25:])


@pytest.mark.parametrize("cls", CONVS)
@pytest.mark.parametrize("K", [1, 5])
@pytest.mark.parametrize("chunks", [[1] * 9, [4, 1, 4], [9], [2, 7]])
def test_incremental_decoding_equals_full_forward(cls, K, chunks):
    torch.manual_seed(2)
    conv = cls(16, K, 4, bias=True).eval()
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(2, sum(chunks), 16)
    state = conv.init_state(2)
    assert state.shape == (2, K - 1, 16)
    outs, start = [], 0
    for n in chunks:
        y, state = conv.step(x[:, start:start + n], state)
        outs.append(y)
        start += n
    torch.testing.assert_close(torch.cat(outs, 1), conv(x), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(state, x[:, x.shape[1] - (K - 1):])


def test_step_needs_a_causal_convolution():
    conv = LightweightConv1d(8, 3, 2, causal=False)
    with pytest.raises(UserError, match="causal=True"):
        conv.init_state(1)


def test_kernel_rows_sum_to_one_with_softmax():
    torch.manual_seed(3)
    light = LightweightConv1d(16, 9, 4).eval()
    torch.testing.assert_close(light.kernel(torch.zeros(1, 1, 16)).sum(-1), torch.ones(4))
    dynamic = DynamicConv1d(16, 9, 4).eval()
    w = dynamic.kernel(torch.randn(2, 11, 16))
    assert w.shape == (2, 11, 4, 9) and bool((w > 0).all())
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 11, 4))
    raw = LightweightConv1d(16, 9, 4, weight_softmax=False)
    torch.testing.assert_close(raw.kernel(torch.zeros(1, 1, 16)), raw.weight)


@pytest.mark.parametrize("cls", CONVS)
def test_dropconnect_only_in_training(cls):
    torch.manual_seed(4)
    conv = cls(16, 7, 4, weight_dropout=0.3)
    plain = cls(16, 7, 4, weight_dropout=0.0)
    plain.load_state_dict(conv.state_dict())
    x = torch.randn(2, 30, 16)
    conv.eval()
    torch.testing.assert_close(conv(x), plain.eval()(x), rtol=0, atol=0)
    torch.testing.assert_close(conv(x), conv(x), rtol=0, atol=0)
    conv.train()
    assert not torch.allclose(conv(x), conv(x))
    # dropped entries are zero, kept ones rescaled by 1/(1-p): the mean kernel is the softmax kernel
    conv.eval()
    expected = conv.kernel(x)
    conv.train()
    draws = torch.stack([conv.kernel(x) for _ in range(400)])
    zero_fraction = float((draws == 0).float().mean())
    assert abs(zero_fraction - 0.3) < 0.03
    kept = draws != 0
    torch.testing.assert_close(draws[kept], (expected.expand_as(draws) / 0.7)[kept], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(draws.mean(0), expected, rtol=0.2, atol=0.03)


@pytest.mark.parametrize("cls", CONVS)
@pytest.mark.parametrize("causal", [True, False])
def test_right_padding_equals_the_unpadded_sequence(cls, causal):
    torch.manual_seed(5)
    conv = cls(16, 5, 4, causal=causal, bias=True).eval()
    with torch.no_grad():
        conv.bias.normal_()
    lengths = [10, 6]
    x = torch.randn(2, 10, 16) * 3  # junk in the padding
    mask = torch.arange(10)[None, :] >= torch.tensor(lengths)[:, None]  # True at padding
    y = conv(x, key_padding_mask=mask)
    for b, n in enumerate(lengths):
        torch.testing.assert_close(y[b, :n], conv(x[b:b + 1, :n])[0], rtol=1e-5, atol=1e-6)
        assert bool((y[b, n:] == 0).all())
    x2 = x.clone()
    x2[1, 6:] = torch.randn(4, 16)  # padding content does not matter
    torch.testing.assert_close(conv(x2, key_padding_mask=mask), y, rtol=0, atol=0)


@pytest.mark.parametrize("cls", CONVS)
def test_left_padding_of_a_causal_convolution_is_invisible(cls):
    torch.manual_seed(6)
    conv = cls(8, 5, 2).eval()
    x = torch.randn(1, 9, 8)
    mask = torch.zeros(1, 9, dtype=torch.bool)
    mask[0, :3] = True
    y = conv(x, key_padding_mask=mask)
    torch.testing.assert_close(y[0, 3:], conv(x[:, 3:])[0], rtol=1e-5, atol=1e-6)


def test_parameter_counts():
    C, K, H = 64, 31, 8
    assert sum(p.numel() for p in LightweightConv1d(C, K, H).parameters()) == H * K
    assert sum(p.numel() for p in LightweightConv1d(C, K, H, bias=True).parameters()) == H * K + C
    assert sum(p.numel() for p in DynamicConv1d(C, K, H).parameters()) == C * H * K
    d, f = 32, 80
    block = ConvBlock(d, 7, 4, conv="lightweight", ffn_dim=f)
    glu, out, ffn, norms = 2 * d * d + 2 * d, d * d + d, 2 * d * f + f + d, 4 * d
    assert sum(p.numel() for p in block.parameters()) == glu + 4 * 7 + out + ffn + norms
    dyn = ConvBlock(d, 7, 4, conv="dynamic", ffn_dim=f)
    assert sum(p.numel() for p in dyn.parameters()) == glu + d * 4 * 7 + out + ffn + norms
    V, L = 50, 3
    tr = TransformerLM(TransformerLMConfig(vocab_size=V, dim=d, layers=L, heads=4, ffn_dim=f))
    attention = 4 * d * d + 4 * d
    assert tr.num_parameters() == V * d + L * (attention + ffn + norms) + 2 * d  # tied output, final norm
    lm = ConvLM(ConvLMConfig(vocab_size=V, dim=d, layers=L, heads=4, kernel_sizes=(3, 5, 7), ffn_dim=f))
    assert lm.num_parameters() == V * d + L * (glu + out + ffn + norms) + 4 * (3 + 5 + 7) + 2 * d


def test_errors_name_the_parameter():
    with pytest.raises(ConfigError, match="channels=10 must be a positive multiple of heads=4"):
        LightweightConv1d(10, 3, 4)
    with pytest.raises(ConfigError, match="kernel_size must be >= 1, got 0"):
        DynamicConv1d(8, 0, 2)
    with pytest.raises(ConfigError, match="weight_dropout must be in"):
        LightweightConv1d(8, 3, 2, weight_dropout=1.0)
    conv = LightweightConv1d(8, 3, 2)
    with pytest.raises(UserError, match=r"expects input of shape \(batch, time, 8\), got \(2, 8\)"):
        conv(torch.zeros(2, 8))
    with pytest.raises(UserError, match="key_padding_mask must have shape"):
        conv(torch.zeros(2, 5, 8), key_padding_mask=torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ConfigError, match="kernel_sizes=.* must have one entry or one per layer"):
        ConvLM(ConvLMConfig(vocab_size=10, dim=8, layers=3, heads=2, kernel_sizes=(3, 5)))
    with pytest.raises(UserError, match="tokens must be an integer tensor"):
        TransformerLM(TransformerLMConfig(vocab_size=10, dim=8, layers=1, heads=2))(torch.zeros(2, 3))


def _lms(vocab=40):
    torch.manual_seed(7)
    return {
        "transformer": TransformerLM(TransformerLMConfig(vocab_size=vocab, dim=32, layers=2, heads=4)),
        "lightconv": ConvLM(ConvLMConfig(vocab_size=vocab, dim=32, layers=2, heads=4, kernel_sizes=(3, 5))),
        "dynamicconv": ConvLM(ConvLMConfig(vocab_size=vocab, dim=32, layers=2, heads=4, kernel_sizes=(3, 5),
                                           conv="dynamic", positions=True)),
    }


@pytest.mark.parametrize("name", ["transformer", "lightconv", "dynamicconv"])
def test_language_models_decode_incrementally_and_causally(name):
    model = _lms()[name].eval()
    tokens = torch.randint(0, 40, (2, 13), generator=torch.Generator().manual_seed(8))
    full = model(tokens)
    state = model.init_state(2)
    pieces = []
    for start, stop in [(0, 5), (5, 6), (6, 13)]:
        logits, state = model.step(tokens[:, start:stop], state)
        pieces.append(logits)
    assert state.position == 13
    torch.testing.assert_close(torch.cat(pieces, 1), full, rtol=1e-4, atol=1e-5)
    changed = tokens.clone()
    changed[:, 9:] = (changed[:, 9:] + 1) % 40
    torch.testing.assert_close(model(changed)[:, :9], full[:, :9], rtol=0, atol=0)


def test_conv_lm_sees_exactly_its_receptive_field():
    model = _lms()["lightconv"].eval()
    assert model.receptive_field == 1 + 2 + 4
    tokens = torch.randint(0, 40, (1, 20), generator=torch.Generator().manual_seed(9))
    base = model(tokens)[0, 15]
    for t, visible in [(8, False), (9, True), (15, True)]:  # output 15 sees tokens 9 … 15
        changed = tokens.clone()
        changed[0, t] = (changed[0, t] + 1) % 40
        assert (not torch.equal(model(changed)[0, 15], base)) == visible


@pytest.mark.parametrize("name", ["transformer", "dynamicconv"])
def test_greedy_generation_with_cache_equals_recomputing(name):
    model = _lms()[name]
    prompt = torch.randint(0, 40, (2, 4), generator=torch.Generator().manual_seed(10))
    out = model.generate(prompt, 6, temperature=0)
    assert out.shape == (2, 10) and torch.equal(out[:, :4], prompt)
    assert model.training  # restored
    model.eval()
    seq = prompt
    with torch.no_grad():
        for _ in range(6):
            seq = torch.cat([seq, model(seq)[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(out, seq)


def test_custom_backward_passes_gradcheck():
    """The hand-written backward passes (LightConv on the CPU, DynamicConv's band path) against
    finite differences, in float64, with T not a multiple of the block size."""
    from mlmyths.models.lightconv_ops import _BandConvFunction, _light_kernel_grad, lightweight_conv

    gen = torch.Generator().manual_seed(11)
    x_padded = torch.randn(2, 11 + 4, 6, dtype=torch.float64, generator=gen, requires_grad=True)
    light = torch.randn(3, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    assert torch.autograd.gradcheck(lightweight_conv, (x_padded, light))
    dynamic = torch.randn(2, 11, 3, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    for block in (1, 3, 4, 11, 32):
        assert torch.autograd.gradcheck(lambda x, k, b=block: dynamic_conv(x, k, "band", b), (x_padded, dynamic))
    for chunk in (1, 4, 8):  # several chunks of 1 or 2 blocks of 4 positions
        assert torch.autograd.gradcheck(lambda x, k, c=chunk: _BandConvFunction.apply(x, k, (0, 0), 4, c), (x_padded, dynamic))
    # padding rows that x does not hold (causal, centered, more padding than x has rows)
    for x_rows, padding in ((11, (4, 0)), (11, (2, 2)), (2, (13, 0))):
        x = torch.randn(2, x_rows, 6, dtype=torch.float64, generator=gen, requires_grad=True)
        kernel = torch.randn(2, x_rows + sum(padding) - 4, 3, 5, dtype=torch.float64, generator=gen, requires_grad=True)
        for chunk in (1, 4, 32):
            assert torch.autograd.gradcheck(lambda x, k, c=chunk, p=padding: _BandConvFunction.apply(x, k, p, 4, c),
                                            (x, kernel))
    # the kernel gradient's blocks: any block size gives the same sums
    g = torch.randn(2, 11, 6, dtype=torch.float64, generator=gen)
    sums = [_light_kernel_grad(g, x_padded.detach(), 3, 5, block) for block in (1, 2, 5, 11, 64)]
    sums += [_light_kernel_grad(g, x_padded.detach(), 3, 5, 2, chunk) for chunk in (1, 3, 4, 10)]  # in chunks
    for other in sums[1:]:
        torch.testing.assert_close(other, sums[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("softmax", [True, False])
@pytest.mark.parametrize("padding", [(4, 0), (2, 2)])
def test_whole_dynamic_conv_function_gradcheck(softmax, padding):
    """DynamicConv in one function (prediction, softmax, band convolution; the CPU path without
    DropConnect) against finite differences, in several chunks and blocks, input and weight."""
    from mlmyths.models.lightconv_ops import _DynamicConvFunction

    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 11, 6, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn(3 * 5, 6, dtype=torch.float64, generator=gen, requires_grad=True)
    for block, chunk in ((4, 4), (3, 9), (4, 64), (1, 1)):
        def fn(x, w, b=block, c=chunk):
            return _DynamicConvFunction.apply(x, w, 3, padding, softmax, "band", b, c)
        assert torch.autograd.gradcheck(fn, (x, weight))
    # only the weight needs a gradient (the input is data)
    assert torch.autograd.gradcheck(lambda w: _DynamicConvFunction.apply(x.detach(), w, 3, padding, softmax, "band", 4, 4),
                                    (weight,))


@pytest.mark.parametrize("softmax", [True, False])
def test_dynamic_conv_cpu_routes_agree(softmax):
    """The three CPU routes of DynamicConv1d's band path give the reference's outputs and gradients:
    the whole layer in one function (training without DropConnect, or eval), the band function on
    the normalized kernels (with DropConnect, here with its mask fixed by eval), and the reference."""
    from mlmyths.models.lightconv_ops import _band_chunk, _BandConvFunction

    torch.manual_seed(5)
    conv = DynamicConv1d(16, 7, 4, causal=False, weight_softmax=softmax, method="band", block_size=4).double()
    x = torch.randn(2, 40, 16, dtype=torch.float64, requires_grad=True)
    params = [x, *conv.parameters()]
    ref = conv(x, reference=True)
    whole = conv(x)
    kernel = conv.kernel(x)
    band = _BandConvFunction.apply(x, kernel, conv.padding, 4, _band_chunk(x, 4))
    ref_grads = _grads(ref, params)
    for out in (whole, band):
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
        for a, b in zip(_grads(out, params), ref_grads):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


# -- the native path (C kernels compiled on first use) -------------------------------------------------


@pytest.fixture
def native_kernels():
    """The native DynamicConv kernels; skips where this machine cannot build them."""
    from mlmyths import native
    from mlmyths.models.lightconv_ops import NATIVE_SOURCE, _native_library

    if _native_library() is None:
        pytest.skip(f"native DynamicConv kernels unavailable: {native.status(NATIVE_SOURCE)}")


def _double_reference(x, kernel, padding):
    """The reference in float64 on float32 inputs: outputs and gradients to compare float32 paths with."""
    x64 = x.detach().double().requires_grad_()
    k64 = kernel.detach().double().requires_grad_()
    out = reference_conv(torch.nn.functional.pad(x64, (0, 0, *padding)), k64)
    return out, (x64, k64)


@pytest.mark.usefixtures("native_kernels")
@pytest.mark.parametrize("C,H", [(16, 2), (64, 2), (32, 1), (128, 2), (12, 2), (20, 4)])  # R = 8, 32, 32, 64; 6, 5
@pytest.mark.parametrize("T,K,padding", [(50, 7, (6, 0)), (50, 7, (3, 3)), (37, 4, (1, 2)), (3, 9, (8, 0)),
                                         (5, 9, (4, 4)), (1, 1, (0, 0)), (20, 5, (0, 0)), (4, 6, (9, 0))])
def test_native_conv_equals_reference(C, H, T, K, padding):
    """The C kernels (forward, input and kernel gradients) against the float64 reference, for fixed
    and generic head widths, causal, centered and uneven padding, kernels longer than the sequence,
    unpadded input (x holds the padding) and more padding than x has rows."""
    torch.manual_seed(C * T + K)
    x_rows = T + K - 1 - sum(padding)
    x = torch.randn(2, x_rows, C, requires_grad=True)
    kernel = torch.randn(2, T, H, K, requires_grad=True)
    fast = dynamic_conv(x, kernel, "native", padding=padding)
    ref, (x64, k64) = _double_reference(x, kernel, padding)
    torch.testing.assert_close(fast.double(), ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(_grads(fast, [x, kernel]), _grads(ref, [x64, k64])):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-5)


@pytest.mark.usefixtures("native_kernels")
@pytest.mark.parametrize("softmax", [True, False])
@pytest.mark.parametrize("causal", [True, False])
def test_native_layer_equals_band_layer(softmax, causal):
    """DynamicConv1d in float32 on the native path (the softmax gradient fused into the C kernel, the
    convolution's input gradient added to the prediction's) and on the band path: outputs and all
    gradients within 1e-5 of the largest entry of the float64 reference's (both paths measure ~4e-7)."""
    torch.manual_seed(11)
    conv = DynamicConv1d(64, 9, 4, causal=causal, weight_softmax=softmax, bias=True)
    band = DynamicConv1d(64, 9, 4, causal=causal, weight_softmax=softmax, bias=True, method="band")
    band.load_state_dict(conv.state_dict())
    exact = DynamicConv1d(64, 9, 4, causal=causal, weight_softmax=softmax, bias=True).double()
    exact.load_state_dict(conv.state_dict())
    x = torch.randn(3, 300, 64, requires_grad=True)
    x64 = x.detach().double().requires_grad_()
    ref = exact(x64, reference=True)
    ref_all = [ref, *_grads(ref, [x64, *exact.parameters()])]
    for layer in (conv, band):
        out = layer(x)
        for a, b in zip([out, *_grads(out, [x, *layer.parameters()])], ref_all):
            torch.testing.assert_close(a.double(), b, rtol=0, atol=1e-5 * b.abs().max().item())


@pytest.mark.usefixtures("native_kernels")
def test_native_results_do_not_depend_on_threads_or_layout():
    """Each output row is summed by one thread in a fixed order: one thread or several give the
    same bits; a non-contiguous input gives what its contiguous copy gives."""
    torch.manual_seed(2)
    x = torch.randn(2, 700, 32, requires_grad=True)
    kernel = torch.softmax(torch.randn(2, 700, 4, 15), -1).requires_grad_()
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            out = dynamic_conv(x, kernel, "native", padding=(14, 0))
            results.append((out, *_grads(out, [x, kernel])))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)
    strided = x.detach().transpose(1, 2).contiguous().transpose(1, 2)  # same values, (B, C, T) memory
    assert not strided.is_contiguous()
    assert torch.equal(dynamic_conv(strided, kernel.detach(), "native", padding=(14, 0)), results[0][0].detach())


@pytest.mark.usefixtures("native_kernels")
def test_auto_takes_native_for_float32_cpu_only():
    from mlmyths.models.lightconv_ops import choose_path, dynamic_conv_path

    assert dynamic_conv_path().startswith("native (C kernels, built with")
    assert dynamic_conv_path("cuda").startswith("band")
    x32, x64 = torch.zeros(1, 100, 8), torch.zeros(1, 100, 8, dtype=torch.float64)
    assert choose_path("auto", 100, True, x32) == "native"
    assert choose_path("auto", 1, False, x32) == "native"
    assert choose_path("auto", 100, True, x64) == "band"
    assert choose_path("auto", 4, True, x64) == "unfold"
    with pytest.raises(UserError, match="float32"):
        DynamicConv1d(8, 3, 2, method="native").double()(x64)


def test_without_native_kernels_the_band_path_runs(monkeypatch):
    """With the native kernels switched off (MLMYTHS_NATIVE=0, or no compiler), "auto" takes the band
    path and gives the reference's result; asking for "native" says why it cannot run."""
    from mlmyths import native
    from mlmyths.models.lightconv_ops import NATIVE_SOURCE, choose_path, dynamic_conv_path

    monkeypatch.setenv("MLMYTHS_NATIVE", "0")
    native.forget(NATIVE_SOURCE)
    try:
        x = torch.randn(2, 40, 16)
        assert choose_path("auto", 40, True, x) == "band"
        assert dynamic_conv_path() == "band (batched matmuls; native kernels unavailable: disabled by MLMYTHS_NATIVE=0)"
        conv = DynamicConv1d(16, 5, 4)
        torch.testing.assert_close(conv(x), conv(x, reference=True), rtol=1e-5, atol=1e-5)
        with pytest.raises(UserError, match="MLMYTHS_NATIVE"):
            DynamicConv1d(16, 5, 4, method="native")(x)
    finally:
        native.forget(NATIVE_SOURCE)


def test_one_dispatch_table_decides_every_route(monkeypatch):
    """DynamicConv's path is chosen in one place, ``lightconv_ops.PATHS``: switching the native entry off
    there moves dynamic_conv, the layer and dynamic_conv_path to the band path, and the band entry's
    convolution is what the layer then calls (still the reference's result)."""
    import dataclasses

    from mlmyths.models import lightconv_ops as ops

    band, calls = ops.PATHS["band"], []

    def spy(x, kernel, padding, block_size):
        calls.append(tuple(x.shape))
        return band.convolve(x, kernel, padding, block_size)

    monkeypatch.setitem(ops.PATHS, "native", dataclasses.replace(ops.PATHS["native"], why_not=lambda place: "off"))
    monkeypatch.setitem(ops.PATHS, "band", dataclasses.replace(band, convolve=spy, whole_layer=False))
    assert list(ops.PATHS) == ["native", "unfold", "band"]  # the order "auto" tries them
    assert ops.dynamic_conv_path() == "band (batched matmuls; off)"
    torch.manual_seed(12)
    x = torch.randn(2, 40, 16)
    conv = DynamicConv1d(16, 5, 4)
    assert ops.layer_route("auto", x, conv.kernel_proj.weight, dropconnect=False) == ("band", False)
    torch.testing.assert_close(conv(x), conv(x, reference=True), rtol=1e-5, atol=1e-5)
    assert calls == [(2, 40, 16)]  # the unpadded input: the band path reads the padding rows itself
    assert ops.choose_path("auto", ops.UNFOLD_MAX_T, True, x) == "unfold"
    assert ops.choose_path("auto", ops.UNFOLD_MAX_T + 1, True, x) == "band"
    assert ops.choose_path("auto", ops.UNFOLD_MAX_T_INFERENCE, False, x) == "unfold"
    with pytest.raises(UserError, match="method 'native' cannot run here: off"):
        dynamic_conv(x, torch.zeros(2, 36, 4, 5), "native")
    with pytest.raises(UserError, match="unknown DynamicConv method 'fft'"):
        ops.choose_path("fft", 10, True, x)


@pytest.mark.parametrize("x_shape,kernel_shape,padding", [((2, 10, 16), (2, 6, 4, 5), (1, 0)),  # rows do not fit
                                                         ((2, 10, 15), (2, 6, 4, 5), (0, 0)),  # C not divisible by H
                                                         ((3, 10, 16), (2, 6, 4, 5), (0, 0)),  # batch
                                                         ((2, 10, 16), (2, 6, 20), (0, 0))])  # kernel not 4-D
def test_dynamic_conv_rejects_shapes_that_do_not_fit(x_shape, kernel_shape, padding):
    with pytest.raises(UserError, match="does not fit"):
        dynamic_conv(torch.zeros(x_shape), torch.zeros(kernel_shape), padding=padding)


@pytest.mark.usefixtures("native_kernels")
def test_native_kernels_built_without_openmp(monkeypatch):
    """Where the compiler has no OpenMP, the kernels start POSIX threads of their own: same results."""
    from mlmyths import native
    from mlmyths.models.lightconv_ops import NATIVE_SOURCE

    torch.manual_seed(4)
    x = torch.randn(2, 300, 32, requires_grad=True)
    kernel = torch.softmax(torch.randn(2, 300, 4, 7), -1).requires_grad_()
    with_openmp = dynamic_conv(x, kernel, "native", padding=(6, 0))
    monkeypatch.setattr(native, "OPTIONS", (("-march=native",), ()))
    native.forget(NATIVE_SOURCE)
    try:
        assert "-fopenmp" not in native.status(NATIVE_SOURCE)
        plain = dynamic_conv(x, kernel, "native", padding=(6, 0))
        assert torch.equal(plain, with_openmp)
        for a, b in zip(_grads(plain, [x, kernel]), _grads(with_openmp, [x, kernel])):
            assert torch.equal(a, b)
    finally:
        native.forget(NATIVE_SOURCE)
