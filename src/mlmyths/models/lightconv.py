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

Implementations. :func:`reference_conv` is the definition written as a plain sum over the K
taps; the tests hold the fast paths to it (outputs and gradients). LightConv's fast path is
one depthwise convolution (a channels-last ``conv2d`` straight on the (B, T, C) memory; on the
CPU its kernel gradient is computed with matmuls, see :class:`_LightConvFunction`).
DynamicConv has three: ``"native"`` runs C kernels (``dynamic_conv.c``, compiled for this
machine on first use by :mod:`mlmyths.native`; float32 on the CPU) that sum each output row's K
input rows while they sit in cache and fuse the softmax gradient into the kernel gradient;
``"unfold"`` gathers the K-window of every position (a strided view) and contracts it with the
position's kernel (``K×`` the input's memory; fast for a handful of positions, as in
token-by-token decoding); and ``"band"`` turns each block of ``S`` positions' kernels into a
banded ``S × (S+K-1)`` matrix and multiplies it with the block's input window, so all the work
is batched matrix products (one ``bmm`` over every block of every head and sequence, forward and
backward; the band matrices are strided views of the kernels, never filled in); on the CPU long
sequences go through in cache-sized chunks. All three keep memory linear in T. On the CPU
(without DropConnect or autocast) a DynamicConv1d runs as one autograd function
(:class:`_DynamicConvFunction`): kernel prediction, softmax, native or band convolution and
their backward passes, without a padded copy of the input or a separate sum of its two
gradients. ``method="auto"`` takes "native" wherever it runs; elsewhere (no C compiler, other
dtypes, CUDA) "unfold" up to :data:`UNFOLD_MAX_T` positions (training) or
:data:`UNFOLD_MAX_T_INFERENCE` (no gradients) and "band" beyond: the crossovers measured by
``benchmarks/lightconv.py`` (see ``docs/benchmarks/lightconv.md``).

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
from collections.abc import Sequence
import ctypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from mlmyths import native
from mlmyths.errors import ConfigError, UserError
from mlmyths.models.transformer import Block, LanguageModel, xavier_linear

Method = Literal["auto", "unfold", "band", "native"]

#: DynamicConv ``method="auto"`` takes "native" at every length where the C kernels run (float32 on
#: the CPU; measured faster than unfold from T = 1 with gradients). Elsewhere it uses "unfold" up to
#: this many positions when gradients are needed, "band" beyond (the forward+backward crossover
#: measured by benchmarks/lightconv.py).
UNFOLD_MAX_T = 8
#: The same without gradients (forward-only crossover): the unfold sum has no backward to pay for.
UNFOLD_MAX_T_INFERENCE = 64
#: Positions per band block ``S`` of DynamicConv's "band" path (work ∝ (S+K-1)/K, matmuls larger with S).
BAND_BLOCK = 16
#: On the CPU the band path works through chunks of about this many input elements (B · positions ·
#: C), so that a chunk's blocked copies stay in cache (measured by benchmarks/lightconv.py).
CHUNK_ELEMENTS = 2**19
#: The C kernels of DynamicConv's "native" path (float32 on the CPU), built on first use by :mod:`mlmyths.native`.
NATIVE_SOURCE = Path(__file__).with_name("dynamic_conv.c")


def conv_padding(kernel_size: int, causal: bool) -> tuple[int, int]:
    """Zeros added (left, right) along time so that the output has the input's length."""
    left = kernel_size - 1 if causal else (kernel_size - 1) // 2
    return left, kernel_size - 1 - left


# -- the convolution, three ways ---------------------------------------------------------------


def reference_conv(x_padded: Tensor, kernel: Tensor) -> Tensor:
    """The definition, as a plain sum over taps: ``y[b,t,c] = Σ_k w[b,t,c//R,k] · x_padded[b,t+k,c]``.

    ``x_padded`` is (B, T+K-1, C), already padded along time; ``kernel`` is (H, K) (LightConv:
    the same kernel everywhere) or (B, T, H, K) (DynamicConv: one kernel per position).
    Returns (B, T, C). Slow but obviously right; the tests compare the fast paths with it.
    """
    B, L, C = x_padded.shape
    H, K = kernel.shape[-2:]
    T, R = L - K + 1, C // H
    taps = kernel if kernel.dim() == 4 else kernel.view(1, 1, H, K)
    out = x_padded.new_zeros(B, T, H, R)
    for k in range(K):
        out = out + x_padded[:, k:k + T].reshape(B, T, H, R) * taps[..., k:k + 1]  # (B, T, H, R)
    return out.reshape(B, T, C)


