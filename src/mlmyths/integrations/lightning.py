"""Example forgetting during PyTorch Lightning's ``Trainer.fit``: :class:`ForgettingCallback`.

Toneva et al., "An Empirical Study of Example Forgetting During Deep Neural Network Learning",
ICLR 2019, Sec. 2 -- counted by :class:`mlmyths.forgetting.ForgettingTracker` (the callback
holds one; there is no second implementation), from the logits of the training forward pass,
so tracking costs no extra pass over the data and no host synchronisation. Needs the optional
extra: ``pip install mlmyths[lightning]``.

The convention (the only change to a LightningModule):

1. ``training_step`` returns a dict with the loss and the training-pass logits ``(B, C)``::

       return {"loss": loss, "logits": logits.detach()}

2. Each batch says which examples it holds (their 0-based positions in the training set) and
   their targets, in one of these forms:

   - a tuple or list ``(inputs, targets, indices, ...)``: wrap the dataset in
     :class:`mlmyths.forgetting.IndexedDataset`, or use
     ``TensorDataset(x, y, torch.arange(len(x)))``;
   - a dict with the keys ``"targets"`` and ``"indices"`` (``IndexedDataset`` adds ``"indices"``
     to dict items);
   - or ``training_step`` returns them itself under ``"targets"`` and ``"indices"``; these take
     precedence over the batch (any other batch layout).

A step that returns ``None`` (Lightning skips it) is not counted. The statistics live on the
module's device; after ``fit``, query ``callback.tracker`` (``forgetting_counts()``,
``unforgettable()``, ``first_learned()``, ...). The tracker is saved in Lightning checkpoints,
so ``fit(..., ckpt_path=...)`` continues counting where the checkpoint left off.

One semantic difference from the paper's code (``mtoneva/example_forgetting``): an example
that is never classified correctly gets a forgetting count equal to its *actual number of
presentations*; ``example_forgetting`` gives it the number of epochs. The two agree when every
example is presented once per epoch (a shuffled full pass, as in the paper); they differ with
``drop_last=True``, ``limit_train_batches``, ``max_steps`` ending mid-epoch, or a sampler
that draws a subset. Samplers that draw with replacement (an example twice in one batch) are
not supported; ``validate=True`` detects them. Multi-process training (DDP) is not supported
yet: each process would see only its share of the presentations.

>>> import torch, lightning.pytorch as L
>>> from torch.utils.data import DataLoader, TensorDataset
>>> class Classifier(L.LightningModule):
...     def __init__(self):
...         super().__init__()
...         self.net = torch.nn.Linear(2, 2)
...     def training_step(self, batch, batch_idx):
...         x, y, indices = batch
...         logits = self.net(x)
...         return {"loss": torch.nn.functional.cross_entropy(logits, y), "logits": logits.detach()}
...     def configure_optimizers(self):
...         return torch.optim.SGD(self.parameters(), lr=0.5)
>>> x = torch.randn(64, 2)
>>> y = (x[:, 0] > 0).long()
>>> loader = DataLoader(TensorDataset(x, y, torch.arange(64)), batch_size=16, shuffle=True)
>>> callback = ForgettingCallback()
>>> trainer = L.Trainer(max_epochs=3, callbacks=[callback], logger=False, enable_checkpointing=False,
...                     enable_progress_bar=False, enable_model_summary=False)
>>> trainer.fit(Classifier(), loader)
>>> callback.tracker.presentations().tolist() == [3] * 64
True
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from mlmyths.errors import UserError
from mlmyths.extras import require
from mlmyths.forgetting import ForgettingTracker

L = require("lightning.pytorch", extra="lightning", feature="mlmyths.integrations.lightning (ForgettingCallback)")

__all__ = ["ForgettingCallback"]

_CONVENTION = ('training_step should return {"loss": loss, "logits": logits.detach()}, and each batch be '
               '(inputs, targets, indices, ...) or a dict with "targets" and "indices" (or training_step return '
               '"targets" and "indices" too); see mlmyths.integrations.lightning')


class ForgettingCallback(L.Callback):
    """Counts forgetting events of every training example during ``Trainer.fit``.

    Parameters
    ----------
    n_examples : size of the training set (indices run over ``0..N-1``). ``None`` (default):
        ``len()`` of the training dataloader's dataset, read when training starts.
    history, validate : passed to :class:`~mlmyths.forgetting.ForgettingTracker` (record the
        margins and losses of the first ``history`` presentations; check indices and targets
        at every step at the cost of a host sync).

    Attributes
    ----------
    tracker : the :class:`~mlmyths.forgetting.ForgettingTracker` (``None`` until training starts
        when ``n_examples`` is not given). Calling ``fit`` again continues counting.

    A never-learned example's forgetting count is its number of presentations, which is the
    epoch count of ``example_forgetting`` only when every epoch presents every example once
    (module docstring).
    """

    def __init__(self, n_examples: int | None = None, *, history: int = 0, validate: bool = False):
        super().__init__()
        self.history, self.validate = history, validate
        self.tracker: ForgettingTracker | None = None
        if n_examples is not None:
            self.tracker = ForgettingTracker(n_examples, history=history, validate=validate)

    def __repr__(self) -> str:
        return f"ForgettingCallback(tracker={self.tracker!r})"

    # -- Lightning hooks --------------------------------------------------------------------------------

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage == "fit" and trainer.world_size > 1:
            raise UserError(f"ForgettingCallback: training runs in {trainer.world_size} processes "
                            f"(world_size={trainer.world_size}); the callback sees one process's presentations "
                            "only and supports single-process training (devices=1) for now")

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if self.tracker is None:
            self.tracker = ForgettingTracker(_dataset_size(trainer), history=self.history, validate=self.validate)
        self.tracker.to(pl_module.device)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        presented = _read_step(outputs, batch)
        if presented is not None and self.tracker is not None:
            self.tracker.update(*presented)

    def state_dict(self) -> dict[str, Any]:
        return {} if self.tracker is None else self.tracker.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        if self.tracker is None:
            saved = state_dict["state"]  # (runs, N, 4)
            self.tracker = ForgettingTracker(int(saved.shape[1]), history=self.history, validate=self.validate)
        self.tracker.load_state_dict(state_dict)


def _dataset_size(trainer: Any) -> int:
    loader = trainer.train_dataloader
    try:
        return len(loader.dataset)
    except (AttributeError, TypeError):
        raise UserError(f"ForgettingCallback: cannot tell the size of the training set from the train dataloader "
                        f"({type(loader).__name__}); pass it: ForgettingCallback(n_examples=N)") from None


def _read_step(outputs: Any, batch: Any) -> tuple[Tensor, Tensor, Tensor] | None:
    """``(indices, logits, targets)`` of one training step by the module's convention, or None
    for a step that ``training_step`` skipped by returning None."""
    if outputs is None or (isinstance(outputs, Mapping) and outputs.get("loss") is None and "logits" not in outputs):
        return None
    if not isinstance(outputs, Mapping) or "logits" not in outputs:
        got = f"a dict with keys {sorted(outputs)}" if isinstance(outputs, Mapping) else type(outputs).__name__
        raise UserError(f"ForgettingCallback: training_step returned {got}, without the logits; {_CONVENTION}")
    indices, targets = outputs.get("indices"), outputs.get("targets")
    if indices is None or targets is None:
        if isinstance(batch, Mapping) and "indices" in batch and "targets" in batch:
            indices, targets = batch["indices"], batch["targets"]
        elif isinstance(batch, (tuple, list)) and len(batch) >= 3:
            targets, indices = batch[1], batch[2]
        else:
            got = (f"a dict with keys {sorted(batch)}" if isinstance(batch, Mapping)
                   else f"a {type(batch).__name__} of length {len(batch)}" if isinstance(batch, (tuple, list))
                   else type(batch).__name__)
            raise UserError(f"ForgettingCallback: cannot find the example indices and targets; the batch is {got}. "
                            f"{_CONVENTION}")
    return indices, outputs["logits"], targets
