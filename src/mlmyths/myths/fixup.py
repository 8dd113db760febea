"""Myth 5: "We need (batch) normalization to train very deep residual networks."

Reproduces Zhang, Dauphin & Ma, "Fixup Initialization: Residual Learning Without
Normalization" (ICLR 2019) with its successors SkipInit (De & Smith, NeurIPS 2020) and
ReZero (Bachlechner et al. 2020), on the ResNets of :mod:`mlmyths.models.resnet`, in three
waves of independent tasks:

(a) **Signal propagation at initialization** (paper Sec. 2): for depths up to 10,004 layers
    and every variant, the variance of the last block's output and the per-layer gradient
    norms after one backward pass (:mod:`mlmyths.models.signal`). Without normalization and
    with standard initialization (``none``) both grow geometrically with depth and overflow
    float32 (recorded as a finding). ``signal_inits`` initializations of ``none`` at the
    shallowest signal depth and at the deepest sweep depth give the growth claim its interval.
(b) **Trainability vs depth at one shared learning rate** (paper Fig. 3): every variant at
    every sweep depth trained for the first ``epochs`` epoch(s) of the final runs' schedule
    (SGD, lr 0.1 -- the BatchNorm default -- momentum 0.9); the scalar biases/multipliers of
    the normalization-free variants train at lr/10 as in the official Fixup code. The deepest
    sweep depth is trained with ``sweep_seeds`` seeds (the other depths with one) and carries
    the trainability claims. A diverging run is recorded as ``diverged at step N`` and the
    experiment goes on; its predictions are scored at chance.
(c) **The accuracy comparison** (the paper's CIFAR-10 ResNet-110 table, Sec. 4.2): BatchNorm
    and Fixup at ``final_depth`` for ``final_epochs`` epochs, ``seeds`` seeds, each seed's two
    nets built from the same seed and fed the same minibatches (paired), per-example
    correctness kept on the whole test set; optionally with mixup as well.

The claims (``CLAIMS``) are judged by :func:`evaluate`; the verdict follows from the key
claims alone (:func:`mlmyths.claims.verdict`). A BatchNorm baseline that did not learn
(``batchnorm-learned``) leaves every key claim ``not_tested``.

Scales: ``smoke`` (CI, seconds: digits, tiny budgets); ``small`` (default; 26 CPU-minutes measured
on a shared 2-core machine: Fashion-MNIST at 14x14 when installed, 10,000 training and all 10,000
test images, depths 8 to 110 for the first 2 epochs, ResNet-32 for 6 epochs with 4 seeds; else
the embedded digits, whose 359 test images cannot resolve a 1-point margin and say so -- at this
budget Fixup's run-to-run spread, 3.5 points, keeps the 1-point margin out of reach on
Fashion-MNIST too, see ``SEED_SD_FINAL``); ``paper``
(CIFAR-10, width 16, first-epoch accuracy up to 10,004 layers, ResNet-110 for 200 epochs with and
without mixup, 5 seeds; GPU).

Examples::

    mlmyths run fixup                                   # small: Fashion-MNIST 14x14 (or digits)
    mlmyths run fixup --set warmup_epochs=1             # the same with a 1-epoch lr warm-up
    mlmyths run fixup --scale paper --device cuda       # CIFAR-10, the paper's setup
"""
from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mlmyths import augment as augmentations
from mlmyths import config as configs
from mlmyths import data, plots
from mlmyths.claims import Claim, ClaimResult, Estimate, by_id, gated
from mlmyths.models.resnet import NORMS, SCALAR_NORMS, fixup_param_groups, resnet
from mlmyths.models.signal import growth_per_block, measure
from mlmyths.myths import claim
from mlmyths.myths.planning import Wave
from mlmyths.records import Result
from mlmyths.runs import RunContext
from mlmyths.stats import crossed_mean_interval, mean_std, t_interval
from mlmyths.train import TrainConfig, fit, predict

CLAIM = claim(
    "fixup",
    paper_result=(
        "Without normalization, a standard-initialized ResNet's output and gradients explode with depth at "
        "initialization (Sec. 2) and it fails to train at 100 layers, while Fixup and BatchNorm train at up "
        "to 10,000 layers at the BatchNorm learning rate (CIFAR-10 test accuracy after the first epoch, "
        "Fig. 3); ResNet-110 on CIFAR-10 reaches 7.24% test error with Fixup vs 6.61% with BatchNorm, and "
        "with mixup they match (Sec. 4.2). Successors SkipInit (De & Smith 2020) and ReZero (Bachlechner et "
        "al. 2020) train deep ResNets with a zero-initialized scalar gain per residual branch."
    ),
)

# -- claims, declared before anything runs ----------------------------------------------------------

_MARGIN_WHY = (
    "The paper calls Fixup's ResNet-110 result on CIFAR-10 comparable to BatchNorm's at a gap of 0.63 points "
    "(7.24% vs 6.61% test error) and attributes the gap to regularization (closed by mixup). A 1-point margin "
    "holds that gap with 0.37 points to spare, and is also the paper's gap read relatively (9.5% more errors "
    "than BatchNorm) at the ~10% error of a small Fashion-MNIST ResNet; a normalization-free net more than "
    "1 point behind BatchNorm is outside anything the paper reports as matching."
)

