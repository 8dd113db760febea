"""Myth 4, "Every datapoint is used in training a neural network": example forgetting.

Toneva et al. (ICLR 2019) count, for every training example, how often it is *forgotten*
(classified correctly at one minibatch presentation and wrongly at the next). Many
examples are never forgotten once learned ("unforgettable"), and removing the least
forgotten examples from the training set barely changes test accuracy, while removing
the same number at random does. Paul et al. (NeurIPS 2021) answer the study's open
question -- can the unimportant examples be found *before* training? -- with EL2N, the
error norm ``||softmax(f(x)) - onehot(y)||`` of networks only a few epochs into training.

What this experiment does (one task per training run, so ``--resume`` continues):

1. **Scoring runs**: ``seeds`` networks train on the full training set (or a fixed,
   class-stratified subset of ``train_subset`` examples) with a
   :class:`~mlmyths.forgetting.ForgettingTracker` as callback; each also scores EL2N after
   ``el2n_epoch`` epochs. Forgetting counts are summed over seeds (the paper's rule; never
   learned = as many events as presentations), EL2N averaged over seeds. These runs also
   give the full-data test accuracy (when scoring and removal training are the same).
2. **Removal curve**: for every fraction in ``fractions`` and order in ``orders``
   (``forgetting``: least forgotten first; ``el2n``: lowest EL2N first; ``random``), train
   ``removal_seeds`` fresh networks on what is left, for the same number of epochs (so
   training time falls with the data), and record test accuracy: mean +- std over seeds.
   Removal run *r* starts from the same initialization as scoring run *r*, so drops are
   paired differences. Ties in the counts (most examples have count 0) are broken at
   random, and the removed sets are nested across fractions.
3. Figures: the histogram of forgetting counts (the paper's Figure 1), the removal curve
   (Figure 5), the most and least forgotten images, EL2N against forgetting counts, and how
   the statistics settle over the epochs.

**Verdict rule.** Let ``tol = max(tolerance, std of the full-data accuracy over seeds)``.
``refuted`` (the paper reproduced: not every datapoint is needed) when for some fraction
``f >= min_fraction`` the forgetting-ordered removal loses at most ``tol`` of full-data
accuracy (mean over seeds) while random removal of the same fraction loses more than the
forgetting-ordered one. ``supported`` when at every fraction ``>= min_fraction``
forgetting-ordered removal loses more than ``tol`` by more than two standard errors of that loss
(over seeds: the myth needs the loss to be clear, not a few hundredths of a point past the
tolerance). Otherwise ``inconclusive`` (the forgetting order is within ``tol`` but no better than
random: the data is redundant but the ranking adds nothing; or the loss is past ``tol`` but within
two standard errors of it). The reason quotes the accuracies, random's and EL2N's.

Scales: ``smoke`` (digits, seconds), ``small`` (Fashion-MNIST: a 10k-example subset, a
compact CNN, 10 epochs, 3 + 3 seeds; minutes on 2 CPU cores), ``paper`` (CIFAR-10 with the
CIFAR ResNet-18 for 200 epochs, 5 seeds; ``--dataset mnist`` or ``permuted-mnist`` switch to
the paper's MNIST setup: small CNN, SGD 0.01, momentum 0.5, batch 64, 200 epochs).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from mlmyths import config as configs
from mlmyths import data, plots
from mlmyths.augment import crop_flip, cutout
from mlmyths.errors import ConfigError
from mlmyths.forgetting import ForgettingTracker, el2n_scores, select_subset
from mlmyths.models.resnet18 import ResNet18
from mlmyths.models.small import MLP, SmallCNN
from mlmyths.myths import claim
from mlmyths.runs import Result, RunContext, Verdict
from mlmyths.train import TrainConfig, fit

CLAIM = claim(
    "forgetting",
    paper_result=(
        "Many examples are never forgotten once learned: 91.7% of MNIST, 75.3% of permuted MNIST and 31.3% of "
        "CIFAR-10 training examples are unforgettable (forgetting counts summed over 5 seeds). Removing the 30% "
        "least forgotten CIFAR-10 examples keeps test accuracy (35% costs < 0.2 points), while removing 30% at "
        "random costs about 1 point. Paul et al. (2021): EL2N scores of networks early in training find such "
        "prunable examples before training ends."
    ),
)

#: Fraction of unforgettable training examples reported by Toneva et al. (2019), Section 4.
PAPER_UNFORGETTABLE = {"mnist": 0.917, "permuted-mnist": 0.753, "cifar10": 0.313}

ORDER_NAMES = ("forgetting", "random", "el2n")
_SELECT = {"forgetting": "lowest", "el2n": "lowest", "random": "random"}
_COLORS = {"forgetting": plots.COLORS["ours"], "random": plots.COLORS["random"], "el2n": plots.COLORS["alt"]}
_LABELS = {"forgetting": "least forgotten first", "random": "random", "el2n": "lowest EL2N first"}


@dataclass(frozen=True)
class Config:
    dataset: str = "auto"  # "auto": fashion-mnist when present, else digits; or any image dataset, permuted-* too
    train_subset: int = 10_000  # train on a fixed class-stratified subset of this size (0: the whole training set)
    model: Literal["auto", "small-cnn", "resnet18", "mlp"] = "auto"  # auto: resnet18 for 3-channel data, else small-cnn
    width: float = 0.5  # small-cnn channel multiplier (1: 20/50 channels); resnet18: base width 64 * width
    hidden: int = 100  # hidden units of small-cnn (times width) and mlp
    epochs: int = 10  # training epochs of every run (scoring and removal)
    batch_size: int = 128  # examples per step
    lr: float = 0.05  # peak SGD learning rate
    momentum: float = 0.9  # SGD momentum
    nesterov: bool = False  # Nesterov momentum
    weight_decay: float = 5e-4  # L2 penalty
    schedule: Literal["constant", "cosine", "step", "linear"] = "cosine"  # learning-rate schedule over the epochs
    milestones: tuple[int, ...] = ()  # epochs of the step schedule
    gamma: float = 0.2  # factor of the step schedule
    score_augment: Literal["none", "crop-flip", "crop-flip-cutout"] = "none"  # augmentation of the scoring runs
    removal_augment: Literal["none", "crop-flip", "crop-flip-cutout"] = "none"  # augmentation of the removal runs
    seeds: int = 3  # scoring runs (forgetting counts summed, EL2N averaged over them)
    removal_seeds: int = 3  # training runs per point of the removal curve
    fractions: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)  # fractions of the training set removed
    orders: tuple[str, ...] = ORDER_NAMES  # removal orders to compare (forgetting, random, el2n)
    el2n_epoch: int = 2  # EL2N is scored after this many epochs of each scoring run (Paul et al.: 20 of 200)
    tolerance: float = 0.003  # accuracy loss counted as "kept" (0.3 points), or the seeds' std if larger
    min_fraction: float = 0.2  # the verdict needs a removal of at least this fraction
    grid_examples: int = 8  # images shown per group (most / least forgotten)


SCALES = {
    "smoke": Config(dataset="digits", train_subset=0, model="mlp", hidden=128, epochs=10, batch_size=64, lr=0.05,
                    seeds=2, removal_seeds=2, fractions=(0.2, 0.4), el2n_epoch=2),
    "small": Config(),
    "paper": Config(dataset="cifar10", train_subset=0, model="resnet18", width=1.0, epochs=200, batch_size=128,
                    lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="step",
                    milestones=(60, 120, 160), gamma=0.2, score_augment="crop-flip",
                    removal_augment="crop-flip-cutout", seeds=5, removal_seeds=5, el2n_epoch=20),
}

#: The paper's MNIST / permuted-MNIST setup (Toneva et al., Section 3; run_mnist.py --no_dropout):
#: a small CNN, SGD lr 0.01, momentum 0.5, batch 64, 200 epochs, no augmentation, 5 seeds.
PAPER_MNIST = dataclasses.replace(
    SCALES["paper"], dataset="mnist", model="small-cnn", width=0.5, hidden=100, batch_size=64, lr=0.01,
    momentum=0.5, nesterov=False, weight_decay=0.0, schedule="constant", milestones=(), score_augment="none",
    removal_augment="none",
)


def config(scale: str = "small", **overrides: Any) -> Config:
    """The preset for ``scale`` with ``overrides``. At paper scale a non-CIFAR ``dataset``
    selects the paper's MNIST setup (small CNN, SGD 0.01 / momentum 0.5, batch 64)."""
    if scale == "paper" and str(overrides.get("dataset", "cifar10")) != "cifar10":
        return configs.override(PAPER_MNIST, overrides)
    return configs.select(SCALES, scale, overrides)


