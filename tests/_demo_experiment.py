"""A tiny experiment used by the foundation tests (registered as myth id "demo").

Each task trains a small MLP on digits for a few epochs with a checkpoint; the
verdict compares mean test accuracy with a threshold. ``fail`` makes it fail after
the first task; ``$DEMO_SLEEP_S`` makes each task pause (so a test can interrupt the run;
resumed runs don't pause).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch

from mlmyths import config as configs
from mlmyths import data, plots
from mlmyths.errors import DataError
from mlmyths.models import MLP
from mlmyths.runs import Claim, Result, RunContext, Verdict
from mlmyths.train import TrainConfig, fit

CLAIM = Claim(myth="A demo myth.", paper="Nobody, 2026", paper_result="accuracy above 0.5")


@dataclass(frozen=True)
class Config:
    dataset: str = "digits"  # image dataset
    tasks: int = 2  # independent trainings
    epochs: int = 2  # epochs per training
    lr: float = 0.1  # SGD learning rate
    fail: bool = False  # raise a RuntimeError after the first task
    threshold: float = 0.5  # verdict threshold on mean test accuracy


SCALES = {"smoke": Config(epochs=1), "small": Config(tasks=3, epochs=3), "paper": Config(tasks=5, epochs=20)}


def config(scale: str = "small", **overrides: object) -> Config:
    return configs.select(SCALES, scale, overrides)


def run(cfg: Config, ctx: RunContext) -> Result:
    if cfg.dataset not in ("digits",):
        ds = data.load(cfg.dataset)  # raises DataError when missing
    else:
        ds = data.load("digits")
    if ds.x_train.shape[-1] != 8:
        raise DataError("demo experiment expects 8x8 digits")
    x, y = data.to_float(ds.x_train), ds.y_train
    xt, yt = data.to_float(ds.x_test), ds.y_test

    def train(i: int) -> dict:
        torch.manual_seed(ctx.seed_for("model", i))
        model = MLP(64, 10, hidden=(32,))
        result = fit(model, x, y, TrainConfig(epochs=cfg.epochs, batch_size=64, lr=cfg.lr),
                     eval_sets={"test": (xt, yt)}, seed=ctx.seed_for("fit", i),
                     checkpoint=ctx.checkpoint_path(f"fit-{i}"), progress=ctx.progress)
        return {"accuracy": result.final("test_accuracy"), "loss": [h["train_loss"] for h in result.history],
                "diverged_at": result.diverged_at, "weights": model.net[1].weight.detach()}


    outcomes = []
    for i in range(cfg.tasks):
        outcomes.append(ctx.task(f"train-{i}", lambda i=i: train(i)))
        if not ctx.resuming:
            time.sleep(float(os.environ.get("DEMO_SLEEP_S", "0")))
        if cfg.fail:
            raise RuntimeError("demo failure after the first task")
    accs = [o["accuracy"] for o in outcomes]
    mean = float(sum(accs) / len(accs))
    fig, ax = plots.new_figure()
    for o in outcomes:
        ax.plot(o["loss"])
    figure = ctx.save_figure(fig, "loss")
    outcome = "refuted" if mean > cfg.threshold else "supported"
    return Result(
        verdict=Verdict(outcome, f"mean test accuracy {mean:.3f} vs threshold {cfg.threshold}"),
        summary=f"{cfg.tasks} trainings, mean test accuracy {mean:.3f}.",
        metrics={"mean_accuracy": mean, "weight_sum": float(sum(float(o['weights'].sum()) for o in outcomes))},
        tables={"tasks": [{"task": i, "accuracy": a} for i, a in enumerate(accs)]},
        figures=[figure],
    )
