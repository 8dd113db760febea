"""Myth 5: "We need (batch) normalization to train very deep residual networks."

Reproduces Zhang, Dauphin & Ma, "Fixup Initialization: Residual Learning Without
Normalization" (ICLR 2019) with its successors SkipInit (De & Smith, NeurIPS 2020) and
ReZero (Bachlechner et al. 2020), on the ResNets of :mod:`mlmyths.models.resnet`:

(a) **Signal propagation at initialization** (paper Sec. 2): for depths up to 10,004 layers
    and every variant, the variance of the last block's output and the per-layer gradient
    norms after one backward pass (:mod:`mlmyths.models.signal`), log-log against depth.
    Without normalization and with standard initialization (``none``) both grow
    geometrically with depth and overflow float32; overflow is recorded as a finding.
(b) **Trainability vs depth at one shared learning rate** (paper Fig. 1): every variant at
    every depth trained for the same budget with the same optimizer (SGD, lr 0.1 -- the
    BatchNorm default -- momentum 0.9, optional warm-up); the scalar biases/multipliers of the
    normalization-free variants train at lr/10 as in the official Fixup code. A diverging run
    is recorded as ``diverged at step N`` and the experiment goes on. Plots of first-epoch and
    final test accuracy against depth.
(c) **The deepest nets the scale allows**: the headline comparison at ``final_depth`` (small:
    110 layers; paper: ResNet-110 on CIFAR-10 for 200 epochs, without and with mixup) and the
    first epoch(s) of a ``deep_depth`` net (small: 1,004 layers; paper: 10,004) on the same
    learning-rate schedule as the sweep.

Verdict rule (on the ``final_depth`` runs without mixup, test accuracy in points, mean over
seeds; a variant with any diverged seed counts as diverged):

- ``refuted`` when Fixup or SkipInit trains (no divergence) to within ``tolerance`` (1.5)
  points of BatchNorm, while ``none`` diverges or ends at least ``far_behind`` (10) points
  below BatchNorm;
- ``supported`` when BatchNorm trains but Fixup and SkipInit both diverge;
- ``inconclusive`` otherwise (BatchNorm itself fails, the best normalization-free variant is
  more than 1.5 points behind at this budget, or ``none`` keeps up), with the numbers.

Scales: ``smoke`` (CI, ~15 s: digits, depths 8 and 32, 4 epochs); ``small`` (default,
minutes on 2 CPU cores: digits, depths 8-110 for 15 epochs (2 seeds at 110), the first 4
epochs of a 1,004-layer net,
signal propagation to 10,004 layers); ``paper`` (CIFAR-10, width 16, first-epoch accuracy
up to 10,004 layers, ResNet-110 for 200 epochs with and without mixup; GPU).

Examples::

    mlmyths run fixup                                   # small: digits, about 7 CPU-minutes
    mlmyths run fixup --set warmup_epochs=1             # the same with a 1-epoch lr warm-up
    mlmyths run fixup --dataset fashion-mnist --set image_size=14 --set train_subset=10000
                                                        # Fashion-MNIST, downsampled (slower)
    mlmyths run fixup --scale paper --device cuda       # CIFAR-10, the paper's setup
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mlmyths import augment as augmentations
from mlmyths import config as configs
from mlmyths import data, plots
from mlmyths.errors import ConfigError
from mlmyths.models.resnet import NORMS, SCALAR_NORMS, blocks_per_stage, fixup_param_groups, resnet
from mlmyths.models.signal import growth_per_block, measure
from mlmyths.myths import claim
from mlmyths.runs import Result, RunContext, Verdict
from mlmyths.train import TrainConfig, fit

CLAIM = claim(
    "fixup",
    paper_result=(
        "Without normalization, a standard-initialized ResNet fails to train at 100 layers while Fixup and "
        "BatchNorm train at 10,000 layers (CIFAR-10 test accuracy after the first epoch at the BatchNorm "
        "learning rate, Fig. 1); ResNet-110 on CIFAR-10 reaches about 7.2% test error with Fixup vs 6.6% with "
        "BatchNorm, and with mixup they match. Analysis: without normalization the gradient norm of "
        "some layers grows without bound with depth at initialization (Sec. 2). Successors SkipInit (De & "
        "Smith 2020) and ReZero (Bachlechner et al. 2020) train deep ResNets with a zero-initialized scalar "
        "gain per residual branch."
    ),
)

#: Variants the verdict counts as "training without normalization".
NORMALIZATION_FREE = ("fixup", "skipinit")


@dataclass(frozen=True)
class Config:
    dataset: str = "digits"  #: image dataset (digits, fashion-mnist, mnist, cifar10); "auto": fashion-mnist if present, else digits
    image_size: int = 0  #: resize images to this side by area interpolation (0: native size)
    train_subset: int = 0  #: train on the first N training images (0: all)
    test_subset: int = 0  #: evaluate on the first N test images (0: all)
    width: int = 8  #: channels of the first stage (the paper: 16); stages have width, 2 width, 4 width
    variants: tuple[str, ...] = ("none", "batchnorm", "fixup", "skipinit")  #: trained variants
    depths: tuple[int, ...] = (8, 20, 56, 110)  #: (b) trainability sweep, depths 6n+2
    epochs: int = 15  #: (b) training budget of every sweep run, and the lr schedule's length
    final_depth: int = 110  #: (c) depth of the headline comparison the verdict uses
    final_epochs: int = 15  #: (c) its budget in epochs
    mixup: tuple[bool, ...] = (False,)  #: (c) headline runs without / with mixup (alpha 1)
    seeds: int = 2  #: (c) seeds of the headline comparison (seed 0 is the sweep's run when the budgets agree)
    deep_depth: int = 1004  #: (c) the deepest net, trained for the first ``deep_epochs`` of the sweep's schedule
    #: (0: skip; also skipped when it is a sweep depth, since the sweep trains it)
    deep_epochs: int = 4  #: epochs trained at ``deep_depth``
    batch_size: int = 64  #: examples per SGD step
    lr: float = 0.1  #: learning rate shared by every variant (the BatchNorm default)
    scalar_lr_factor: float = 0.1  #: scalar biases and multipliers train at lr x this (Fixup's lr/10)
    momentum: float = 0.9  #: SGD momentum
    weight_decay: float = 1e-4  #: L2 on every parameter (the official Fixup CIFAR default)
    schedule: Literal["constant", "cosine", "step"] = "cosine"  #: lr decay over ``epochs``
    milestones: tuple[int, ...] = ()  #: epochs where the "step" schedule divides the lr by 10
    warmup_epochs: float = 0.0  #: linear learning-rate warm-up, in epochs (0: none)
    augment: Literal["none", "crop", "crop-flip"] = "none"  #: training augmentation
    checkpoint_every: int = 0  #: nets deeper than 1,000 layers recompute activations per this many blocks (0: off)
    signal_variants: tuple[str, ...] = ("none", "batchnorm", "fixup", "skipinit", "rezero")  #: (a) variants
    signal_depths: tuple[int, ...] = (8, 20, 56, 110, 326, 1004, 3002, 10004)  #: (a) depths, log-spaced
    signal_width: int = 4  #: (a) width of the measured nets
    signal_batch: int = 16  #: (a) training images in the measured batch
    tolerance: float = 1.5  #: verdict: points within BatchNorm that count as "trains as well"
    far_behind: float = 10.0  #: verdict: points below BatchNorm that count as "falls far behind"

    def __post_init__(self) -> None:
        for name in ("variants", "signal_variants"):
            unknown = [v for v in getattr(self, name) if v not in NORMS]
            if unknown:
                raise ConfigError(f"config key {name!r}: unknown variant(s) {', '.join(map(repr, unknown))}; "
                                  f"choose from {', '.join(NORMS)}")
        for name in ("depths", "signal_depths"):
            for d in getattr(self, name):
                blocks_per_stage(d)
        for name in ("final_depth",) + (("deep_depth",) if self.deep_depth else ()):
            blocks_per_stage(getattr(self, name))
        if "batchnorm" not in self.variants:
            raise ConfigError("config key 'variants' must include 'batchnorm' (the verdict compares against it)")
        if self.epochs < 1 or self.final_epochs < 1 or self.deep_epochs < 1 or self.seeds < 1:
            raise ConfigError(f"epochs, final_epochs, deep_epochs and seeds must be >= 1; got {self.epochs}, "
                              f"{self.final_epochs}, {self.deep_epochs}, {self.seeds}")
        if self.deep_depth and self.deep_epochs > self.epochs:
            raise ConfigError(f"deep_epochs ({self.deep_epochs}) must be <= epochs ({self.epochs}): the deep run "
                              "follows the first epochs of the sweep's schedule")
        if not self.mixup:
            raise ConfigError("config key 'mixup' needs at least one value (false, true or false,true)")


SCALES = {
    "smoke": Config(depths=(8, 32), epochs=4, final_depth=32, final_epochs=4, deep_depth=0,
                    signal_depths=(8, 56, 326), signal_variants=("none", "batchnorm", "fixup"), signal_batch=8),
    "small": Config(),
    "paper": Config(
        dataset="cifar10", width=16, variants=("none", "batchnorm", "fixup", "skipinit", "rezero"),
        depths=(20, 32, 56, 110, 326, 1202, 3002, 10004), epochs=1, final_depth=110, final_epochs=200,
        mixup=(False, True), seeds=1, deep_depth=10004, deep_epochs=1, batch_size=128, schedule="step",
        milestones=(100, 150), augment="crop-flip", checkpoint_every=64, signal_width=16, signal_batch=64,
    ),
}


def config(scale: str = "small", **overrides: Any) -> Config:
    return configs.select(SCALES, scale, overrides)


# -- data -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Data:
    x_train: Tensor  #: uint8 (N, C, H, W)
    y_train: Tensor  #: (N,)
    x_test: Tensor  #: uint8 (M, C, H, W)
    y_test: Tensor  #: (M,)
    transform: Callable[[Tensor], Tensor]  #: uint8 batch -> normalized float batch (resized)
    name: str
    num_classes: int
    in_channels: int


def load_data(cfg: Config) -> Data:
    name = data.first_available() if cfg.dataset == "auto" else cfg.dataset
    ds = data.load(name)
    x_train, y_train, x_test, y_test = ds.x_train, ds.y_train, ds.x_test, ds.y_test
    if cfg.train_subset:
        x_train, y_train = x_train[:cfg.train_subset], y_train[:cfg.train_subset]
    if cfg.test_subset:
        x_test, y_test = x_test[:cfg.test_subset], y_test[:cfg.test_subset]
    mean, std = data.channel_stats(x_train)
    size = cfg.image_size

    def transform(xb: Tensor) -> Tensor:
        out = data.normalize(xb, mean.to(xb.device), std.to(xb.device))
        if size and out.shape[-1] != size:
            out = F.interpolate(out, size=(size, size), mode="area")
        return out

    return Data(x_train, y_train, x_test, y_test, transform, name, ds.num_classes, ds.image_shape[0])


def _augmentation(cfg: Config, d: Data, use_mixup: bool) -> tuple[Callable[[Tensor, torch.Generator], Tensor] | None,
                                                                 augmentations.Mixup | None]:
    side = cfg.image_size or d.x_train.shape[-1]
    padding = max(1, side // 8)  # 4 pixels at 32x32, as the CIFAR recipe
    crop: Callable[[Tensor, torch.Generator], Tensor] | None = None
    if cfg.augment == "crop":
        crop = lambda x, g: augmentations.random_crop(x, g, padding)  # noqa: E731
    elif cfg.augment == "crop-flip":
        crop = lambda x, g: augmentations.crop_flip(x, g, padding)  # noqa: E731
    if not use_mixup:
        return crop, None
    mix = augmentations.Mixup(alpha=1.0)
    if crop is None:
        return mix, mix
    return (lambda x, g: mix(crop(x, g), g)), mix


# -- one training run ---------------------------------------------------------------------------


def _percent(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else 100.0 * value


def train_variant(cfg: Config, ctx: RunContext, d: Data, variant: str, depth: int, *, seed: int = 0,
                  epochs: int | None = None, max_epochs: int | None = None, use_mixup: bool = False) -> dict[str, Any]:
    """Train ``resnet(depth, variant)`` on ``d``; a dict of accuracies (in %) and ``diverged_at``.

    ``epochs`` sets the schedule's length (default ``cfg.epochs``); ``max_epochs`` stops early
    on that schedule (the deep run). Model initialization and minibatch order depend on
    ``(depth, seed)`` only, so every variant sees the same batches.
    """
    epochs = epochs or cfg.epochs
    torch.manual_seed(ctx.seed_for("model", depth, seed))
    model = resnet(depth, norm=variant, num_classes=d.num_classes, in_channels=d.in_channels,  # type: ignore[arg-type]
                   width=cfg.width, checkpoint_every=cfg.checkpoint_every if depth > 1000 else 0)
    steps_per_epoch = math.ceil(len(d.x_train) / cfg.batch_size)
    tcfg = TrainConfig(
        epochs=epochs, batch_size=cfg.batch_size, optimizer="sgd", lr=cfg.lr, momentum=cfg.momentum,
        weight_decay=cfg.weight_decay, schedule=cfg.schedule, milestones=cfg.milestones, gamma=0.1,
        warmup_epochs=cfg.warmup_epochs, max_steps=(max_epochs or 0) * steps_per_epoch,
    )
    groups = fixup_param_groups(model, cfg.lr, cfg.scalar_lr_factor) if variant in SCALAR_NORMS else None
    augment, mix = _augmentation(cfg, d, use_mixup)
    key = f"{variant}-d{depth}-e{epochs}" + (f"-m{max_epochs}" if max_epochs else "") + f"-s{seed}" + \
        ("-mixup" if use_mixup else "")
    result = fit(model, d.x_train, d.y_train, tcfg, eval_sets={"test": (d.x_test, d.y_test)},
                 transform=d.transform, augment=augment, param_groups=groups, device=ctx.device,
                 seed=ctx.seed_for("data", seed), checkpoint=ctx.checkpoint_path(f"train-{key}"),
                 progress=ctx.progress, loss_fn=mix.loss if mix is not None else None, description=key)
    accs = [_percent(row.get("test_accuracy")) for row in result.history if "test_accuracy" in row]
    first = result.history[0].get("test_accuracy") if result.history and "test_accuracy" in result.history[0] else None
    out = {
        "variant": variant, "depth": depth, "seed": seed, "mixup": use_mixup, "epochs_trained": len(accs),
        "steps": result.steps, "diverged_at": result.diverged_at,
        "first_epoch_acc": _percent(first), "final_acc": None if result.diverged else _percent(result.final("test_accuracy")),
        "final_train_loss": None if result.diverged else result.final("train_loss"),
        "test_acc_per_epoch": [a if a is not None else float("nan") for a in accs], "time_s": result.time_s,
    }
    status = f"diverged at step {result.diverged_at}" if result.diverged else f"test accuracy {out['final_acc']:.2f}%"
    ctx.log(f"{key}: {status} ({result.steps} steps, {result.time_s:.1f}s)")
    return out


# -- the verdict --------------------------------------------------------------------------------


def decide(final: dict[str, dict[str, Any]], *, depth: int, tolerance: float = 1.5,
           far_behind: float = 10.0) -> Verdict:
    """The documented rule (module docstring) on per-variant summaries at the final depth.

    ``final[variant] = {"acc": mean final test accuracy in % over non-diverged seeds (or None),
    "diverged": True if any seed diverged, "diverged_at": first divergence step or None}``.
    """
    def describe(v: str) -> str:
        s = final[v]
        if s["diverged"]:
            return f"{v} diverged at step {s['diverged_at']}"
        return f"{v} {s['acc']:.2f}%"

    bn = final.get("batchnorm")
    if bn is None or bn["diverged"] or bn["acc"] is None:
        return Verdict("inconclusive", f"at depth {depth} the BatchNorm baseline did not train "
                                       f"({describe('batchnorm') if bn else 'not run'}), so there is nothing to compare with")
    free = [v for v in NORMALIZATION_FREE if v in final]
    trained = [v for v in free if not final[v]["diverged"] and final[v]["acc"] is not None]
    numbers = ", ".join(describe(v) for v in final)
    if free and not trained:
        return Verdict("supported", f"at depth {depth} BatchNorm trains ({bn['acc']:.2f}%) but every "
                                    f"normalization-free variant diverges: {numbers}")
    if not trained:
        return Verdict("inconclusive", f"no normalization-free variant (Fixup or SkipInit) was trained: {numbers}")
    best = max(trained, key=lambda v: final[v]["acc"])
    gap = bn["acc"] - final[best]["acc"]
    none = final.get("none")
    none_failed = none is not None and (none["diverged"] or none["acc"] is None
                                        or none["acc"] <= bn["acc"] - far_behind)
    relation = f"{abs(gap):.2f} points {'below' if gap > 0 else 'above'} BatchNorm"
    if gap <= tolerance and none_failed:
        return Verdict("refuted", f"at depth {depth}, {best} trains without normalization to {relation} (within "
                                  f"the {tolerance:g}-point tolerance) while standard init without normalization "
                                  f"fails: {numbers}")
    if gap > tolerance:
        why = (f"the best normalization-free variant ({best}) ends {relation}, outside the {tolerance:g}-point "
               f"tolerance at this budget")
    elif none is None:
        why = "the 'none' control was not run"
    else:
        why = f"'none' neither diverged nor fell {far_behind:g} points behind BatchNorm"
    return Verdict("inconclusive", f"at depth {depth}, {why}: {numbers}")


def summarize_final(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per variant over seeds: mean/std accuracy of non-diverged runs, whether any diverged."""
    out: dict[str, dict[str, Any]] = {}
    for variant in dict.fromkeys(r["variant"] for r in runs):
        rs = [r for r in runs if r["variant"] == variant]
        accs = [r["final_acc"] for r in rs if r["diverged_at"] is None and r["final_acc"] is not None]
        steps = [r["diverged_at"] for r in rs if r["diverged_at"] is not None]
        out[variant] = {
            "acc": float(np.mean(accs)) if accs else None, "std": float(np.std(accs)) if len(accs) > 1 else 0.0,
            "n": len(rs), "diverged": bool(steps), "diverged_at": min(steps) if steps else None,
        }
    return out


