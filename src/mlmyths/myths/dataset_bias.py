"""Myth 2, "Image datasets are representative of real images in the wild": dataset bias.

Torralba & Efros ("Unbiased Look at Dataset Bias", CVPR 2011) showed that a linear SVM
tells twelve popular datasets apart far above chance ("Name That Dataset!"), that
classifiers lose accuracy when tested on another dataset of the same classes, and that a
training sample of one dataset is worth less than one of the test dataset. Liu & He (ICLR
2025) repeat Name That Dataset with modern networks and large web datasets (84.7% on
YFCC/CC/DataComp, chance 33%) and add the control that random splits of a single dataset
("pseudo-datasets") stay at chance. This experiment runs the same protocol, offline, on
digit datasets made by different collection processes -- UCI's scanned 8x8 digits
(scikit-learn), MNIST (NIST forms) when present, digits rendered from fonts with random
affine jitter -- plus Fashion-MNIST when present as an out-of-domain source.

What it does (every item a task, per seed, so ``--resume`` continues):

1. Loads the ``sources`` and brings them to ``image_size`` x ``image_size`` grey images.
2. **Name That Dataset** with each classifier in ``features`` (``hog``/``pixels``: linear
   SVM, the paper's kind; ``cnn``: a small ConvNet trained end to end, Liu & He's kind),
   ``n_train`` training and ``n_test`` test images per source, learning curve over
   ``curve``; once on the harmonized images ("raw") and once after removing the trivial
   signatures ``remove`` (resolution, object framing, per-image grey-level histogram; see
   :mod:`mlmyths.bias.signatures`). For HOG also each cumulative removal step on its own
   ("what remains").
3. **Pseudo-dataset control**: ``control_source`` split at random into as many parts as
   there are sources, same classifiers, same removal: must stay at chance.
4. **Cross-dataset table** for digit classification over the sources that share class
   names (or ``task_sources``): train on each, test on each, self vs mean-others and
   percent drop (Torralba & Efros, Table 2), raw and after removal, and Name That Dataset
   within one shared class at a time (the paper's car crops: content held fixed); learning
   curves over
   ``cross_curve`` give each source's **dataset value** on each other source (the
   "market value" of a sample, Sec. "Measuring Dataset's Value";
   :func:`mlmyths.bias.dataset_value` documents the definition and interpolation).
5. Figures: sample images per source (raw and after removal), confusion matrices, learning
   curves, the removal steps, the cross-dataset table and dataset values as heat maps.

**Verdict rule.** All intervals are Clopper-Pearson at ``confidence``, Bonferroni-corrected
over the ``m = seeds x len(features)`` tests of each family (so a family errs with
probability at most ``1 - confidence``).
``refuted`` (the paper reproduced: datasets are not representative samples of one visual
world) when (a) after signature removal every classifier's Name That Dataset interval lies
entirely above chance, for every seed; (b) every pseudo-dataset control interval contains
chance; and (c) in the after-removal cross-dataset table (the first of ``cross_features``)
every off-diagonal entry drops below both its row's and its column's self accuracy, for
every seed. ``supported`` when (b) holds and after removal *no* classifier beats chance
(the sources cannot be told apart once trivial signatures are gone). Otherwise
``inconclusive`` -- e.g. the control beats chance (the classifier memorizes, the test is
broken), or fewer than two sources share classes for a cross-dataset table. The reason
quotes the numbers before and after removal, so a removal that kills the effect is said so.

Scales: ``smoke`` (digits, fonts and Fashion-MNIST when present; 150 + 100 images per
source; seconds), ``small`` (digits, fonts, MNIST and Fashion-MNIST when present; the
paper's 1000 + 300 per source; 2 seeds; minutes on 2 CPU cores), ``paper`` (MNIST required,
32x32, 5 seeds, a wider CNN; for the paper's object datasets give image folders, e.g.
``--set sources=cifar10=PATH,stl10=PATH,cinic10=PATH`` with ``remove=resolution,histogram``
since the framing step assumes objects on a dark background).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from mlmyths import config as configs
from mlmyths import data, plots
from mlmyths.bias import (
    FEATURES, STEPS, Classifier, Source, cross_dataset_table, load_source, name_that_dataset, prepare,
    pseudo_datasets,
)
from mlmyths.bias.sources import FONTS
from mlmyths.errors import ConfigError, DataError
from mlmyths.myths import claim
from mlmyths.runs import Result, RunContext, Verdict

CLAIM = claim(
    "dataset-bias",
    paper_result=(
        "Name That Dataset: a 12-way linear SVM on 1000 training images per dataset names the dataset of a test "
        "image with 39% accuracy (chance 1/12 = 8%), still rising with more data; on car crops of 5 datasets 61% "
        "(chance 20%). Cross-dataset generalization: 'car' and 'person' classifiers lose performance on every "
        "other dataset; dataset values of a sample are all below 1 (best 0.58). Liu & He (2025): modern ConvNets "
        "name YFCC/CC/DataComp at 84.7% (chance 33%) while pseudo-datasets stay at chance."
    ),
)

#: Torralba & Efros (2011), Sec. 1: 12-way Name That Dataset with a linear SVM.
PAPER_ACCURACY, PAPER_CHANCE = 0.39, 1 / 12


@dataclass(frozen=True)
class Config:
    # NAME: a registered image dataset (digits, mnist, fashion-mnist, cifar10) or "fonts"; NAME=PATH: an image
    # folder PATH/CLASS/*.png|jpg, an IDX images file or a folder of IDX files; a trailing "?" skips a missing source
    sources: tuple[str, ...] = ("digits", "fonts", "mnist?", "fashion-mnist?")
    task_sources: tuple[str, ...] = ()  # cross-dataset table sources; empty: those sharing the most common class names
    image_size: int = 16  # common side in pixels (grey unless every source is colour)
    n_train: int = 1000  # Name That Dataset training images per source (paper: 1000)
    n_test: int = 300  # test images per source (paper: 300)
    curve: tuple[int, ...] = (10, 30, 100, 300, 1000)  # Name That Dataset learning-curve sizes (<= n_train)
    features: tuple[str, ...] = ("hog", "pixels", "cnn")  # classifiers: hog/pixels + linear SVM, cnn end to end
    curve_features: tuple[str, ...] = ("hog", "pixels")  # classifiers with a learning curve (others: n_train only)
    remove: tuple[str, ...] = ("resolution", "framing", "histogram")  # signature-removal steps (resolution, framing, moments, histogram)
    control_source: str = "auto"  # source split into pseudo-datasets; auto: the largest with enough images, else fonts
    cross_curve: tuple[int, ...] = (10, 20, 50, 100, 200, 500, 1000)  # cross-dataset training sizes per source
    cross_features: tuple[str, ...] = ("hog",)  # classifiers of the cross-dataset table (the first decides the verdict)
    class_n_train: int = 100  # Name That Dataset within one shared class (the paper's car crops): train images per source
    class_n_test: int = 50  # ... and test images per source
    seeds: int = 2  # repetitions with fresh image draws and classifier seeds
    confidence: float = 0.95  # family-wise confidence of the intervals (Bonferroni over seeds x features)
    svm_c: float = 0.05  # LinearSVC C on standardized features
    hog_cell: int = 4  # HOG pixels per cell (2x2-cell blocks, 9 orientations)
    cnn_width: float = 0.5  # SmallCNN width multiplier
    cnn_epochs: int = 8  # CNN epochs
    cnn_min_steps: int = 150  # at least this many CNN optimizer steps (small training sets)
    cnn_batch_size: int = 128  # CNN minibatch size


SCALES = {
    "smoke": Config(sources=("digits", "fonts", "fashion-mnist?"), n_train=150, n_test=100, curve=(20, 50, 150),
                    features=("hog", "cnn"), curve_features=("hog",), cross_curve=(20, 50, 150), seeds=1,
                    cnn_epochs=4, cnn_min_steps=40, class_n_train=30, class_n_test=20),
    "small": Config(),
    "paper": Config(sources=("mnist", "digits", "fonts", "fashion-mnist"), image_size=32,
                    curve=(10, 30, 100, 300, 1000), curve_features=("hog", "pixels", "cnn"), seeds=5, cnn_width=1.0,
                    cnn_epochs=30, cnn_min_steps=500, cross_features=("hog", "cnn")),
}


def config(scale: str = "small", **overrides: Any) -> Config:
    cfg = configs.select(SCALES, scale, overrides)
    _check(cfg)
    return cfg


def _check(cfg: Config) -> None:
    bad = [f for f in (*cfg.features, *cfg.cross_features, *cfg.curve_features) if f not in FEATURES]
    if bad or not cfg.features or not cfg.cross_features:
        raise ConfigError(f"config keys 'features', 'cross_features' and 'curve_features' take {', '.join(FEATURES)} "
                          f"(the first two at least one each); got features={cfg.features}, "
                          f"cross_features={cfg.cross_features}, curve_features={cfg.curve_features}")
    if any(s not in STEPS for s in cfg.remove):
        raise ConfigError(f"config key 'remove' takes steps from {', '.join(STEPS)}, got {cfg.remove}")
    if not cfg.remove:
        raise ConfigError("config key 'remove' needs at least one signature-removal step (the verdict compares "
                          f"before and after); choose from {', '.join(STEPS)}")
    if min(cfg.class_n_train, cfg.class_n_test) < 1:
        raise ConfigError(f"config keys 'class_n_train' and 'class_n_test' must be >= 1, got {cfg.class_n_train}, "
                          f"{cfg.class_n_test}")
    if cfg.n_train < 1 or cfg.n_test < 1 or cfg.seeds < 1 or cfg.image_size < 8:
        raise ConfigError(f"need n_train, n_test, seeds >= 1 and image_size >= 8; got n_train={cfg.n_train}, "
                          f"n_test={cfg.n_test}, seeds={cfg.seeds}, image_size={cfg.image_size}")
    if not cfg.curve or max(cfg.curve) > cfg.n_train or min(cfg.curve) < 1:
        raise ConfigError(f"config key 'curve' needs sizes in 1..n_train={cfg.n_train}, got {cfg.curve}")
    if not cfg.cross_curve or min(cfg.cross_curve) < 1:
        raise ConfigError(f"config key 'cross_curve' needs positive sizes, got {cfg.cross_curve}")
    if not 0 < cfg.confidence < 1:
        raise ConfigError(f"config key 'confidence' must be in (0, 1), got {cfg.confidence}")
    if cfg.image_size < 2 * cfg.hog_cell:
        raise ConfigError(f"image_size={cfg.image_size} is too small for hog_cell={cfg.hog_cell} (needs 2 cells)")


# -- sources ------------------------------------------------------------------------------------------


def _spec_name(spec: str) -> str:
    return spec.rstrip("?").partition("=")[0].strip()


def _load_sources(cfg: Config, ctx: RunContext, need: int) -> tuple[list[Source], list[str]]:
    """Load every source (at most ``need`` images each); skip optional ones that are missing."""
    names = [_spec_name(s) for s in cfg.sources]
    if len(set(names)) != len(names):
        raise ConfigError(f"config key 'sources' names a source twice: {', '.join(names)}")
    loaded, notes = [], []
    for spec in cfg.sources:
        optional = spec.endswith("?")
        body = spec.rstrip("?")
        name = _spec_name(spec)
        if optional and "=" not in body and name != FONTS and name in data.dataset_names("images") \
                and not data.available(name):
            notes.append(f"source {name!r} skipped: not found locally ({data.spec(name).install_hint or 'see mlmyths data list'})")
            continue
        try:
            src = load_source(body, limit=need, seed=ctx.seed_for("source", name), size=cfg.image_size)
        except DataError as exc:
            if not optional:
                raise
            notes.append(f"source {name!r} skipped: {exc}")
            continue
        if src.skipped:
            shown = ", ".join(src.skipped[:3]) + (" ..." if len(src.skipped) > 3 else "")
            notes.append(f"source {name!r}: {len(src.skipped)} file(s) could not be decoded and were skipped ({shown})")
        ctx.log(f"source {name}: {len(src)} images {tuple(src.images.shape[1:])}, native {src.native_size}, "
                f"{'classes ' + str(len(src.classes)) if src.labeled else 'unlabeled'} ({src.origin})")
        loaded.append(src)
    if len(loaded) < 2:
        raise DataError(f"dataset-bias needs at least two sources, found {len(loaded)} of {', '.join(cfg.sources)}; "
                        "add sources with --set sources=digits,fonts,NAME=PATH")
    return loaded, notes


def _task_group(cfg: Config, sources: Sequence[Source]) -> list[Source]:
    """The sources of the cross-dataset table."""
    if cfg.task_sources:
        by_name = {s.name: s for s in sources}
        missing = [n for n in cfg.task_sources if n not in by_name]
        if missing:
            raise ConfigError(f"config key 'task_sources' names {missing}, which are not among the loaded sources "
                              f"{list(by_name)}")
        unlabeled = [n for n in cfg.task_sources if not by_name[n].labeled]
        if unlabeled or len(cfg.task_sources) < 2:
            raise ConfigError(f"config key 'task_sources' needs at least two labeled sources; got "
                              f"{list(cfg.task_sources)}, of which unlabeled: {unlabeled}")
        return [by_name[n] for n in cfg.task_sources]
    groups: dict[tuple[str, ...], list[Source]] = {}
    for s in sources:
        if s.labeled:
            groups.setdefault(s.classes, []).append(s)
    best = max(groups.values(), key=len, default=[])
    return best if len(best) >= 2 else []


def _control_source(cfg: Config, ctx: RunContext, sources: Sequence[Source], need: int) -> Source | None:
    if cfg.control_source != "auto":
        chosen = [s for s in sources if s.name == cfg.control_source]
        if not chosen:
            raise ConfigError(f"config key 'control_source' is {cfg.control_source!r}, not one of the loaded sources "
                              f"{[s.name for s in sources]}")
        if chosen[0].name != FONTS:
            return chosen[0] if len(chosen[0]) >= need else None
    else:
        real = sorted((s for s in sources if s.name != FONTS and len(s) >= need), key=len, reverse=True)
        if real:
            return real[0]
        if FONTS not in [s.name for s in sources]:
            return None
    return load_source(FONTS, limit=need, seed=ctx.seed_for("control-fonts"))


# -- the measurements as tasks ------------------------------------------------------------------------------


def _classifier(cfg: Config, features: str, ctx: RunContext) -> Classifier:
    return Classifier(features=features, svm_c=cfg.svm_c, hog_cell=cfg.hog_cell, cnn_width=cfg.cnn_width,  # type: ignore[arg-type]
                      cnn_epochs=cfg.cnn_epochs, cnn_min_steps=cfg.cnn_min_steps,
                      cnn_batch_size=cfg.cnn_batch_size, device=str(ctx.device))


def run(cfg: Config, ctx: RunContext) -> Result:
    _check(cfg)
    k_tests = cfg.seeds * len(cfg.features)
    level = 1 - (1 - cfg.confidence) / k_tests  # Bonferroni
    ntd_need = cfg.n_train + cfg.n_test
    cross_need = max(cfg.cross_curve) + cfg.n_test
    # enough images per source for Name That Dataset, the cross-dataset table and, for the largest source,
    # the pseudo-dataset control (one part per source)
    sources, notes = _load_sources(cfg, ctx, max(ntd_need, cross_need, len(cfg.sources) * ntd_need))
    short = [f"{s.name} ({len(s)})" for s in sources if len(s) < ntd_need]
    if short:
        raise ConfigError(f"Name That Dataset needs n_train + n_test = {ntd_need} images per source; "
                          f"{', '.join(short)} have fewer: lower n_train/n_test")
    group = _task_group(cfg, sources)
    short = [f"{s.name} ({len(s)})" for s in group if len(s) < cross_need]
    if short:
        raise ConfigError(f"the cross-dataset table needs max(cross_curve) + n_test = {cross_need} images per source; "
                          f"{', '.join(short)} have fewer: lower cross_curve/n_test")
    control = _control_source(cfg, ctx, sources, len(sources) * ntd_need)
    if control is None:
        notes.append(f"no source has the {len(sources) * ntd_need} images the pseudo-dataset control needs")
    by_name = {s.name: s for s in sources}
    steps = tuple(s for s in STEPS if s in cfg.remove)
    ladder = [steps[:i] for i in range(1, len(steps))]  # intermediate cumulative steps (HOG only)

    def naming(features: str, remove: tuple[str, ...], seed: int, sizes: tuple[int, ...],
               named: dict[str, Any] | None = None) -> dict[str, Any]:
        result = name_that_dataset(named or by_name, features=features, n_train=sizes, n_test=cfg.n_test,
                                   seed=ctx.seed_for("draw", seed), size=cfg.image_size, remove=remove,
                                   classifier=_classifier(cfg, features, ctx), confidence=level,
                                   progress=ctx.progress)
        return result.to_dict()

    ntd: dict[tuple[str, str, int], dict[str, Any]] = {}
    ladder_runs: dict[tuple[tuple[str, ...], int], dict[str, Any]] = {}
    controls: dict[tuple[str, int], dict[str, Any]] = {}
    cross: dict[tuple[str, str, int], dict[str, Any]] = {}
    same_class: dict[int, dict[str, Any]] = {}
    curve = tuple(sorted(set(cfg.curve) | {cfg.n_train}))
    for seed in range(cfg.seeds):
        for features in cfg.features:
            for tag, remove in (("raw", ()), ("removed", steps)):
                sizes = curve if features in cfg.curve_features else (cfg.n_train,)
                ntd[features, tag, seed] = ctx.task(
                    f"ntd-{features}-{tag}-s{seed}", lambda f=features, r=remove, s=seed, n=sizes: naming(f, r, s, n))
        for i, remove in enumerate(ladder):
            ladder_runs[remove, seed] = ctx.task(
                f"ladder-{i}-s{seed}", lambda r=remove, s=seed: naming("hog", r, s, (cfg.n_train,)))
        if control is not None:
            parts = pseudo_datasets(control, len(sources), seed=ctx.seed_for("parts", seed), name=f"{control.name}-")
            for features in cfg.features:
                controls[features, seed] = ctx.task(
                    f"control-{features}-s{seed}",
                    lambda f=features, s=seed, p=parts: naming(f, steps, s, (cfg.n_train,), named=p))
        if group:
            for features in cfg.cross_features:
                for tag, remove in (("raw", ()), ("removed", steps)):
                    cross[features, tag, seed] = ctx.task(
                        f"cross-{features}-{tag}-s{seed}",
                        lambda f=features, r=remove, s=seed: cross_dataset_table(
                            {g.name: g for g in group}, features=f, n_train=cfg.cross_curve, n_test=cfg.n_test,
                            seed=ctx.seed_for("cross", s), size=cfg.image_size, remove=r,
                            classifier=_classifier(cfg, f, ctx), progress=ctx.progress).to_dict())
    if group:
        for seed in range(cfg.seeds):
            same_class[seed] = ctx.task(f"same-class-s{seed}", lambda s=seed: _same_class(cfg, ctx, group, steps, s))
    else:
        notes.append("no two sources share class names, so there is no cross-dataset table; set task_sources or add "
                     "labeled sources with the same classes")

    verdict = _verdict(cfg, ntd, controls, cross, level)
    figures = _figures(cfg, ctx, sources, steps, ntd, ladder_runs, controls, cross)
    metrics, tables = _report(cfg, sources, group, control, steps, ntd, ladder_runs, controls, cross)
    _report_same_class(cfg, same_class, metrics, tables)
    notes += _notes(cfg, level, ntd, controls, cross)
    return Result(verdict=verdict, summary=_summary(cfg, sources, steps, ntd, controls, cross, metrics), metrics=metrics,
                  tables=tables, figures=figures, notes=notes)


def _same_class(cfg: Config, ctx: RunContext, group: Sequence[Source], steps: tuple[str, ...],
                seed: int) -> dict[str, Any]:
    """Name That Dataset (HOG) on the images of one shared class at a time (the paper's car crops)."""
    out: dict[str, list[Any]] = {"class": [], "accuracy": [], "correct": [], "total": [], "skipped": []}
    need = cfg.class_n_train + cfg.class_n_test
    for name in group[0].classes:
        subset = {}
        for g in group:
            assert g.labels is not None
            index = (g.labels == g.classes.index(name)).nonzero()[:, 0]
            subset[g.name] = replace(g, images=g.images[index], labels=None)
        if min(len(v) for v in subset.values()) < need:
            out["skipped"].append(name)
            continue
        r = name_that_dataset(subset, features="hog", n_train=cfg.class_n_train, n_test=cfg.class_n_test,
                              seed=ctx.seed_for("class", name, seed), size=cfg.image_size, remove=steps,
                              classifier=_classifier(cfg, "hog", ctx), confidence=cfg.confidence)
        out["class"].append(name)
        out["accuracy"].append(r.accuracy)
        out["correct"].append(r.correct)
        out["total"].append(r.total)
    return out


# -- verdict --------------------------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _verdict(cfg: Config, ntd: dict, controls: dict, cross: dict, level: float) -> Verdict:
    seeds = range(cfg.seeds)
    after = [ntd[f, "removed", s] for f in cfg.features for s in seeds]
    above = all(r["ci_low"] > r["chance"] for r in after)
    none_above = not any(r["ci_low"] > r["chance"] for r in after)
    chance = after[0]["chance"]
    ctrl = list(controls.values())
    control_ok = bool(ctrl) and all(r["ci_low"] <= r["chance"] <= r["ci_high"] for r in ctrl)
    first = cfg.cross_features[0]
    tables = [cross[first, "removed", s] for s in seeds if (first, "removed", s) in cross]
    drops_ok = bool(tables) and all(np.all(t["drops"]) for t in tables)
    hog_before = np.mean([ntd[cfg.features[0], "raw", s]["accuracy"] for s in seeds])
    hog_after = np.mean([ntd[cfg.features[0], "removed", s]["accuracy"] for s in seeds])
    lowest = min(r["ci_low"] for r in after)
    steps = "+".join(s for s in STEPS if s in cfg.remove)
    what = (f"Name That Dataset ({cfg.features[0]}) {_pct(hog_before)} before and {_pct(hog_after)} after removing "
            f"{steps}, chance {_pct(chance)}; lowest interval bound over {len(cfg.features)} classifier(s) x "
            f"{cfg.seeds} seed(s) {_pct(lowest)} ({100 * level:.2f}% Clopper-Pearson)")
    if ctrl:
        c_acc = ", ".join(f"{f} {_pct(np.mean([controls[f, s]['accuracy'] for s in seeds]))}" for f in cfg.features)
        what += f"; pseudo-dataset control {c_acc} ({'all at chance' if control_ok else 'NOT at chance'})"
    if tables:
        drops = np.array([t["percent_drop"] for t in tables]).mean(0)
        what += (f"; cross-dataset ({first}, after removal) percent drop {', '.join(f'{d:.0f}%' for d in drops)}, "
                 f"{'every' if drops_ok else 'not every'} off-diagonal entry drops")
    if not ctrl:
        return Verdict("inconclusive", f"No pseudo-dataset control could be run, so above-chance naming cannot be "
                                       f"told from memorization: {what}.")
    if not control_ok:
        return Verdict("inconclusive", f"The pseudo-dataset control is not at chance, so the classifier separates "
                                       f"random splits of one source and the test is unreliable: {what}.")
    if above and drops_ok:
        return Verdict("refuted", f"The sources remain easy to tell apart after removing trivial signatures and "
                                  f"every classifier loses accuracy on the other sources: {what}.")
    if none_above:
        return Verdict("supported", f"Once trivial signatures are removed no classifier names the source above "
                                    f"chance: {what}.")
    if above and not tables:
        return Verdict("inconclusive", f"The sources are told apart, but no two share classes for a cross-dataset "
                                       f"table: {what}.")
    return Verdict("inconclusive", f"Mixed evidence: {what}.")


# -- metrics, tables, notes, summary --------------------------------------------------------------------------


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def _report(cfg: Config, sources: Sequence[Source], group: Sequence[Source], control: Source | None,
            steps: tuple[str, ...], ntd: dict, ladder_runs: dict, controls: dict,
            cross: dict) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    seeds = range(cfg.seeds)
    names = [s.name for s in sources]
    metrics: dict[str, Any] = {"n_sources": len(sources), "chance": 1 / len(sources),
                               "paper_accuracy": PAPER_ACCURACY, "paper_chance": PAPER_CHANCE}
    rows = []
    for f in cfg.features:
        for tag in ("raw", "removed"):
            runs = [ntd[f, tag, s] for s in seeds]
            mean, std = _mean_std([r["accuracy"] for r in runs])
            metrics[f"ntd_{f}_{tag}_accuracy"] = mean
            metrics[f"ntd_{f}_{tag}_ci_low"] = min(r["ci_low"] for r in runs)
            if len(runs[0]["curve_accuracy"]) > 1:  # still rising with more data? (paper: yes)
                metrics[f"ntd_{f}_{tag}_last_curve_gain"] = float(np.mean(
                    [r["curve_accuracy"][-1] - r["curve_accuracy"][-2] for r in runs]))
            rows.append({"features": f, "signatures": "+".join(steps) if tag == "removed" else "none",
                         "accuracy": mean, "std": std, "ci_low": min(r["ci_low"] for r in runs),
                         "ci_high": max(r["ci_high"] for r in runs), "chance": runs[0]["chance"],
                         "p_value": max(r["p_value"] for r in runs), "n_train": cfg.n_train, "n_test": cfg.n_test,
                         "seeds": cfg.seeds})
    tables: dict[str, list[dict[str, Any]]] = {"name_that_dataset": rows}
    tables["sources"] = [{"source": s.name, "images": len(s), "native_size": f"{s.native_size[0]}x{s.native_size[1]}",
                          "classes": len(s.classes), "skipped_files": len(s.skipped), "origin": s.origin}
                         for s in sources]
    ladder_rows = []
    for i in range(len(steps) + 1):
        removed = steps[:i]
        runs = [ntd["hog", "raw", s] if i == 0 else ntd["hog", "removed", s] if i == len(steps)
                else ladder_runs[removed, s] for s in seeds] if "hog" in cfg.features else []
        if runs:
            mean, std = _mean_std([r["accuracy"] for r in runs])
            ladder_rows.append({"signatures removed": "+".join(removed) or "none", "accuracy": mean, "std": std,
                                "ci_low": min(r["ci_low"] for r in runs), "ci_high": max(r["ci_high"] for r in runs)})
    if ladder_rows:
        tables["signature_removal_hog"] = ladder_rows
    recall_rows = []
    for f in cfg.features:
        recall = np.mean([ntd[f, "removed", s]["recall"] for s in seeds], axis=0)
        recall_rows.append({"features": f, **{n: float(r) for n, r in zip(names, recall)}})
    tables["recall_after_removal"] = recall_rows
    if controls:
        tables["pseudo_dataset_control"] = []
        for f in cfg.features:
            runs = [controls[f, s] for s in seeds]
            mean, std = _mean_std([r["accuracy"] for r in runs])
            metrics[f"control_{f}_accuracy"] = mean
            tables["pseudo_dataset_control"].append({
                "features": f, "source": control.name if control else "", "parts": len(sources), "accuracy": mean,
                "std": std, "ci_low": min(r["ci_low"] for r in runs), "ci_high": max(r["ci_high"] for r in runs),
                "chance": runs[0]["chance"],
                "at_chance": all(r["ci_low"] <= r["chance"] <= r["ci_high"] for r in runs)})
    for f in cfg.cross_features:
        for tag in ("raw", "removed"):
            runs = [cross[f, tag, s] for s in seeds if (f, tag, s) in cross]
            if not runs:
                continue
            matrix = np.mean([r["matrix"] for r in runs], axis=0)
            drop = np.mean([r["percent_drop"] for r in runs], axis=0)
            own = np.mean([r["self"] for r in runs], axis=0)
            others = np.mean([r["mean_others"] for r in runs], axis=0)
            tnames = runs[0]["names"]
            tables[f"cross_dataset_{f}_{tag}"] = [
                {"train on": n, **{f"test {m}": float(v) for m, v in zip(tnames, matrix[i])}, "self": float(own[i]),
                 "mean others": float(others[i]), "percent drop": float(drop[i])} for i, n in enumerate(tnames)]
            metrics[f"cross_{f}_{tag}_min_percent_drop"] = float(drop.min())
            metrics[f"cross_{f}_{tag}_mean_percent_drop"] = float(drop.mean())
            metrics[f"cross_{f}_{tag}_all_drop"] = bool(all(np.all(r["drops"]) for r in runs))
            if tag == "removed" or len(cfg.cross_features) == 1:
                values = runs[0]["values"]
                bounds = runs[0]["value_bounds"]
                tables[f"dataset_value_{f}_{tag}"] = [
                    {"sample of": n, **{f"worth on {m}": _value_text(values[i][j], bounds[i][j])
                                        for j, m in enumerate(tnames)}} for i, n in enumerate(tnames)]
                off = [values[i][j] for i in range(len(tnames)) for j in range(len(tnames)) if i != j]
                metrics[f"value_{f}_{tag}_max_offdiagonal"] = float(max(off))
    metrics["cross_sources"] = ",".join(s.name for s in group)
    return metrics, tables


def _report_same_class(cfg: Config, same_class: dict, metrics: dict[str, Any],
                       tables: dict[str, list[dict[str, Any]]]) -> None:
    from mlmyths.bias import clopper_pearson

    runs = [same_class[s] for s in sorted(same_class)]
    if not runs or not runs[0]["class"]:
        return
    correct = sum(sum(r["correct"]) for r in runs)
    total = sum(sum(r["total"]) for r in runs)
    low, high = clopper_pearson(correct, total, alpha=1.0 - cfg.confidence)
    metrics["same_class_hog_accuracy"] = correct / total
    metrics["same_class_hog_ci_low"], metrics["same_class_hog_ci_high"] = low, high
    accuracy = np.mean([r["accuracy"] for r in runs], axis=0)
    tables["same_class_hog_removed"] = [{"class": c, "accuracy": float(a), "train per source": cfg.class_n_train,
                                         "test per source": cfg.class_n_test}
                                        for c, a in zip(runs[0]["class"], accuracy)]


def _value_text(value: float, bound: str) -> str:
    prefix = {"exact": "", "at_most": "≤ ", "at_least": "≥ "}[bound]
    return f"{prefix}{value:.3g}"


def _notes(cfg: Config, level: float, ntd: dict, controls: dict, cross: dict) -> list[str]:
    notes = [
        (f"Intervals are Clopper-Pearson at {100 * level:.2f}% per test (Bonferroni: {100 * cfg.confidence:.0f}% "
         f"family-wise over {cfg.seeds} seed(s) x {len(cfg.features)} classifier(s))."),
        ("Deviations from the paper: digit datasets of different collection processes instead of 12 object "
         "datasets; grey images resized to a common size first; cross-dataset scores are multi-class accuracy on "
         "class-balanced test sets (the paper: average precision of 'car'/'person' detectors); dataset values are "
         "read off learning curves by log-linear interpolation (see mlmyths.bias.dataset_value); a value outside "
         "the measured curve is reported as a bound (<= or >=)."),
    ]
    for record in [*ntd.values(), *controls.values()]:
        notes += record.get("notes", [])
    for record in cross.values():
        notes += record.get("notes", [])
    return list(dict.fromkeys(notes))


def _summary(cfg: Config, sources: Sequence[Source], steps: tuple[str, ...], ntd: dict, controls: dict,
             cross: dict, metrics: dict[str, Any]) -> str:
    seeds = range(cfg.seeds)
    parts = [(f"Name That Dataset over {len(sources)} sources ({', '.join(s.name for s in sources)}; chance "
              f"{_pct(1 / len(sources))}), {cfg.n_train} training and {cfg.n_test} test images per source, "
              f"{cfg.seeds} seed(s):")]
    for f in cfg.features:
        before = np.mean([ntd[f, "raw", s]["accuracy"] for s in seeds])
        after = np.mean([ntd[f, "removed", s]["accuracy"] for s in seeds])
        line = f"{f}: {_pct(before)} raw, {_pct(after)} after removing {'+'.join(steps)}"
        if controls:
            line += f", pseudo-dataset control {_pct(np.mean([controls[f, s]['accuracy'] for s in seeds]))}"
        parts.append(line + ".")
    for key, record in cross.items():
        if key[1] == "removed" and key[2] == 0:
            drops = ", ".join(f"{n} {d:.0f}%" for n, d in zip(record["names"], record["percent_drop"]))
            parts.append(f"Cross-dataset digit classification ({key[0]}, after removal, seed 0): percent drop "
                         f"{drops}.")
    if "same_class_hog_accuracy" in metrics:
        parts.append(f"Within one digit class at a time (HOG, after removal): {_pct(metrics['same_class_hog_accuracy'])} "
                     f"over {metrics['cross_sources'].replace(',', ', ')} (chance "
                     f"{_pct(1 / len(metrics['cross_sources'].split(',')))}).")
    parts.append(f"Paper: {_pct(PAPER_ACCURACY)} over 12 datasets (chance {_pct(PAPER_CHANCE)}).")
    return " ".join(parts)


# -- figures ------------------------------------------------------------------------------------------------


def _figures(cfg: Config, ctx: RunContext, sources: Sequence[Source], steps: tuple[str, ...], ntd: dict,
             ladder_runs: dict, controls: dict, cross: dict) -> list[str]:
    figures = [_samples_figure(cfg, ctx, sources, steps), _confusion_figure(cfg, ctx, ntd),
               _curve_figure(cfg, ctx, ntd, controls)]
    if "hog" in cfg.features and len(steps) > 0:
        figures.append(_ladder_figure(cfg, ctx, steps, ntd, ladder_runs, controls))
    if cross:
        figures.append(_cross_figure(cfg, ctx, cross))
    return figures


def _samples_figure(cfg: Config, ctx: RunContext, sources: Sequence[Source], steps: tuple[str, ...]) -> str:
    per = 8
    rng = ctx.rng("samples")
    few = [replace(s, images=s.images[rng.permutation(len(s))[:max(per, min(len(s), 200))]]) for s in sources]
    raw = prepare(few, size=cfg.image_size)
    removed = prepare(few, size=cfg.image_size, remove=steps)
    images, titles = [], []
    for s, r, m in zip(sources, raw, removed):
        for block, label in ((r, "raw"), (m, "removed")):
            shown = block[:per]
            low = shown.amin((1, 2, 3), keepdim=True)
            high = shown.amax((1, 2, 3), keepdim=True)
            images.append(((shown - low) / (high - low).clamp_min(1e-6)).numpy())
            titles += [f"{s.name} ({label})"] + [""] * (len(shown) - 1)
    fig = plots.image_grid(np.concatenate(images), titles, ncols=per)
    fig.suptitle(f"Sources at {cfg.image_size}x{cfg.image_size}: raw and after removing {'+'.join(steps)}",
                 fontsize=9)
    return ctx.save_figure(fig, "samples")


def _heatmap(ax: Any, matrix: np.ndarray, labels_x: Sequence[str], labels_y: Sequence[str], fmt: str,
             vmax: float = 1.0, texts: Sequence[Sequence[str]] | None = None) -> None:
    ax.grid(False)
    ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=vmax)
    ax.set_xticks(range(len(labels_x)), labels_x, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels_y)), labels_y, fontsize=8)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            v = matrix[i, j]
            ax.text(j, i, texts[i][j] if texts else fmt.format(v), ha="center", va="center", fontsize=7,
                    color="black" if v > 0.6 * vmax else "white")