def lightweight_conv(x_padded: Tensor, kernel: Tensor) -> Tensor:
    """LightConv fast path: one depthwise convolution; ``x_padded`` (B, T+K-1, C), ``kernel`` (H, K) -> (B, T, C).

    The (B, T, C) memory is already the channels-last layout of a (B, C, 1, T) image, so the
    convolution runs as a channels-last ``conv2d`` with no transposes. On the CPU, when
    gradients are needed, the backward pass is ours (:class:`_LightConvFunction`): PyTorch's
    CPU kernel for a depthwise convolution's weight gradient is several times slower than the
    forward; we compute that gradient with batched matmuls.
    """
    if x_padded.device.type == "cpu" and torch.is_grad_enabled() and (x_padded.requires_grad or kernel.requires_grad):
        return _LightConvFunction.apply(x_padded, kernel)
    return _depthwise(x_padded, _expand(kernel, x_padded))


def _expand(kernel: Tensor, x: Tensor) -> Tensor:
    """(H, K) -> (C, 1, 1, K): channel c uses head c // (C/H)."""
    C, (H, K) = x.shape[-1], kernel.shape
    return kernel.repeat_interleave(C // H, dim=0).view(C, 1, 1, K).to(x.dtype)


def _depthwise(x_padded: Tensor, weight: Tensor) -> Tensor:
    B, L, C = x_padded.shape
    image = x_padded.unsqueeze(1).permute(0, 3, 1, 2)  # (B, C, 1, L), channels-last view of (B, L, C)
    y = F.conv2d(image, weight, groups=C)  # (B, C, 1, T), channels-last
    return y.permute(0, 2, 3, 1).reshape(B, -1, C)  # (B, T, C), a view


class _LightConvFunction(torch.autograd.Function):
    """Depthwise convolution with head-shared kernels and a matmul-based kernel gradient.

    ``dL/dx`` is the transposed convolution of the output gradient. ``dL/dw[h, k] =
    Σ_{b,t,r} g[b,t,hR+r] · x[b,t+k,hR+r]``: for blocks of S output positions, the products of
    every output position with the S+K-1 inputs it can see are one (S × BNR) @ (BNR × (S+K-1))
    matmul per head; tap k is the sum of that matrix's k-th diagonal.
    """

    @staticmethod
    def forward(ctx: Any, x_padded: Tensor, kernel: Tensor) -> Tensor:
        x_padded = x_padded.contiguous()
        weight = _expand(kernel, x_padded)
        ctx.save_for_backward(x_padded, weight)
        ctx.heads = kernel.shape[0]
        return _depthwise(x_padded, weight)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None]:
        x_padded, weight = ctx.saved_tensors
        B, L, C = x_padded.shape
        g = grad_out.contiguous()  # (B, T, C)
        grad_x = grad_kernel = None
        if ctx.needs_input_grad[0]:
            image = g.unsqueeze(1).permute(0, 3, 1, 2)  # (B, C, 1, T), channels-last view
            grad_x = F.conv_transpose2d(image, weight, groups=C).permute(0, 2, 3, 1).reshape(B, L, C)
        if ctx.needs_input_grad[1]:
            grad_kernel = _light_kernel_grad(g, x_padded, ctx.heads, weight.shape[-1])
        return grad_x, grad_kernel


