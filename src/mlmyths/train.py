"""One compact supervised training loop for in-memory tensor datasets.

Small datasets live on the device as tensors and are batched by index: no
DataLoader, no workers. Per-batch callbacks see the example indices, the
training-pass logits and the targets (what :class:`mlmyths.forgetting.ForgettingTracker`
needs). A non-finite loss ends the run and is reported as ``diverged_at`` (the
global step, 1-based) instead of raising. Under a seed, CPU runs repeat bit for bit.

>>> import torch
>>> from torch import nn
>>> x, y = torch.randn(256, 4), torch.randint(0, 2, (256,))
>>> model = nn.Linear(4, 2)
>>> result = fit(model, x, y, TrainConfig(epochs=2, batch_size=64, lr=0.1))
>>> len(result.history), result.diverged
(2, False)
"""
from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlmyths.errors import ConfigError
from mlmyths.files import atomic_path
from mlmyths.progress import ProgressFactory, no_progress

BatchCallback = Callable[[Tensor, Tensor, Tensor], None]
"""``callback(indices, logits, targets)``, called once per training minibatch with
detached logits from the training forward pass (before the optimizer step)."""


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10  #: passes over the training set
    batch_size: int = 128  #: examples per step (the last batch of an epoch may be smaller)
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = 0.1  #: peak learning rate
    momentum: float = 0.9  #: SGD momentum (Adam: beta1)
    nesterov: bool = False  #: Nesterov momentum (SGD)
    weight_decay: float = 0.0
    schedule: Literal["constant", "cosine", "step", "linear"] = "constant"  #: lr decay after warm-up
    milestones: tuple[int, ...] = ()  #: epochs where "step" multiplies the lr by gamma
    gamma: float = 0.1  #: factor of the "step" schedule
    warmup_epochs: float = 0.0  #: linear warm-up from 0, in (fractional) epochs
    grad_clip: float = 0.0  #: clip the global gradient norm to this (0: off)
    label_smoothing: float = 0.0
    max_steps: int = 0  #: stop after this many steps in total (0: no limit)
    eval_every: int = 1  #: evaluate every N epochs (the last epoch always)
    eval_batch_size: int = 1024
    amp: bool = True  #: bf16 autocast on CUDA (ignored on CPU)

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or self.lr < 0 or self.eval_every < 1:
            raise ConfigError(f"invalid TrainConfig: epochs={self.epochs}, batch_size={self.batch_size}, "
                              f"lr={self.lr}, eval_every={self.eval_every}")


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)  #: one row per epoch
    steps: int = 0  #: optimizer steps taken
    diverged_at: int | None = None  #: global step (1-based) whose loss was NaN/inf
    time_s: float = 0.0  #: wall-clock seconds of training (evaluation excluded)

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None

    def final(self, key: str) -> float | None:
        """The last recorded value of ``key`` (e.g. ``"test_accuracy"``), or None."""
        for row in reversed(self.history):
            if key in row and row[key] is not None:
                return row[key]
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"history": self.history, "steps": self.steps, "diverged_at": self.diverged_at, "time_s": self.time_s}


