"""Lightweight and dynamic convolutions, and a convolutional language model built from them.

Wu, Fan, Baevski, Dauphin & Auli, "Pay Less Attention with Lightweight and Dynamic
Convolutions", ICLR 2019 (https://arxiv.org/abs/1901.10430).

**LightConv** (Section 3.2, Eq. 2-3) is a depthwise convolution whose kernel, ``H × K``, is
shared by the ``C/H`` channels of each head and normalized with a softmax over the kernel
width; in training, DropConnect drops kernel entries (Section 3.2, "Regularization").
**DynamicConv** (Section 3.3, Eq. 4) is a LightConv whose kernel is predicted at every time
step from the current input by a linear map ``C -> H·K`` (then softmax and DropConnect).
Both cost ``O(T·C·K)``: linear in the sequence length, where self-attention is quadratic.

Conventions (all modules take and return ``(B, T, C)``):

- channel ``c`` belongs to head ``c // (C/H)`` (contiguous groups, like attention heads);
- kernel tap ``k`` (0 … K-1) multiplies input position ``t + k - left``, with ``left = K-1``
  when ``causal`` (a decoder or language model: output ``t`` sees inputs ``t-K+1 … t``) and
  ``left = (K-1)//2`` otherwise (a centered window, as in the paper's encoders);
- a key-padding mask ``(B, T)`` marks padding with True: padded inputs are zeroed before the
  convolution (they contribute nothing) and padded outputs are zero.

The arithmetic -- the reference sum, LightConv's depthwise path with its own backward, and
DynamicConv's native, unfold and band paths with the one table that chooses between them -- is in
:mod:`mlmyths.models.lightconv_ops`; ``method="auto"`` (the default) takes the fastest path that
runs on the tensors (:func:`dynamic_conv_path` says which, for reports).

Incremental decoding: ``state = conv.init_state(B)`` holds the last K-1 inputs; ``y, state =
conv.step(x_new, state)`` consumes ``(B, n, C)`` and gives exactly the outputs that the full
causal forward gives at those positions.

>>> import torch
>>> conv = LightweightConv1d(16, kernel_size=5, heads=4)
>>> x = torch.randn(2, 10, 16)
>>> conv(x).shape
torch.Size([2, 10, 16])
>>> state = conv.init_state(2)
>>> y1, state = conv.step(x[:, :6], state)
>>> y2, state = conv.step(x[:, 6:], state)
>>> torch.allclose(torch.cat([y1, y2], dim=1), conv(x), atol=1e-6)
True
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlmyths.errors import ConfigError, UserError
from mlmyths.models.lightconv_ops import (
    BAND_BLOCK, PATHS, UNFOLD_MAX_T, UNFOLD_MAX_T_INFERENCE, Method, conv_padding, dynamic_conv,
    dynamic_conv_layer, dynamic_conv_path, layer_route, lightweight_conv, reference_conv, softmax_kernel, unfold_conv,
)
from mlmyths.models.transformer import Block, LanguageModel, xavier_linear

# -- the modules ---------------------------------------------------------------------------------


class _Convolution(nn.Module, ABC):
    """What LightConv and DynamicConv share: checks, padding, masks, bias, incremental state."""

    def __init__(self, channels: int, kernel_size: int, heads: int, causal: bool, weight_softmax: bool,
                 weight_dropout: float, bias: bool):
        super().__init__()
        name = type(self).__name__
        if channels < 1 or heads < 1 or channels % heads:
            raise ConfigError(f"{name}: channels={channels} must be a positive multiple of heads={heads}")
        if kernel_size < 1:
            raise ConfigError(f"{name}: kernel_size must be >= 1, got {kernel_size}")
        if not 0.0 <= weight_dropout < 1.0:
            raise ConfigError(f"{name}: weight_dropout must be in [0, 1), got {weight_dropout}")
        self.channels, self.kernel_size, self.heads = channels, kernel_size, heads
        self.causal, self.weight_softmax, self.weight_dropout = causal, weight_softmax, weight_dropout
        self.padding = conv_padding(kernel_size, causal)
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None

    def extra_repr(self) -> str:
        return (f"{self.channels}, kernel_size={self.kernel_size}, heads={self.heads}, causal={self.causal}, "
                f"weight_softmax={self.weight_softmax}, weight_dropout={self.weight_dropout}, "
                f"bias={self.bias is not None}")

    @abstractmethod
    def kernel(self, x: Tensor) -> Tensor:
        """The (normalized, dropped) kernel: (H, K) for LightConv, (B, T, H, K) for DynamicConv."""

    @abstractmethod
    def _convolve(self, x_padded: Tensor, kernel: Tensor) -> Tensor:
        """The fast path that applies ``kernel`` to ``x_padded`` (B, T+K-1, C) -> (B, T, C)."""

    def _fast(self, x: Tensor) -> Tensor:
        """The fast path of :meth:`forward` on the (unpadded, masked) input (B, T, C) -> (B, T, C)."""
        return self._convolve(F.pad(x, (0, 0, *self.padding)), self.kernel(x))  # (B, T+K-1, C) padded

    def _normalize(self, logits: Tensor) -> Tensor:
        """Softmax over the kernel width (Eq. 3), then DropConnect in training (rescaled by 1/(1-p))."""
        w = softmax_kernel(logits) if self.weight_softmax else logits
        return F.dropout(w, self.weight_dropout, training=self.training)

    def _check(self, x: Tensor) -> None:
        if x.dim() != 3 or x.shape[-1] != self.channels:
            raise UserError(f"{type(self).__name__} expects input of shape (batch, time, {self.channels}), "
                            f"got {tuple(x.shape)}")

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None, *, reference: bool = False) -> Tensor:
        """``x`` (B, T, C) -> (B, T, C). ``key_padding_mask`` (B, T), True at padding.

        ``reference=True`` uses :func:`reference_conv` instead of the fast path (for tests).
        """
        self._check(x)
        if x.shape[1] == 0:  # an empty sequence: nothing to convolve
            return x.clone()
        mask = None
        if key_padding_mask is not None:
            if key_padding_mask.shape != x.shape[:2]:
                raise UserError(f"key_padding_mask must have shape (batch, time) = {tuple(x.shape[:2])}, "
                                f"got {tuple(key_padding_mask.shape)}")
            mask = key_padding_mask.to(torch.bool).unsqueeze(-1)  # (B, T, 1)
            x = x.masked_fill(mask, 0.0)
        y = reference_conv(F.pad(x, (0, 0, *self.padding)), self.kernel(x)) if reference else self._fast(x)
        if self.bias is not None:
            y = y + self.bias
        return y.masked_fill(mask, 0.0) if mask is not None else y

    def init_state(self, batch_size: int, device: torch.device | None = None,
                   dtype: torch.dtype | None = None) -> Tensor:
        """Empty decoding cache: the K-1 previous inputs, (B, K-1, C) zeros (= the causal left padding)."""
        if not self.causal:
            raise UserError(f"{type(self).__name__}: incremental decoding needs causal=True")
        device = device if device is not None else next(self.parameters()).device
        return torch.zeros(batch_size, self.kernel_size - 1, self.channels, device=device, dtype=dtype)

    def step(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """Outputs (B, n, C) of the next ``n`` inputs ``x`` (B, n, C) given the cache; returns the new cache."""
        if not self.causal:
            raise UserError(f"{type(self).__name__}: incremental decoding needs causal=True")
        self._check(x)
        if x.shape[1] == 0:
            return x.clone(), state
        x_padded = torch.cat([state.to(x.dtype), x], dim=1)  # (B, K-1+n, C)
        y = self._convolve(x_padded, self.kernel(x))
        if self.bias is not None:
            y = y + self.bias
        return y, x_padded[:, x_padded.shape[1] - (self.kernel_size - 1):]


class LightweightConv1d(_Convolution):
    """Lightweight convolution (Wu et al. 2019, Section 3.2, Eq. 2-3) on (B, T, C) inputs.

    A depthwise convolution with ``heads`` kernels of width ``kernel_size``, each shared by
    ``channels / heads`` consecutive channels; the kernel is softmax-normalized over its width
    (``weight_softmax``) and, in training, DropConnect zeroes each of its ``heads × kernel_size``
    entries with probability ``weight_dropout`` (one mask per forward call, shared by the batch,
    like fairseq's ``LightweightConv1d``). Parameters: ``heads · kernel_size`` (+ ``channels`` bias).

    Parameters
    ----------
    channels : C, input and output channels.
    kernel_size : K, the window width.
    heads : H, kernels (C must be a multiple of H).
    causal : output t sees inputs t-K+1 … t (True) or a centered window (False).
    weight_softmax : normalize the kernel with a softmax over its width (default True).
    weight_dropout : DropConnect probability on the normalized kernel in training (default 0).
    bias : add a learned per-channel bias to the output (default False).

    >>> import torch
    >>> conv = LightweightConv1d(8, kernel_size=3, heads=2)
    >>> conv.kernel(torch.zeros(1, 1, 8)).sum(-1)  # each head's kernel sums to one
    tensor([1.0000, 1.0000], grad_fn=<SumBackward1>)
    """

    def __init__(self, channels: int, kernel_size: int, heads: int = 1, causal: bool = True,
                 weight_softmax: bool = True, weight_dropout: float = 0.0, bias: bool = False):
        super().__init__(channels, kernel_size, heads, causal, weight_softmax, weight_dropout, bias)
        self.weight = nn.Parameter(torch.empty(heads, kernel_size))  # (H, K)
        nn.init.xavier_uniform_(self.weight)

    def kernel(self, x: Tensor) -> Tensor:
        """The normalized (and, in training, dropped) kernel (H, K); ``x`` is not used."""
        return self._normalize(self.weight)

    def _convolve(self, x_padded: Tensor, kernel: Tensor) -> Tensor:
        T = x_padded.shape[1] - self.kernel_size + 1
        if T <= UNFOLD_MAX_T:  # a few positions (token-by-token decoding): the window sum beats a conv call
            return unfold_conv(x_padded, kernel.expand(x_padded.shape[0], T, *kernel.shape))
        return lightweight_conv(x_padded, kernel)


class DynamicConv1d(_Convolution):
    """Dynamic convolution (Wu et al. 2019, Section 3.3, Eq. 4) on (B, T, C) inputs.

    A :class:`LightweightConv1d` whose kernel is predicted at every position from that
    position's input: ``W_t = softmax(reshape(x_t · Wᵠ, (H, K)))`` with ``Wᵠ`` of shape
    ``(C, H·K)`` (no bias, as in fairseq), then DropConnect on every entry of every position's
    kernel in training. Parameters: ``C · H · K`` (+ ``C`` bias). Same arguments as
    :class:`LightweightConv1d`, plus ``method`` and ``block_size`` of :func:`dynamic_conv`.

    >>> import torch
    >>> conv = DynamicConv1d(8, kernel_size=3, heads=2)
    >>> conv.kernel(torch.randn(1, 5, 8)).shape  # one (H, K) kernel per position
    torch.Size([1, 5, 2, 3])
    """

    def __init__(self, channels: int, kernel_size: int, heads: int = 1, causal: bool = True,
                 weight_softmax: bool = True, weight_dropout: float = 0.0, bias: bool = False,
                 method: Method = "auto", block_size: int = BAND_BLOCK):
        super().__init__(channels, kernel_size, heads, causal, weight_softmax, weight_dropout, bias)
        if method != "auto" and method not in PATHS:
            raise ConfigError(f"DynamicConv1d: method must be auto, {', '.join(PATHS)}, got {method!r}")
        if block_size < 1:
            raise ConfigError(f"DynamicConv1d: block_size must be >= 1, got {block_size}")
        self.method, self.block_size = method, block_size
        self.kernel_proj = xavier_linear(channels, heads * kernel_size, bias=False)

    def kernel(self, x: Tensor) -> Tensor:
        """Per-position kernels (B, T, H, K) predicted from ``x`` (B, T, C), normalized and dropped."""
        B, T, _ = x.shape
        return self._normalize(self.kernel_proj(x).view(B, T, self.heads, self.kernel_size))

    def _convolve(self, x_padded: Tensor, kernel: Tensor) -> Tensor:
        return dynamic_conv(x_padded, kernel.to(x_padded.dtype), self.method, self.block_size)

    def _fast(self, x: Tensor) -> Tensor:
        """No padded copy of ``x`` on the band and native paths; where :func:`layer_route` allows it (the
        CPU without DropConnect or autocast), the prediction, softmax and convolution as one function."""
        weight = self.kernel_proj.weight
        path, whole = layer_route(self.method, x, weight, dropconnect=self.training and self.weight_dropout > 0)
        if whole:
            return dynamic_conv_layer(x, weight, self.heads, self.padding, self.weight_softmax, path, self.block_size)
        return dynamic_conv(x, self.kernel(x).to(x.dtype), path, self.block_size, self.padding)


# -- the block and the language model ----------------------------------------------------------------

ConvType = Literal["lightweight", "dynamic"]


class ConvMixer(nn.Module):
    """The convolution sublayer of Wu et al. (Section 3.1, Figure 2): input dropout, Linear
    d -> 2d with GLU (or d -> d), the convolution, output Linear d -> d. (B, T, d) -> (B, T, d)."""

    def __init__(self, dim: int, kernel_size: int, heads: int, *, conv: ConvType = "lightweight", glu: bool = True,
                 causal: bool = True, weight_softmax: bool = True, weight_dropout: float = 0.0,
                 input_dropout: float = 0.0):
        super().__init__()
        if conv not in ("lightweight", "dynamic"):
            raise ConfigError(f"conv must be 'lightweight' or 'dynamic', got {conv!r}")
        self.glu = glu
        self.input_dropout = nn.Dropout(input_dropout)
        self.in_proj = xavier_linear(dim, 2 * dim if glu else dim)
        cls = LightweightConv1d if conv == "lightweight" else DynamicConv1d
        self.conv = cls(dim, kernel_size, heads, causal=causal, weight_softmax=weight_softmax,
                        weight_dropout=weight_dropout)
        self.out_proj = xavier_linear(dim, dim)

    def _in(self, x: Tensor) -> Tensor:
        h = self.in_proj(self.input_dropout(x))
        return F.glu(h, dim=-1) if self.glu else h

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        return self.out_proj(self.conv(self._in(x), key_padding_mask))

    def init_state(self, batch_size: int, device: torch.device | None = None,
                   dtype: torch.dtype | None = None) -> Tensor:
        return self.conv.init_state(batch_size, device=device, dtype=dtype)

    def step(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        y, state = self.conv.step(self._in(x), state)
        return self.out_proj(y), state


class ConvBlock(Block):
    """A LightConv/DynamicConv block (Wu et al. 2019, Section 3.1; fairseq's pre-norm decoder layer):
    ``x + dropout(ConvMixer(LN(x)))`` then ``x + dropout(FFN(LN(x)))``. (B, T, dim) -> (B, T, dim).

    >>> import torch
    >>> block = ConvBlock(16, kernel_size=7, heads=4, conv="dynamic")
    >>> block(torch.randn(2, 12, 16)).shape
    torch.Size([2, 12, 16])
    """

    def __init__(self, dim: int, kernel_size: int, heads: int, *, conv: ConvType = "lightweight", ffn_dim: int = 0,
                 glu: bool = True, causal: bool = True, weight_softmax: bool = True, dropout: float = 0.0,
                 weight_dropout: float = 0.0, input_dropout: float = 0.0, relu_dropout: float = 0.0):
        mixer = ConvMixer(dim, kernel_size, heads, conv=conv, glu=glu, causal=causal, weight_softmax=weight_softmax,
                          weight_dropout=weight_dropout, input_dropout=input_dropout)
        super().__init__(dim, mixer, ffn_dim or 4 * dim, dropout, relu_dropout)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        return self._add(x, self.mixer(self.norm1(x), key_padding_mask))


@dataclass(frozen=True)
class ConvLMConfig:
    """Hyperparameters of :class:`ConvLM` (defaults follow fairseq's ``lightconv_lm``, scaled down)."""

    vocab_size: int  #: number of token ids
    dim: int = 256  #: model width (embedding, convolution channels, residual stream)
    layers: int = 4  #: number of blocks
    heads: int = 8  #: convolution heads (dim must be divisible by heads)
    kernel_sizes: tuple[int, ...] = (3, 7, 15, 31)  #: kernel width per layer (one value: all layers)
    conv: ConvType = "lightweight"  #: "lightweight" (LightConv) or "dynamic" (DynamicConv)
    ffn_dim: int = 0  #: hidden width of the feed-forward sublayer (0: 4 * dim)
    glu: bool = True  #: GLU after the input projection (d -> 2d -> d)
    weight_softmax: bool = True  #: softmax-normalize kernels over their width
    dropout: float = 0.1  #: dropout on embeddings and on each sublayer's output
    weight_dropout: float = 0.1  #: DropConnect on the normalized kernels
    input_dropout: float = 0.1  #: dropout on the convolution sublayer's input
    relu_dropout: float = 0.0  #: dropout after the ReLU in the feed-forward sublayer
    positions: bool = False  #: add sinusoidal position encodings (convolutions do not need them)

    def kernel_size_list(self) -> tuple[int, ...]:
        if len(self.kernel_sizes) == 1:
            return self.kernel_sizes * self.layers
        if len(self.kernel_sizes) != self.layers:
            raise ConfigError(f"kernel_sizes={self.kernel_sizes} must have one entry or one per layer "
                              f"(layers={self.layers})")
        return self.kernel_sizes


class ConvLM(LanguageModel):
    """Causal language model of LightConv or DynamicConv blocks (Wu et al. 2019, Section 6.4).

    Same shell as :class:`mlmyths.models.transformer.TransformerLM` (scaled embedding, pre-norm
    blocks, final LayerNorm, tied output layer); the token mixer is :class:`ConvMixer`. Input
    int64 tokens (B, T), output logits (B, T, vocab). Output ``t`` depends on the
    :attr:`receptive_field` tokens ending at ``t``.

    >>> import torch
    >>> model = ConvLM(ConvLMConfig(vocab_size=30, dim=16, layers=2, heads=4, kernel_sizes=(3, 5)))
    >>> model(torch.randint(0, 30, (2, 9))).shape, model.receptive_field
    (torch.Size([2, 9, 30]), 7)
    """

    def __init__(self, config: ConvLMConfig):
        blocks = [ConvBlock(config.dim, k, config.heads, conv=config.conv, ffn_dim=config.ffn_dim, glu=config.glu,
                            causal=True, weight_softmax=config.weight_softmax, dropout=config.dropout,
                            weight_dropout=config.weight_dropout, input_dropout=config.input_dropout,
                            relu_dropout=config.relu_dropout)
                  for k in config.kernel_size_list()]
        super().__init__(config.vocab_size, config.dim, blocks, positions=config.positions, dropout=config.dropout)
        self.config = config

    @property
    def receptive_field(self) -> int:
        """Tokens that one output sees: 1 + Σ (K_l - 1) over layers."""
        return receptive_field(self.config.kernel_size_list())


def receptive_field(kernel_sizes: tuple[int, ...]) -> int:
    """1 + Σ (K - 1): how many past tokens (the current one included) a stack of causal convolutions sees."""
    return 1 + sum(k - 1 for k in kernel_sizes)


__all__ = [
    "BAND_BLOCK", "UNFOLD_MAX_T", "UNFOLD_MAX_T_INFERENCE", "ConvBlock", "ConvLM", "ConvLMConfig", "ConvMixer",
    "DynamicConv1d", "LightweightConv1d", "conv_padding", "dynamic_conv", "dynamic_conv_path", "lightweight_conv",
    "receptive_field", "reference_conv",
]