def _light_kernel_grad(g: Tensor, x_padded: Tensor, H: int, K: int, block_size: int = 32,
                       chunk: int | None = None) -> Tensor:
    """``Σ_{b,t,r} g[b,t,hR+r] · x_padded[b,t+k,hR+r]`` as (H, K); g (B, T, C), x_padded (B, T+K-1, C).

    Summed over chunks of ``chunk`` positions (default: about :data:`CHUNK_ELEMENTS` inputs) so
    that each chunk's gathered windows stay in cache on long sequences."""
    if g.dtype in (torch.float16, torch.bfloat16):  # sums of B·T·R products: accumulate in float32
        g, x_padded = g.float(), x_padded.float()
    B, T, C = g.shape
    if chunk is None:
        chunk = max(block_size, CHUNK_ELEMENTS // (B * C))
    if T > chunk:
        return sum(_light_kernel_grad(g[:, a:a + chunk], x_padded[:, a:a + chunk + K - 1], H, K, block_size, chunk)
                   for a in range(0, T, chunk))
    R, S = C // H, max(1, min(block_size, T))
    N = -(-T // S)  # blocks
    W = S + K - 1  # inputs one block of outputs sees
    if N * S != T:
        g, x_padded = F.pad(g, (0, 0, 0, N * S - T)), F.pad(x_padded, (0, 0, 0, N * S - T))
    windows = x_padded.unfold(1, W, S)  # (B, N, C, W)
    windows = windows.reshape(B, N, H, R, W).permute(2, 0, 1, 3, 4).reshape(H, B * N * R, W)  # (H, BNR, W)
    grads = g.reshape(B, N, S, H, R).permute(3, 2, 0, 1, 4).reshape(H, S, B * N * R)  # (H, S, BNR)
    products = torch.bmm(grads, windows)  # (H, S, W): products[h, s, j] = Σ_{b,n,r} g[., s, .] x[., j, .]
    taps = products.as_strided((H, S, K), (S * W, W + 1, 1))  # tap k of output s: column s + k
    return taps.sum(1)


def dynamic_conv(x_padded: Tensor, kernel: Tensor, method: Method = "auto", block_size: int = BAND_BLOCK,
                 padding: tuple[int, int] = (0, 0)) -> Tensor:
    """DynamicConv fast paths; ``x_padded`` (B, T+K-1, C), ``kernel`` (B, T, H, K) -> (B, T, C).

    ``method``: "unfold" (K-windows as a strided view, ``K×`` memory), "band" (blocks of
    ``block_size`` positions as banded matrices, batched matmuls), "native" (the C kernels of
    ``dynamic_conv.c``: float32 on the CPU, where a C compiler is found) or "auto" (native where
    it can run; elsewhere unfold up to :data:`UNFOLD_MAX_T` positions, or
    :data:`UNFOLD_MAX_T_INFERENCE` without gradients, and band beyond). ``padding`` (left,
    right): zero rows around ``x_padded`` that it does not hold yet (band and native read them
    without making a padded copy); by default it is already padded.
    """
    fits = kernel.dim() == 4 and x_padded.dim() == 3 and x_padded.shape[0] == kernel.shape[0] and (
        kernel.shape[2] > 0 and x_padded.shape[2] % kernel.shape[2] == 0
        and x_padded.shape[1] + sum(padding) == kernel.shape[1] + kernel.shape[3] - 1)
    if not fits:
        raise UserError(f"dynamic_conv: x_padded (B, T+K-1, C) with {padding} padding rows does not fit kernel "
                        f"(B, T, H, K) with C divisible by H: got {tuple(x_padded.shape)} and {tuple(kernel.shape)}")
    grad = torch.is_grad_enabled() and (x_padded.requires_grad or kernel.requires_grad)
    method = _choose_method(method, kernel.shape[1], grad, x_padded, kernel)
    if method == "unfold":
        return _unfold_conv(F.pad(x_padded, (0, 0, *padding)) if any(padding) else x_padded, kernel)
    if method == "native":
        return _NativeConvFunction.apply(x_padded, kernel, padding[0])
    return _BandConvFunction.apply(x_padded, kernel, padding, block_size, _band_chunk(x_padded, block_size))


def _choose_method(method: str, T: int, grad: bool, *tensors: Tensor) -> str:
    """The DynamicConv path for T positions of ``tensors`` (``method="auto"``: the measured crossover)."""
    if method == "auto":
        if _native_library(*tensors) is not None:
            return "native"
        return "unfold" if T <= (UNFOLD_MAX_T if grad else UNFOLD_MAX_T_INFERENCE) else "band"
    if method not in ("unfold", "band", "native"):
        raise UserError(f"unknown DynamicConv method {method!r}; choose auto, unfold, band or native")
    if method == "native" and _native_library(*tensors) is None:
        why = "it runs on float32 CPU tensors" if _native_library() is not None else native.status(NATIVE_SOURCE)
        raise UserError(f"DynamicConv method 'native' cannot run here: {why}; use auto or band")
    return method


def _unfold_conv(x_padded: Tensor, kernel: Tensor) -> Tensor:
    B, T, H, K = kernel.shape
    C = x_padded.shape[-1]
    windows = x_padded.unfold(1, K, 1).reshape(B, T, H, C // H, K)  # (B, T, H, R, K), a view
    return (windows * kernel.unsqueeze(3)).sum(-1).reshape(B, T, C)


def _band_chunk(x: Tensor, block_size: int) -> int:
    """Output positions per chunk of the band path: on the CPU about :data:`CHUNK_ELEMENTS` inputs, a
    whole number of blocks; elsewhere the whole sequence."""
    B, T, C = x.shape
    if x.device.type != "cpu":
        return max(1, T)
    return max(block_size, CHUNK_ELEMENTS // (B * C) // block_size * block_size)


@dataclass(frozen=True)
class _BandLayout:
    """Geometry of the band path: heads are batched, each (batch, head) sequence is cut in blocks.

    Every (b, h) sequence gets ``P = segments · S`` rows of a flat (rows, R) buffer, so block
    ``i`` of the whole batch starts at row ``i · S`` and its input window (``W = S+K-1`` rows)
    is one strided view with batch stride ``S · R``: a single ``bmm`` over all ``M = B·H·segments``
    blocks with no gather. The last ``segments - N`` blocks of each sequence are padding (their
    windows run into the next sequence; their outputs are dropped): ``⌈(K-1)/S⌉`` blocks per
    sequence (2 of 66 at T = 1024, S = 16).
    """

    B: int
    T: int
    H: int
    K: int
    S: int
    C: int

    @property
    def R(self) -> int:  # channels per head
        return self.C // self.H

    @property
    def N(self) -> int:  # blocks holding outputs
        return -(-self.T // self.S)

    @property
    def segments(self) -> int:  # blocks per (b, h) sequence, padding included
        return self.N + -(-(self.K - 1) // self.S)

    @property
    def P(self) -> int:  # rows per (b, h) sequence
        return self.segments * self.S

    @property
    def W(self) -> int:  # input rows one block reads
        return self.S + self.K - 1

    @property
    def M(self) -> int:  # blocks in all
        return self.B * self.H * self.segments

    def windows(self, buffer: Tensor) -> Tensor:
        """(M, W, R) strided view of the input windows of every block of a flat buffer."""
        return buffer.as_strided((self.M, self.W, self.R), (self.S * self.R, self.R, 1))

    def to_blocks(self, x: Tensor, offset: int = 0) -> Tensor:
        """(B, rows, C) -> flat buffer: for each (b, h), ``offset`` zero rows, the head's rows, zeros
        up to P rows; then W zero rows (the last windows read up to W rows past the end)."""
        B, H, P, R = self.B, self.H, self.P, self.R
        rows = x.shape[1]
        buffer = x.new_empty((B * H * P + self.W) * R)
        blocks = buffer[:B * H * P * R].view(B, H, P, R)
        blocks[:, :, :offset].zero_()
        blocks[:, :, offset:offset + rows].copy_(x.reshape(B, rows, H, R).transpose(1, 2))
        blocks[:, :, offset + rows:].zero_()
        buffer[B * H * P * R:].zero_()
        return buffer

    def from_blocks(self, blocks: Tensor, out: Tensor, add_rows: int = 0, skip: int = 0) -> None:
        """Inverse of :meth:`to_blocks`: writes rows ``skip … skip + out.shape[1] - 1`` of each (b, h)
        sequence into ``out`` (B, rows, C), which may be a slice of a longer tensor; the first
        ``add_rows`` of them are added to what ``out`` holds instead."""
        B, H, P, R = self.B, self.H, self.P, self.R
        rows = out.shape[1]
        heads = blocks.reshape(-1)[:B * H * P * R].view(B, H, P, R)[:, :, skip:skip + rows].transpose(1, 2)
        view = out.view(B, rows, H, R)
        view[:, :add_rows].add_(heads[:, :add_rows])
        view[:, add_rows:].copy_(heads[:, add_rows:])

    def transposed_diagonals(self, band_t: Tensor, blocks: int) -> Tensor:
        """(B, H, blocks, S, K) view of the taps of the first ``blocks`` blocks of each (b, h) sequence
        in (M, W, S) transposed band matrices (tap k of position s is entry (s+k, s))."""
        segments, W, S = self.segments, self.W, self.S
        return band_t.as_strided((self.B, self.H, segments, S, self.K),
                                 (self.H * segments * W * S, segments * W * S, W * S, S + 1, S))[:, :, :blocks]

    def kernel_rows(self, kernel: Tensor) -> Tensor:
        """The kernels (B, T, H, K) laid out so that both kinds of band matrix are strided views of them.

        For each (b, h): K-1 zero rows, then one row of ``K + S`` slots per position (its K taps,
        S zeros), then zero rows up to P rows; K-1 more zero rows at the end. In the band of block n
        (:meth:`band`), entry (s, c) is tap ``c-s`` of position ``nS+s``: offset ``(K-1+nS+s)(K+S) + c-s``,
        i.e. strides ``K+S-1 = W`` and 1 (a row-major matrix with leading dimension W). In the
        transposed band (:meth:`transposed_band`), entry (s, j) is tap ``K-1-j+s`` of position
        ``nS+j-(K-1)``: offset ``(nS+j)(K+S) + K-1-j+s``, strides 1 and W (column-major). Every
        off-band entry of either lands on a zero slot or a zero row, so ``bmm`` multiplies these views
        as they are: no band matrix is ever filled in.
        """
        B, T, H, K, S, P = self.B, self.T, self.H, self.K, self.S, self.P
        rows = kernel.new_empty(B * H * P + K - 1, K + S)
        per_head = rows[:B * H * P].view(B, H, P, K + S)
        per_head[:, :, :K - 1].zero_()
        per_head[:, :, K - 1:K - 1 + T, :K] = kernel.transpose(1, 2)
        per_head[:, :, K - 1:K - 1 + T, K:].zero_()
        per_head[:, :, K - 1 + T:].zero_()
        rows[B * H * P:].zero_()
        return rows

    def band(self, rows: Tensor) -> Tensor:
        """(M, S, W) band matrices of :meth:`kernel_rows`: ``y`` of block = band @ input window (row s
        holds the K taps of position nS+s at columns s … s+K-1)."""
        S, W, K = self.S, self.W, self.K
        return rows.as_strided((self.M, S, W), (S * (W + 1), W, 1), (K - 1) * (W + 1))

    def transposed_band(self, rows: Tensor) -> Tensor:
        """(M, S, W) matrices of the input gradient, from :meth:`kernel_rows`: grad of input block n =
        this @ window n of the output gradient shifted right by K-1 rows (as :meth:`to_blocks` with
        offset K-1 lays it out). Input row ``p`` receives ``Σ_m w[p+m-(K-1), K-1-m] · g[p+m-(K-1)]``:
        row s holds the kernels of positions ``nS+s+m-(K-1)``, tap ``K-1-m``, at column ``s+m``."""
        S, W, K = self.S, self.W, self.K
        return rows.as_strided((self.M, S, W), (S * (W + 1), 1, W), K - 1)


def _band_layout(kernel_shape: torch.Size, C: int, block_size: int, start: int, chunk: int) -> _BandLayout:
    """The layout of the chunk of (at most ``chunk``) output positions from ``start`` on."""
    B, T, H, K = kernel_shape
    length = min(T, start + chunk) - start
    return _BandLayout(B, length, H, K, max(1, min(block_size, length)), C)


def _chunk_rows(start: int, lay: _BandLayout, left: int, rows: int) -> tuple[int, int, int]:
    """Rows ``lo:hi`` of the unpadded input that the chunk from ``start`` reads, and how many zero
    (padding) rows come before them: the chunk reads padded rows start … start+T+K-2."""
    first = start - left
    lo, hi = max(0, first), min(rows, first + lay.T + lay.K - 1)
    return lo, max(lo, hi), lo - first


def _band_forward(x: Tensor, kernel: Tensor, padding: tuple[int, int], block_size: int,
                  chunk: int) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """The band path's forward: ``y`` (B, T, C), and each chunk's blocked inputs and kernel rows
    (what :func:`_band_backward` needs). ``x`` (B, T+K-1-left-right, C) gets ``padding`` zero rows."""
    B, T, H, K = kernel.shape
    y = x.new_empty(B, T, x.shape[2])
    blocked, rows = [], []
    for start in range(0, T, chunk):
        lay = _band_layout(kernel.shape, x.shape[2], block_size, start, chunk)
        lo, hi, lead = _chunk_rows(start, lay, padding[0], x.shape[1])
        blocked.append(lay.to_blocks(x[:, lo:hi], offset=lead))
        rows.append(lay.kernel_rows(kernel[:, start:start + lay.T]))
        lay.from_blocks(torch.bmm(lay.band(rows[-1]), lay.windows(blocked[-1])), y[:, start:start + lay.T])
    return y, blocked, rows


def _band_backward(grad_out: Tensor, blocked: Sequence[Tensor], rows: Sequence[Tensor], kernel_shape: torch.Size,
                   x_rows: int, padding: tuple[int, int], block_size: int, chunk: int, need_x: bool,
                   need_kernel: bool) -> tuple[Tensor | None, Tensor | None]:
    """Gradients of the band path with respect to its input (B, x_rows, C) and its kernels (B, T, H, K)."""
    B, T, H, K = kernel_shape
    grad_x = grad_out.new_empty(B, x_rows, grad_out.shape[2]) if need_x else None
    grad_kernel = grad_out.new_empty(kernel_shape) if need_kernel else None
    for i, start in enumerate(range(0, T, chunk)):
        lay = _band_layout(kernel_shape, grad_out.shape[2], block_size, start, chunk)
        S, R, N, stop = lay.S, lay.R, lay.N, start + lay.T
        shifted = lay.to_blocks(grad_out[:, start:stop], offset=K - 1)  # zeros around: padding blocks get none
        if need_kernel:
            g = shifted[(K - 1) * R:].as_strided((lay.M, S, R), (S * R, R, 1))  # (M, S, R), unshifted
            grad_band = torch.bmm(lay.windows(blocked[i]), g.transpose(1, 2))  # (M, W, S): the band gradient, transposed
            taps = lay.transposed_diagonals(grad_band, N).permute(0, 2, 3, 1, 4)  # (B, N, S, H, K)
            out = grad_kernel[:, start:stop]
            whole = lay.T // S  # the last chunk's last block may be cut short
            out[:, :whole * S].view(B, whole, S, H, K).copy_(taps[:, :whole])
            if whole < N:
                out[:, whole * S:].copy_(taps[:, whole, :lay.T - whole * S])
        if need_x:  # chunks overlap by K-1 input rows, which the previous chunk wrote: add those
            lo, hi, lead = _chunk_rows(start, lay, padding[0], x_rows)
            done = min(x_rows, start - padding[0] + K - 1) if i else lo  # rows the previous chunk wrote
            grad_blocks = torch.bmm(lay.transposed_band(rows[i]), lay.windows(shifted))
            lay.from_blocks(grad_blocks, grad_x[:, lo:hi], add_rows=max(0, done - lo), skip=lead)
    return grad_x, grad_kernel


class _BandConvFunction(torch.autograd.Function):
    """DynamicConv as banded matmuls (see :class:`_BandLayout`): ``(x, kernel, padding, block_size, chunk)``.

    Forward: the kernels of each block of S positions form an S × W band matrix (row s holds
    the K taps at columns s … s+K-1; a strided view of :meth:`_BandLayout.kernel_rows`) and one
    ``bmm`` multiplies all bands with their input windows. Backward: the kernel gradient is the
    band gradient ``windows @ gᵀ`` read back along its diagonals; the input gradient is again a
    band product, the kernels read along anti-diagonals (:meth:`_BandLayout.transposed_band`,
    another view of the same rows) times windows of the output gradient, so no overlapping
    windows have to be added back.

    Long sequences are cut into chunks of ``chunk`` output positions (each reading K-1 more
    inputs), so that one chunk's blocked buffers stay in the CPU's cache. Kept for the backward
    pass: each chunk's blocked inputs and kernel rows (about the inputs' size and (K+S)/K times
    the kernels'). The ``padding`` zero rows are written into the blocked copies, never into a
    padded copy of ``x``.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, kernel: Tensor, padding: tuple[int, int], block_size: int, chunk: int) -> Tensor:
        y, blocked, rows = _band_forward(x, kernel, padding, block_size, chunk)
        ctx.save_for_backward(*blocked, *rows)
        ctx.args = kernel.shape, x.shape[1], padding, block_size, chunk
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        saved = ctx.saved_tensors
        half = len(saved) // 2
        grads = _band_backward(grad_out, saved[:half], saved[half:], *ctx.args, *ctx.needs_input_grad[:2])
        return (*grads, None, None, None)


# -- the native path: C kernels (dynamic_conv.c) ---------------------------------------------------


def _native_library(*tensors: Tensor) -> Any:
    """The ctypes library of :data:`NATIVE_SOURCE`, or None where it cannot be built or cannot take
    ``tensors``: it runs on float32 CPU tensors only."""
    if any(t.device.type != "cpu" or t.dtype != torch.float32 for t in tensors):
        return None
    lib = native.load(NATIVE_SOURCE)
    if lib is not None and lib.dynconv_forward.argtypes is None:  # first use: declare the C signatures
        i64, ptr, i32 = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
        lib.dynconv_forward.argtypes = [ptr] * 3 + [i64] * 7 + [i32]
        lib.dynconv_kernel_grad.argtypes = [ptr] * 4 + [i64] * 7 + [i32] * 2
        lib.dynconv_input_grad.argtypes = [ptr] * 3 + [i64] * 7 + [i32] * 2
        for fn in (lib.dynconv_forward, lib.dynconv_kernel_grad, lib.dynconv_input_grad):
            fn.restype = ctypes.c_int
    return lib


def dynamic_conv_path(device: torch.device | str = "cpu") -> str:
    """Which path ``method="auto"`` takes for float32 sequences beyond a few positions on ``device``,
    and why: for reports and benchmarks, whose timings depend on it."""
    if torch.device(device).type != "cpu":
        return f"band (batched matmuls; the native kernels are CPU-only, this is {torch.device(device).type})"
    if _native_library() is not None:
        return f"native (C kernels, {native.status(NATIVE_SOURCE)})"
    return f"band (batched matmuls; native kernels unavailable: {native.status(NATIVE_SOURCE)})"


def _native_threads(rows: int) -> int:
    """Threads for ``rows`` output rows: PyTorch's intra-op count, fewer for small inputs."""
    return max(1, min(torch.get_num_threads(), rows // 64))


def _native_forward(x: Tensor, kernel: Tensor, left: int) -> Tensor:
    """``y`` (B, T, C) of ``x`` (B, Tx, C) read with ``left`` zero rows before it (and zeros after)."""
    x, kernel = x.contiguous(), kernel.contiguous()
    B, T, H, K = kernel.shape
    y = x.new_empty(B, T, x.shape[2])
    if y.numel():
        _native_library().dynconv_forward(x.data_ptr(), kernel.data_ptr(), y.data_ptr(), B, x.shape[1], T,
                                          x.shape[2], H, K, left, _native_threads(B * T))
    return y


def _native_kernel_grad(x: Tensor, kernel: Tensor, grad_out: Tensor, left: int, softmax: bool) -> Tensor:
    """The kernels' gradient (B, T, H, K); with ``softmax``, through the softmax whose output ``kernel`` is
    (the logits' gradient)."""
    x, kernel, grad_out = x.contiguous(), kernel.contiguous(), grad_out.contiguous()
    B, T, H, K = kernel.shape
    grad = kernel.new_empty(kernel.shape)
    if grad.numel():
        _native_library().dynconv_kernel_grad(x.data_ptr(), kernel.data_ptr(), grad_out.data_ptr(), grad.data_ptr(),
                                              B, x.shape[1], T, x.shape[2], H, K, left, int(softmax),
                                              _native_threads(B * T))
    return grad


def _native_input_grad(kernel: Tensor, grad_out: Tensor, x_rows: int, left: int,
                       out: Tensor | None = None) -> Tensor:
    """The input's gradient (B, x_rows, C); added to ``out`` (contiguous) when it is given."""
    kernel, grad_out = kernel.contiguous(), grad_out.contiguous()
    B, T, H, K = kernel.shape
    grad = grad_out.new_empty(B, x_rows, grad_out.shape[2]) if out is None else out
    if grad.numel():
        _native_library().dynconv_input_grad(kernel.data_ptr(), grad_out.data_ptr(), grad.data_ptr(), B, x_rows, T,
                                             grad.shape[2], H, K, left, int(out is not None),
                                             _native_threads(B * x_rows))
    return grad


class _NativeConvFunction(torch.autograd.Function):
    """DynamicConv by the C kernels of :data:`NATIVE_SOURCE`: ``(x, kernel, left)``, ``x`` (B, Tx, C)
    read with ``left`` zero rows before it and zeros after, ``kernel`` (B, T, H, K).

    Each output row sums its K input rows head by head while they sit in cache, with the head's
    channels as one vector loop; the input gradient gathers, for each input row, the K positions
    whose windows hold it, so that threads never write the same row. Nothing but ``x`` and the
    kernels is kept for the backward pass.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, kernel: Tensor, left: int) -> Tensor:
        ctx.save_for_backward(x, kernel)
        ctx.left = left
        return _native_forward(x, kernel, left)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        x, kernel = ctx.saved_tensors
        need_x, need_kernel = ctx.needs_input_grad[:2]
        grad_x = _native_input_grad(kernel, grad_out, x.shape[1], ctx.left) if need_x else None
        grad_kernel = _native_kernel_grad(x, kernel, grad_out, ctx.left, softmax=False) if need_kernel else None
        return grad_x, grad_kernel, None


class _DynamicConvFunction(torch.autograd.Function):
    """A whole DynamicConv (no DropConnect) in one function: ``(x, weight, heads, padding, softmax,
    method, block_size, chunk)``, ``weight`` (H·K, C) the kernel-predicting linear map, ``method``
    "native" (:class:`_NativeConvFunction`'s kernels) or "band" (:class:`_BandConvFunction`'s, chunk by
    chunk).

    The kernel logits are one matmul over all positions, then one softmax. Backward: the
    convolution's kernel gradient, through the softmax (fused into the native kernel; one native
    softmax gradient on the band path), then the prediction's input gradient with the
    convolution's accumulated into it, and the weight gradient. The input is never padded:
    compared with the same steps as separate autograd nodes, this saves a padded copy of the input
    and of its gradient, and the sum of two input gradients.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, heads: int, padding: tuple[int, int], softmax: bool,
                method: str, block_size: int, chunk: int) -> Tensor:
        B, T, C = x.shape
        logits = torch.mm(x.reshape(B * T, C), weight.t()).view(B, T, heads, -1)
        kernel = _softmax_kernel(logits, inplace=True) if softmax else logits
        if method == "native":
            y, saved = _native_forward(x, kernel, padding[0]), ()
        else:
            y, blocked, rows = _band_forward(x, kernel, padding, block_size, chunk)
            saved = (*blocked, *rows)
        # the band path needs the kernels themselves only for the softmax's gradient
        ctx.save_for_backward(x, weight, kernel if softmax or method == "native" else None, *saved)
        ctx.args = kernel.shape, padding, softmax, method, block_size, chunk
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        x, weight, kernel, *saved = ctx.saved_tensors
        kernel_shape, padding, softmax, method, block_size, chunk = ctx.args
        need_x, need_weight = ctx.needs_input_grad[:2]
        B, T, C = x.shape
        if method == "native":
            grad_logits = _native_kernel_grad(x, kernel, grad_out, padding[0], softmax).view(B * T, -1)
            grad_x = None
            if need_x:  # the prediction's input gradient, then the convolution's added to it
                grad_x = _native_input_grad(kernel, grad_out, T, padding[0], out=torch.mm(grad_logits, weight).view(B, T, C))
        else:
            half = len(saved) // 2
            grad_x, grad_logits = _band_backward(grad_out, saved[:half], saved[half:], kernel_shape, T, padding,
                                                 block_size, chunk, need_x, True)
            if softmax:  # through the softmax, in at least float32 like the softmax itself
                dtype = torch.promote_types(kernel.dtype, torch.float32)
                grad_logits = torch._softmax_backward_data(grad_logits.to(dtype), kernel.to(dtype), -1, dtype)
                grad_logits = grad_logits.to(kernel.dtype)
            grad_logits = grad_logits.view(B * T, -1)
            if need_x:
                grad_x.view(B * T, C).addmm_(grad_logits, weight)
        grad_weight = grad_logits.t().mm(x.reshape(B * T, C)) if need_weight else None
        return grad_x, grad_weight, None, None, None, None, None, None


# -- the modules ---------------------------------------------------------------------------------


def _softmax_kernel(logits: Tensor, inplace: bool = False) -> Tensor:
    """Softmax over the kernel width (Eq. 3) in at least float32 (half and bfloat16 logits are
    upcast), returned in the logits' dtype; with ``inplace``, written over ``logits`` where no upcast
    is needed (one buffer fewer to allocate and fault in)."""
    dtype = torch.promote_types(logits.dtype, torch.float32)
    if inplace and dtype == logits.dtype:
        return torch.softmax(logits, dim=-1, out=logits)
    return torch.softmax(logits, dim=-1, dtype=dtype).to(logits.dtype)


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
        w = _softmax_kernel(logits) if self.weight_softmax else logits
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
            return _unfold_conv(x_padded, kernel.expand(x_padded.shape[0], T, *kernel.shape))
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
        if method not in ("auto", "unfold", "band", "native"):
            raise ConfigError(f"DynamicConv1d: method must be auto, unfold, band or native, got {method!r}")
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
        """On the band and native paths, no padded copy of ``x``; on the CPU without DropConnect or
        autocast, the prediction, softmax and convolution as one :class:`_DynamicConvFunction`."""
        weight = self.kernel_proj.weight
        grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
        method = _choose_method(self.method, x.shape[1], grad, x)
        if method == "unfold":
            return super()._fast(x)
        if (x.device.type == "cpu" and x.dtype == weight.dtype and not torch.is_autocast_enabled("cpu")
                and not (self.training and self.weight_dropout > 0)):
            return _DynamicConvFunction.apply(x, weight, self.heads, self.padding, self.weight_softmax, method,
                                              self.block_size, _band_chunk(x, self.block_size))
        return dynamic_conv(x, self.kernel(x).to(x.dtype), method, self.block_size, self.padding)


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
    "DynamicConv1d", "LightweightConv1d", "conv_padding", "dynamic_conv", "lightweight_conv", "receptive_field",
    "reference_conv",
]
