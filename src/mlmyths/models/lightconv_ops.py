"""The convolutions behind :mod:`mlmyths.models.lightconv`: reference, fast paths, native kernels, dispatch.

Wu, Fan, Baevski, Dauphin & Auli, "Pay Less Attention with Lightweight and Dynamic
Convolutions", ICLR 2019 (https://arxiv.org/abs/1901.10430), Section 3.2-3.3: LightConv applies
one softmax-normalized ``(H, K)`` kernel everywhere (Eq. 2-3), DynamicConv one ``(H, K)`` kernel
per position predicted from that position (Eq. 4). Both read ``x_padded`` (B, T+K-1, C), already
padded along time, and give (B, T, C); channel ``c`` belongs to head ``c // (C/H)``, and kernel tap
``k`` multiplies input position ``t + k`` of ``x_padded``. The modules users import
(:class:`~mlmyths.models.lightconv.LightweightConv1d`, :class:`~mlmyths.models.lightconv.DynamicConv1d`,
...) live in :mod:`mlmyths.models.lightconv`; this module holds the arithmetic.

Implementations. :func:`reference_conv` is the definition written as a plain sum over the K
taps; the tests hold the fast paths to it (outputs and gradients). LightConv's fast path
(:func:`lightweight_conv`) is one depthwise convolution (a channels-last ``conv2d`` straight on
the (B, T, C) memory; on the CPU its kernel gradient is computed with matmuls, see
:class:`_LightConvFunction`). DynamicConv (:func:`dynamic_conv`) has three paths, listed in
:data:`PATHS` (the one dispatch table: what each path is, where it runs, when ``method="auto"``
takes it, and whether it can run a whole layer in one autograd function):

- ``"native"`` runs C kernels (``dynamic_conv.c``, compiled for this machine on first use by
  :mod:`mlmyths.native`; float32 on the CPU) that sum each output row's K input rows while they
  sit in cache and fuse the softmax gradient into the kernel gradient;
- ``"unfold"`` gathers the K-window of every position (a strided view) and contracts it with the
  position's kernel (``K×`` the input's memory; fast for a handful of positions, as in
  token-by-token decoding);
- ``"band"`` turns each block of ``S`` positions' kernels into a banded ``S × (S+K-1)`` matrix
  and multiplies it with the block's input window, so all the work is batched matrix products
  (one ``bmm`` over every block of every head and sequence, forward and backward; the band
  matrices are strided views of the kernels, never filled in); on the CPU long sequences go
  through in cache-sized chunks.

All three keep memory linear in T. ``method="auto"`` takes the first path of :data:`AUTO_ORDER`
that runs on the tensors and wants their length: "native" wherever it runs; elsewhere (no C
compiler, other dtypes, CUDA) "unfold" up to :data:`UNFOLD_MAX_T` positions (training) or
:data:`UNFOLD_MAX_T_INFERENCE` (no gradients) and "band" beyond: the crossovers measured by
``benchmarks/lightconv.py`` (see ``docs/benchmarks/lightconv.md``). On the CPU (without
DropConnect or autocast) a whole DynamicConv layer on the native or band path runs as one
autograd function (:func:`dynamic_conv_layer`, :class:`_DynamicConvFunction`): kernel
prediction, softmax, convolution and their backward passes, without a padded copy of the input
or a separate sum of its two gradients. :func:`layer_route` makes that choice, for the layer, from
the same table.

>>> import torch
>>> x_padded, kernel = torch.randn(2, 10 + 2, 8), torch.softmax(torch.randn(2, 10, 4, 3), -1)
>>> torch.allclose(dynamic_conv(x_padded, kernel, "band"), reference_conv(x_padded, kernel), atol=1e-6)
True
>>> choose_path("auto", 100, True, x_padded.double())
'band'
"""
from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from mlmyths import native
from mlmyths.errors import UserError

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


def unfold_conv(x_padded: Tensor, kernel: Tensor) -> Tensor:
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
        kernel = softmax_kernel(logits, inplace=True) if softmax else logits
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


def softmax_kernel(logits: Tensor, inplace: bool = False) -> Tensor:
    """Softmax over the kernel width (Eq. 3) in at least float32 (half and bfloat16 logits are
    upcast), returned in the logits' dtype; with ``inplace``, written over ``logits`` where no upcast
    is needed (one buffer fewer to allocate and fault in)."""
    dtype = torch.promote_types(logits.dtype, torch.float32)
    if inplace and dtype == logits.dtype:
        return torch.softmax(logits, dim=-1, out=logits)
    return torch.softmax(logits, dim=-1, dtype=dtype).to(logits.dtype)