# -- the experiment -------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> Result:
    d = load_data(cfg)
    t0 = time.perf_counter()
    signal = run_signal(cfg, ctx, d)
    t_signal = time.perf_counter() - t0
    sweep = {(v, depth): ctx.task(f"train-{v}-d{depth}-s0",
                                  lambda v=v, depth=depth: train_variant(cfg, ctx, d, v, depth))
             for depth in cfg.depths for v in cfg.variants}
    final_runs: dict[bool, list[dict[str, Any]]] = {}
    for use_mixup in cfg.mixup:
        runs = []
        for seed in range(cfg.seeds):
            for v in cfg.variants:
                if (not use_mixup and seed == 0 and cfg.final_depth in cfg.depths
                        and cfg.final_epochs == cfg.epochs):
                    runs.append(sweep[(v, cfg.final_depth)])  # the same run: reuse it
                    continue
                key = f"final-{v}-d{cfg.final_depth}-e{cfg.final_epochs}-s{seed}" + ("-mixup" if use_mixup else "")
                runs.append(ctx.task(key, lambda v=v, seed=seed, m=use_mixup: train_variant(
                    cfg, ctx, d, v, cfg.final_depth, seed=seed, epochs=cfg.final_epochs, use_mixup=m)))
        final_runs[use_mixup] = runs
    deep: dict[str, dict[str, Any]] = {}
    if cfg.deep_depth and cfg.deep_depth not in cfg.depths:
        for v in cfg.variants:
            deep[v] = ctx.task(f"deep-{v}-d{cfg.deep_depth}", lambda v=v: train_variant(
                cfg, ctx, d, v, cfg.deep_depth, max_epochs=cfg.deep_epochs))
    t_train = time.perf_counter() - t0 - t_signal
    return _result(cfg, ctx, d, signal, sweep, final_runs, deep, t_signal, t_train)