def cross_entropy(logits: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Mean cross-entropy for (B, C)/(B,) or sequence (B, T, C)/(B, T) shapes."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                           label_smoothing=label_smoothing)


def build_optimizer(params: Iterable[Any], cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD/Adam/AdamW from ``cfg``; ``params`` may be parameter groups (dicts with their own ``lr``)."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                               weight_decay=cfg.weight_decay)
    betas = (cfg.momentum, 0.999)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=betas, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=betas, weight_decay=cfg.weight_decay)
    raise ConfigError(f"unknown optimizer {cfg.optimizer!r}; choose sgd, adam or adamw")


def lr_factor(step: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """Multiplier of each group's base lr at ``step`` (0-based): warm-up, then the schedule."""
    epoch = step / max(steps_per_epoch, 1)
    total = max(cfg.epochs, 1e-9)
    if cfg.warmup_epochs > 0 and epoch < cfg.warmup_epochs:
        return (step + 1) / (cfg.warmup_epochs * steps_per_epoch)
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "step":
        return cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    progress = min(max((epoch - cfg.warmup_epochs) / max(total - cfg.warmup_epochs, 1e-9), 0.0), 1.0)
    if cfg.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - progress  # linear


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.inference_mode()
def predict(model: nn.Module, x: Tensor, *, batch_size: int = 1024, device: torch.device | str | None = None,
            transform: Callable[[Tensor], Tensor] | None = None, amp: bool = True) -> Tensor:
    """Logits of ``model`` on ``x`` in batches, in eval mode, returned on ``x``'s device as float32."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    outs = []
    try:
        for start in range(0, len(x), batch_size):
            xb = x[start:start + batch_size].to(device, non_blocking=True)
            if transform is not None:
                xb = transform(xb)
            with _autocast(device, amp):
                outs.append(model(xb).float().to(x.device))
    finally:
        model.train(was_training)
    return torch.cat(outs) if outs else torch.empty(0)


def evaluate(model: nn.Module, x: Tensor, y: Tensor, *, batch_size: int = 1024,
             device: torch.device | str | None = None, transform: Callable[[Tensor], Tensor] | None = None,
             loss_fn: Callable[[Tensor, Tensor], Tensor] = cross_entropy) -> dict[str, float]:
    """Accuracy and mean loss of ``model`` on ``(x, y)`` under ``torch.inference_mode``."""
    logits = predict(model, x, batch_size=batch_size, device=device, transform=transform)
    y = y.to(logits.device)
    loss = float(loss_fn(logits, y))
    accuracy = float((logits.argmax(-1) == y).float().mean()) if len(y) else float("nan")
    return {"accuracy": accuracy, "loss": loss if math.isfinite(loss) else float("nan")}


def _stateful(cb: Any) -> Any | None:
    owner = getattr(cb, "__self__", cb)
    return owner if hasattr(owner, "state_dict") and hasattr(owner, "load_state_dict") else None


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def fit(model: nn.Module, x: Tensor, y: Tensor, cfg: TrainConfig, *,
        eval_sets: Mapping[str, tuple[Tensor, Tensor]] | None = None,
        callbacks: Sequence[BatchCallback] = (),
        epoch_callbacks: Sequence[Callable[[int, nn.Module], None]] = (),
        transform: Callable[[Tensor], Tensor] | None = None,
        augment: Callable[[Tensor, torch.Generator], Tensor] | None = None,
        param_groups: Iterable[Any] | None = None,
        device: torch.device | str | None = None, seed: int = 0,
        checkpoint: Path | None = None, progress: ProgressFactory | None = None,
        loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
        description: str = "train") -> TrainResult:
    """Train ``model`` on ``(x, y)`` with minibatch SGD/Adam.

    Parameters
    ----------
    x, y : tensors indexed along dim 0 (images (N, C, H, W) / labels (N,), or token
        windows (N, T) / next tokens (N, T)); moved to ``device`` once.
    eval_sets : name -> (x, y), evaluated every ``cfg.eval_every`` epochs; the history
        gets ``<name>_accuracy`` and ``<name>_loss``.
    callbacks : ``cb(indices, logits, targets)`` per training batch.
    epoch_callbacks : ``cb(epoch, model)`` after each epoch (1-based epoch). A callback of
        either kind (or the object of a bound method) with ``state_dict``/``load_state_dict``
        is saved in the checkpoint and restored on resume.
    transform : applied to every batch (training and evaluation), e.g. uint8 -> float.
    augment : ``augment(batch, generator)``, training batches only, after ``transform``.
    param_groups : optimizer parameter groups (default: all parameters), e.g. Fixup's lr/10 group.
    seed : seeds the shuffling generator (and the global torch RNG used by dropout).
    checkpoint : file for per-epoch state; if it exists, training resumes from it.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    x, y = x.to(device), y.to(device)
    eval_sets = {k: (v[0].to(device), v[1].to(device)) for k, v in (eval_sets or {}).items()}
    loss_fn = loss_fn or (lambda logits, t: cross_entropy(logits, t, cfg.label_smoothing))
    optimizer = build_optimizer(param_groups if param_groups is not None else model.parameters(), cfg)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    n = len(x)
    steps_per_epoch = max(1, math.ceil(n / cfg.batch_size))
    generator = torch.Generator().manual_seed(seed)
    stateful: list[Any] = []
    for cb in (*callbacks, *epoch_callbacks):  # each stateful object once, batch callbacks first
        obj = _stateful(cb)
        if obj is not None and not any(obj is seen for seen in stateful):
            stateful.append(obj)
    result = TrainResult()
    start_epoch = 0
    torch.manual_seed(seed)
    if checkpoint is not None and Path(checkpoint).exists():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        for obj, s in zip(stateful, state["callbacks"]):
            obj.load_state_dict(s)
        start_epoch = int(state["epoch"])
        result = TrainResult(history=list(state["history"]), steps=int(state["steps"]), time_s=float(state["time_s"]))
    check_every = 1 if device.type == "cpu" else 25
    total_epochs = cfg.epochs
    progress = progress or no_progress
    total_steps = steps_per_epoch * total_epochs
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    model.train()
    with progress(total_steps, description) as bar:
        if result.steps:
            bar.advance(result.steps)
        for epoch in range(start_epoch, total_epochs):
            if cfg.max_steps and result.steps >= cfg.max_steps:
                break
            t0 = time.perf_counter()
            order = torch.randperm(n, generator=generator).to(device)
            losses = torch.zeros(steps_per_epoch, device=device)
            correct = torch.zeros((), device=device)
            seen = 0
            steps_this_epoch = 0
            checked = 0
            for b in range(steps_per_epoch):
                if cfg.max_steps and result.steps >= cfg.max_steps:
                    break
                idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                xb, yb = x[idx], y[idx]
                if transform is not None:
                    xb = transform(xb)
                if augment is not None:
                    xb = augment(xb, generator)
                factor = lr_factor(result.steps, steps_per_epoch, cfg)
                for group, base in zip(optimizer.param_groups, base_lrs):
                    group["lr"] = base * factor
                with _autocast(device, cfg.amp):
                    logits = model(xb)
                loss = loss_fn(logits, yb)
                losses[b] = loss.detach()
                result.steps += 1
                steps_this_epoch += 1
                if (b + 1) % check_every == 0 or b == steps_per_epoch - 1:
                    finite = torch.isfinite(losses[checked: b + 1])
                    if not bool(finite.all()):
                        first_bad = checked + int((~finite).nonzero()[0])
                        result.diverged_at = result.steps - b + first_bad
                        result.history.append({"epoch": epoch + 1, "train_loss": float("nan"),
                                               "lr": base_lrs[0] * factor, "diverged_at": result.diverged_at})
                        result.time_s += time.perf_counter() - t0
                        return result
                    checked = b + 1
                detached = logits.detach()
                for cb in callbacks:
                    cb(idx, detached, yb)
                correct += (detached.argmax(-1) == yb).sum()
                seen += yb.numel()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                bar.advance(1)
            result.time_s += time.perf_counter() - t0
            row: dict[str, float] = {
                "epoch": epoch + 1,
                "train_loss": float(losses[:steps_this_epoch].mean()) if steps_this_epoch else float("nan"),
                "train_accuracy": float(correct) / max(seen, 1),
                "lr": base_lrs[0] * lr_factor(max(result.steps - 1, 0), steps_per_epoch, cfg),
                "time_s": result.time_s,
            }
            last = epoch + 1 == total_epochs or (cfg.max_steps and result.steps >= cfg.max_steps)
            if (epoch + 1) % cfg.eval_every == 0 or last:
                for name, (ex, ey) in eval_sets.items():
                    metrics = evaluate(model, ex, ey, batch_size=cfg.eval_batch_size, device=device,
                                       transform=transform, loss_fn=loss_fn)
                    row[f"{name}_accuracy"], row[f"{name}_loss"] = metrics["accuracy"], metrics["loss"]
                model.train()
            result.history.append(row)
            for ecb in epoch_callbacks:
                ecb(epoch + 1, model)
            if checkpoint is not None:
                _save_checkpoint(Path(checkpoint), {
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1,
                    "steps": result.steps, "history": result.history, "time_s": result.time_s,
                    "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
                    "callbacks": [obj.state_dict() for obj in stateful],
                })
    return result