# -- building blocks ---------------------------------------------------------------------------------------


def _check(cfg: Config) -> None:
    bad = [o for o in cfg.orders if o not in ORDER_NAMES]
    if bad or not cfg.orders:
        raise ConfigError(f"config key 'orders' takes a subset of {', '.join(ORDER_NAMES)}, got {cfg.orders!r}")
    if any(not 0.0 < f < 1.0 for f in cfg.fractions) or not cfg.fractions:
        raise ConfigError(f"config key 'fractions' needs values in (0, 1), got {cfg.fractions!r}")
    if cfg.seeds < 1 or cfg.removal_seeds < 1 or cfg.epochs < 1:
        raise ConfigError(f"seeds, removal_seeds and epochs must be >= 1, got {cfg.seeds}, {cfg.removal_seeds}, "
                          f"{cfg.epochs}")
    if not 1 <= cfg.el2n_epoch <= cfg.epochs:
        raise ConfigError(f"config key 'el2n_epoch' must be in 1..epochs={cfg.epochs}, got {cfg.el2n_epoch}")
    if cfg.train_subset < 0:
        raise ConfigError(f"config key 'train_subset' must be >= 0 (0: whole training set), got {cfg.train_subset}")


def stratified_subset(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``size`` examples drawn without replacement, with class shares kept."""
    labels = np.asarray(labels)
    if size <= 0 or size >= len(labels):
        return np.arange(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.floor(counts * size / len(labels)).astype(int)
    remainder = counts * size / len(labels) - quota
    quota[np.argsort(-remainder, kind="stable")[: size - quota.sum()]] += 1  # largest remainders get the rest
    picks = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(picks))


def _model_kind(cfg: Config, channels: int) -> str:
    return cfg.model if cfg.model != "auto" else ("resnet18" if channels == 3 else "small-cnn")


def _build_model(cfg: Config, image_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    channels, height, _ = image_shape
    kind = _model_kind(cfg, channels)
    if kind == "resnet18":
        return ResNet18(num_classes=num_classes, in_channels=channels, width=max(1, round(64 * cfg.width)))
    if kind == "mlp":
        return MLP(channels * height * image_shape[2], num_classes, hidden=(cfg.hidden,))
    return SmallCNN(in_channels=channels, num_classes=num_classes, image_size=height, width=cfg.width,
                    hidden=cfg.hidden)


def _augmenter(kind: str) -> Any:
    if kind == "crop-flip":
        return crop_flip
    if kind == "crop-flip-cutout":
        return lambda batch, generator: cutout(crop_flip(batch, generator), generator)
    return None


def _train_config(cfg: Config) -> TrainConfig:
    return TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, optimizer="sgd", lr=cfg.lr,
                       momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay,
                       schedule=cfg.schedule, milestones=cfg.milestones, gamma=cfg.gamma, eval_every=cfg.epochs)


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(spearmanr(a, b).statistic)


def removal_verdict(full_mean: float, full_std: float, curve: dict[str, dict[float, float]], *,
                    tolerance: float, min_fraction: float,
                    drop_se: dict[float, float] | None = None) -> tuple[Verdict, float | None]:
    """The documented rule (module docstring) applied to mean test accuracies.

    ``curve[order][fraction]`` is the mean accuracy after removing ``fraction`` in ``order``;
    ``drop_se[fraction]`` the standard error of the forgetting-ordered drop (over seeds), which a
    ``supported`` verdict must clear twice over. Returns the verdict and the largest qualifying
    fraction (None if none qualifies).
    """
    tol = max(tolerance, full_std if math.isfinite(full_std) else 0.0)
    forgetting, random = curve.get("forgetting", {}), curve.get("random", {})
    fractions = sorted(f for f in forgetting if f >= min_fraction - 1e-9 and math.isfinite(forgetting[f]))
    if not fractions or not random:
        return Verdict("inconclusive", f"no forgetting-ordered and random removals of >= {min_fraction:.0%} to "
                       "compare"), None

    def pts(v: float) -> str:
        return f"{100 * v:.2f}"

    def others(f: float) -> str:
        text = f"random: {pts(random.get(f, float('nan')))}%"
        if f in curve.get("el2n", {}):
            text += f", EL2N-ordered: {pts(curve['el2n'][f])}%"
        return text

    def se(f: float) -> float:
        v = (drop_se or {}).get(f, 0.0)
        return v if math.isfinite(v) else 0.0

    wins = [f for f in fractions if full_mean - forgetting[f] <= tol
            and f in random and math.isfinite(random[f]) and random[f] < forgetting[f]]
    if wins:
        f = max(wins)
        return Verdict("refuted", (
            f"removing the {f:.0%} least-forgotten training examples kept test accuracy at {pts(forgetting[f])}% "
            f"(full data {pts(full_mean)}%, loss {100 * (full_mean - forgetting[f]):.3f} <= {100 * tol:.3f} points), "
            f"while "
            f"removing {f:.0%} at random gave {pts(random[f])}%")), f
    if all(full_mean - forgetting[f] > tol + 2 * se(f) for f in fractions):
        f = fractions[0]
        return Verdict("supported", (
            f"every removal of >= {min_fraction:.0%} by forgetting counts lost more than {pts(tol)} points by over "
            f"two standard errors: {f:.0%} removed gave {pts(forgetting[f])}% vs {pts(full_mean)}% with all data "
            f"({others(f)})")), None
    kept = [f for f in fractions if full_mean - forgetting[f] <= tol]
    if not kept:  # every drop exceeds the tolerance, but not clearly
        f = next(g for g in fractions if full_mean - forgetting[g] <= tol + 2 * se(g))  # smallest such removal
        return Verdict("inconclusive", (
            f"removing {f:.0%} by forgetting counts lost {100 * (full_mean - forgetting[f]):.2f} points "
            f"({pts(forgetting[f])}% vs {pts(full_mean)}%; {others(f)}): beyond the {pts(tol)}-point tolerance but "
            f"within two standard errors ({100 * se(f):.2f} points each) of it, so neither kept nor clearly lost")), None
    f = max(kept)
    return Verdict("inconclusive", (
        f"removing {f:.0%} by forgetting counts kept accuracy ({pts(forgetting[f])}% vs {pts(full_mean)}%), but "
        f"random removal did as well ({pts(random.get(f, float('nan')))}%): the data is redundant here and the "
        "ranking adds nothing measurable")), None


class _ScoringLog:
    """What a scoring run records besides the tracker: EL2N after ``el2n_epoch`` epochs and
    snapshots of the forgetting statistics (for the settling figure).

    Its ``after_epoch`` is an epoch callback of :func:`fit`, which checkpoints the object (it has
    ``state_dict``), so an interrupted scoring run resumes with what it had.
    """

    def __init__(self, tracker: ForgettingTracker, cfg: Config, score: Any):
        self.tracker, self.score = tracker, score
        self.el2n_epoch, self.last_epoch = cfg.el2n_epoch, cfg.epochs
        self.every = max(1, cfg.epochs // 25)  # at most ~25 snapshots
        self.el2n: torch.Tensor | None = None  # (N,) float32
        self.epochs: list[int] = []
        self.unforgettable: list[float] = []  # fraction unforgettable so far
        self.counts: list[torch.Tensor] = []  # (N,) int32 forgetting counts so far

    def after_epoch(self, epoch: int, net: nn.Module) -> None:
        if epoch == self.el2n_epoch:
            self.el2n = torch.from_numpy(self.score(net))
        if epoch % self.every == 0 or epoch == self.last_epoch:
            self.epochs.append(epoch)
            self.unforgettable.append(float(self.tracker.unforgettable().mean()))
            self.counts.append(torch.from_numpy(self.tracker.forgetting_counts().astype(np.int32)))

    def state_dict(self) -> dict[str, Any]:
        return {"el2n": self.el2n, "epochs": list(self.epochs), "unforgettable": list(self.unforgettable),
                "counts": list(self.counts)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.el2n = state["el2n"]
        self.epochs, self.unforgettable = list(state["epochs"]), list(state["unforgettable"])
        self.counts = list(state["counts"])


# -- the experiment ------------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> Result:
    _check(cfg)
    name = data.first_available(("fashion-mnist", "digits")) if cfg.dataset == "auto" else cfg.dataset
    ds = data.load(name)
    subset = stratified_subset(ds.y_train.numpy(), cfg.train_subset, ctx.rng("subset"))
    x, y = ds.x_train[torch.from_numpy(subset)], ds.y_train[torch.from_numpy(subset)]
    n = len(y)
    mean, std = (s.to(ctx.device) for s in data.channel_stats(x))

    def transform(batch: torch.Tensor) -> torch.Tensor:
        return data.normalize(batch, mean, std)

    train_cfg = _train_config(cfg)
    test_set = {"test": (ds.x_test, ds.y_test)}
    ctx.log(f"{name}: {n} training examples ({'subset' if n < len(ds.y_train) else 'all'}), "
            f"{len(ds.y_test)} test; {cfg.seeds} scoring runs, {cfg.removal_seeds} seeds per removal point")

    def new_model(seed_index: int) -> nn.Module:
        torch.manual_seed(ctx.seed_for("model", seed_index))
        return _build_model(cfg, ds.image_shape, ds.num_classes)

    # 1. scoring runs: forgetting statistics and early EL2N -------------------------------------------
    def score(seed: int) -> dict[str, Any]:
        model = new_model(seed)
        tracker = ForgettingTracker(n, device=ctx.device)
        log = _ScoringLog(tracker, cfg, lambda net: el2n_scores(net, x, y, transform=transform, device=ctx.device))
        result = fit(model, x, y, train_cfg, eval_sets=test_set, callbacks=[tracker],
                     epoch_callbacks=[log.after_epoch], transform=transform, augment=_augmenter(cfg.score_augment),
                     device=ctx.device, seed=ctx.seed_for("train", seed),
                     checkpoint=ctx.checkpoint_path(f"score-seed{seed}"), progress=ctx.progress,
                     description=f"scoring run {seed + 1}/{cfg.seeds}")
        final = tracker.forgetting_counts()
        return {
            "state": tracker.state_dict()["state"],
            "el2n": log.el2n.numpy() if log.el2n is not None else np.full(n, np.nan, dtype=np.float32),
            "test_accuracy": result.final("test_accuracy") if not result.diverged else float("nan"),
            "train_time_s": result.time_s,
            "diverged_at": result.diverged_at if result.diverged_at is not None else -1,
            "epochs": np.array(log.epochs),
            "unforgettable_by_epoch": np.array(log.unforgettable),
            "rank_agreement_by_epoch": np.array([np.nan if (r := _spearman(c.numpy(), final)) is None else r
                                                 for c in log.counts]),
        }

    scored = [ctx.task(f"score-seed{s}", lambda s=s: score(s)) for s in range(cfg.seeds)]
    per_run = []
    for item in scored:
        tracker = ForgettingTracker(n, device="cpu")
        tracker.load_state_dict({"state": torch.as_tensor(item["state"]), "history": 0})
        per_run.append(tracker)
    merged = ForgettingTracker.merge(per_run)
    merged.save(ctx.run_dir / "forgetting_stats.npz")
    counts = merged.forgetting_counts()
    el2n = np.nanmean(np.stack([item["el2n"] for item in scored]), axis=0)
    np.savez_compressed(ctx.run_dir / "scores.npz", indices=subset, forgetting_counts=counts, el2n=el2n, labels=y)
    scores = {"forgetting": counts, "random": counts, "el2n": el2n}

    # 2. removal curve ---------------------------------------------------------------------------------------
    def train_subset(order: str, fraction: float, seed: int) -> dict[str, Any]:
        keep = (np.arange(n) if fraction == 0 else
                select_subset(scores[order], fraction, order=_SELECT[order],  # type: ignore[arg-type]
                              seed=ctx.seed_for("select", order, seed)))
        model = new_model(seed)
        idx = torch.from_numpy(keep)
        result = fit(model, x[idx], y[idx], train_cfg, eval_sets=test_set, transform=transform,
                     augment=_augmenter(cfg.removal_augment), device=ctx.device, seed=ctx.seed_for("train", seed),
                     checkpoint=ctx.checkpoint_path(f"remove-{order}-{fraction}-{seed}"), progress=ctx.progress,
                     description=f"{order} -{fraction:.0%} run {seed + 1}/{cfg.removal_seeds}")
        return {"test_accuracy": result.final("test_accuracy") if not result.diverged else float("nan"),
                "train_time_s": result.time_s, "n_train": len(keep),
                "diverged_at": result.diverged_at if result.diverged_at is not None else -1}

    if cfg.score_augment == cfg.removal_augment:
        full = [{"test_accuracy": s["test_accuracy"], "train_time_s": s["train_time_s"], "n_train": n,
                 "diverged_at": s["diverged_at"]} for s in scored]
    else:  # the paper scores without Cutout but trains the removal curve with it: separate baselines
        full = [ctx.task(f"full-seed{r}", lambda r=r: train_subset("random", 0.0, r))
                for r in range(cfg.removal_seeds)]
    runs: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for fraction in cfg.fractions:
        for order in cfg.orders:
            runs[order, fraction] = [
                ctx.task(f"remove-{order}-{round(100 * fraction)}pct-seed{r}",
                         lambda o=order, f=fraction, r=r: train_subset(o, f, r))
                for r in range(cfg.removal_seeds)]

    # 3. summaries --------------------------------------------------------------------------------------------
    def stats(items: list[dict[str, Any]], key: str = "test_accuracy") -> tuple[float, float]:
        values = np.array([i[key] for i in items], dtype=float)
        values = values[np.isfinite(values)]
        if not len(values):
            return float("nan"), float("nan")
        return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0

    full_mean, full_std = stats(full)
    full_time = stats(full, "train_time_s")[0]
    curve = {o: {f: stats(runs[o, f])[0] for f in cfg.fractions} for o in cfg.orders}

    def sem(items: list[dict[str, Any]]) -> float:  # standard error of the mean test accuracy over seeds
        sd = stats(items)[1]
        return sd / math.sqrt(len(items)) if len(items) > 1 and math.isfinite(sd) else 0.0

    # standard error of (full - forgetting-ordered) accuracy
    drop_se = {f: math.hypot(sem(full), sem(runs.get(("forgetting", f), []))) for f in cfg.fractions}
    verdict, best = removal_verdict(full_mean, full_std, curve, tolerance=cfg.tolerance,
                                    min_fraction=cfg.min_fraction, drop_se=drop_se)
    tol = max(cfg.tolerance, full_std if math.isfinite(full_std) else 0.0)

    removal_rows = [{"order": "none", "removed_pct": 0, "n_train": n, "accuracy_pct": 100 * full_mean,
                     "std_pct": 100 * full_std, "drop_points": 0.0, "train_time_s": full_time, "runs": len(full)}]
    for fraction in cfg.fractions:
        for order in cfg.orders:
            m, s = stats(runs[order, fraction])
            removal_rows.append({"order": order, "removed_pct": round(100 * fraction), "n_train":
                                 runs[order, fraction][0]["n_train"], "accuracy_pct": 100 * m, "std_pct": 100 * s,
                                 "drop_points": 100 * (full_mean - m),
                                 "train_time_s": stats(runs[order, fraction], "train_time_s")[0],
                                 "runs": len(runs[order, fraction])})

    unforgettable = merged.unforgettable()
    per_seed_unforgettable = merged.unforgettable(per_run=True).mean(1)
    never = ~merged.learned(per_run=True)
    per_seed_counts = merged.forgetting_counts(per_run=True)
    pairs = [(i, j) for i in range(cfg.seeds) for j in range(i + 1, cfg.seeds)]
    agreement = [_spearman(per_seed_counts[i], per_seed_counts[j]) for i, j in pairs]
    agreement = [a for a in agreement if a is not None]
    rho = _spearman(el2n, counts) if np.isfinite(el2n).all() else None
    paper_fraction = PAPER_UNFORGETTABLE.get(name)
    diverged = [f"scoring run {i}: diverged at step {s['diverged_at']}" for i, s in enumerate(scored)
                if s["diverged_at"] >= 0]
    diverged += [f"{o} -{f:.0%} seed {r}: diverged at step {item['diverged_at']}"
                 for (o, f), items in runs.items() for r, item in enumerate(items) if item["diverged_at"] >= 0]

    def drop(order: str, fraction: float | None) -> float | None:
        if fraction is None or order not in curve or fraction not in curve[order]:
            return None
        return 100 * (full_mean - curve[order][fraction])

    def saved(order: str, fraction: float | None) -> float | None:
        if fraction is None or (order, fraction) not in runs or not full_time:
            return None
        return 1.0 - stats(runs[order, fraction], "train_time_s")[0] / full_time

    def steps_saved(fraction: float | None) -> float | None:
        if fraction is None:
            return None
        kept = n - int(round(fraction * n))
        return 1.0 - math.ceil(kept / cfg.batch_size) / math.ceil(n / cfg.batch_size)

    headline = 0.3 if 0.3 in cfg.fractions else None
    metrics: dict[str, Any] = {
        "n_train": n, "n_test": len(ds.y_test), "seeds": cfg.seeds, "removal_seeds": cfg.removal_seeds,
        "fraction_unforgettable": float(unforgettable.mean()),
        "fraction_unforgettable_per_seed": float(per_seed_unforgettable.mean()),
        "fraction_never_learned_per_seed": float(never.mean()),
        "paper_fraction_unforgettable": paper_fraction,
        "full_data_accuracy": full_mean, "full_data_accuracy_std": full_std,
        "tolerance_points": 100 * tol,
        "spearman_el2n_vs_forgetting": rho,
        "seed_agreement_spearman": float(np.mean(agreement)) if agreement else None,
        "largest_prunable_fraction": best,
        "drop_points_forgetting_at_largest": drop("forgetting", best),
        "drop_points_random_at_largest": drop("random", best),
        "drop_points_el2n_at_largest": drop("el2n", best),
        "time_saved_at_largest": saved("forgetting", best),
        "steps_saved_at_largest": steps_saved(best),
        "drop_points_forgetting_30pct": drop("forgetting", headline),
        "drop_points_random_30pct": drop("random", headline),
        "drop_points_el2n_30pct": drop("el2n", headline),
        "time_saved_30pct": saved("forgetting", headline),
        "scoring_epochs_forgetting": cfg.seeds * cfg.epochs,
        "scoring_epochs_el2n": cfg.seeds * cfg.el2n_epoch,
    }

    histogram = np.bincount(counts)
    count_rows = [{"forgetting_count": int(c), "examples": int(k), "pct": 100 * k / n}
                  for c, k in enumerate(histogram) if k]
    seed_rows = [{"seed": i, "test_accuracy_pct": 100 * s["test_accuracy"], "unforgettable_pct":
                  100 * per_seed_unforgettable[i], "never_learned_pct": 100 * never[i].mean(),
                  "train_time_s": s["train_time_s"]} for i, s in enumerate(scored)]
    paper_rows = [{"dataset": d, "paper_unforgettable_pct": 100 * v} for d, v in PAPER_UNFORGETTABLE.items()]
    paper_rows.append({"dataset": f"{name} (ours, {n} examples, {cfg.seeds} seeds)",
                       "paper_unforgettable_pct": None, "ours_pct": 100 * float(unforgettable.mean())})

    # Which classes a removal leaves: a score that ranks whole classes as easy empties them.
    largest = max(cfg.fractions)
    kept_by_order = {o: select_subset(scores[o], largest, order=_SELECT[o],  # type: ignore[arg-type]
                                      seed=ctx.seed_for("select", o, 0)) for o in cfg.orders}
    y_np = y.numpy()
    total = np.bincount(y_np, minlength=ds.num_classes)
    balance_rows = [{"class": ds.classes[c], "examples": int(total[c]),
                     **{f"kept_pct_{o}": 100 * float(np.bincount(y_np[k], minlength=ds.num_classes)[c])
                        / max(int(total[c]), 1) for o, k in kept_by_order.items()}}
                    for c in range(ds.num_classes)]

    figures = [
        _histogram_figure(ctx, counts, cfg.seeds, cfg.epochs, float(unforgettable.mean())),
        _removal_figure(ctx, cfg, full_mean, full_std, tol, runs, stats),
        _examples_figure(ctx, cfg, x, y, counts, ds.classes),
        _el2n_figure(ctx, counts, el2n, rho),
        _settling_figure(ctx, scored),
    ]

    summary = (
        f"On {name} ({n} training examples, {cfg.seeds} scoring runs of {cfg.epochs} epochs), "
        f"{100 * unforgettable.mean():.1f}% of the examples are unforgettable over all runs "
        f"({100 * per_seed_unforgettable.mean():.1f}% per run)"
        + (f"; the paper reports {100 * paper_fraction:.1f}% on {name}" if paper_fraction else "")
        + f". Full-data test accuracy {100 * full_mean:.2f} ± {100 * full_std:.2f}%."
        + "".join(f" Removing {round(100 * f)}%: " + ", ".join(
            f"{o} {100 * curve[o][f]:.2f}%" for o in cfg.orders) + "." for f in cfg.fractions if f in (0.3, 0.5))
        + (f" Early EL2N (epoch {cfg.el2n_epoch}) vs final forgetting counts: Spearman {rho:.2f}." if rho is not None
           else "")
    )
    notes = [
        f"Statistics come from the training forward pass of each minibatch, before the optimizer step, as in the "
        f"paper's code; never-learned examples count as forgotten at every presentation ({cfg.epochs} per run).",
        f"Removal runs train for the same {cfg.epochs} epochs as the full-data runs, so they take fewer steps; "
        "the training time saved is measured wall-clock time of the training loop.",
        f"Scoring cost: forgetting counts need {cfg.seeds} full training runs ({cfg.seeds * cfg.epochs} epochs); "
        f"EL2N needs only the first {cfg.el2n_epoch} epochs of each ({cfg.seeds * cfg.el2n_epoch} epochs).",
        f"Tolerance: max({100 * cfg.tolerance:.2f} points, std of full-data accuracy {100 * full_std:.2f}) = "
        f"{100 * tol:.2f} points.",
    ]
    if ctx.scale != "paper":
        notes.append("Scaled down from the paper (200 epochs, 5 seeds, full MNIST/CIFAR-10): "
                     + ("a class-stratified subset, " if n < len(ds.y_train) else "")
                     + f"{cfg.epochs} epochs, {cfg.seeds} + {cfg.removal_seeds} seeds, model "
                     f"{_model_kind(cfg, ds.image_shape[0])} (width {cfg.width}, hidden {cfg.hidden}).")
    for order in cfg.orders:
        row = min(balance_rows, key=lambda r: r[f"kept_pct_{order}"])
        if order != "random" and row[f"kept_pct_{order}"] < 0.25 * 100 * (1 - largest):
            notes.append(f"Removing {largest:.0%} by {_LABELS[order]} keeps only {row[f'kept_pct_{order}']:.1f}% of "
                         f"class {row['class']!r} (random removal keeps {100 * (1 - largest):.0f}% of each class on "
                         "average): a ranking that calls a whole class easy nearly empties it; compare its "
                         "removal curve at this fraction.")
    notes += diverged
    return Result(verdict=verdict, summary=summary, metrics=metrics,
                  tables={"removal_curve": removal_rows, "unforgettable_vs_paper": paper_rows,
                          "scoring_runs": seed_rows, "forgetting_count_histogram": count_rows,
                          f"classes_kept_at_{round(100 * largest)}pct_removed": balance_rows},
                  figures=figures, notes=notes)


# -- figures -------------------------------------------------------------------------------------------------


def _histogram_figure(ctx: RunContext, counts: np.ndarray, seeds: int, epochs: int, unforgettable: float) -> str:
    fig, ax = plots.new_figure(width=6.0)
    top = int(counts.max()) if len(counts) else 0
    edges = np.arange(top + 2) - 0.5 if top <= 40 else np.linspace(-0.5, top + 0.5, 41)
    weights = np.full(len(counts), 100.0 / max(len(counts), 1))
    ax.hist(counts, bins=edges, weights=weights, color=plots.COLORS["ours"], edgecolor="white", linewidth=0.4)
    ax.set_yscale("log")  # the unforgettable bar dwarfs the rest (the paper zooms in with insets)
    for k in range(1, seeds + 1):  # the never-learned rule puts examples at multiples of the epochs
        if top >= k * epochs:
            ax.axvline(k * epochs, color=plots.COLORS["baseline"], linestyle=":", linewidth=1,
                       label=f"never learned in k of {seeds} runs (k × {epochs})" if k == 1 else None)
    if top >= epochs:
        ax.legend(fontsize=8)
    ax.set_xlabel(f"forgetting events (summed over {seeds} runs of {epochs} epochs)")
    ax.set_ylabel("% of training examples (log scale)")
    ax.set_title(f"Forgetting counts: {100 * unforgettable:.1f}% unforgettable")
    return ctx.save_figure(fig, "histogram")


def _removal_figure(ctx: RunContext, cfg: Config, full_mean: float, full_std: float, tol: float,
                    runs: dict[tuple[str, float], list[dict[str, Any]]], stats: Any) -> str:
    fig, ax = plots.new_figure(width=6.0, height=4.0)
    xs = [0.0, *cfg.fractions]
    for order in cfg.orders:
        pairs = [(full_mean, full_std)] + [stats(runs[order, f]) for f in cfg.fractions]
        plots.band(ax, [100 * f for f in xs], [100 * m for m, _ in pairs], [100 * s for _, s in pairs],
                   label=_LABELS[order], color=_COLORS[order])
    ax.axhspan(100 * (full_mean - tol), 100 * (full_mean + tol), color=plots.COLORS["paper"], alpha=0.12,
               label=f"full data ± {100 * tol:.2f} pts")
    ax.set_xlabel("% of training set removed")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Removal curve (mean ± std over {cfg.removal_seeds} seeds)")
    ax.legend(fontsize=8)
    return ctx.save_figure(fig, "removal_curve")


def _examples_figure(ctx: RunContext, cfg: Config, x: torch.Tensor, y: torch.Tensor, counts: np.ndarray,
                     classes: tuple[str, ...]) -> str:
    k = max(1, min(cfg.grid_examples, len(counts) // 2))
    most = np.argsort(-counts, kind="stable")[:k]  # most forgotten (ties by index)
    lowest = np.flatnonzero(counts == counts.min())  # usually many unforgettable examples: show k at random
    least = ctx.rng("grid").choice(lowest, size=min(k, len(lowest)), replace=False)
    chosen = np.concatenate([most, np.sort(least)])
    titles = [f"{classes[int(y[i])][:10]} · {int(counts[i])}" for i in chosen]
    fig = plots.image_grid(x[torch.from_numpy(chosen)].numpy(), titles, ncols=k)
    fig.suptitle("top: most forgotten · bottom: unforgettable (label · forgetting count)", fontsize=8)
    return ctx.save_figure(fig, "examples")


def _el2n_figure(ctx: RunContext, counts: np.ndarray, el2n: np.ndarray, rho: float | None) -> str:
    fig, ax = plots.new_figure(width=6.0)
    if np.isfinite(el2n).all():
        top = int(np.percentile(counts, 99)) if len(counts) else 0
        levels = np.arange(top + 1)
        groups = [el2n[np.minimum(counts, top) == c] for c in levels]
        present = [(c, g) for c, g in zip(levels, groups) if len(g)]
        ax.boxplot([g for _, g in present], positions=[c for c, _ in present], widths=0.6, showfliers=False)
        ticks = levels[:: max(1, len(levels) // 12)]  # readable labels when counts run high
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set_xlabel(f"forgetting count (summed; {top} = {top} or more)")
    ax.set_ylabel("early EL2N score")
    ax.set_title("EL2N early in training vs final forgetting counts"
                 + (f" (Spearman {rho:.2f})" if rho is not None else ""))
    return ctx.save_figure(fig, "el2n_vs_forgetting")


def _settling_figure(ctx: RunContext, scored: list[dict[str, Any]]) -> str:
    fig, axes = plots.new_figure(1, 2, width=4.2)
    for i, item in enumerate(scored):
        epochs = np.asarray(item["epochs"])
        axes[0].plot(epochs, 100 * np.asarray(item["unforgettable_by_epoch"]), marker="o", markersize=3,
                     label=f"run {i}")
        axes[1].plot(epochs, np.asarray(item["rank_agreement_by_epoch"], dtype=float), marker="o", markersize=3)
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("% unforgettable so far")
    axes[0].legend(fontsize=7)
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("Spearman with final counts")
    fig.suptitle("How the forgetting statistics settle during training", fontsize=9)
    return ctx.save_figure(fig, "settling")