def run_signal(cfg: Config, ctx: RunContext, d: Data) -> dict[tuple[str, int], dict[str, Any]]:
    """(a): one forward/backward pass per (variant, depth) at initialization on a batch of training images."""
    x = d.transform(d.x_train[:cfg.signal_batch]).to(ctx.device)
    y = d.y_train[:cfg.signal_batch].to(ctx.device)
    out: dict[tuple[str, int], dict[str, Any]] = {}
    with ctx.progress(len(cfg.signal_variants) * len(cfg.signal_depths), "signal propagation") as bar:
        for depth in cfg.signal_depths:
            for v in cfg.signal_variants:
                def one(v: str = v, depth: int = depth) -> dict[str, Any]:
                    t = time.perf_counter()
                    stats = measure(v, depth, x, y, width=cfg.signal_width, num_classes=d.num_classes,
                                    seed=ctx.seed_for("signal", depth))
                    row = stats.to_dict()
                    row["growth_per_block"] = growth_per_block(stats)
                    row["max_layer_grad_norm"] = stats.max_layer_grad_norm
                    row["time_s"] = time.perf_counter() - t
                    return row
                out[(v, depth)] = ctx.task(f"signal-{v}-d{depth}", one)
                bar.advance(1)
    return out


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _result(cfg: Config, ctx: RunContext, d: Data, signal: dict[tuple[str, int], dict[str, Any]],
            sweep: dict[tuple[str, int], dict[str, Any]], final_runs: dict[bool, list[dict[str, Any]]],
            deep: dict[str, dict[str, Any]], t_signal: float, t_train: float) -> Result:
    headline_mixup = cfg.mixup[0]
    final = summarize_final(final_runs[headline_mixup])
    verdict = decide(final, depth=cfg.final_depth, tolerance=cfg.tolerance, far_behind=cfg.far_behind)

    # tables
    signal_rows = []
    for (v, depth), s in signal.items():
        overflow = s.get("overflow_block")
        signal_rows.append({
            "variant": v, "depth": depth, "output_var": _finite(s["output_var"]), "loss": _finite(s["loss"]),
            "grad_norm": _finite(s["grad_norm"]), "max_layer_grad_norm": _finite(s["max_layer_grad_norm"]),
            "classifier_grad_norm": _finite(s["classifier_grad_norm"]),
            "overflow": "finite" if overflow is None else f"inf after block {overflow}",
            "growth_per_block": _finite(s["growth_per_block"]), "time_s": round(float(s["time_s"]), 2),
        })
    sweep_rows = [_run_row(r) for r in sweep.values()]
    final_rows = []
    for use_mixup, runs in final_runs.items():
        for v, s in summarize_final(runs).items():
            final_rows.append({"variant": v, "depth": cfg.final_depth, "epochs": cfg.final_epochs, "mixup": use_mixup,
                               "seeds": s["n"], "test_acc": s["acc"], "test_acc_std": s["std"],
                               "status": f"diverged at step {s['diverged_at']}" if s["diverged"] else "trained"})
    deep_rows = [_run_row(r) for r in deep.values()]

    # metrics
    metrics: dict[str, Any] = {"dataset": d.name, "final_depth": cfg.final_depth, "deep_depth": cfg.deep_depth or None,
                               "signal_max_depth": max(cfg.signal_depths), "time_signal_s": round(t_signal, 1),
                               "time_train_s": round(t_train, 1)}
    for v, s in final.items():
        metrics[f"final_test_acc_{v}"] = s["acc"]
        metrics[f"final_diverged_at_{v}"] = s["diverged_at"]
    bn_acc = final["batchnorm"]["acc"]
    for v in ("fixup", "skipinit", "rezero"):
        if v in final and final[v]["acc"] is not None and bn_acc is not None:
            metrics[f"gap_{v}_vs_batchnorm"] = bn_acc - final[v]["acc"]
    for v, r in deep.items():
        metrics[f"deep_first_epoch_acc_{v}"] = r["first_epoch_acc"]
        metrics[f"deep_test_acc_{v}"] = r["final_acc"]
        metrics[f"deep_diverged_at_{v}"] = r["diverged_at"]
    top = max(cfg.signal_depths)
    for v in cfg.signal_variants:
        metrics[f"signal_output_var_{v}_at_{top}"] = _finite(signal[(v, top)]["output_var"])
        overflowed = [depth for depth in cfg.signal_depths if _finite(signal[(v, depth)]["output_var"]) is None]
        metrics[f"signal_overflow_depth_{v}"] = min(overflowed) if overflowed else None

    figures = [_plot_signal(cfg, ctx, signal), _plot_trainability(cfg, ctx, d, sweep, deep),
               _plot_final(cfg, ctx, final_runs)]
    summary = _summary(cfg, d, final, deep, signal, metrics)
    notes = [
        f"Dataset {d.name} ({len(d.x_train)} train / {len(d.x_test)} test images) at width {cfg.width}; "
        f"the paper uses CIFAR-10 at width 16.",
        "Architecture: original (post-activation) ResNet of the official Fixup CIFAR code with the option-A "
        "(parameter-free) shortcut for every variant; the BatchNorm baseline zero-initializes the last BN scale of "
        "each branch as the official baseline does; the stem conv gets He initialization in every variant.",
        "The scalar biases/multipliers of every normalization-free variant (none, fixup, skipinit, rezero) train at "
        f"lr x {cfg.scalar_lr_factor:g}, the official Fixup recipe; all other parameters at lr {cfg.lr:g}.",
        f"Sweep runs use seed 0; the verdict uses {cfg.seeds} seed(s) at depth {cfg.final_depth}"
        + (" without mixup" if len(cfg.mixup) > 1 else "") + ".",
        "Signal propagation: float32 forward/backward in training mode on one batch; 'overflow' means the residual "
        "stream reached inf, which is the predicted geometric growth, not a bug.",
        f"Wall-clock times depend on machine load; the run used {torch.get_num_threads()} torch thread(s) "
        "(`mlmyths run --threads N` sets it; tiny nets run best on 1).",
    ]
    tables = {"final": final_rows, "trainability": sweep_rows, "signal": signal_rows}
    if deep_rows:
        tables["deep"] = deep_rows
    return Result(verdict=verdict, summary=summary, metrics=metrics, tables=tables, figures=figures, notes=notes)