# -- DynamicConv: the one dispatch table -----------------------------------------------------------

#: The (device type, dtype) of each tensor a path would get.
Placement = tuple[tuple[str, torch.dtype], ...]


def _placement(*tensors: Tensor) -> Placement:
    return tuple((t.device.type, t.dtype) for t in tensors)


def _native_why_not(place: Placement) -> str | None:
    """Why the C kernels cannot take tensors of ``place`` here (None: they can). The library is built
    (on first use) only for float32 CPU tensors."""
    devices = sorted({device for device, _ in place} - {"cpu"})
    if devices:
        return f"the native kernels are CPU-only, this is {', '.join(devices)}"
    if any(dtype != torch.float32 for _, dtype in place):
        return "it runs on float32 CPU tensors"
    if _native_library() is None:
        return f"native kernels unavailable: {native.status(NATIVE_SOURCE)}"
    return None


def _always(T: int, grad: bool) -> bool:
    return True


def _few_positions(T: int, grad: bool) -> bool:
    return T <= (UNFOLD_MAX_T if grad else UNFOLD_MAX_T_INFERENCE)


def _native_convolve(x: Tensor, kernel: Tensor, padding: tuple[int, int], block_size: int) -> Tensor:
    return _NativeConvFunction.apply(x, kernel, padding[0])


def _unfold_convolve(x: Tensor, kernel: Tensor, padding: tuple[int, int], block_size: int) -> Tensor:
    return unfold_conv(F.pad(x, (0, 0, *padding)) if any(padding) else x, kernel)  # (B, T+K-1, C) padded


def _band_convolve(x: Tensor, kernel: Tensor, padding: tuple[int, int], block_size: int) -> Tensor:
    return _BandConvFunction.apply(x, kernel, padding, block_size, _band_chunk(x, block_size))


@dataclass(frozen=True)
class ConvPath:
    """One way to run DynamicConv's convolution: an entry of :data:`PATHS`."""

    name: str  #: the ``method`` that asks for it
    summary: str  #: what it is, in a few words (for reports)
    why_not: Callable[[Placement], str | None] | None  #: why it cannot take such tensors here (None: it can); None: runs anywhere
    auto_takes: Callable[[int, bool], bool]  #: whether ``method="auto"`` wants it for T positions (with gradients?)
    convolve: Callable[[Tensor, Tensor, tuple[int, int], int], Tensor]  #: (x, kernel, padding, block_size) -> y
    whole_layer: bool  #: whether :class:`_DynamicConvFunction` can run a whole layer on it


#: DynamicConv's paths, in the order ``method="auto"`` tries them: the first that can take the tensors
#: and wants their length. The only place where a path is chosen (:func:`choose_path`, :func:`layer_route`,
#: :func:`dynamic_conv_path` read it).
PATHS: dict[str, ConvPath] = {p.name: p for p in (
    ConvPath("native", "C kernels", _native_why_not, _always, _native_convolve, whole_layer=True),
    ConvPath("unfold", "K-windows as a strided view", None, _few_positions, _unfold_convolve, whole_layer=False),
    ConvPath("band", "batched matmuls", None, _always, _band_convolve, whole_layer=True),
)}


def _why_not(path: ConvPath, place: Callable[[], Placement]) -> str | None:
    return None if path.why_not is None else path.why_not(place())


def _choose(method: str, T: int, grad: bool, place: Callable[[], Placement]) -> str:
    """The path for ``method``; ``place()`` gives the tensors' placement (only asked for when a path
    depends on it: this runs at every layer call, decoding steps included)."""
    if method == "auto":
        return next(p.name for p in PATHS.values() if p.auto_takes(T, grad) and _why_not(p, place) is None)
    if method not in PATHS:
        raise UserError(f"unknown DynamicConv method {method!r}; choose auto, {', '.join(PATHS)}")
    why = _why_not(PATHS[method], place)
    if why is not None:
        raise UserError(f"DynamicConv method {method!r} cannot run here: {why}; use auto or band")
    return method