CLAIMS = (
    Claim("batchnorm-learned", statement="The BatchNorm baseline trains (prerequisite of every comparison).",
          paper_value="ResNet-110 with BatchNorm: 6.61% CIFAR-10 test error, i.e. 83 points above chance",
          paper_source="Sec. 4.2, CIFAR-10 ResNet-110 results",
          statistic="BatchNorm's final test accuracy at final_depth minus chance (points)",
          unit="seeds x test examples (crossed)", test="at_least", threshold=20.0, key=False,
          justification="A sanity condition, not a finding: the paper's BatchNorm baseline is 83 points above "
                        "chance; one that is not even 20 points above chance has not learned the task, and a "
                        "comparison with it says nothing about normalization. It gates the key claims."),
    Claim("fixup-matches-batchnorm",
          statement="Without normalization, Fixup trains ResNet-110 to a test accuracy comparable to "
                    "BatchNorm's at the same learning rate.",
          paper_value="7.24% (Fixup) vs 6.61% (BatchNorm) CIFAR-10 test error: Fixup 0.63 points behind",
          paper_source="Sec. 4.2, CIFAR-10 ResNet-110 results",
          statistic="final test accuracy, Fixup minus BatchNorm, at final_depth (points; a diverged run is "
                    "scored at chance)",
          unit="seeds x test examples (crossed; the nets of one seed paired: same seed, same minibatches)",
          test="within", threshold=1.0, justification=_MARGIN_WHY),
    Claim("deep-batchnorm-trains", statement="BatchNorm trains at the deepest depth of the sweep "
                                             "(prerequisite of deep-fixup-trains).",
          paper_value="BatchNorm ~40-50% CIFAR-10 test accuracy after one epoch up to 10,000 layers (chance 10%)",
          paper_source="Fig. 3", statistic="BatchNorm's test accuracy after the sweep budget at the deepest "
                                           "sweep depth minus chance (points)",
          unit="seeds x test examples (crossed)", test="at_least", threshold=20.0, key=False,
          justification="A sanity condition for the deep claim: if BatchNorm itself does not get 20 points above "
                        "chance at that depth and budget (half of the 30-40 points of Fig. 3), a failure of "
                        "Fixup there says nothing about normalization."),
    Claim("deep-fixup-trains",
          statement="Fixup trains very deep residual networks without normalization at the BatchNorm learning "
                    "rate.",
          paper_value="Fixup ~40-50% CIFAR-10 test accuracy after one epoch at every depth up to 10,000 layers, "
                      "on par with BatchNorm (chance 10%)",
          paper_source="Fig. 3",
          statistic="Fixup's test accuracy after the sweep budget at the deepest sweep depth minus chance "
                    "(points; diverged: chance)",
          unit="seeds x test examples (crossed)", test="at_least", threshold=20.0,
          justification="Fig. 3 puts Fixup 30-40 points above chance after one epoch at every depth, where a "
                        "net that fails to train stays at chance; 20 points is half of that separation, so a net "
                        "clearly learning passes and one stuck near chance fails."),
    Claim("deep-standard-init-fails",
          statement="Without normalization, standard initialization fails to train at depth (it diverges or "
                    "stays near chance) at the BatchNorm learning rate.",
          paper_value="standard init without normalization fails from ~100 layers; gradients explode with depth",
          paper_source="Sec. 2 and Fig. 3",
          statistic="test accuracy of 'none' (standard init, no normalization) after the sweep budget at the "
                    "deepest sweep depth minus chance (points; diverged: chance)",
          unit="seeds x test examples (crossed)", test="at_most", threshold=10.0, key=False,
          justification="'Near chance' read as within 10 points of it (a quarter of Fig. 3's 30-40 point gap "
                        "between training and failing nets). Secondary: a standard-initialized net that does "
                        "train at depth contradicts the paper's analysis but needs no normalization either, so it "
                        "cannot speak for the myth."),
    Claim("signal-gradient-grows",
          statement="At initialization without normalization, the gradient norm of a standard-initialized "
                    "ResNet grows with depth.",
          paper_value="lower bound on the gradient norm grows with the output scale, which grows geometrically "
                      "with the number of residual branches (Theorem 1)",
          paper_source="Sec. 2",
          statistic="log10 of the largest per-layer gradient norm of 'none' at the deepest sweep depth over "
                    "that at the shallowest signal depth (one forward/backward pass per initialization; overflow "
                    "counted as float32's largest value, a lower bound)",
          unit="initializations", test="at_least", threshold=1.0, key=False,
          justification="Sec. 2 predicts geometric growth in the number of residual blocks: many orders of "
                        "magnitude between 8 layers and the depths where standard init fails (~100 layers and "
                        "more); at least one order (tenfold) is asked, so that the spread between "
                        "initializations can never pass for growth."),
    Claim("fixup-matches-batchnorm-mixup",
          statement="With mixup, Fixup matches BatchNorm on ResNet-110.",
          paper_value="with mixup, Fixup's CIFAR-10 test error is on par with BatchNorm's",
          paper_source="Sec. 4.2, CIFAR-10 ResNet-110 results",
          statistic="final test accuracy with mixup, Fixup minus BatchNorm, at final_depth (points)",
          unit="seeds x test examples (crossed; paired by seed)", test="within", threshold=1.0, key=False,
          justification=_MARGIN_WHY + " Secondary: only the paper preset trains with mixup."),
)
_CLAIM = by_id(CLAIMS)

#: True values of each claim's statistic well on the paper's side / well on the other side.
CALIBRATION = {
    "paper": {"batchnorm-learned": 78.0, "fixup-matches-batchnorm": 0.0, "deep-batchnorm-trains": 50.0,
              "deep-fixup-trains": 50.0, "deep-standard-init-fails": 0.0, "signal-gradient-grows": 10.0,
              "fixup-matches-batchnorm-mixup": 0.0},
    "other": {"batchnorm-learned": 0.0, "fixup-matches-batchnorm": -3.0, "deep-batchnorm-trains": 0.0,
              "deep-fixup-trains": 0.0, "deep-standard-init-fails": 50.0, "signal-gradient-grows": 0.0,
              "fixup-matches-batchnorm-mixup": -3.0},
}

#: The two variants of the accuracy comparison (c).
FINAL_VARIANTS = ("batchnorm", "fixup")
#: Test-set sizes, for :func:`simulate` (rehearsal data has 256 test images).
TEST_IMAGES = {"digits": 359, "mnist": 10_000, "fashion-mnist": 10_000, "cifar10": 10_000}
#: ``dataset="auto"`` without Fashion-MNIST falls back to the embedded digits (8x8, 1,438 training
#: images): native size, all images, and budgets in epochs of that small set.
DIGITS_FALLBACK: dict[str, Any] = {"image_size": 0, "train_subset": 0, "sweep_test_subset": 0, "epochs": 8,
                                   "final_epochs": 20}


def _is_depth(d: int) -> bool:
    return d >= 8 and (d - 2) % 6 == 0