def _run_row(r: dict[str, Any]) -> dict[str, Any]:
    return {"variant": r["variant"], "depth": r["depth"], "epochs": r["epochs_trained"], "steps": r["steps"],
            "first_epoch_acc": r["first_epoch_acc"], "final_acc": r["final_acc"],
            "status": f"diverged at step {r['diverged_at']}" if r["diverged_at"] is not None else "trained",
            "time_s": round(float(r["time_s"]), 1)}


def _summary(cfg: Config, d: Data, final: dict[str, dict[str, Any]], deep: dict[str, dict[str, Any]],
             signal: dict[tuple[str, int], dict[str, Any]], metrics: dict[str, Any]) -> str:
    def acc(s: dict[str, Any]) -> str:
        return f"diverged at step {s['diverged_at']}" if s["diverged"] else f"{s['acc']:.2f}%"

    parts = [f"At depth {cfg.final_depth} on {d.name} (width {cfg.width}, {cfg.final_epochs} epochs, shared lr {cfg.lr:g}): "
             + ", ".join(f"{v} {acc(s)}" for v, s in final.items()) + "."]
    if deep:
        parts.append(f"After the first {cfg.deep_epochs} epoch(s) at depth {cfg.deep_depth}: " + ", ".join(
            f"{v} " + (f"diverged at step {r['diverged_at']}" if r["diverged_at"] is not None
                       else f"{r['final_acc']:.1f}%") for v, r in deep.items()) + ".")
    top = max(cfg.signal_depths)
    sig = []
    for v in cfg.signal_variants:
        overflow = metrics[f"signal_overflow_depth_{v}"]
        if overflow is not None:
            sig.append(f"{v} overflows to inf by depth {overflow}")
        else:
            sig.append(f"{v} output variance {signal[(v, top)]['output_var']:.3g} at depth {top}")
    parts.append("At initialization: " + "; ".join(sig) + ".")
    return " ".join(parts)