def choose_path(method: str, T: int, grad: bool, *tensors: Tensor) -> str:
    """The DynamicConv path (a key of :data:`PATHS`) for ``method`` on T positions of ``tensors``, with
    gradients or not; a :class:`UserError` saying why when an explicit ``method`` cannot run on them."""
    return _choose(method, T, grad, lambda: _placement(*tensors))


def dynamic_conv(x_padded: Tensor, kernel: Tensor, method: Method = "auto", block_size: int = BAND_BLOCK,
                 padding: tuple[int, int] = (0, 0)) -> Tensor:
    """DynamicConv fast paths; ``x_padded`` (B, T+K-1, C), ``kernel`` (B, T, H, K) -> (B, T, C).

    ``method``: "unfold" (K-windows as a strided view, ``K×`` memory), "band" (blocks of
    ``block_size`` positions as banded matrices, batched matmuls), "native" (the C kernels of
    ``dynamic_conv.c``: float32 on the CPU, where a C compiler is found) or "auto" (native where
    it can run; elsewhere unfold up to :data:`UNFOLD_MAX_T` positions, or
    :data:`UNFOLD_MAX_T_INFERENCE` without gradients, and band beyond; see :data:`PATHS`).
    ``padding`` (left, right): zero rows around ``x_padded`` that it does not hold yet (band and
    native read them without making a padded copy); by default it is already padded.
    """
    fits = kernel.dim() == 4 and x_padded.dim() == 3 and x_padded.shape[0] == kernel.shape[0] and (
        kernel.shape[2] > 0 and x_padded.shape[2] % kernel.shape[2] == 0
        and x_padded.shape[1] + sum(padding) == kernel.shape[1] + kernel.shape[3] - 1)
    if not fits:
        raise UserError(f"dynamic_conv: x_padded (B, T+K-1, C) with {padding} padding rows does not fit kernel "
                        f"(B, T, H, K) with C divisible by H: got {tuple(x_padded.shape)} and {tuple(kernel.shape)}")
    grad = torch.is_grad_enabled() and (x_padded.requires_grad or kernel.requires_grad)
    path = PATHS[choose_path(method, kernel.shape[1], grad, x_padded, kernel)]
    return path.convolve(x_padded, kernel, padding, block_size)


def layer_route(method: str, x: Tensor, weight: Tensor, dropconnect: bool) -> tuple[str, bool]:
    """A DynamicConv layer's path for its input ``x`` (B, T, C) and kernel-predicting ``weight`` (H·K, C),
    and whether the whole layer runs as one function (:func:`dynamic_conv_layer`): where the path
    allows it, on the CPU, with ``x`` in the weight's dtype, no autocast and no DropConnect."""
    grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    name = choose_path(method, x.shape[1], grad, x)
    whole = (PATHS[name].whole_layer and x.device.type == "cpu" and x.dtype == weight.dtype
             and not torch.is_autocast_enabled("cpu") and not dropconnect)
    return name, whole


def dynamic_conv_layer(x: Tensor, weight: Tensor, heads: int, padding: tuple[int, int], softmax: bool, path: str,
                       block_size: int = BAND_BLOCK) -> Tensor:
    """A whole DynamicConv without DropConnect (Eq. 4): kernels ``x @ weightᵀ`` (softmax-normalized over
    their width when ``softmax``) applied to ``x`` (B, T, C) read with ``padding`` zero rows, on the
    "native" or "band" ``path``, as one autograd function (:class:`_DynamicConvFunction`)."""
    if not PATHS[path].whole_layer:
        raise UserError(f"dynamic_conv_layer runs on {[n for n, p in PATHS.items() if p.whole_layer]}, got {path!r}")
    return _DynamicConvFunction.apply(x, weight, heads, padding, softmax, path, block_size, _band_chunk(x, block_size))


def dynamic_conv_path(device: torch.device | str = "cpu") -> str:
    """Which path ``method="auto"`` takes for float32 sequences beyond a few positions on ``device``,
    and why: for reports and benchmarks, whose timings depend on it."""
    place: Placement = ((torch.device(device).type, torch.float32),)
    name = _choose("auto", UNFOLD_MAX_T_INFERENCE + 1, True, lambda: place)
    if name == "native":
        return f"native ({PATHS[name].summary}, {native.status(NATIVE_SOURCE)})"
    skipped = [why for p in PATHS.values() if p.name != name and (why := _why_not(p, lambda: place)) is not None]
    return f"{name} ({PATHS[name].summary}" + "".join(f"; {why}" for why in skipped) + ")"