@dataclass(frozen=True)
class Config:
    dataset: str = "auto"  #: image dataset (digits, fashion-mnist, mnist, cifar10, rehearsal-NAME); "auto": fashion-mnist if installed, else digits
    image_size: int = 14  #: resize images to this side by area interpolation (0: native size)
    train_subset: int = 10_000  #: train on the first N training images (0: all)
    test_subset: int = 0  #: evaluate on the first N test images (0: all)
    width: int = 8  #: channels of the first stage (the paper: 16); stages have width, 2 width, 4 width
    variants: tuple[str, ...] = ("none", "batchnorm", "fixup")  #: (b) variants of the depth sweep
    depths: tuple[int, ...] = (8, 20, 56, 110)  #: (b) sweep depths, 6n+2; the deepest carries the trainability claims
    epochs: int = 2  #: (b) sweep budget: the first N epochs of the final runs' lr schedule (paper Fig. 3: 1)
    sweep_seeds: int = 3  #: (b) seeds at the deepest sweep depth (the other depths: one)
    sweep_test_subset: int = 2_000  #: (b) sweep runs are evaluated on the first N test images (0: all)
    final_depth: int = 32  #: (c) depth of the accuracy comparison (the paper: 110)
    final_epochs: int = 6  #: (c) its budget in epochs, also the length of every run's lr schedule
    mixup: tuple[bool, ...] = (False,)  #: (c) comparison without / with mixup (alpha 1); the key claim uses "without"
    seeds: int = 4  #: (c) seeds of the comparison (each seed: a BatchNorm and a Fixup net, paired)
    batch_size: int = 64  #: examples per SGD step (the paper: 128)
    lr: float = 0.1  #: learning rate shared by every variant (the BatchNorm default)
    scalar_lr_factor: float = 0.1  #: scalar biases and multipliers train at lr x this (Fixup's lr/10)
    momentum: float = 0.9  #: SGD momentum
    weight_decay: float = 1e-4  #: L2 on every parameter (the official Fixup CIFAR default)
    schedule: Literal["constant", "cosine", "step"] = "cosine"  #: lr decay over final_epochs
    milestones: tuple[int, ...] = ()  #: epochs where the "step" schedule divides the lr by 10
    warmup_epochs: float = 0.0  #: linear learning-rate warm-up, in epochs (0: none)
    augment: Literal["none", "crop", "crop-flip"] = "none"  #: training augmentation
    checkpoint_every: int = 0  #: nets deeper than 1,000 layers recompute activations per this many blocks (0: off)
    signal_variants: tuple[str, ...] = ("none", "batchnorm", "fixup", "skipinit", "rezero")  #: (a) variants plotted
    signal_depths: tuple[int, ...] = (8, 20, 56, 110, 326, 1004, 3002, 10004)  #: (a) depths, log-spaced
    signal_inits: int = 8  #: (a) initializations of 'none' at the shallowest signal depth and the deepest sweep depth (growth claim)
    signal_width: int = 4  #: (a) width of the measured nets
    signal_batch: int = 16  #: (a) training images in the measured batch

    def __post_init__(self) -> None:
        configs.check_types(self)
        data.check_name(self.dataset, extra=("auto",))
        for name in ("image_size", "train_subset", "test_subset", "sweep_test_subset", "checkpoint_every"):
            configs.require(getattr(self, name) >= 0, name, getattr(self, name), "0 or more (0: off / all)")
        for name in ("width", "epochs", "sweep_seeds", "final_epochs", "seeds", "batch_size", "signal_width",
                     "signal_batch"):
            configs.require(getattr(self, name) >= 1, name, getattr(self, name), "at least 1")
        configs.require(self.signal_inits >= 2, "signal_inits", self.signal_inits, "at least 2 (an interval)")
        for name in ("variants", "signal_variants"):
            value = getattr(self, name)
            configs.require(bool(value) and all(v in NORMS for v in value), name, value,
                            f"a non-empty list of {', '.join(NORMS)}")
        for name in ("depths", "signal_depths"):
            value = getattr(self, name)
            configs.require(bool(value) and all(map(_is_depth, value)), name, value,
                            "a non-empty list of depths 6n+2 with n >= 1 (8, 20, 32, 56, 110, 1202, ...)")
        configs.require(_is_depth(self.final_depth), "final_depth", self.final_depth,
                        "a depth 6n+2 with n >= 1 (8, 20, 32, 56, 110, ...)")
        configs.require(self.epochs <= self.final_epochs, "epochs", self.epochs,
                        f"at most final_epochs ({self.final_epochs}): the sweep trains the first epochs of that schedule")
        configs.require(bool(self.mixup) and len(set(self.mixup)) == len(self.mixup), "mixup", self.mixup,
                        "false, true or false,true")
        configs.require(self.lr > 0, "lr", self.lr, "positive")
        configs.require(self.scalar_lr_factor > 0, "scalar_lr_factor", self.scalar_lr_factor, "positive")
        configs.require(0 <= self.momentum < 1, "momentum", self.momentum, "in [0, 1)")
        configs.require(self.weight_decay >= 0, "weight_decay", self.weight_decay, "0 or more")
        configs.require(self.warmup_epochs >= 0, "warmup_epochs", self.warmup_epochs, "0 or more")
        configs.require(all(m >= 1 for m in self.milestones), "milestones", self.milestones, "epochs >= 1")


SCALES = {
    "smoke": Config(dataset="digits", image_size=0, train_subset=0, width=4, depths=(8, 20), epochs=1, sweep_seeds=2,
                    sweep_test_subset=0, final_depth=20, final_epochs=2, seeds=2, batch_size=64,
                    signal_depths=(8, 56, 326), signal_inits=3, signal_variants=("none", "batchnorm", "fixup"),
                    signal_batch=8),
    "small": Config(),
    "paper": Config(
        dataset="cifar10", image_size=0, train_subset=0, width=16,
        variants=("none", "batchnorm", "fixup", "skipinit", "rezero"),
        depths=(20, 32, 56, 110, 326, 1202, 3002, 10004), epochs=1, sweep_seeds=2, sweep_test_subset=0,
        final_depth=110, final_epochs=200, mixup=(False, True), seeds=5, batch_size=128, schedule="step",
        milestones=(100, 150), augment="crop-flip", checkpoint_every=64, signal_width=16, signal_batch=64,
    ),
}


def config(scale: str = "small", **overrides: Any) -> Config:
    """The preset for ``scale`` with ``overrides``; ``dataset="auto"`` resolved here, so the record
    says what ran (Fashion-MNIST when installed, else digits with :data:`DIGITS_FALLBACK`)."""
    cfg = configs.select(SCALES, scale, overrides)
    if cfg.dataset != "auto":
        return cfg
    name = data.first_available(("fashion-mnist", "digits"))
    changes: dict[str, Any] = {"dataset": name}
    if name == "digits":
        changes.update({k: v for k, v in DIGITS_FALLBACK.items() if k not in overrides})
    return dataclasses.replace(cfg, **changes)


def rehearsal(cfg: Config) -> Config:
    """``cfg`` (the paper preset) on ``rehearsal-<dataset>`` (synthetic images of its shape) with a
    few steps per run and small depths: the same model, width, augmentation, mixup and schedule code."""
    base = cfg.dataset.removeprefix(data.REHEARSAL_PREFIX)
    return dataclasses.replace(
        cfg, dataset=data.REHEARSAL_PREFIX + base, train_subset=256, test_subset=0, sweep_test_subset=0,
        depths=(8, 20), epochs=1, sweep_seeds=2, final_depth=20, final_epochs=2, seeds=2,
        milestones=tuple(m for m in cfg.milestones if m <= 1) or (1,), signal_depths=(8, 20, 56), signal_inits=2,
        signal_batch=16)


# -- data -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preprocess:
    """uint8 batch -> normalized float batch, resized to ``size`` by area interpolation (0: as is)."""

    mean: Tensor  #: (C,) channel means of the training images
    std: Tensor  #: (C,) channel standard deviations
    size: int = 0  #: output side (0: keep)

    def __call__(self, xb: Tensor) -> Tensor:
        out = data.normalize(xb, self.mean.to(xb.device), self.std.to(xb.device))  # (B, C, H, W)
        if self.size and out.shape[-1] != self.size:
            out = F.interpolate(out, size=(self.size, self.size), mode="area")  # (B, C, size, size)
        return out


@dataclass(frozen=True)
class Data:
    x_train: Tensor  #: uint8 (N, C, H, W)
    y_train: Tensor  #: (N,)
    x_test: Tensor  #: uint8 (M, C, H, W)
    y_test: Tensor  #: (M,)
    transform: Preprocess  #: uint8 batch -> normalized float batch (resized)
    name: str  #: dataset name
    num_classes: int  #: classes (chance accuracy is 1 / num_classes)
    in_channels: int  #: image channels