def _confusion_figure(cfg: Config, ctx: RunContext, ntd: dict) -> str:
    fig, axes = plots.new_figure(1, len(cfg.features), width=3.6, height=3.4, squeeze=False)
    for ax, f in zip(axes[0], cfg.features):
        record = ntd[f, "removed", 0]
        conf = np.asarray(record["confusion"], dtype=float)
        conf /= conf.sum(1, keepdims=True).clip(min=1)
        _heatmap(ax, conf, record["names"], record["names"], "{:.2f}")
        ax.set_xlabel("predicted source")
        ax.set_ylabel("true source")
        ax.set_title(f"{f}: {_pct(record['accuracy'])} (chance {_pct(record['chance'])})", fontsize=9)
    fig.suptitle("Name That Dataset after signature removal (seed 0, rows sum to 1)", fontsize=9)
    return ctx.save_figure(fig, "confusion")


def _curve_figure(cfg: Config, ctx: RunContext, ntd: dict, controls: dict) -> str:
    fig, ax = plots.new_figure(width=6.0, height=4.0)
    seeds = range(cfg.seeds)
    for i, f in enumerate(cfg.features):
        color = plots.CYCLE[i % len(plots.CYCLE)]
        for tag, style in (("raw", "--"), ("removed", "-")):
            runs = [ntd[f, tag, s] for s in seeds]
            acc = np.array([r["curve_accuracy"] for r in runs])
            plots.band(ax, runs[0]["curve_sizes"], acc.mean(0), acc.std(0), label=f"{f} ({tag})", color=color,
                       linestyle=style)
        if controls:
            ax.plot([cfg.n_train], [np.mean([controls[f, s]["accuracy"] for s in seeds])], marker="x",
                    color=color, linestyle="none", label=f"{f} pseudo-dataset control")
    chance = ntd[cfg.features[0], "raw", 0]["chance"]
    ax.axhline(chance, color=plots.COLORS["paper"], linestyle=":", label="chance")
    ax.set_xscale("log")
    ax.set_xlabel("training images per source")
    ax.set_ylabel("Name That Dataset accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("Learning curves (mean ± std over seeds)", fontsize=9)
    return ctx.save_figure(fig, "learning_curve")


def _ladder_figure(cfg: Config, ctx: RunContext, steps: tuple[str, ...], ntd: dict, ladder_runs: dict,
                   controls: dict) -> str:
    seeds = range(cfg.seeds)
    labels, means, lows, highs = [], [], [], []
    for i in range(len(steps) + 1):
        runs = [ntd["hog", "raw", s] if i == 0 else ntd["hog", "removed", s] if i == len(steps)
                else ladder_runs[steps[:i], s] for s in seeds]
        labels.append("none" if i == 0 else "+" + steps[i - 1])
        means.append(np.mean([r["accuracy"] for r in runs]))
        lows.append(min(r["ci_low"] for r in runs))
        highs.append(max(r["ci_high"] for r in runs))
    fig, ax = plots.new_figure(width=5.5, height=3.6)
    x = np.arange(len(labels))
    means_a = np.array(means)
    ax.bar(x, means_a, color=plots.COLORS["ours"], yerr=[means_a - np.array(lows), np.array(highs) - means_a],
           capsize=3)
    if controls:
        ax.axhline(np.mean([controls["hog", s]["accuracy"] for s in seeds]), color=plots.COLORS["random"],
                   linestyle="--", label="pseudo-dataset control")
    ax.axhline(ntd["hog", "raw", 0]["chance"], color=plots.COLORS["paper"], linestyle=":", label="chance")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("HOG + linear SVM accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    ax.set_title("What remains after each signature-removal step (cumulative)", fontsize=9)
    return ctx.save_figure(fig, "signature_removal")


def _cross_figure(cfg: Config, ctx: RunContext, cross: dict) -> str:
    f = cfg.cross_features[0]
    raw, removed = cross[f, "raw", 0], cross[f, "removed", 0]
    fig, axes = plots.new_figure(1, 3, width=3.6, height=3.4, squeeze=False)
    names = removed["names"]
    _heatmap(axes[0, 0], np.asarray(raw["matrix"]), names, names, "{:.2f}")
    axes[0, 0].set_title(f"{f}, raw", fontsize=9)
    _heatmap(axes[0, 1], np.asarray(removed["matrix"]), names, names, "{:.2f}")
    axes[0, 1].set_title(f"{f}, signatures removed", fontsize=9)
    values = np.asarray(removed["values"], dtype=float)
    texts = [[_value_text(v, b) for v, b in zip(row, bounds)] for row, bounds in zip(values, removed["value_bounds"])]
    _heatmap(axes[0, 2], values, names, names, "{:.2g}", vmax=max(1.0, float(values.max())), texts=texts)
    axes[0, 2].set_title("dataset value (test-set samples\nworth one training sample)", fontsize=9)
    for ax in axes[0]:
        ax.set_xlabel("test on")
        ax.set_ylabel("train on")
    fig.suptitle(f"Cross-dataset digit accuracy ({removed['sizes'][-1]} training images per source, seed 0)",
                 fontsize=9)
    return ctx.save_figure(fig, "cross_dataset")

