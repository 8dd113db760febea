"""A small causal Transformer language model on ``F.scaled_dot_product_attention``,
and the language-model shell it shares with :class:`mlmyths.models.lightconv.ConvLM`.

The shell (:class:`LanguageModel`) is everything but the token mixer: token embedding
scaled by ``sqrt(dim)`` (Vaswani et al. 2017, Section 3.4), optional sinusoidal positions
(Section 3.5), a stack of pre-norm blocks, a final LayerNorm and an output layer tied to the
embedding. A block mixes tokens (self-attention here, a lightweight or dynamic convolution in
``ConvLM``) and then applies the feed-forward sublayer; both sublayers are residual with the
LayerNorm in front, as in fairseq's ``lightconv_lm`` (``decoder_normalize_before=True``),
which is the language model of Wu et al. (ICLR 2019, Section 6.4).

Every block also decodes incrementally: ``init_state`` / ``step`` keep a cache (keys and
values here, the last K-1 inputs for a convolution) so that feeding tokens one at a time
gives the same logits as the full forward; :meth:`LanguageModel.generate` samples with it.

>>> import torch
>>> model = TransformerLM(TransformerLMConfig(vocab_size=50, dim=32, layers=2, heads=4))
>>> model(torch.randint(0, 50, (2, 16))).shape
torch.Size([2, 16, 50])
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlmyths.errors import ConfigError, UserError


def xavier_linear(in_features: int, out_features: int, bias: bool = True) -> nn.Linear:
    """``nn.Linear`` with Xavier-uniform weights and zero bias (the init of both LMs here)."""
    layer = nn.Linear(in_features, out_features, bias=bias)
    nn.init.xavier_uniform_(layer.weight)
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


def sinusoidal_positions(length: int, dim: int, offset: int = 0, *, device: torch.device | None = None,
                         dtype: torch.dtype = torch.float32) -> Tensor:
    """Fixed sine/cosine position encodings (Vaswani et al. 2017, Section 3.5), ``(length, dim)``.

    Row ``i`` encodes position ``offset + i``; the first half of the channels are sines, the
    second half cosines, with wavelengths from 2π to 10000·2π.
    """
    half = dim // 2
    freq = torch.exp(torch.arange(half, device=device, dtype=torch.float32) * (-math.log(10000.0) / max(half - 1, 1)))
    pos = torch.arange(offset, offset + length, device=device, dtype=torch.float32)
    angles = pos[:, None] * freq[None, :]  # (length, half)
    table = torch.cat([angles.sin(), angles.cos()], dim=1)
    if dim % 2:
        table = F.pad(table, (0, 1))
    return table.to(dtype)


class FeedForward(nn.Module):
    """Position-wise feed-forward sublayer: Linear(dim, hidden) -> ReLU -> dropout -> Linear(hidden, dim)."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = xavier_linear(dim, hidden)
        self.fc2 = xavier_linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, dim) -> (B, T, dim)
        return self.fc2(self.dropout(F.relu(self.fc1(x))))


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with one QKV projection, on ``F.scaled_dot_product_attention``.

    ``step`` appends the new keys and values to a cache ``(k, v)`` of shape ``(B, heads, t, dim/heads)``.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ConfigError(f"attention dim={dim} must be divisible by heads={heads}; choose heads dividing dim")
        self.heads = heads
        self.qkv = xavier_linear(dim, 3 * dim)
        self.proj = xavier_linear(dim, dim)
        self.dropout = dropout

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        B, T, C = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)  # (3, B, H, T, R)
        return qkv[0], qkv[1], qkv[2]

    def _merge(self, y: Tensor) -> Tensor:
        B, H, T, R = y.shape
        return self.proj(y.transpose(1, 2).reshape(B, T, H * R))  # (B, T, C)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, C) -> (B, T, C)
        q, k, v = self._split(x)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        return self._merge(y)

    def init_state(self, batch_size: int, device: torch.device | None = None,
                   dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
        head_dim = self.proj.in_features // self.heads
        empty = torch.zeros(batch_size, self.heads, 0, head_dim, device=device, dtype=dtype)
        return empty, empty.clone()

    def step(self, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """``x`` (B, n, C): the next n tokens; returns their outputs and the grown cache."""
        q, k, v = self._split(x)
        k = torch.cat([state[0], k], dim=2)  # (B, H, t + n, R)
        v = torch.cat([state[1], v], dim=2)
        n, total = q.shape[2], k.shape[2]
        mask = None
        if n > 1:  # query i sits at absolute position total - n + i and sees keys up to it
            mask = torch.ones(n, total, dtype=torch.bool, device=x.device).tril(total - n)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self._merge(y), (k, v)


class Block(nn.Module):
    """Pre-norm residual block: ``x + mixer(norm1(x))``, then ``x + ffn(norm2(x))``.

    ``mixer`` maps (B, T, dim) to (B, T, dim) and has ``init_state``/``step`` for decoding;
    its own input/output projections and dropout live inside it.
    """

    def __init__(self, dim: int, mixer: nn.Module, ffn_dim: int, dropout: float = 0.0, relu_dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.mixer = mixer
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_dim, relu_dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, dim) -> (B, T, dim)
        return self._add(x, self.mixer(self.norm1(x)))

    def _add(self, x: Tensor, mixed: Tensor) -> Tensor:
        """The rest of the block once the mixer gave ``mixed``: ``x + mixed``, then the FFN sublayer."""
        x = x + self.dropout(mixed)
        return x + self.dropout(self.ffn(self.norm2(x)))

    def init_state(self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None) -> Any:
        return self.mixer.init_state(batch_size, device=device, dtype=dtype)

    def step(self, x: Tensor, state: Any) -> tuple[Tensor, Any]:
        h, state = self.mixer.step(self.norm1(x), state)
        return self._add(x, h), state


@dataclass
class DecodeState:
    """The cache of :meth:`LanguageModel.step`: tokens consumed so far and one state per block."""

    position: int  #: number of tokens already fed
    layers: list[Any] = field(default_factory=list)  #: per-block cache (see each mixer's ``step``)


class LanguageModel(nn.Module):
    """Token embedding, optional sinusoidal positions, ``blocks``, final LayerNorm, tied output layer.

    Subclasses build ``blocks``; ``forward(tokens)`` maps int64 tokens (B, T) to logits (B, T, vocab).
    """

    def __init__(self, vocab_size: int, dim: int, blocks: Sequence[nn.Module], *, positions: bool,
                 dropout: float = 0.0):
        super().__init__()
        if vocab_size < 1 or dim < 1:
            raise ConfigError(f"vocab_size={vocab_size} and dim={dim} must be positive")
        self.vocab_size, self.dim, self.positions = vocab_size, dim, positions
        self.embed = nn.Embedding(vocab_size, dim)
        nn.init.normal_(self.embed.weight, std=dim ** -0.5)
        self.embed_scale = math.sqrt(dim)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(dim)

    def _check_tokens(self, tokens: Tensor) -> None:
        if tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32):
            raise UserError(f"tokens must be an integer tensor of shape (batch, time), got {tuple(tokens.shape)} "
                            f"{tokens.dtype}")

    def _embed(self, tokens: Tensor, offset: int) -> Tensor:
        x = self.embed_scale * self.embed(tokens)  # (B, T, dim)
        if self.positions:
            x = x + sinusoidal_positions(tokens.shape[1], self.dim, offset, device=x.device, dtype=x.dtype)
        return self.dropout(x)

    def _logits(self, x: Tensor) -> Tensor:
        return F.linear(self.norm(x), self.embed.weight)  # (B, T, vocab), tied to the embedding

    def forward(self, tokens: Tensor) -> Tensor:
        self._check_tokens(tokens)
        x = self._embed(tokens, 0)
        for block in self.blocks:
            x = block(x)
        return self._logits(x)

    def num_parameters(self) -> int:
        """Trainable parameters (the tied output layer counted once)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def init_state(self, batch_size: int) -> DecodeState:
        p = self.embed.weight
        return DecodeState(0, [b.init_state(batch_size, device=p.device, dtype=p.dtype) for b in self.blocks])

    def step(self, tokens: Tensor, state: DecodeState) -> tuple[Tensor, DecodeState]:
        """Logits (B, n, vocab) of the next ``n`` tokens (B, n) given the cache; the cache grows by n.

        Feeding a sequence in pieces gives the logits of ``forward`` on the whole sequence.
        """
        self._check_tokens(tokens)
        x = self._embed(tokens, state.position)
        layers = []
        for block, s in zip(self.blocks, state.layers):
            x, s = block.step(x, s)
            layers.append(s)
        return self._logits(x), DecodeState(state.position + tokens.shape[1], layers)

    @torch.inference_mode()
    def generate(self, prompt: Tensor, steps: int, *, temperature: float = 1.0,
                 generator: torch.Generator | None = None) -> Tensor:
        """Sample ``steps`` tokens after ``prompt`` (B, T0) with the incremental cache; returns (B, T0 + steps).

        ``temperature=0`` picks the most likely token (greedy decoding).
        """
        if prompt.shape[1] < 1:
            raise UserError("generate needs a prompt of at least one token per sequence")
        was_training = self.training
        self.eval()
        try:
            state = self.init_state(prompt.shape[0])
            logits, state = self.step(prompt, state)
            out = [prompt]
            for _ in range(steps):
                last = logits[:, -1].float()
                if temperature <= 0:
                    token = last.argmax(-1, keepdim=True)
                else:
                    probs = torch.softmax(last / temperature, dim=-1)
                    token = torch.multinomial(probs.cpu(), 1, generator=generator).to(prompt.device)
                out.append(token)
                logits, state = self.step(token, state)
        finally:
            self.train(was_training)
        return torch.cat(out, dim=1)


@dataclass(frozen=True)
class TransformerLMConfig:
    """Hyperparameters of :class:`TransformerLM`."""

    vocab_size: int  #: number of token ids
    dim: int = 256  #: model width (embedding, attention, residual stream)
    layers: int = 4  #: number of blocks
    heads: int = 8  #: attention heads (dim must be divisible by heads)
    ffn_dim: int = 0  #: hidden width of the feed-forward sublayer (0: 4 * dim)
    dropout: float = 0.1  #: dropout on embeddings and on each sublayer's output
    attention_dropout: float = 0.0  #: dropout on the attention probabilities
    relu_dropout: float = 0.0  #: dropout after the ReLU in the feed-forward sublayer
    positions: bool = True  #: add sinusoidal position encodings (attention needs them)


class TransformerLM(LanguageModel):
    """Causal Transformer LM (pre-norm blocks of SDPA self-attention and ReLU FFN).

    The equal-width attention baseline of Wu et al. (ICLR 2019, Section 6): same embedding,
    FFN, normalization and output layer as :class:`mlmyths.models.lightconv.ConvLM`; only the
    token mixer differs. Input int64 tokens (B, T); output logits (B, T, vocab).

    >>> import torch
    >>> model = TransformerLM(TransformerLMConfig(vocab_size=20, dim=16, layers=1, heads=2, dropout=0.0)).eval()
    >>> tokens = torch.randint(0, 20, (1, 6))
    >>> state = model.init_state(1)
    >>> first, state = model.step(tokens[:, :4], state)
    >>> second, state = model.step(tokens[:, 4:], state)
    >>> torch.allclose(torch.cat([first, second], dim=1), model(tokens), atol=1e-5)
    True
    """

    def __init__(self, config: TransformerLMConfig):
        ffn = config.ffn_dim or 4 * config.dim
        blocks = [Block(config.dim, CausalSelfAttention(config.dim, config.heads, config.attention_dropout), ffn,
                        config.dropout, config.relu_dropout) for _ in range(config.layers)]
        super().__init__(config.vocab_size, config.dim, blocks, positions=config.positions, dropout=config.dropout)
        self.config = config
