"""Myth 6, "Attention > convolution": lightweight and dynamic convolutions vs self-attention.

Wu, Fan, Baevski, Dauphin & Auli, "Pay Less Attention with Lightweight and Dynamic
Convolutions", ICLR 2019, replace self-attention by a softmax-normalized depthwise
convolution with shared heads (LightConv) or one whose kernel is predicted from the current
token (DynamicConv), and match or beat the Transformer in translation and language modelling
at a cost linear in the sequence length. We test that on a laptop CPU in three parts:

(a) **Character-level language modelling** on real English text (the Debian ``fortunes``
    corpus offline, or the standard library's docstrings where fortunes is not installed;
    enwik8 at ``--scale paper``): a causal :class:`TransformerLM` vs a
    :class:`ConvLM` with LightConv vs one with DynamicConv. Same width, depth, heads,
    context, batch, steps, optimizer and schedule; the convolution models' feed-forward width
    is raised until their parameter count reaches the Transformer's from below
    (``match_params``). Reported: validation bits per character (cross-entropy / ln 2),
    parameters, training tokens/s, generation tokens/s with the incremental cache.
(b) **Scaling**: time and peak memory of one forward+backward of each token-mixing sublayer
    at the LM's width (attention with its QKV and output projections; GLU projection +
    LightConv / DynamicConv with the largest kernel + output projection) for T from
    ``scaling_lengths`` (stopping a model once one call takes over ``scaling_max_seconds``);
    log-log plot. CPU peak memory is the growth of the resident set during the call
    (Linux; ``None`` elsewhere), CUDA's is ``max_memory_allocated`` above the baseline.
(c) **Associative recall**, where a global receptive field and content-based lookup matter:
    a sequence of ``P`` key-value pair tokens (distinct keys) followed by query tokens (a key);
    the model must output each query's value. Accuracy is binned by the distance between a
    query and its pair, and set against the convolution stack's receptive field. This shows
    honestly where attention wins.

All three LMs use the same peak learning rate, 8e-3: in a 200-step check on ``fortunes``
(small config) the Transformer reached 3.71 / 3.69 / 3.52 / 3.45 / 3.68 bpc at 1, 2, 4, 8 and
16 e-3, and both convolutions were at least as good at 8e-3 as at 2e-3 (LightConv 2.99 vs
3.05, DynamicConv 2.95 vs 2.96); so the baseline is not handicapped by the learning rate.

**Verdict rule** (:func:`verdict`), on the mean validation bpc over seeds:
``refuted`` when LightConv or DynamicConv reaches the Transformer's bpc within 2%
(``bpc ≤ 1.02 × bpc_transformer``) with no more parameters **and** its sublayer is faster than
attention's at every measured T ≥ 1024 (at least one such T measured); ``supported`` when both
convolution models are more than 2% worse than the Transformer; ``inconclusive`` otherwise (a
convolution within 2% but not faster, no T ≥ 1024 measured, or a diverged run). Part (c) does
not enter the verdict; the summary says what it shows by the rule in :func:`recall_finding`
(all models below twice chance: "not learned"; the Transformer ahead of both convolutions by
10 points or more: "attention wins"; otherwise: "the convolutions keep up").
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mlmyths import config as configs
from mlmyths import data, plots
from mlmyths.errors import DataError
from mlmyths.measure import forward_backward, time_and_memory
from mlmyths.models.lightconv import ConvLM, ConvLMConfig, ConvMixer, dynamic_conv_path, receptive_field
from mlmyths.models.transformer import CausalSelfAttention, LanguageModel, TransformerLM, TransformerLMConfig
from mlmyths.myths import claim
from mlmyths.runs import Result, RunContext, Verdict
from mlmyths.train import TrainConfig, evaluate, fit, predict

CLAIM = claim(
    "lightconv",
    paper_result=(
        "LightConv and DynamicConv match or beat self-attention: WMT'14 En-De BLEU 28.9 (LightConv) and "
        "29.7 (DynamicConv) vs 28.4 for Transformer Big (29.3 in fairseq's tuned version); En-Fr 43.1 / 43.2; "
        "IWSLT'14 De-En 34.8 / 35.2; Billion Word perplexity 26.67; DynamicConv runs 20% faster than a highly "
        "optimized self-attention baseline, and its cost is linear in the sequence length where attention's "
        "is quadratic."
    ),
)

MODELS = ("transformer", "lightconv", "dynamicconv")
CONVS = ("lightconv", "dynamicconv")
LABELS = {"transformer": "Transformer", "lightconv": "LightConv", "dynamicconv": "DynamicConv"}
COLORS = {"transformer": plots.COLORS["baseline"], "lightconv": plots.COLORS["ours"],
          "dynamicconv": plots.COLORS["alt"]}
TOLERANCE = 0.02  #: a convolution "reaches" the Transformer when its bpc is at most 2% higher
MIN_FAST_T = 1024  #: speed is compared from this sequence length on


@dataclass(frozen=True)
class Config:
    # (a) character-level language modelling
    dataset: str = "auto"  #: text corpus: auto (fortunes if installed, else python-docs), fortunes, enwik8, text8
    max_chars: int = 0  #: use only the first N characters of the corpus (0: all)
    val_fraction: float = 0.05  #: the last fraction of the text is the validation set
    val_chars: int = 65_536  #: validation characters evaluated (0: all of the validation set)
    context: int = 128  #: training window T (characters)
    dim: int = 128  #: model width of all three models
    layers: int = 4  #: blocks of all three models
    heads: int = 4  #: attention heads = convolution heads
    kernel_sizes: tuple[int, ...] = (3, 7, 15, 31)  #: convolution width per layer (the paper grows them with depth)
    ffn_mult: int = 4  #: the Transformer's FFN width is ffn_mult * dim
    match_params: bool = True  #: widen the convolution models' FFN to the Transformer's parameter count
    dropout: float = 0.0  #: dropout on embeddings and sublayer outputs (all models; 0: single-pass regime)
    weight_dropout: float = 0.0  #: DropConnect on convolution kernels (attention: attention dropout)
    steps: int = 800  #: optimizer steps per model (the same budget for all)
    batch_size: int = 32  #: windows per step
    lr: float = 8e-3  #: peak learning rate (AdamW, warm-up, cosine decay); best of 1e-3…1.6e-2 for the Transformer
    warmup_steps: int = 50  #: warm-up steps
    weight_decay: float = 0.01  #: AdamW weight decay
    grad_clip: float = 1.0  #: global gradient-norm clip
    seeds: int = 1  #: independent trainings per model
    generate_chars: int = 200  #: characters generated to time decoding with the cache
    curve_every: int = 100  #: validation bpc every N steps for the learning curves (0: only at the end)
    curve_chars: int = 16_384  #: validation characters of each learning-curve point
    # (b) scaling
    scaling_lengths: tuple[int, ...] = (256, 512, 1024, 2048, 4096, 8192, 16384)  #: sequence lengths T measured
    scaling_batch: int = 1  #: sequences per timed call
    scaling_repeats: int = 3  #: timed calls per point (median)
    scaling_max_seconds: float = 4.0  #: stop growing T for a model once one call takes longer than this
    # (c) associative recall
    recall_pairs: int = 32  #: key-value pairs per sequence (distinct keys)
    recall_queries: int = 16  #: queries after the pairs, each to be answered with its value
    recall_values: int = 16  #: distinct values (chance accuracy = 1 / recall_values)
    recall_dim: int = 64  #: width of the recall models
    recall_layers: int = 2  #: blocks of the recall models
    recall_kernel_sizes: tuple[int, ...] = (7, 15)  #: convolution widths of the recall models
    recall_steps: int = 500  #: optimizer steps per recall model
    recall_batch_size: int = 64  #: sequences per recall step
    recall_lr: float = 3e-3  #: peak learning rate of the recall models
    recall_eval: int = 1024  #: held-out recall sequences


SCALES = {
    "smoke": Config(max_chars=200_000, val_chars=8192, context=64, dim=32, layers=2, heads=4, kernel_sizes=(3, 7),
                    steps=30, batch_size=16, warmup_steps=5, generate_chars=20, curve_every=10, curve_chars=2048,
                    scaling_lengths=(256, 1024), scaling_repeats=1, scaling_max_seconds=1.0,
                    recall_pairs=8, recall_queries=4, recall_dim=32, recall_layers=1, recall_kernel_sizes=(5,),
                    recall_steps=30, recall_batch_size=32, recall_eval=256),
    "small": Config(),
    "paper": Config(dataset="enwik8", val_chars=1_000_000, context=512, dim=512, layers=6, heads=8,
                    kernel_sizes=(3, 7, 15, 31, 31, 31), dropout=0.1, weight_dropout=0.1, steps=50_000, batch_size=32,
                    lr=7e-4, warmup_steps=2000, curve_every=2000, curve_chars=262_144,
                    seeds=3, generate_chars=1000, scaling_lengths=(256, 512, 1024, 2048, 4096, 8192, 16384, 32768),
                    scaling_batch=8, scaling_repeats=5, scaling_max_seconds=60.0, recall_pairs=128,
                    recall_queries=64, recall_dim=128, recall_kernel_sizes=(15, 31), recall_steps=5000),
}


def config(scale: str = "small", **overrides: Any) -> Config:
    return configs.select(SCALES, scale, overrides)


# -- models -----------------------------------------------------------------------------------------------


def build_lm(kind: str, cfg: Config, vocab_size: int, ffn_dim: int) -> LanguageModel:
    """The Transformer, LightConv or DynamicConv language model of ``cfg`` with FFN width ``ffn_dim``."""
    if kind == "transformer":
        return TransformerLM(TransformerLMConfig(vocab_size, cfg.dim, cfg.layers, cfg.heads, ffn_dim,
                                                 dropout=cfg.dropout, attention_dropout=cfg.weight_dropout))
    conv = "lightweight" if kind == "lightconv" else "dynamic"
    return ConvLM(ConvLMConfig(vocab_size, cfg.dim, cfg.layers, cfg.heads, cfg.kernel_sizes, conv, ffn_dim,
                               dropout=cfg.dropout, weight_dropout=cfg.weight_dropout, input_dropout=cfg.dropout))


def _count(kind: str, cfg: Config, vocab_size: int, ffn_dim: int) -> int:
    return build_lm(kind, cfg, vocab_size, ffn_dim).num_parameters()


def ffn_dims(cfg: Config, vocab_size: int) -> dict[str, int]:
    """FFN width per model: ``ffn_mult * dim`` for the Transformer; with ``match_params`` the
    convolution models get the widest FFN that keeps them at or below the Transformer's parameters."""
    base = cfg.ffn_mult * cfg.dim
    dims = {"transformer": base}
    target = _count("transformer", cfg, vocab_size, base)
    for kind in CONVS:
        if not cfg.match_params:
            dims[kind] = base
            continue
        one, two = _count(kind, cfg, vocab_size, 1), _count(kind, cfg, vocab_size, 2)
        dims[kind] = max(1, 1 + (target - one) // (two - one))  # parameters are affine in the FFN width
    return dims


# -- (a) character-level language modelling ------------------------------------------------------------


def corpus_name(cfg: Config) -> str:
    """The corpus ``cfg.dataset`` stands for ("auto": the Debian fortunes if installed, else the
    standard library's docstrings, which are always there)."""
    return data.first_available(("fortunes", "python-docs")) if cfg.dataset == "auto" else cfg.dataset


def char_corpus(cfg: Config) -> tuple[Tensor, Tensor, list[str]]:
    """Training and validation character ids (int64) and the vocabulary (sorted characters)."""
    text = data.load_text(corpus_name(cfg))
    if cfg.max_chars:
        text = text[:cfg.max_chars]
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    alphabet, ids = np.unique(codes, return_inverse=True)
    ids = torch.from_numpy(ids.astype(np.int64))
    split = int(len(ids) * (1.0 - cfg.val_fraction))
    if split < cfg.context + 1 or len(ids) - split < cfg.context + 1:
        raise DataError(f"corpus {corpus_name(cfg)!r} has {len(ids)} characters: too short for context={cfg.context} "
                             f"with val_fraction={cfg.val_fraction}; lower context or raise max_chars")
    return ids[:split], ids[split:], [chr(int(c)) for c in alphabet]


def windows(ids: Tensor, length: int, count: int, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """``count`` non-overlapping windows (inputs, next-character targets), each (count, length),
    from a random offset, in random order (``count=0``: all of them)."""
    offset = int(rng.integers(0, length))
    n = (len(ids) - 1 - offset) // length
    starts = offset + length * rng.permutation(n)
    if count:
        starts = starts[:count]
    index = torch.from_numpy(starts)[:, None] + torch.arange(length)[None, :]  # (N, T)
    return ids[index], ids[index + 1]


class LearningCurve:
    """A batch callback for :func:`mlmyths.train.fit` that records validation bpc every ``every``
    steps (checkpointed with the training through ``state_dict``)."""

    def __init__(self, model: nn.Module, x: Tensor, y: Tensor, every: int):
        self.model, self.x, self.y, self.every = model, x, y, every
        self.calls, self.points, self.seconds = 0, [], 0.0

    def measure(self) -> float:
        start = time.perf_counter()
        loss = evaluate(self.model, self.x, self.y, batch_size=64)["loss"]
        self.seconds += time.perf_counter() - start
        return loss / math.log(2)

    def __call__(self, indices: Tensor, logits: Tensor, targets: Tensor) -> None:
        self.calls += 1  # called before the update of step `calls`: `calls - 1` updates so far
        if self.every and self.calls > 1 and (self.calls - 1) % self.every == 0:
            self.points.append((self.calls - 1, self.measure()))

    def state_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "points": list(self.points), "seconds": self.seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.calls, self.seconds = int(state["calls"]), float(state["seconds"])
        self.points = [(int(s), float(v)) for s, v in state["points"]]


def train_lm(kind: str, cfg: Config, ctx: RunContext, seed: int, corpus: tuple[Tensor, Tensor, list[str]],
             ffn_dim: int) -> dict[str, Any]:
    """Train one language model; validation bpc (final and along the way), parameters, throughput, a sample."""
    train_ids, val_ids, alphabet = corpus
    rng = ctx.rng("lm-data", seed)  # the same windows for every model of a seed
    wanted = cfg.steps * cfg.batch_size
    available = (len(train_ids) - 1 - cfg.context) // cfg.context
    epochs = max(1, math.ceil(wanted / available))
    x, y = windows(train_ids, cfg.context, math.ceil(wanted / epochs), rng)
    val_count = max(1, cfg.val_chars // cfg.context) if cfg.val_chars else 0
    xv, yv = windows(val_ids, cfg.context, val_count, ctx.rng("lm-val"))
    curve_count = max(1, cfg.curve_chars // cfg.context)
    steps_per_epoch = math.ceil(len(x) / cfg.batch_size)
    train_cfg = TrainConfig(epochs=epochs, batch_size=cfg.batch_size, optimizer="adamw", lr=cfg.lr, momentum=0.9,
                            weight_decay=cfg.weight_decay, schedule="cosine",
                            warmup_epochs=cfg.warmup_steps / steps_per_epoch, grad_clip=cfg.grad_clip,
                            max_steps=cfg.steps, eval_every=epochs, eval_batch_size=64)
    torch.manual_seed(ctx.seed_for("lm-model", seed))  # the same initialization stream for every kind
    model = build_lm(kind, cfg, len(alphabet), ffn_dim)
    ctx.log(f"{LABELS[kind]} LM seed {seed}: {model.num_parameters():,} parameters, {cfg.steps} steps of "
            f"{cfg.batch_size}x{cfg.context} characters")
    curve = LearningCurve(model, xv[:curve_count], yv[:curve_count], cfg.curve_every)
    result = fit(model, x, y, train_cfg, eval_sets={"val": (xv, yv)}, callbacks=[curve], device=ctx.device,
                 seed=ctx.seed_for("lm-train", seed), checkpoint=ctx.checkpoint_path(f"lm-{kind}-seed{seed}"),
                 progress=ctx.progress, description=f"{LABELS[kind]} LM seed {seed}")
    val_loss = result.final("val_loss")
    diverged = result.diverged or val_loss is None or not math.isfinite(val_loss)
    if not diverged:
        curve.points.append((result.steps, curve.measure()))
    train_s = max(result.time_s - curve.seconds, 1e-9)  # fit's time includes the curve's evaluations
    prompt = val_ids[:min(32, len(val_ids))].view(1, -1).to(ctx.device)
    start = time.perf_counter()
    sample = model.generate(prompt, cfg.generate_chars, temperature=0.8,
                            generator=ctx.generator("lm-sample", kind, seed))
    gen_s = time.perf_counter() - start
    text = "".join(alphabet[int(i)] for i in sample[0, prompt.shape[1]:])
    return {
        "params": model.num_parameters(),
        "val_bpc": float("nan") if diverged else val_loss / math.log(2),
        "diverged_at": result.diverged_at,
        "curve": np.asarray(curve.points, dtype=float).reshape(-1, 2),
        "train_tokens_per_s": result.steps * cfg.batch_size * cfg.context / train_s,
        "train_time_s": train_s,
        "generate_tokens_per_s": cfg.generate_chars / max(gen_s, 1e-9),
        "sample": text,
    }


# -- (b) scaling: time and peak memory ---------------------------------------------------------------------

def sublayer(kind: str, dim: int, heads: int, kernel_size: int) -> nn.Module:
    """The token-mixing sublayer of each LM: attention (QKV, SDPA, output projection) or
    GLU projection + LightConv/DynamicConv + output projection."""
    if kind == "transformer":
        return CausalSelfAttention(dim, heads)
    return ConvMixer(dim, kernel_size, heads, conv="lightweight" if kind == "lightconv" else "dynamic")


def scaling(cfg: Config, ctx: RunContext) -> list[dict[str, Any]]:
    """Time and peak memory of each sublayer over ``cfg.scaling_lengths`` (one task per T)."""
    kernel = max(cfg.kernel_sizes)
    stopped: set[str] = set()
    rows: list[dict[str, Any]] = []
    for T in sorted(cfg.scaling_lengths):
        def measure(T: int = T) -> list[dict[str, Any]]:
            out = []
            for kind in MODELS:
                if kind in stopped:
                    continue
                torch.manual_seed(0)
                module = sublayer(kind, cfg.dim, cfg.heads, kernel).to(ctx.device)
                x = torch.randn(cfg.scaling_batch, T, cfg.dim, device=ctx.device, requires_grad=True)
                seconds, memory = time_and_memory(forward_backward(module, x), ctx.device, cfg.scaling_repeats,
                                                  cfg.scaling_max_seconds)
                out.append({"T": T, "model": kind, "time_ms": seconds * 1e3,
                            "peak_mib": None if memory is None else memory / 2**20})
            return out

        measured = ctx.task(f"scaling-T{T}", measure)
        for row in measured:
            if row["time_ms"] > cfg.scaling_max_seconds * 1e3:
                stopped.add(row["model"])
        rows += measured
        ctx.log("scaling T=" + str(T) + ": " + ", ".join(f"{LABELS[r['model']]} {r['time_ms']:.1f} ms"
                                                          for r in measured))
    return rows


def speed_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per T: attention's time divided by each convolution's (> 1: the convolution is faster)."""
    by = {(r["T"], r["model"]): r["time_ms"] for r in rows}
    out = []
    for T in sorted({r["T"] for r in rows}):
        row: dict[str, Any] = {"T": T}
        for kind in CONVS:
            a, c = by.get((T, "transformer")), by.get((T, kind))
            row[f"attention/{kind}"] = a / c if a is not None and c is not None else None
        out.append(row)
    return out


# -- (c) associative recall --------------------------------------------------------------------------------


def recall_data(n: int, pairs: int, queries: int, values: int,
                generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Associative-recall sequences (Ba et al. 2016; Zoology's multi-query form, Arora et al. 2023).

    Tokens: ``key * values + value`` for a pair (keys 0 … pairs-1, all distinct in a sequence),
    ``pairs * values + key`` for a query. A sequence is ``pairs`` pair tokens then ``queries``
    query tokens; the target at a query is ``pairs * values + pairs + value`` (its pair's value),
    -100 (ignored) elsewhere. Returns inputs, targets (n, pairs + queries) and the distance from
    each query to its pair (-1 elsewhere).
    """
    keys = torch.argsort(torch.rand(n, pairs, generator=generator), dim=1)  # (n, pairs) distinct keys
    vals = torch.randint(0, values, (n, pairs), generator=generator)
    asked = torch.randint(0, pairs, (n, queries), generator=generator)  # which pair each query asks for
    x = torch.cat([keys * values + vals, pairs * values + keys.gather(1, asked)], dim=1)
    y = torch.full_like(x, -100)
    y[:, pairs:] = pairs * values + pairs + vals.gather(1, asked)
    distance = torch.full_like(x, -1)
    distance[:, pairs:] = torch.arange(pairs, pairs + queries)[None, :] - asked
    return x, y, distance


def recall_vocab(cfg: Config) -> int:
    return cfg.recall_pairs * cfg.recall_values + cfg.recall_pairs + cfg.recall_values


def recall_model_config(cfg: Config) -> Config:
    """The (smaller, dropout-free) model settings of part (c), in the LM config's terms."""
    return Config(dim=cfg.recall_dim, layers=cfg.recall_layers, heads=4, kernel_sizes=cfg.recall_kernel_sizes,
                  dropout=0.0, weight_dropout=0.0)


def recall_receptive_field(cfg: Config) -> int:
    """Tokens seen by one output of the recall convolution models."""
    kernels = ConvLMConfig(vocab_size=1, layers=cfg.recall_layers, kernel_sizes=cfg.recall_kernel_sizes)
    return receptive_field(kernels.kernel_size_list())


def train_recall(kind: str, cfg: Config, ctx: RunContext) -> dict[str, Any]:
    """Train one recall model on fresh sequences (each seen once); correctness and distance per held-out query."""
    n = cfg.recall_steps * cfg.recall_batch_size
    x, y, _ = recall_data(n, cfg.recall_pairs, cfg.recall_queries, cfg.recall_values, ctx.generator("recall-train"))
    xe, ye, de = recall_data(cfg.recall_eval, cfg.recall_pairs, cfg.recall_queries, cfg.recall_values,
                             ctx.generator("recall-eval"))
    torch.manual_seed(ctx.seed_for("recall-model"))
    model = build_lm(kind, recall_model_config(cfg), recall_vocab(cfg), 4 * cfg.recall_dim)
    train_cfg = TrainConfig(epochs=1, batch_size=cfg.recall_batch_size, optimizer="adamw", lr=cfg.recall_lr,
                            weight_decay=0.0, schedule="cosine", warmup_epochs=0.1, grad_clip=1.0)
    result = fit(model, x, y, train_cfg, device=ctx.device, seed=ctx.seed_for("recall-train", kind),
                 progress=ctx.progress, description=f"{LABELS[kind]} recall")
    predicted = predict(model, xe, batch_size=256, device=ctx.device).argmax(-1)
    asked = ye != -100
    return {"correct": (predicted == ye)[asked].numpy().astype(np.int8), "distance": de[asked].numpy(),
            "diverged_at": result.diverged_at, "params": model.num_parameters()}


# -- verdict -----------------------------------------------------------------------------------------------


def verdict(lm: dict[str, dict[str, Any]], ratios: list[dict[str, Any]]) -> Verdict:
    """The documented rule (module docstring) on mean bpc, parameters and speed ratios."""
    tr = lm["transformer"]
    bpc_tr = tr["val_bpc"]
    if not math.isfinite(bpc_tr) or any(not math.isfinite(lm[k]["val_bpc"]) for k in CONVS):
        bad = [LABELS[k] for k in MODELS if not math.isfinite(lm[k]["val_bpc"])]
        return Verdict("inconclusive", f"no validation bpc for {', '.join(bad)} (diverged); nothing to compare")
    long = [r for r in ratios if r["T"] >= MIN_FAST_T]
    parts, winners, slow, heavy, worse = [], [], [], [], []
    for kind in CONVS:
        bpc, params = lm[kind]["val_bpc"], lm[kind]["params"]
        speed = [r[f"attention/{kind}"] for r in long if r[f"attention/{kind}"] is not None]
        faster = bool(speed) and all(s > 1.0 for s in speed)
        if faster:
            speed_text = f"{min(speed):.1f}-{max(speed):.1f}x faster than attention at T>={MIN_FAST_T}"
        elif speed:
            speed_text = f"attention/conv time {min(speed):.2f}-{max(speed):.2f} at T>={MIN_FAST_T}"
        else:
            speed_text = f"no T>={MIN_FAST_T} measured"
        parts.append(f"{LABELS[kind]} {bpc:.3f} bpc ({bpc / bpc_tr - 1:+.1%}, {params:,} params), {speed_text}")
        if bpc > (1.0 + TOLERANCE) * bpc_tr:
            worse.append(kind)
        elif params > tr["params"]:
            heavy.append(kind)
        elif faster:
            winners.append(kind)
        else:
            slow.append(kind)
    head = f"Transformer {bpc_tr:.3f} bpc ({tr['params']:,} params); " + "; ".join(parts)
    if winners:
        return Verdict("refuted", f"{head}: {' and '.join(LABELS[k] for k in winners)} match or beat the "
                                  f"Transformer (within {TOLERANCE:.0%}) at no more parameters and are faster at "
                                  "long T")
    if len(worse) == len(CONVS):
        return Verdict("supported", f"{head}: both convolutions are more than {TOLERANCE:.0%} worse than attention "
                                    "at equal parameters and training budget")
    why = [f"{LABELS[k]} reaches it but is not faster at every T>={MIN_FAST_T}" for k in slow]
    why += [f"{LABELS[k]} reaches it with more parameters" for k in heavy]
    return Verdict("inconclusive", f"{head}: " + "; ".join(why))


# -- the experiment ------------------------------------------------------------------------------------------


def _mean_std(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < len(values) or not finite:
        return float("nan"), float("nan")
    return float(np.mean(finite)), float(np.std(finite, ddof=1)) if len(finite) > 1 else float("nan")


def _distance_bins(rf: int, longest: int) -> list[tuple[int, int]]:
    edges = sorted({1, rf, *range(8, longest + 8, 8)})
    return [(lo, hi) for lo, hi in zip(edges, edges[1:] + [longest + 1]) if lo < hi and lo <= longest]


def run(cfg: Config, ctx: RunContext) -> Result:
    corpus = char_corpus(cfg)  # DataError (exit 2) before any work when the corpus is missing
    vocab = len(corpus[2])
    dims = ffn_dims(cfg, vocab)
    dataset = corpus_name(cfg)
    ctx.log(f"{dataset}: {len(corpus[0]):,} training / {len(corpus[1]):,} validation characters, "
            f"vocabulary {vocab}; FFN widths {dims}")

    # (a) language modelling
    per_seed: dict[str, list[dict[str, Any]]] = {k: [] for k in MODELS}
    for seed in range(cfg.seeds):
        for kind in MODELS:
            per_seed[kind].append(ctx.task(f"lm-{kind}-seed{seed}",
                                           lambda k=kind, s=seed: train_lm(k, cfg, ctx, s, corpus, dims[k])))
    lm: dict[str, dict[str, Any]] = {}
    for kind in MODELS:
        runs = per_seed[kind]
        mean, std = _mean_std([r["val_bpc"] for r in runs])
        lm[kind] = {"params": int(runs[0]["params"]), "val_bpc": mean, "val_bpc_std": std,
                    "train_tokens_per_s": float(np.mean([r["train_tokens_per_s"] for r in runs])),
                    "generate_tokens_per_s": float(np.mean([r["generate_tokens_per_s"] for r in runs])),
                    "diverged": [f"seed {i}: diverged at step {r['diverged_at']}" for i, r in enumerate(runs)
                                 if r["diverged_at"] is not None]}

    # (b) scaling
    scale_rows = scaling(cfg, ctx)
    ratios = speed_ratios(scale_rows)

    # (c) associative recall
    rf = recall_receptive_field(cfg)
    recall = {kind: ctx.task(f"recall-{kind}", lambda k=kind: train_recall(k, cfg, ctx)) for kind in MODELS}
    longest = cfg.recall_pairs + cfg.recall_queries - 1
    bins = _distance_bins(rf, longest)
    recall_rows, recall_curve = [], {}
    for kind in MODELS:
        correct, distance = np.asarray(recall[kind]["correct"], float), np.asarray(recall[kind]["distance"])
        inside, outside = distance < rf, distance >= rf
        recall_rows.append({
            "model": LABELS[kind], "params": int(recall[kind]["params"]), "accuracy": float(correct.mean()),
            "accuracy_within_receptive_field": float(correct[inside].mean()) if inside.any() else None,
            "accuracy_beyond_receptive_field": float(correct[outside].mean()) if outside.any() else None,
            "diverged_at": recall[kind]["diverged_at"],
        })
        recall_curve[kind] = [(0.5 * (lo + hi - 1), float(correct[(distance >= lo) & (distance < hi)].mean()))
                              for lo, hi in bins if ((distance >= lo) & (distance < hi)).any()]

    curves = {k: [r["curve"] for r in per_seed[k]] for k in MODELS}
    figures = [_plot_lm(ctx, lm, curves), _plot_scaling(ctx, scale_rows), _plot_recall(ctx, recall_curve, rf, cfg)]
    decision = verdict(lm, ratios)

    chance = 1.0 / cfg.recall_values
    recall_text = recall_finding(recall_rows, rf, chance, cfg)
    long = [r for r in ratios if r["T"] >= MIN_FAST_T]
    speed_text = "; ".join(f"T={r['T']}: attention/LightConv {_fmt_x(r['attention/lightconv'])}, "
                           f"attention/DynamicConv {_fmt_x(r['attention/dynamicconv'])}" for r in long[-2:])
    summary = (
        f"Character-level LM on {dataset} ({cfg.steps} steps of {cfg.batch_size}x{cfg.context} characters, "
        f"{cfg.seeds} seed(s)): validation bpc Transformer {lm['transformer']['val_bpc']:.3f}, LightConv "
        f"{lm['lightconv']['val_bpc']:.3f}, DynamicConv {lm['dynamicconv']['val_bpc']:.3f} at "
        f"{lm['transformer']['params']:,} / {lm['lightconv']['params']:,} / {lm['dynamicconv']['params']:,} "
        f"parameters. Sublayer forward+backward at width {cfg.dim}: {speed_text or 'no T >= 1024 measured'}. "
        + recall_text)

    metrics: dict[str, Any] = {}
    for kind in MODELS:
        for key in ("val_bpc", "val_bpc_std", "params", "train_tokens_per_s", "generate_tokens_per_s"):
            metrics[f"{kind}_{key}"] = lm[kind][key]
    for kind in CONVS:
        metrics[f"{kind}_bpc_ratio"] = lm[kind]["val_bpc"] / lm["transformer"]["val_bpc"]
        for r in ratios:
            metrics[f"speedup_{kind}_T{r['T']}"] = r[f"attention/{kind}"]
    for r in recall_rows:
        key = r["model"].lower()
        metrics[f"recall_{key}_accuracy"] = r["accuracy"]
        metrics[f"recall_{key}_beyond_rf"] = r["accuracy_beyond_receptive_field"]
    metrics["recall_receptive_field"] = rf
    metrics["recall_chance"] = chance

    lm_rows = [{"model": LABELS[k], "params": lm[k]["params"], "ffn_dim": dims[k], "val_bpc": lm[k]["val_bpc"],
                "val_bpc_std": lm[k]["val_bpc_std"], "train_tokens_per_s": lm[k]["train_tokens_per_s"],
                "generate_tokens_per_s": lm[k]["generate_tokens_per_s"],
                "diverged": "; ".join(lm[k]["diverged"]) or "no"} for k in MODELS]
    samples = [{"model": LABELS[k], "seed": 0, "sample": per_seed[k][0]["sample"]} for k in MODELS]
    curve_rows = [{"model": LABELS[k], "seed": seed, "step": int(step), "val_bpc_subset": float(bpc)}
                  for k in MODELS for seed, points in enumerate(curves[k])
                  for step, bpc in np.asarray(points, dtype=float).reshape(-1, 2)]
    notes = [
        f"Equal budget = the same {cfg.steps} optimizer steps on the same windows for every model; the convolution "
        f"models' FFN width is {dims['lightconv']} (LightConv) and {dims['dynamicconv']} (DynamicConv) vs "
        f"{dims['transformer']} so that parameters match from below" + ("" if cfg.match_params else " (disabled)"),
        "Scaling times are single sublayers (projections included) at batch "
        f"{cfg.scaling_batch}, median of {cfg.scaling_repeats}; on a shared machine they vary from run to run. "
        "CPU peak memory is the resident-set growth during one call (an upper bound on the tensors' memory).",
        f"DynamicConv's convolution ran on its {dynamic_conv_path(ctx.device)} path.",
        f"With {cfg.seeds} seed(s), a bpc difference of a few percent may be within seed-to-seed noise.",
        "The paper's results are on WMT/IWSLT translation and Billion Word at GPU scale; this is a CPU-scale "
        "character-level test of the same architectures.",
    ]
    return Result(verdict=decision, summary=summary, metrics=metrics,
                  tables={"language_model": lm_rows, "learning_curve": curve_rows, "scaling": scale_rows,
                          "speed_ratio": ratios,
                          "recall": recall_rows, "samples": samples},
                  figures=figures, notes=notes)


def recall_finding(rows: list[dict[str, Any]], rf: int, chance: float, cfg: Config) -> str:
    """One or two sentences on part (c), chosen by a rule on the accuracies (not hard-coded)."""
    acc = {r["model"]: r for r in rows}
    t, conv = acc["Transformer"]["accuracy"], max(acc["LightConv"]["accuracy"], acc["DynamicConv"]["accuracy"])
    text = (f"Associative recall ({cfg.recall_pairs} pairs, {cfg.recall_queries} queries, chance {chance:.1%}): "
            f"accuracy Transformer {t:.1%}, LightConv {acc['LightConv']['accuracy']:.1%}, DynamicConv "
            f"{acc['DynamicConv']['accuracy']:.1%}; beyond the convolutions' receptive field of {rf} tokens "
            f"{_fmt_pct(acc['Transformer']['accuracy_beyond_receptive_field'])} / "
            f"{_fmt_pct(acc['LightConv']['accuracy_beyond_receptive_field'])} / "
            f"{_fmt_pct(acc['DynamicConv']['accuracy_beyond_receptive_field'])}. ")
    if max(t, conv) < 2 * chance:
        return text + "No model learned the task within this budget (all near chance)."
    if t >= conv + 0.1:
        return text + ("Attention wins clearly: it looks a value up by its key's content anywhere in the context, "
                       "which a fixed (LightConv) or input-predicted (DynamicConv) local kernel cannot do, "
                       "and beyond the receptive field the convolutions cannot see the pair at all.")
    return text + "The convolutions keep up with attention on this task at this scale."


def _fmt_pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _fmt_x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


# -- figures -------------------------------------------------------------------------------------------------


def _plot_lm(ctx: RunContext, lm: dict[str, dict[str, Any]], curves: dict[str, list[Any]]) -> str:
    fig, (bars, lines) = plots.new_figure(1, 2, width=4.8, height=3.4)
    xs = np.arange(len(MODELS))
    means = [lm[k]["val_bpc"] for k in MODELS]
    stds = [lm[k]["val_bpc_std"] for k in MODELS]
    bars.bar(xs, means, yerr=stds if all(math.isfinite(v) for v in stds) else None,
             color=[COLORS[k] for k in MODELS], capsize=4)
    bars.set_xticks(xs, [f"{LABELS[k]}\n{lm[k]['params'] / 1e6:.2f}M params" for k in MODELS], fontsize=8)
    finite = [m for m in means if math.isfinite(m)]
    if finite:
        bars.set_ylim(min(finite) * 0.95, max(finite) * 1.03)
        bars.axhline((1 + TOLERANCE) * lm["transformer"]["val_bpc"], color="gray", linestyle="--", linewidth=1,
                     label=f"Transformer + {TOLERANCE:.0%}")
        bars.legend(frameon=False, fontsize=8)
    bars.set_ylabel("validation bits per character")
    bars.set_title("Final validation bpc", fontsize=10)
    for kind in MODELS:
        for i, points in enumerate(curves[kind]):
            points = np.asarray(points, dtype=float).reshape(-1, 2)
            if len(points):
                lines.plot(points[:, 0], points[:, 1], marker="o", markersize=3, color=COLORS[kind],
                           label=LABELS[kind] if i == 0 else None)
    lines.set_xlabel("optimizer steps")
    lines.set_ylabel("validation bpc (subset)")
    lines.set_title("Learning curves, equal budget", fontsize=10)
    lines.legend(frameon=False, fontsize=8)
    return ctx.save_figure(fig, "lm_bpc")


def _plot_scaling(ctx: RunContext, rows: list[dict[str, Any]]) -> str:
    fig, axes = plots.new_figure(1, 2, width=4.6, height=3.4)
    for kind in MODELS:
        mine = sorted((r for r in rows if r["model"] == kind), key=lambda r: r["T"])
        axes[0].plot([r["T"] for r in mine], [r["time_ms"] for r in mine], marker="o", color=COLORS[kind],
                     label=LABELS[kind])
        mem = [(r["T"], r["peak_mib"]) for r in mine if r["peak_mib"]]
        if mem:
            axes[1].plot(*zip(*mem), marker="o", color=COLORS[kind], label=LABELS[kind])
    for ax, label in zip(axes, ["forward+backward time (ms)", "peak memory (MiB)"]):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T")
        ax.set_ylabel(label)
    axes[0].legend(frameon=False, fontsize=8)
    axes[0].set_title("Token-mixing sublayer, one call", fontsize=10)
    return ctx.save_figure(fig, "scaling")


def _plot_recall(ctx: RunContext, curve: dict[str, list[tuple[float, float]]], rf: int, cfg: Config) -> str:
    fig, ax = plots.new_figure(width=5.2, height=3.4)
    for kind in MODELS:
        if curve[kind]:
            ax.plot(*zip(*curve[kind]), marker="o", color=COLORS[kind], label=LABELS[kind])
    ax.axvline(rf - 0.5, color="gray", linestyle="--", linewidth=1, label=f"conv receptive field ({rf})")
    ax.axhline(1.0 / cfg.recall_values, color=plots.COLORS["random"], linestyle=":", linewidth=1, label="chance")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("distance from query to its key-value pair (tokens)")
    ax.set_ylabel("recall accuracy")
    ax.set_title("Associative recall", fontsize=10)
    ax.legend(frameon=False, fontsize=8)
    return ctx.save_figure(fig, "recall")