# -- figures --------------------------------------------------------------------------------------


def _color(v: str) -> str:
    return {"none": plots.COLORS["baseline"], "batchnorm": plots.COLORS["paper"], "fixup": plots.COLORS["ours"],
            "skipinit": plots.COLORS["alt"], "rezero": plots.COLORS["alt2"]}.get(v, plots.COLORS["alt3"])


def _positive(values: list[Any]) -> np.ndarray:
    arr = np.array([np.nan if v is None else float(v) for v in values], dtype=float)
    arr[~np.isfinite(arr) | (arr <= 0)] = np.nan
    return arr


def _plot_signal(cfg: Config, ctx: RunContext, signal: dict[tuple[str, int], dict[str, Any]]) -> str:
    fig, axes = plots.new_figure(1, 3, width=4.6)
    depths = np.array(cfg.signal_depths)
    top = max(cfg.signal_depths)
    for v in cfg.signal_variants:
        rows = [signal[(v, depth)] for depth in cfg.signal_depths]
        label = v
        overflow = [depth for depth, r in zip(depths, rows) if _finite(r["output_var"]) is None]
        if overflow:
            label += f" (inf from depth {min(overflow)})"
        axes[0].plot(depths, _positive([r["output_var"] for r in rows]), marker="o", ms=3, color=_color(v), label=label)
        axes[1].plot(depths, _positive([r["max_layer_grad_norm"] for r in rows]), marker="o", ms=3, color=_color(v),
                     label=v)
        stream = np.asarray(signal[(v, top)]["stream_var"], dtype=float)
        axes[2].plot(np.arange(len(stream)), _positive(list(stream)), color=_color(v), label=v, lw=1)
    axes[0].set(xscale="log", yscale="log", xlabel="depth (layers)", ylabel="variance of the last block's output",
                title="output scale at initialization")
    axes[1].set(xscale="log", yscale="log", xlabel="depth (layers)", ylabel="largest per-layer gradient norm",
                title="gradient norm at initialization")
    axes[2].set(yscale="log", xlabel="block", ylabel="residual-stream variance",
                title=f"inside the {top}-layer net")
    axes[0].legend(fontsize=7)
    return ctx.save_figure(fig, "signal_propagation")


