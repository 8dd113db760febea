"""A tiny experiment used by the foundation tests (registered as myth id "demo").

Each task trains a small MLP on digits for a few epochs with a checkpoint; one claim says the
mean test accuracy over tasks is at least 0.5 (t interval over tasks). ``fail`` makes it fail
after the first task; ``$DEMO_SLEEP_S`` makes the run pause after each task (so a test can interrupt
the run; resumed runs don't pause); with ``$DEMO_PID_DIR`` each task writes its process id to
``DIR/KEY.pid`` and, on its first attempt only, sleeps ``$DEMO_TASK_SLEEP_S`` inside the task (so a
test can kill the worker that runs it).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from mlmyths import config as configs
from mlmyths import data, plots
from mlmyths.claims import Claim, ClaimResult, Estimate
from mlmyths.errors import ConfigError, DataError
from mlmyths.models import MLP
from mlmyths.myths.planning import Wave
from mlmyths.records import Headline, Result
from mlmyths.runs import RunContext
from mlmyths.stats import t_interval
from mlmyths.train import TrainConfig, fit

CLAIM = Headline(myth="A demo myth.", paper="Nobody, 2026", paper_result="accuracy above 0.5")

CLAIMS = (
    Claim("accuracy", "An MLP learns digits.", "accuracy above 0.5", "Sec. 1", statistic="mean test accuracy",
          unit="tasks (seeds)", test="at_least", threshold=0.5, justification="the demo's own number"),
)


@dataclass(frozen=True)
class Config:
    dataset: Literal["digits", "mnist", "fashion-mnist"] = "digits"  #: image dataset
    tasks: int = 2  #: independent trainings
    epochs: int = 2  #: epochs per training
    lr: float = 0.1  #: SGD learning rate
    fail: bool = False  #: raise a RuntimeError after the first task
    wave: bool = False  #: run the trainings as one wave (ctx.map) instead of one task after another
    task_error: bool = False  #: the task train-1 raises (to test how task errors are reported)

    def __post_init__(self) -> None:
        if self.tasks < 1 or self.epochs < 1:
            raise ConfigError(f"config keys 'tasks' and 'epochs' must be >= 1, got {self.tasks}, {self.epochs}")
        if not self.lr > 0:
            raise ConfigError(f"config key 'lr' must be > 0, got {self.lr}")


SCALES = {"smoke": Config(epochs=1), "small": Config(tasks=3, epochs=3), "paper": Config(tasks=5, epochs=20)}
CALIBRATION = {"paper": {"accuracy": 0.9}, "other": {"accuracy": 0.2}}


def config(scale: str = "small", **overrides: object) -> Config:
    return configs.select(SCALES, scale, overrides)


def evaluate(cfg: Config, accuracies: Any) -> list[ClaimResult]:
    mean, low, high, n = t_interval(accuracies)
    return [CLAIMS[0].judge(Estimate(mean, low, high, n, f"t interval over {n} tasks"),
                            reason="" if n > 1 else "one task gives no interval")]


def simulate(cfg: Config, truth: dict[str, float], rng: np.random.Generator) -> Any:
    return truth["accuracy"] + 0.02 * rng.standard_normal(cfg.tasks)


def plan(cfg: Config) -> list[Wave]:
    """One wave: ``tasks`` trainings of ``epochs`` x 23 SGD steps (1,437 training digits, batch 64)."""
    def step(device: Any) -> None:
        model = MLP(64, 10, hidden=(32,)).to(device)
        x, y = torch.randn(64, 1, 8, 8, device=device), torch.randint(0, 10, (64,), device=device)
        torch.nn.functional.cross_entropy(model(x), y).backward()

    return [Wave("trainings", cfg.tasks, cfg.epochs * 23, "SGD steps of an MLP on 64 digits", key_prefix="train-",
                 probe=step)]


def _first_attempt_pause(key: str) -> None:
    pid_dir = os.environ.get("DEMO_PID_DIR")
    if not pid_dir:
        return
    marker = os.path.join(pid_dir, f"{key}.pid")
    first = not os.path.exists(marker)
    with open(marker, "w") as f:
        f.write(str(os.getpid()))
    if first:
        time.sleep(float(os.environ.get("DEMO_TASK_SLEEP_S", "0")))


def run(cfg: Config, ctx: RunContext) -> Result:
    ds = data.load(cfg.dataset)  # raises DataError when missing
    if ds.x_train.shape[-1] != 8:
        raise DataError("demo experiment expects 8x8 digits")
    x, y = data.to_float(ds.x_train), ds.y_train
    xt, yt = data.to_float(ds.x_test), ds.y_test

    def train(i: int) -> dict:
        _first_attempt_pause(f"train-{i}")
        if cfg.task_error and i == 1:
            raise ValueError("demo task error in train-1")
        torch.manual_seed(ctx.seed_for("model", i))
        model = MLP(64, 10, hidden=(32,))
        result = fit(model, x, y, TrainConfig(epochs=cfg.epochs, batch_size=64, lr=cfg.lr),
                     eval_sets={"test": (xt, yt)}, seed=ctx.seed_for("fit", i),
                     checkpoint=ctx.checkpoint_path(f"fit-{i}"), progress=ctx.progress)
        return {"accuracy": result.final("test_accuracy"), "loss": [h["train_loss"] for h in result.history],
                "diverged_at": result.diverged_at, "weights": model.net[1].weight.detach()}

    outcomes = []
    if cfg.wave:  # all trainings as one wave of independent tasks
        outcomes = list(ctx.map({f"train-{i}": (lambda i=i: train(i)) for i in range(cfg.tasks)}).values())
    for i in range(0 if cfg.wave else cfg.tasks):
        outcomes.append(ctx.task(f"train-{i}", lambda i=i: train(i)))
        if not ctx.resuming:
            time.sleep(float(os.environ.get("DEMO_SLEEP_S", "0")))
        if cfg.fail:
            raise RuntimeError("demo failure after the first task")
    accs = [o["accuracy"] for o in outcomes]
    fig, ax = plots.new_figure()
    for o in outcomes:
        ax.plot(o["loss"])
    figure = ctx.save_figure(fig, "loss")
    mean = float(np.mean(accs))
    return Result(
        claims=evaluate(cfg, accs),
        summary=f"{cfg.tasks} trainings, mean test accuracy {mean:.3f}.",
        metrics={"mean_accuracy": mean, "weight_sum": float(sum(float(o['weights'].sum()) for o in outcomes))},
        tables={"tasks": [{"task": i, "accuracy": a} for i, a in enumerate(accs)]},
        figures=[figure],
        differences=["a demo: nothing to compare with"],
    )