def load_data(cfg: Config) -> Data:
    """The dataset of ``cfg`` with its subsets; a DataError (exit 2) when it is not installed."""
    ds = data.load(cfg.dataset)
    x_train, y_train, x_test, y_test = ds.x_train, ds.y_train, ds.x_test, ds.y_test
    if cfg.train_subset:
        x_train, y_train = x_train[:cfg.train_subset], y_train[:cfg.train_subset]
    if cfg.test_subset:
        x_test, y_test = x_test[:cfg.test_subset], y_test[:cfg.test_subset]
    mean, std = data.channel_stats(x_train)
    return Data(x_train, y_train, x_test, y_test, Preprocess(mean, std, cfg.image_size), ds.name, ds.num_classes,
                ds.image_shape[0])


def _augmentation(cfg: Config, d: Data, use_mixup: bool) -> tuple[Callable[[Tensor, torch.Generator], Tensor] | None,
                                                                 augmentations.Mixup | None]:
    side = cfg.image_size or d.x_train.shape[-1]
    padding = max(1, side // 8)  # 4 pixels at 32x32, as the CIFAR recipe
    crop: Callable[[Tensor, torch.Generator], Tensor] | None = None
    if cfg.augment == "crop":
        crop = functools.partial(_crop, padding=padding)
    elif cfg.augment == "crop-flip":
        crop = functools.partial(_crop_flip, padding=padding)
    if not use_mixup:
        return crop, None
    mix = augmentations.Mixup(alpha=1.0)
    if crop is None:
        return mix, mix
    return functools.partial(_then, crop, mix), mix


def _crop(x: Tensor, g: torch.Generator, padding: int) -> Tensor:
    return augmentations.random_crop(x, g, padding)


def _crop_flip(x: Tensor, g: torch.Generator, padding: int) -> Tensor:
    return augmentations.crop_flip(x, g, padding)


def _then(first: Callable[[Tensor, torch.Generator], Tensor], second: Callable[[Tensor, torch.Generator], Tensor],
          x: Tensor, g: torch.Generator) -> Tensor:
    return second(first(x, g), g)


# -- one training run ---------------------------------------------------------------------------


def run_key(stage: str, variant: str, depth: int, seed: int, use_mixup: bool = False) -> str:
    """The task key of one training run, e.g. ``final-fixup-d110-s0-mixup``."""
    return f"{stage}-{variant}-d{depth}-s{seed}" + ("-mixup" if use_mixup else "")


def train_variant(cfg: Config, ctx: RunContext, d: Data, variant: str, depth: int, *, seed: int = 0,
                  stage: str = "final", max_epochs: int = 0, use_mixup: bool = False,
                  test_images: int = 0) -> dict[str, Any]:
    """Train ``resnet(depth, variant)`` on ``d`` and score it on the (first ``test_images``) test images.

    Every run follows the lr schedule of ``cfg.final_epochs`` epochs; ``max_epochs`` stops early on
    it (the sweep: the paper's "first epoch"). Model initialization depends on ``(depth, seed)``
    and the minibatch order on ``seed`` only, so the variants of one seed are paired: same seed,
    same batches. Returns the per-example correctness (uint8, ``None`` when training diverged),
    the test accuracy in % and the training curve.
    """
    key = run_key(stage, variant, depth, seed, use_mixup)
    torch.manual_seed(ctx.seed_for("model", depth, seed))
    model = resnet(depth, norm=variant, num_classes=d.num_classes, in_channels=d.in_channels,  # type: ignore[arg-type]
                   width=cfg.width, checkpoint_every=cfg.checkpoint_every if depth > 1000 else 0)
    steps_per_epoch = math.ceil(len(d.x_train) / cfg.batch_size)
    tcfg = TrainConfig(
        epochs=cfg.final_epochs, batch_size=cfg.batch_size, optimizer="sgd", lr=cfg.lr, momentum=cfg.momentum,
        weight_decay=cfg.weight_decay, schedule=cfg.schedule, milestones=cfg.milestones, gamma=0.1,
        warmup_epochs=cfg.warmup_epochs, max_steps=max_epochs * steps_per_epoch,
    )
    groups = fixup_param_groups(model, cfg.lr, cfg.scalar_lr_factor) if variant in SCALAR_NORMS else None
    augment, mix = _augmentation(cfg, d, use_mixup)
    result = fit(model, d.x_train, d.y_train, tcfg, transform=d.transform, augment=augment, param_groups=groups,
                 device=ctx.device, seed=ctx.seed_for("data", seed), checkpoint=ctx.checkpoint_path(f"train-{key}"),
                 progress=ctx.progress, loss_fn=mix.loss if mix is not None else None, description=key)
    x_test, y_test = (d.x_test[:test_images], d.y_test[:test_images]) if test_images else (d.x_test, d.y_test)
    correct = None
    if not result.diverged:
        logits = predict(model, x_test, device=ctx.device, transform=d.transform)  # (M, K)
        correct = (logits.argmax(-1).cpu() == y_test.cpu()).numpy().astype(np.uint8)  # (M,)
    out = {
        "variant": variant, "depth": depth, "seed": seed, "mixup": use_mixup, "steps": result.steps,
        "diverged_at": result.diverged_at, "correct": correct,
        "test_acc": None if correct is None else 100.0 * float(correct.mean()),
        "train_loss": [float(row["train_loss"]) for row in result.history], "time_s": result.time_s,
    }
    status = f"diverged at step {result.diverged_at}" if result.diverged else f"test accuracy {out['test_acc']:.2f}%"
    ctx.log(f"{key}: {status} ({result.steps} steps, {result.time_s:.1f}s)")
    return out


# -- signal propagation at initialization ---------------------------------------------------------


def signal_cells(cfg: Config) -> list[tuple[str, int, int]]:
    """``(variant, depth, init)`` measured: init 0 of every plotted variant and depth, and
    ``signal_inits`` inits of ``none`` at the shallowest signal depth and at the deepest sweep depth."""
    cells = [(v, depth, 0) for depth in cfg.signal_depths for v in cfg.signal_variants]
    for depth in dict.fromkeys((min(cfg.signal_depths), max(cfg.depths))):
        cells += [("none", depth, i) for i in range(cfg.signal_inits)]
    return list(dict.fromkeys(cells))


def signal_one(cfg: Config, ctx: RunContext, d: Data, variant: str, depth: int, init: int) -> dict[str, Any]:
    """One forward/backward pass of a freshly initialized net on the first ``signal_batch`` training images."""
    t = time.perf_counter()
    x = d.transform(d.x_train[:cfg.signal_batch]).to(ctx.device)  # (B, C, H, W)
    y = d.y_train[:cfg.signal_batch].to(ctx.device)
    stats = measure(variant, depth, x, y, width=cfg.signal_width, num_classes=d.num_classes,
                    seed=ctx.seed_for("signal", depth, init))
    row = stats.to_dict()
    row.update(growth_per_block=growth_per_block(stats), max_layer_grad_norm=stats.max_layer_grad_norm,
               init=init, time_s=time.perf_counter() - t)
    return row


def run_signal(cfg: Config, ctx: RunContext, d: Data) -> dict[tuple[str, int, int], dict[str, Any]]:
    """Wave (a): every cell of :func:`signal_cells` as one task."""
    cells = signal_cells(cfg)
    done = ctx.map({f"signal-{v}-d{depth}-i{i}": functools.partial(signal_one, cfg, ctx, d, v, depth, i)
                    for v, depth, i in cells})
    return dict(zip(cells, done.values()))


# -- the claims, from raw measurements --------------------------------------------------------------


def _points(runs: Sequence[Any] | None, n: int, num_classes: int) -> np.ndarray | None:
    """``(seeds, n)`` correctness in points (0 or 100); a diverged run (None) at chance on every example."""
    if not runs:
        return None
    return np.stack([np.full(n, 100.0 / num_classes) if r is None else 100.0 * np.asarray(r, dtype=float)
                     for r in runs])


def _crossed(table: np.ndarray, confidence: float) -> Estimate:
    mean, low, high, k, n = crossed_mean_interval(table, confidence)
    how = f"crossed interval over {k} seed(s) x {n} test examples"
    if k == 1:
        how += " (one seed: ignores seed-to-seed variation)"
    return Estimate(mean, low, high, n=k * n, method=how, confidence=confidence)


def _level(cid: str, runs: Sequence[Any] | None, n: int, num_classes: int, missing: str) -> ClaimResult:
    c = _CLAIM[cid]
    table = _points(runs, n, num_classes)
    if table is None:
        return c.judge(None, reason=missing)
    return c.judge(_crossed(table - 100.0 / num_classes, c.confidence))


def _paired(cid: str, a: Sequence[Any] | None, b: Sequence[Any] | None, n: int, num_classes: int,
            missing: str) -> ClaimResult:
    c = _CLAIM[cid]
    ta, tb = _points(a, n, num_classes), _points(b, n, num_classes)
    if ta is None or tb is None or ta.shape != tb.shape:
        return c.judge(None, reason=missing)
    return c.judge(_crossed(ta - tb, c.confidence))


def _growth(signal: Mapping[str, Any] | None) -> ClaimResult:
    c = _CLAIM["signal-gradient-grows"]
    if not signal or signal.get("low_depth") == signal.get("high_depth"):
        return c.judge(None, reason="needs a deepest sweep depth beyond the shallowest signal depth")
    top = float(np.finfo(np.float32).max)
    lo = np.asarray(signal["low"], dtype=float)
    hi = np.nan_to_num(np.asarray(signal["high"], dtype=float), nan=top, posinf=top)
    ratio = np.log10(np.minimum(hi, top) / lo)  # (inits,)
    mean, low, high, n = t_interval(ratio, c.confidence)
    est = Estimate(mean, low, high, n=n, method=f"t interval over {n} initializations "
                   f"(depth {signal['low_depth']} -> {signal['high_depth']})", confidence=c.confidence)
    return c.judge(est)


def evaluate(cfg: Config, m: Mapping[str, Any]) -> list[ClaimResult]:
    """The claims from raw measurements (pure and fast; :func:`run` and the calibration call it).

    ``m``: ``num_classes``; ``final_examples`` / ``deep_examples``: test examples of the comparison
    and of the sweep; ``final`` / ``final_mixup``: variant -> per-seed correctness arrays (``None``:
    diverged) of the comparison without / with mixup; ``deep``: variant -> per-seed correctness at
    the deepest sweep depth; ``signal``: ``{"low", "high"}`` largest per-layer gradient norms of
    ``none`` per initialization at ``low_depth`` and ``high_depth``.
    """
    k, n, n_deep = int(m["num_classes"]), int(m["final_examples"]), int(m["deep_examples"])
    final, mixed, deep = m.get("final") or {}, m.get("final_mixup") or {}, m.get("deep") or {}
    learned = _level("batchnorm-learned", final.get("batchnorm"), n, k, "no BatchNorm run without mixup")
    matches = _paired("fixup-matches-batchnorm", final.get("fixup"), final.get("batchnorm"), n, k,
                      "needs BatchNorm and Fixup runs without mixup")
    deep_bn = _level("deep-batchnorm-trains", deep.get("batchnorm"), n_deep, k,
                     "batchnorm is not among the sweep variants")
    deep_fixup = _level("deep-fixup-trains", deep.get("fixup"), n_deep, k, "fixup is not among the sweep variants")
    fails = _level("deep-standard-init-fails", deep.get("none"), n_deep, k, "none is not among the sweep variants")
    mixup = _paired("fixup-matches-batchnorm-mixup", mixed.get("fixup"), mixed.get("batchnorm"), n, k,
                    "no runs with mixup (the paper preset trains them; --set mixup=false,true)")
    results = [learned, matches, deep_bn, *gated([deep_fixup], deep_bn), fails, _growth(m.get("signal")), mixup]
    return gated(results, learned)


# -- simulated measurements with known truth (calibration) ------------------------------------------

#: Seed-to-seed standard deviation (points) of one run's test accuracy, per variant, from the
#: first small run (2026-12-07: ResNet-32 on Fashion-MNIST 14x14, 6 epochs, 4 seeds: BatchNorm
#: 0.66, Fixup 3.52; the first 2 epochs at depth 110, 3 seeds: 2.8 and 3.0). Noise levels, not thresholds.
SEED_SD_FINAL = {"batchnorm": 0.7, "fixup": 3.5}
SEED_SD_SWEEP = 3.0
#: Spread (decades) between initializations of the growth ratio (0.71) and of the shallow
#: gradient norm itself (0.19), from the same run.
GROWTH_SD = 0.7
LOW_SD = 0.2
#: Share of test examples whose correctness a run draws afresh (the rest follow a shared
#: difficulty): two nets at ~90% disagree on ~2 x 0.5 x 9% of the examples.
RESAMPLED = 0.5


def _test_count(cfg: Config, subset: int) -> int:
    name = cfg.dataset.removeprefix(data.REHEARSAL_PREFIX)
    n = 256 if cfg.dataset.startswith(data.REHEARSAL_PREFIX) else TEST_IMAGES.get(name, 10_000)
    n = min(n, cfg.test_subset) if cfg.test_subset else n
    return min(n, subset) if subset else n


def _sim_runs(rng: np.random.Generator, accuracy: float, seeds: int, n: int, sd: float,
              difficulty: np.ndarray) -> list[np.ndarray]:
    """Per-example correctness of ``seeds`` runs whose true accuracy (points) is ``accuracy``, each
    with its own seed noise ``sd``; examples share ``difficulty`` except a resampled share."""
    p = np.clip((accuracy + sd * rng.standard_normal(seeds)) / 100.0, 0.0, 1.0).astype(np.float32)  # (seeds,)
    own = rng.random((seeds, n), dtype=np.float32) < RESAMPLED
    u = np.where(own, rng.random((seeds, n), dtype=np.float32), difficulty[None, :])  # (seeds, n)
    return list((u < p[:, None]).astype(np.uint8))


def simulate(cfg: Config, truth: Mapping[str, float], rng: np.random.Generator) -> dict[str, Any]:
    """Measurements of :func:`evaluate`'s structure at ``cfg``'s sizes, whose claims' statistics
    have the true values ``truth`` (seed noise and per-example sampling as in real runs)."""
    k, chance = 10, 10.0
    n_final, n_sweep = _test_count(cfg, 0), _test_count(cfg, cfg.sweep_test_subset)
    bn = chance + truth["batchnorm-learned"]

    def pair(diff: float) -> dict[str, list[np.ndarray]]:
        difficulty = rng.random(n_final, dtype=np.float32)
        return {"batchnorm": _sim_runs(rng, bn, cfg.seeds, n_final, SEED_SD_FINAL["batchnorm"], difficulty),
                "fixup": _sim_runs(rng, bn + diff, cfg.seeds, n_final, SEED_SD_FINAL["fixup"], difficulty)}

    difficulty = rng.random(n_sweep, dtype=np.float32)
    deep = {v: _sim_runs(rng, chance + truth[cid], cfg.sweep_seeds, n_sweep, SEED_SD_SWEEP, difficulty)
            for v, cid in (("batchnorm", "deep-batchnorm-trains"), ("fixup", "deep-fixup-trains"),
                           ("none", "deep-standard-init-fails"))}
    low = 10.0 ** rng.normal(0.0, LOW_SD, cfg.signal_inits)
    high = low * 10.0 ** (truth["signal-gradient-grows"] + GROWTH_SD * rng.standard_normal(cfg.signal_inits))
    return {"num_classes": k, "final_examples": n_final, "deep_examples": n_sweep,
            "final": pair(truth["fixup-matches-batchnorm"]),
            "final_mixup": pair(truth["fixup-matches-batchnorm-mixup"]) if True in cfg.mixup else {},
            "deep": deep, "signal": {"low": low, "high": high, "low_depth": min(cfg.signal_depths),
                                     "high_depth": max(cfg.depths)}}


# -- the experiment -------------------------------------------------------------------------------


def plan(cfg: Config) -> list[Wave]:
    """Wave (a): one forward/backward per signal cell; (b): the depth sweep; (c): the comparison. The
    probe times one SGD step of the comparison's network (BatchNorm, ``final_depth``) on a batch of
    the dataset's shape; deeper sweep nets cost proportionally more per step."""
    spec = data.spec(cfg.dataset)
    c, h, _ = spec.image_shape or (3, 32, 32)
    side = cfg.image_size or h
    n_train = cfg.train_subset or {"mnist": 60_000, "fashion-mnist": 60_000, "cifar10": 50_000}.get(spec.name, 1_437)
    steps = -(-n_train // cfg.batch_size)  # per epoch
    made: dict[str, Any] = {}

    def step(device: Any) -> None:
        if not made:  # built once: the probe times steps, not construction
            made.update(net=resnet(cfg.final_depth, norm="batchnorm", num_classes=spec.num_classes or 10, in_channels=c,
                                   width=cfg.width).to(device),
                        x=torch.randn(cfg.batch_size, c, side, side, device=device),
                        y=torch.randint(0, spec.num_classes or 10, (cfg.batch_size,), device=device))
        F.cross_entropy(made["net"](made["x"]), made["y"]).backward()

    deepest = max(cfg.depths)
    sweep_runs = sum(cfg.sweep_seeds if depth == deepest else 1 for depth in cfg.depths) * len(cfg.variants)
    mean_depth = sum(cfg.depths) / len(cfg.depths)
    return [Wave("signal propagation cells (one forward/backward each)", len(signal_cells(cfg)), 1,
                 "forward+backward passes at initialization", key_prefix="signal-", stage=1),
            Wave("depth sweep, one run per (variant, depth, seed)", sweep_runs,
                 cfg.epochs * steps * mean_depth / cfg.final_depth,
                 f"SGD steps of a depth-{cfg.final_depth} net (deeper nets count proportionally more)",
                 key_prefix="sweep-", probe=step, stage=2),
            Wave("the comparison, one run per (variant, seed, mixup)", len(FINAL_VARIANTS) * cfg.seeds * len(cfg.mixup),
                 cfg.final_epochs * steps, f"SGD steps of a depth-{cfg.final_depth} net on {cfg.batch_size} images",
                 key_prefix="final-", probe=step, stage=3)]


def run(cfg: Config, ctx: RunContext) -> Result:
    d = load_data(cfg)
    t0 = time.perf_counter()
    signal = run_signal(cfg, ctx, d)  # wave (a): signal propagation at initialization
    t_signal = time.perf_counter() - t0
    deepest = max(cfg.depths)
    sweep_cells = [(v, depth, seed) for depth in cfg.depths for v in cfg.variants
                   for seed in range(cfg.sweep_seeds if depth == deepest else 1)]
    sweep = ctx.map({run_key("sweep", v, depth, seed): functools.partial(  # wave (b): trainability vs depth
        train_variant, cfg, ctx, d, v, depth, seed=seed, stage="sweep", max_epochs=cfg.epochs,
        test_images=cfg.sweep_test_subset) for v, depth, seed in sweep_cells})
    final_cells = [(v, seed, m) for m in cfg.mixup for seed in range(cfg.seeds) for v in FINAL_VARIANTS]
    final = ctx.map({run_key("final", v, cfg.final_depth, seed, m): functools.partial(  # wave (c): the comparison
        train_variant, cfg, ctx, d, v, cfg.final_depth, seed=seed, use_mixup=m) for v, seed, m in final_cells})
    t_train = time.perf_counter() - t0 - t_signal
    return _result(cfg, ctx, d, signal, list(sweep.values()), list(final.values()), t_signal, t_train)


def measurements(cfg: Config, d: Data, signal: Mapping[tuple[str, int, int], Mapping[str, Any]],
                 sweep: Sequence[Mapping[str, Any]], final: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What :func:`evaluate` takes, from the task values of the three waves."""
    deepest = max(cfg.depths)

    def by_variant(runs: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for r in sorted(runs, key=lambda r: r["seed"]):
            out.setdefault(r["variant"], []).append(r["correct"])
        return out

    low_depth = min(cfg.signal_depths)
    inits = range(cfg.signal_inits)
    return {
        "num_classes": d.num_classes, "final_examples": len(d.x_test),
        "deep_examples": min(len(d.x_test), cfg.sweep_test_subset or len(d.x_test)),
        "final": by_variant([r for r in final if not r["mixup"]]),
        "final_mixup": by_variant([r for r in final if r["mixup"]]),
        "deep": by_variant([r for r in sweep if r["depth"] == deepest]),
        "signal": {"low": [signal[("none", low_depth, i)]["max_layer_grad_norm"] for i in inits],
                   "high": [signal[("none", deepest, i)]["max_layer_grad_norm"] for i in inits],
                   "low_depth": low_depth, "high_depth": deepest},
    }


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _status(r: Mapping[str, Any]) -> str:
    return f"diverged at step {r['diverged_at']}" if r["diverged_at"] is not None else "trained"


def _run_row(r: Mapping[str, Any]) -> dict[str, Any]:
    return {"variant": r["variant"], "depth": r["depth"], "seed": r["seed"], "mixup": bool(r["mixup"]),
            "steps": r["steps"], "test_acc": r["test_acc"], "status": _status(r), "time_s": round(float(r["time_s"]), 1)}


def _signal_rows(signal: Mapping[tuple[str, int, int], Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for (v, depth, init), s in signal.items():
        overflow = s.get("overflow_block")
        rows.append({
            "variant": v, "depth": depth, "init": init, "output_var": _finite(s["output_var"]),
            "loss": _finite(s["loss"]), "grad_norm": _finite(s["grad_norm"]),
            "max_layer_grad_norm": _finite(s["max_layer_grad_norm"]),
            "classifier_grad_norm": _finite(s["classifier_grad_norm"]),
            "overflow": "finite" if overflow is None else f"inf after block {overflow}",
            "growth_per_block": _finite(s["growth_per_block"]), "time_s": round(float(s["time_s"]), 2),
        })
    return rows


def _mean_acc(runs: Sequence[Mapping[str, Any]], chance: float) -> tuple[float, float, int]:
    return mean_std([chance if r["test_acc"] is None else r["test_acc"] for r in runs])


def _result(cfg: Config, ctx: RunContext, d: Data, signal: dict[tuple[str, int, int], dict[str, Any]],
            sweep: list[dict[str, Any]], final: list[dict[str, Any]], t_signal: float, t_train: float) -> Result:
    claims = evaluate(cfg, measurements(cfg, d, signal, sweep, final))
    chance = 100.0 / d.num_classes
    deepest = max(cfg.depths)
    metrics: dict[str, Any] = {"dataset": d.name, "train_images": len(d.x_train), "test_images": len(d.x_test),
                               "final_depth": cfg.final_depth, "deepest_sweep_depth": deepest,
                               "signal_max_depth": max(cfg.signal_depths), "time_signal_s": round(t_signal, 1),
                               "time_train_s": round(t_train, 1)}
    for use_mixup in cfg.mixup:
        suffix = "_mixup" if use_mixup else ""
        for v in FINAL_VARIANTS:
            runs = [r for r in final if r["variant"] == v and r["mixup"] == use_mixup]
            metrics[f"final_test_acc_{v}{suffix}"] = _mean_acc(runs, chance)[0]
            metrics[f"final_diverged_runs_{v}{suffix}"] = sum(r["diverged_at"] is not None for r in runs)
    for v in cfg.variants:
        runs = [r for r in sweep if r["variant"] == v and r["depth"] == deepest]
        metrics[f"deep_test_acc_{v}"] = _mean_acc(runs, chance)[0]
        metrics[f"deep_diverged_runs_{v}"] = sum(r["diverged_at"] is not None for r in runs)
    top = max(cfg.signal_depths)
    for v in cfg.signal_variants:
        metrics[f"signal_output_var_{v}_at_{top}"] = _finite(signal[(v, top, 0)]["output_var"])
        overflowed = [depth for depth in cfg.signal_depths if _finite(signal[(v, depth, 0)]["output_var"]) is None]
        metrics[f"signal_overflow_depth_{v}"] = min(overflowed) if overflowed else None
    for r in claims:
        metrics[f"claim_{r.claim.id}"] = None if r.estimate is None or not r.estimate.finite else r.estimate.value
    tables = {"claims": [{"claim": r.claim.id, "key": r.claim.key, "outcome": r.outcome, "reason": r.reason}
                         for r in claims],
              "final": [_run_row(r) for r in final], "trainability": [_run_row(r) for r in sweep],
              "signal": _signal_rows(signal)}
    figures = [_plot_signal(cfg, ctx, signal), _plot_trainability(cfg, ctx, d, sweep),
               _plot_final(cfg, ctx, d, final)]
    return Result(claims=claims, summary=_summary(cfg, d, final, sweep, metrics), metrics=metrics, tables=tables,
                  figures=figures, notes=_notes(cfg, d), differences=_differences(cfg, d))


def _summary(cfg: Config, d: Data, final: list[dict[str, Any]], sweep: list[dict[str, Any]],
             metrics: dict[str, Any]) -> str:
    chance = 100.0 / d.num_classes

    def describe(runs: list[dict[str, Any]]) -> str:
        mean, std, n = _mean_acc(runs, chance)
        diverged = sum(r["diverged_at"] is not None for r in runs)
        text = f"{mean:.2f}%" + (f" ± {std:.2f}" if n > 1 else "") + f" over {n} seed(s)"
        return text + (f", {diverged} diverged" if diverged else "")

    plain = [r for r in final if not r["mixup"]]
    parts = [f"ResNet-{cfg.final_depth} on {d.name} ({len(d.x_train)} training images, {len(d.x_test)} test images, "
             f"width {cfg.width}, {cfg.final_epochs} epochs, shared lr {cfg.lr:g}): " + "; ".join(
                 f"{v} {describe([r for r in plain if r['variant'] == v])}" for v in FINAL_VARIANTS) + "."]
    deepest = max(cfg.depths)
    parts.append(f"After the first {cfg.epochs} epoch(s) at depth {deepest}: " + "; ".join(
        f"{v} {describe([r for r in sweep if r['variant'] == v and r['depth'] == deepest])}"
        for v in cfg.variants) + ".")
    top = max(cfg.signal_depths)
    sig = []
    for v in cfg.signal_variants:
        overflow = metrics[f"signal_overflow_depth_{v}"]
        var = metrics[f"signal_output_var_{v}_at_{top}"]
        sig.append(f"{v} overflows to inf by depth {overflow}" if overflow is not None
                   else f"{v} output variance {var:.3g} at depth {top}")
    parts.append("At initialization: " + "; ".join(sig) + ".")
    return " ".join(parts)


def _notes(cfg: Config, d: Data) -> list[str]:
    return [
        "Architecture: original (post-activation) ResNet of the official Fixup CIFAR code with the option-A "
        "(parameter-free) shortcut for every variant; the BatchNorm baseline zero-initializes the last BN scale of "
        "each branch as the official baseline does; the stem conv gets He initialization in every variant.",
        "The scalar biases/multipliers of every normalization-free variant (none, fixup, skipinit, rezero) train at "
        f"lr x {cfg.scalar_lr_factor:g}, the official Fixup recipe; all other parameters at lr {cfg.lr:g}.",
        f"Pairing: the BatchNorm and Fixup nets of seed s start from the same seed and see the same {cfg.batch_size}-"
        "image minibatches in the same order; their per-example test correctness gives the paired, crossed "
        "(seeds x examples) interval of the comparison.",
        "A diverged run (NaN/inf loss) is recorded as 'diverged at step N' and scored at chance on every test example.",
        "Signal propagation: float32 forward/backward in training mode on one batch; 'overflow' means the residual "
        "stream reached inf, which is the predicted geometric growth, not a bug.",
        f"Wall-clock times depend on machine load; the run used {torch.get_num_threads()} torch thread(s).",
    ]


def _differences(cfg: Config, d: Data) -> list[str]:
    out = []
    if d.name != "cifar10":
        size = cfg.image_size or d.x_train.shape[-1]
        out.append(f"Data: {d.name} at {size}x{size} ({len(d.x_train)} training / {len(d.x_test)} test images) instead "
                   "of CIFAR-10 at 32x32 (50,000 / 10,000).")
    if cfg.width != 16:
        out.append(f"Model: width {cfg.width} instead of the paper's 16 channels in the first stage.")
    if cfg.final_depth != 110:
        out.append(f"The accuracy comparison uses ResNet-{cfg.final_depth}, not ResNet-110 (CPU budget); depth "
                   "itself is tested by the sweep and the trainability claims.")
    if cfg.batch_size != 128:
        out.append(f"Batch size {cfg.batch_size} instead of 128 at the same learning rate.")
    if cfg.final_epochs != 200 or cfg.schedule != "step":
        out.append(f"Budget: {cfg.final_epochs} epochs with a {cfg.schedule} schedule instead of 200 epochs with the "
                   "lr divided by 10 at epochs 100 and 150.")
    if cfg.augment != "crop-flip":
        out.append("No random crop and flip augmentation (the paper's CIFAR recipe uses both).")
    if max(cfg.depths) < 10_004:
        out.append(f"Trainability sweep up to {max(cfg.depths)} layers instead of 10,004; the deep claims are judged "
                   f"at depth {max(cfg.depths)} after {cfg.epochs} epoch(s) of {len(d.x_train)} images "
                   f"({cfg.epochs * math.ceil(len(d.x_train) / cfg.batch_size)} steps; the paper's CIFAR-10 epoch: "
                   "391 steps).")
    if True not in cfg.mixup:
        out.append("No mixup runs: the claim that Fixup matches BatchNorm with mixup is not tested.")
    out += [
        "deep-fixup-trains is a proxy: Fig. 3 shows Fixup on par with BatchNorm after one epoch; we ask that Fixup "
        "learn clearly (20 points above chance) where BatchNorm does.",
        "signal-gradient-grows measures the largest per-layer gradient norm at one batch, a stand-in for the "
        "lower bound of Theorem 1 (Sec. 2).",
        f"Intervals: {cfg.seeds} seeds for the comparison and {cfg.sweep_seeds} at the deepest sweep depth.",
        "Implementation details that differ from the official code: the stem conv gets He initialization in every "
        "variant; the BatchNorm baseline's stage-change shortcut carries no BN (parameter-free option A); only the "
        "scalar biases and multipliers train at lr/10 (the official code also puts the classifier's bias vector "
        "there, matching 'bias' by name).",
    ]
    return out


# -- figures --------------------------------------------------------------------------------------


def _color(v: str) -> str:
    return {"none": plots.COLORS["baseline"], "batchnorm": plots.COLORS["paper"], "fixup": plots.COLORS["ours"],
            "skipinit": plots.COLORS["alt"], "rezero": plots.COLORS["alt2"]}.get(v, plots.COLORS["alt3"])


def _positive(values: list[Any]) -> np.ndarray:
    arr = np.array([np.nan if v is None else float(v) for v in values], dtype=float)
    arr[~np.isfinite(arr) | (arr <= 0)] = np.nan
    return arr


def _plot_signal(cfg: Config, ctx: RunContext, signal: dict[tuple[str, int, int], dict[str, Any]]) -> str:
    fig, axes = plots.new_figure(1, 3, width=4.6)
    depths = np.array(cfg.signal_depths)
    top = max(cfg.signal_depths)
    for v in cfg.signal_variants:
        rows = [signal[(v, depth, 0)] for depth in cfg.signal_depths]
        label = v
        overflow = [depth for depth, r in zip(depths, rows) if _finite(r["output_var"]) is None]
        if overflow:
            label += f" (inf from depth {min(overflow)})"
        axes[0].plot(depths, _positive([r["output_var"] for r in rows]), marker="o", ms=3, color=_color(v), label=label)
        axes[1].plot(depths, _positive([r["max_layer_grad_norm"] for r in rows]), marker="o", ms=3, color=_color(v),
                     label=v)
        stream = np.asarray(signal[(v, top, 0)]["stream_var"], dtype=float)
        axes[2].plot(np.arange(len(stream)), _positive(list(stream)), color=_color(v), label=v, lw=1)
    axes[0].set(xscale="log", yscale="log", xlabel="depth (layers)", ylabel="variance of the last block's output",
                title="output scale at initialization")
    axes[1].set(xscale="log", yscale="log", xlabel="depth (layers)", ylabel="largest per-layer gradient norm",
                title="gradient norm at initialization")
    axes[2].set(yscale="log", xlabel="block", ylabel="residual-stream variance",
                title=f"inside the {top}-layer net")
    axes[0].legend(fontsize=7)
    return ctx.save_figure(fig, "signal_propagation")


def _plot_trainability(cfg: Config, ctx: RunContext, d: Data, sweep: list[dict[str, Any]]) -> str:
    fig, ax = plots.new_figure()
    chance = 100.0 / d.num_classes
    for v in cfg.variants:
        xs, ys, failed = [], [], []
        for depth in cfg.depths:
            runs = [r for r in sweep if r["variant"] == v and r["depth"] == depth]
            xs.append(depth)
            ys.append(_mean_acc(runs, chance)[0])
            failed.append(any(r["diverged_at"] is not None for r in runs))
            for r in runs:
                ax.scatter([depth], [chance if r["test_acc"] is None else r["test_acc"]], s=10, color=_color(v))
        ax.plot(xs, ys, marker="o", ms=4, color=_color(v), label=v)
        bad = np.array(failed)
        if bad.any():
            ax.scatter(np.array(xs)[bad], np.array(ys)[bad], marker="x", s=50, color=_color(v))
    ax.axhline(chance, color="k", lw=0.6, ls=":")
    ax.set(xscale="log", xlabel="depth (layers)", ylabel="test accuracy (%)", ylim=(0, 100),
           title=f"after the first {cfg.epochs} epoch(s), shared lr {cfg.lr:g}")
    ax.legend(fontsize=7, title="x: a seed diverged (scored at chance)", title_fontsize=7)
    return ctx.save_figure(fig, "trainability_vs_depth")


def _plot_final(cfg: Config, ctx: RunContext, d: Data, final: list[dict[str, Any]]) -> str:
    fig, axes = plots.new_figure(1, 2, width=4.8)
    chance = 100.0 / d.num_classes
    for i, (use_mixup, v) in enumerate((m, v) for m in cfg.mixup for v in FINAL_VARIANTS):
        runs = [r for r in final if r["variant"] == v and r["mixup"] == use_mixup]
        label = v + (" + mixup" if use_mixup else "")
        accs = [chance if r["test_acc"] is None else r["test_acc"] for r in runs]
        axes[0].scatter(np.full(len(accs), i), accs, color=_color(v), marker="s" if use_mixup else "o", label=label)
        for j, r in enumerate(runs):
            axes[1].plot(np.arange(1, len(r["train_loss"]) + 1), r["train_loss"], "--" if use_mixup else "-",
                         color=_color(v), lw=1, label=label if j == 0 else None)
    axes[0].set(xticks=range(len(cfg.mixup) * len(FINAL_VARIANTS)), ylabel="test accuracy (%)",
                title=f"ResNet-{cfg.final_depth}, one dot per seed")
    axes[0].set_xticklabels([v + (" + mixup" if m else "") for m in cfg.mixup for v in FINAL_VARIANTS], fontsize=7)
    axes[1].set(yscale="log", xlabel="epoch", ylabel="training loss", title="training curves")
    axes[1].legend(fontsize=7)
    return ctx.save_figure(fig, "final_depth_comparison")