def _plot_trainability(cfg: Config, ctx: RunContext, d: Data, sweep: dict[tuple[str, int], dict[str, Any]],
                       deep: dict[str, dict[str, Any]]) -> str:
    fig, axes = plots.new_figure(1, 3 if deep else 2, width=4.8)
    chance = 100.0 / d.num_classes
    for v in cfg.variants:
        runs = [sweep[(v, depth)] for depth in cfg.depths]
        first = runs + ([deep[v]] if v in deep else [])
        for ax, rs, key in ((axes[0], first, "first_epoch_acc"), (axes[1], runs, "final_acc")):
            xs = np.array([r["depth"] for r in rs])
            ys = np.array([np.nan if r[key] is None else r[key] for r in rs], dtype=float)
            ax.plot(xs, ys, marker="o", ms=4, color=_color(v), label=v)
            failed = np.array([r["diverged_at"] is not None for r in rs])
            if failed.any():
                ax.scatter(xs[failed], np.full(failed.sum(), chance), marker="x", s=40, color=_color(v))
    for ax, title in ((axes[0], "after the first epoch"), (axes[1], f"after {cfg.epochs} epochs")):
        ax.axhline(chance, color="k", lw=0.6, ls=":")
        ax.set(xscale="log", xlabel="depth (layers)", ylabel="test accuracy (%)", title=title, ylim=(0, 100))
    axes[0].legend(fontsize=7, title=f"x: diverged (shown at chance); lr {cfg.lr:g}", title_fontsize=7)
    if deep:  # the deepest net, epoch by epoch
        ax = axes[2]
        for v, r in deep.items():
            curve = np.asarray(r["test_acc_per_epoch"], dtype=float)
            if r["diverged_at"] is not None:
                ax.plot([], [], color=_color(v), label=f"{v}: diverged at step {r['diverged_at']}")
            else:
                ax.plot(np.arange(1, len(curve) + 1), curve, marker="o", ms=4, color=_color(v), label=v)
        ax.axhline(chance, color="k", lw=0.6, ls=":")
        ax.set(xlabel="epoch", ylabel="test accuracy (%)", ylim=(0, 100),
               title=f"{cfg.deep_depth} layers, first {cfg.deep_epochs} epoch(s)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=7)
    return ctx.save_figure(fig, "trainability_vs_depth")


def _plot_final(cfg: Config, ctx: RunContext, final_runs: dict[bool, list[dict[str, Any]]]) -> str:
    fig, ax = plots.new_figure()
    for use_mixup, runs in final_runs.items():
        for v in cfg.variants:
            curves = [r["test_acc_per_epoch"] for r in runs if r["variant"] == v and r["diverged_at"] is None]
            style = "--" if use_mixup else "-"
            if curves:
                n = min(len(c) for c in curves)
                mean = np.nanmean(np.array([c[:n] for c in curves], dtype=float), axis=0)
                ax.plot(np.arange(1, n + 1), mean, style, color=_color(v), label=v + (" + mixup" if use_mixup else ""))
            else:
                step = min(r["diverged_at"] for r in runs if r["variant"] == v and r["diverged_at"] is not None)
                ax.plot([], [], style, color=_color(v), label=f"{v}: diverged at step {step}")
    ax.set(xlabel="epoch", ylabel="test accuracy (%)", title=f"depth {cfg.final_depth}, shared lr {cfg.lr:g}")
    ax.legend(fontsize=7)
    return ctx.save_figure(fig, "final_depth_curves")
