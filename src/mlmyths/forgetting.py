"""Example forgetting statistics and data-pruning scores.

Toneva, Sordoni, Combes, Trischler, Bengio & Gordon, "An Empirical Study of Example
Forgetting During Deep Neural Network Learning", ICLR 2019 (arXiv 1812.05159), and
Paul, Ganguli & Dziugaite, "Deep Learning on a Data Diet: Finding Important Examples
Early in Training", NeurIPS 2021 (arXiv 2107.07075).

Definitions (Toneva et al., Section 2, as their code ``mtoneva/example_forgetting``
computes them):

- A *presentation* is one appearance of an example in a training minibatch. Its
  accuracy is read from that training forward pass (before the optimizer step),
  so tracking costs no extra pass over the data.
- A *forgetting event* is a transition from correct to incorrect between two
  consecutive presentations of the same example.
- An example is *learned* at its first correct presentation (``first_learned``).
  An example that is never classified correctly gets as many forgetting events
  as it had presentations, so that it ranks as the most forgettable.
- An example is *unforgettable* when it was learned at some presentation and never
  forgotten afterwards (zero events). Learned at the very last presentation counts.
- Over several runs (seeds) the counts are summed; an example is unforgettable over
  the runs when it is unforgettable in every one (summed count zero, learned each time).

:class:`ForgettingTracker` keeps these statistics on the training device with a
fixed number of gather/scatter operations per minibatch: no per-example Python
loop and no host synchronisation, so it plugs into :func:`mlmyths.train.fit`
without slowing it down. Trackers merge across seeds and save to ``.npz``
(never pickle). :func:`el2n` implements the EL2N score of Paul et al. (Section 2,
"Error L2-Norm"); :func:`select_subset` turns any score into the kept indices of a
pruned training set.

>>> import torch
>>> tracker = ForgettingTracker(3)
>>> targets = torch.tensor([0, 1, 1])
>>> for predicted in ([0, 1, 0], [1, 1, 0], [0, 1, 0]):     # three epochs, one batch each
...     logits = torch.nn.functional.one_hot(torch.tensor(predicted), 2).float()
...     tracker.update(torch.arange(3), logits, targets)
>>> tracker.forgetting_counts().tolist(), tracker.unforgettable().tolist()
([1, 0, 3], [False, True, False])
"""
from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlmyths.errors import DataError, UserError
from mlmyths.files import atomic_write_bytes

__all__ = ["ForgettingTracker", "IndexedDataset", "el2n", "el2n_scores", "select_subset", "ORDERS"]

# Columns of the packed per-example state, shape (runs, N, 4), int32.
_PRESENTED, _EVENTS, _FIRST, _LAST = 0, 1, 2, 3
_FORMAT = "mlmyths.forgetting/1"


class ForgettingTracker:
    """Per-example forgetting statistics of one training run (or several, merged).

    Call :meth:`update` once per training minibatch with the example indices, the
    training-pass logits and the targets; or pass the tracker (or ``tracker.update``)
    to :func:`mlmyths.train.fit` as a callback, which also checkpoints and resumes it.

    Parameters
    ----------
    n_examples : size N of the training set; indices run over ``0..N-1``.
    device : where the statistics live (default: CPU). Keep it on the training device:
        then an update is a handful of kernels and never waits for the host.
    history : record the classification margin and the loss of the first ``history``
        presentations of every example (0: off). Margin = logit of the true class minus
        the largest other logit, as in the paper's code.
    validate : also check at every update that indices are distinct and targets lie in
        ``[0, C)`` (a few extra kernels and a host sync; off by default). Shapes are always
        checked, and out-of-range indices always raise on CPU (CUDA reports them as a
        device-side assertion).

    Queries return numpy arrays of shape (N,) summed over runs, or (runs, N) with
    ``per_run=True``.

    >>> import torch
    >>> t = ForgettingTracker(4)
    >>> logits = torch.tensor([[2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, 2.0]])
    >>> t.update(torch.tensor([0, 1, 2, 3]), logits, torch.tensor([0, 1, 1, 0]))
    >>> t.presentations().tolist(), t.first_learned().tolist()
    ([1, 1, 1, 1], [0, -1, 0, -1])
    """

    def __init__(self, n_examples: int, *, device: torch.device | str | None = None, history: int = 0,
                 validate: bool = False):
        if isinstance(n_examples, bool) or not isinstance(n_examples, (int, np.integer)) or n_examples < 1:
            raise UserError(f"ForgettingTracker: n_examples must be a positive int, got {n_examples!r}")
        if isinstance(history, bool) or not isinstance(history, (int, np.integer)) or history < 0:
            raise UserError(f"ForgettingTracker: history must be an int >= 0 (presentations to record), "
                            f"got {history!r}")
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.n_examples = int(n_examples)
        self.history = int(history)
        self.validate = validate
        self._state = self._fresh_state(1, self.n_examples, self.device)  # (R, N, 4)
        self._margins, self._losses = self._fresh_history(1)  # (R, N, H+1) or None

    # -- construction helpers ------------------------------------------------------------------

    @staticmethod
    def _fresh_state(runs: int, n: int, device: torch.device) -> Tensor:
        state = torch.zeros(runs, n, 4, dtype=torch.int32, device=device)
        state[..., _FIRST] = -1
        return state

    def _fresh_history(self, runs: int) -> tuple[Tensor | None, Tensor | None]:
        if not self.history:
            return None, None
        # One extra column collects writes past the capacity, so that updates never branch.
        shape = (runs, self.n_examples, self.history + 1)
        nan = float("nan")
        return (torch.full(shape, nan, device=self.device), torch.full(shape, nan, device=self.device))

    @property
    def runs(self) -> int:
        """Number of training runs held (1, or the number of merged trackers)."""
        return int(self._state.shape[0])

    def __repr__(self) -> str:
        return (f"ForgettingTracker(n_examples={self.n_examples}, runs={self.runs}, history={self.history}, "
                f"device={self.device})")

    # -- the per-batch update -----------------------------------------------------------------------

    def __call__(self, indices: Tensor, logits: Tensor, targets: Tensor) -> None:
        self.update(indices, logits, targets)

    def update(self, indices: Tensor, logits: Tensor, targets: Tensor) -> None:
        """Record one minibatch: ``indices`` (B,) int, ``logits`` (B, C), ``targets`` (B,).

        Indices within one call must be distinct (an epoch's permutation is). Inputs are
        moved to the tracker's device if needed; logits may be any float dtype.
        """
        if self.runs != 1:
            raise UserError(f"ForgettingTracker.update: this tracker merges {self.runs} runs and is read-only; "
                            "update the per-run trackers and merge them afterwards")
        self._check_shapes(indices, logits, targets)
        indices = indices.to(self.device, torch.long)
        logits = logits.detach().to(self.device)
        targets = targets.to(self.device, torch.long)
        if self.validate:
            self._check_values(indices, logits, targets)
        state = self._state[0]  # (N, 4)
        try:
            rows = state.index_select(0, indices)  # (B, 4)
        except IndexError:  # raised on CPU before anything changed; the check costs nothing otherwise
            self._check_values(indices, logits, targets)
            raise
        presented, events, first, last = rows.unbind(-1)  # each (B,)
        correct = logits.argmax(-1) == targets  # (B,) bool
        new_rows = torch.stack((
            presented + 1,
            events + (last > correct),  # right last time, wrong now: one forgetting event
            torch.where((first < 0) & correct, presented, first),  # first correct presentation (0-based)
            correct.to(torch.int32),
        ), dim=-1)  # (B, 4)
        state.index_copy_(0, indices, new_rows)
        if self._margins is not None and self._losses is not None:
            slot = presented.clamp(max=self.history).long()  # column H is the overflow sink
            logits32 = logits.float()
            true_logit = logits32.gather(1, targets[:, None])[:, 0]
            others = logits32.scatter(1, targets[:, None], float("-inf"))
            self._margins[0, indices, slot] = true_logit - others.max(-1).values
            self._losses[0, indices, slot] = F.cross_entropy(logits32, targets, reduction="none")

    def _check_shapes(self, indices: Tensor, logits: Tensor, targets: Tensor) -> None:
        for name, value in (("indices", indices), ("logits", logits), ("targets", targets)):
            if not isinstance(value, Tensor):
                raise UserError(f"ForgettingTracker.update: {name} must be a torch.Tensor, got {type(value).__name__}")
        if indices.ndim != 1 or targets.ndim != 1 or logits.ndim != 2:
            raise UserError("ForgettingTracker.update: expected indices (B,), logits (B, C), targets (B,); got "
                            f"shapes {tuple(indices.shape)}, {tuple(logits.shape)}, {tuple(targets.shape)}")
        if not (len(indices) == len(logits) == len(targets)):
            raise UserError("ForgettingTracker.update: indices, logits and targets must have the same length B; got "
                            f"{len(indices)}, {len(logits)}, {len(targets)}")
        if indices.is_floating_point() or targets.is_floating_point():
            raise UserError("ForgettingTracker.update: indices and targets must be integer tensors, got "
                            f"{indices.dtype} and {targets.dtype}")

    def _check_values(self, indices: Tensor, logits: Tensor, targets: Tensor) -> None:
        if not len(indices):
            return
        lo, hi = (int(v) for v in torch.aminmax(indices))
        if lo < 0 or hi >= self.n_examples:
            raise UserError(f"ForgettingTracker.update: indices must lie in [0, {self.n_examples}), got values "
                            f"from {lo} to {hi}; create the tracker with the size of the training set")
        tlo, thi = (int(v) for v in torch.aminmax(targets))
        if tlo < 0 or thi >= logits.shape[1]:
            raise UserError(f"ForgettingTracker.update: targets must lie in [0, {logits.shape[1]}) for "
                            f"{logits.shape[1]} logits, got values from {tlo} to {thi}")
        if torch.unique(indices).numel() != indices.numel():
            raise UserError("ForgettingTracker.update: indices within one minibatch must be distinct "
                            "(each example is presented at most once per update)")

    # -- queries -------------------------------------------------------------------------------------

    def _column(self, column: int) -> np.ndarray:
        return self._state[..., column].cpu().numpy().astype(np.int64)  # (R, N)

    @staticmethod
    def _reduce(values: np.ndarray, per_run: bool, how: Callable[..., np.ndarray] = np.sum) -> np.ndarray:
        return values if per_run else how(values, axis=0)

    def presentations(self, per_run: bool = False) -> np.ndarray:
        """How often each example was presented (int, (N,) summed over runs or (runs, N))."""
        return self._reduce(self._column(_PRESENTED), per_run)

    def forgetting_events(self, per_run: bool = False) -> np.ndarray:
        """Raw correct -> incorrect transitions, without the never-learned rule."""
        return self._reduce(self._column(_EVENTS), per_run)

    def learned(self, per_run: bool = False) -> np.ndarray:
        """Classified correctly at some presentation (bool; over runs: in every run)."""
        return self._reduce(self._column(_FIRST) >= 0, per_run, np.all)

    def forgetting_counts(self, per_run: bool = False) -> np.ndarray:
        """The paper's forgetting count: forgetting events, or the number of presentations
        for an example never learned in that run; summed over runs (int)."""
        counts = np.where(self._column(_FIRST) >= 0, self._column(_EVENTS), self._column(_PRESENTED))
        return self._reduce(counts, per_run)

    def unforgettable(self, per_run: bool = False) -> np.ndarray:
        """Learned at some presentation and never forgotten afterwards (bool; over runs: in every run)."""
        per = (self._column(_FIRST) >= 0) & (self._column(_EVENTS) == 0)
        return self._reduce(per, per_run, np.all)

    def first_learned(self) -> np.ndarray:
        """0-based presentation at which each example was first classified correctly, or -1.

        Shape (N,) for one run; (runs, N) for merged trackers (a per-run quantity).
        """
        first = self._column(_FIRST)
        return first[0] if self.runs == 1 else first

    def margins(self) -> np.ndarray:
        """Margin at each recorded presentation, float (N, history) for one run, (runs, N, history)
        for merged trackers; NaN where an example had fewer presentations."""
        return self._history_array(self._margins)

    def losses(self) -> np.ndarray:
        """Cross-entropy loss at each recorded presentation (shapes as :meth:`margins`)."""
        return self._history_array(self._losses)

    def _history_array(self, values: Tensor | None) -> np.ndarray:
        if values is None:
            raise UserError("this ForgettingTracker records no history; create it with history=<presentations>")
        out = values[..., : self.history].cpu().numpy()
        return out[0] if self.runs == 1 else out

    # -- combining, moving, saving --------------------------------------------------------------------

    @classmethod
    def merge(cls, trackers: Sequence[ForgettingTracker]) -> ForgettingTracker:
        """One tracker holding the runs of all ``trackers`` (e.g. one per seed), as the paper
        sums forgetting counts over seeds. The result lives on the first tracker's device."""
        trackers = list(trackers)
        if not trackers or not all(isinstance(t, ForgettingTracker) for t in trackers):
            raise UserError("ForgettingTracker.merge expects a non-empty sequence of ForgettingTracker objects")
        n = {t.n_examples for t in trackers}
        if len(n) != 1:
            raise UserError(f"ForgettingTracker.merge: trackers cover different training sets (n_examples {sorted(n)})")
        first = trackers[0]
        history = min(t.history for t in trackers)
        merged = cls(first.n_examples, device=first.device, history=history, validate=first.validate)
        merged._state = torch.cat([t._state.to(first.device) for t in trackers])
        if history:
            # Keep the common capacity; the overflow column is rebuilt empty.
            def join(parts: list[Tensor]) -> Tensor:
                body = torch.cat([p[..., :history].to(first.device) for p in parts])
                return torch.cat([body, torch.full_like(body[..., :1], float("nan"))], dim=-1)

            merged._margins = join([t._margins for t in trackers if t._margins is not None])
            merged._losses = join([t._losses for t in trackers if t._losses is not None])
        return merged

    def to(self, device: torch.device | str) -> ForgettingTracker:
        """Move the statistics to ``device`` (in place); returns ``self``."""
        self.device = torch.device(device)
        self._state = self._state.to(self.device)
        if self._margins is not None and self._losses is not None:
            self._margins, self._losses = self._margins.to(self.device), self._losses.to(self.device)
        return self

    def state_dict(self) -> dict[str, Any]:
        """Tensors for checkpoints (``torch.save(..., weights_only=True)`` compatible)."""
        state: dict[str, Any] = {"state": self._state.clone(), "history": self.history}
        if self._margins is not None and self._losses is not None:
            state["margins"], state["losses"] = self._margins.clone(), self._losses.clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        tensor = state["state"]
        if tensor.ndim != 3 or tensor.shape[1:] != (self.n_examples, 4):
            raise UserError(f"ForgettingTracker.load_state_dict: state of shape {tuple(tensor.shape)} does not fit "
                            f"a tracker of {self.n_examples} examples")
        if int(state.get("history", 0)) != self.history:
            raise UserError(f"ForgettingTracker.load_state_dict: saved history={state.get('history', 0)}, "
                            f"this tracker has history={self.history}")
        self._state = tensor.to(self.device, torch.int32).clone()
        if self.history:
            self._margins = state["margins"].to(self.device).clone()
            self._losses = state["losses"].to(self.device).clone()

    def save(self, path: str | Path) -> Path:
        """Write the statistics to an ``.npz`` file (arrays plus a JSON header; no pickle)."""
        path = Path(path)
        meta = {"format": _FORMAT, "n_examples": self.n_examples, "runs": self.runs, "history": self.history}
        arrays = {"state": self._state.cpu().numpy()}
        if self._margins is not None and self._losses is not None:
            arrays["margins"] = self._margins[..., : self.history].cpu().numpy()
            arrays["losses"] = self._losses[..., : self.history].cpu().numpy()
        buf = io.BytesIO()
        np.savez_compressed(buf, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)

        atomic_write_bytes(path, buf.getvalue())
        return path

    @classmethod
    def load(cls, path: str | Path, *, device: torch.device | str | None = None) -> ForgettingTracker:
        """Read a tracker written by :meth:`save`."""
        path = Path(path)
        try:
            loaded = np.load(path, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise ValueError("not an .npz archive")
            with loaded as z:
                meta = json.loads(bytes(z["meta"]).decode())
                arrays = {k: z[k] for k in z.files if k != "meta"}
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(f"cannot read forgetting statistics from {path}: {exc}") from None
        if meta.get("format") != _FORMAT:
            raise DataError(f"{path} is not a forgetting-statistics file (format {meta.get('format')!r})")
        tracker = cls(int(meta["n_examples"]), device=device, history=int(meta["history"]))
        tracker._state = torch.from_numpy(arrays["state"]).to(tracker.device, torch.int32)
        if tracker.history:
            pad = np.full(arrays["margins"].shape[:-1] + (1,), np.nan, dtype=np.float32)
            tracker._margins = torch.from_numpy(np.concatenate([arrays["margins"], pad], -1)).to(tracker.device)
            tracker._losses = torch.from_numpy(np.concatenate([arrays["losses"], pad], -1)).to(tracker.device)
        return tracker


class IndexedDataset(torch.utils.data.Dataset):
    """A map-style dataset whose items carry their own index: ``(x, y)`` becomes ``(x, y, i)``.

    The tracker needs to know which examples a minibatch holds; with a ``DataLoader`` (and
    :class:`mlmyths.integrations.lightning.ForgettingCallback`) wrap the training set in this.
    Tuple or list items get ``i`` appended; dict items get the key ``"indices"``; any other item
    ``x`` becomes ``(x, i)``.

    >>> data = IndexedDataset([(0.5, 1), (0.25, 0)])
    >>> len(data), data[1]
    (2, (0.25, 0, 1))
    """

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        item = self.dataset[index]
        if isinstance(item, (tuple, list)):
            return (*item, index)
        if isinstance(item, dict):
            return {**item, "indices": index}
        return item, index


# -- EL2N ------------------------------------------------------------------------------------------------


def el2n(logits: Tensor, targets: Tensor) -> Tensor:
    """EL2N score ``||softmax(logits) - onehot(targets)||_2`` per example (Paul et al. 2021, Sec. 2).

    ``logits`` (B, C), ``targets`` (B,) -> (B,) float32, in ``[0, sqrt(2)]``.

    >>> import torch
    >>> round(float(el2n(torch.tensor([[0.0, 0.0]]), torch.tensor([0]))), 4)   # sqrt(0.5^2 + 0.5^2)
    0.7071
    """
    if logits.ndim != 2 or targets.shape != logits.shape[:1]:
        raise UserError(f"el2n: expected logits (B, C) and targets (B,), got {tuple(logits.shape)} "
                        f"and {tuple(targets.shape)}")
    probs = logits.float().softmax(-1)  # (B, C)
    error = probs - F.one_hot(targets.long(), logits.shape[-1]).to(probs.dtype)
    return error.norm(dim=-1)


def el2n_scores(model: nn.Module, x: Tensor, y: Tensor, *, batch_size: int = 1024,
                transform: Callable[[Tensor], Tensor] | None = None,
                device: torch.device | str | None = None) -> np.ndarray:
    """EL2N of every training example under ``model`` (eval mode, no augmentation).

    Paul et al. score a network early in training (e.g. epoch 20 of 200 on CIFAR-10) and
    average the scores of several independently initialised networks; average the
    arrays this returns, one per network. ``x`` (N, ...) and ``y`` (N,) -> (N,) float32.
    """
    from mlmyths.train import predict

    logits = predict(model, x, batch_size=batch_size, device=device, transform=transform)
    return el2n(logits, y.to(logits.device)).cpu().numpy()


# -- pruning ---------------------------------------------------------------------------------------------

ORDERS: tuple[str, ...] = ("lowest", "highest", "random")
"""Removal orders of :func:`select_subset`: remove the lowest scores first (least forgotten,
easiest by EL2N: the papers' pruning), the highest first, or uniformly at random."""


def select_subset(scores: Any, remove_fraction: float, *, order: Literal["lowest", "highest", "random"] = "lowest",
                  seed: int = 0) -> np.ndarray:
    """Indices of the examples kept after removing ``round(remove_fraction * N)`` of them.

    ``order="lowest"`` removes the lowest scores first (forgetting counts: the least forgotten;
    EL2N: the easiest), ``"highest"`` the highest first, ``"random"`` a uniform draw (scores only
    give N). Ties are broken at random under ``seed``: most examples often share count 0, and
    a fixed tie order (e.g. by index) would remove a biased block. Returns sorted int64 (N - k,).

    >>> select_subset([3, 0, 0, 1, 0], 0.4, seed=0).tolist()    # two of the three zeros go
    [0, 1, 3]
    """
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise UserError(f"select_subset: scores must be a non-empty 1-D array, got shape {values.shape}")
    if not np.isfinite(values).all() and order != "random":
        raise UserError("select_subset: scores contain NaN or inf; clean them before pruning")
    if not 0.0 <= float(remove_fraction) < 1.0:
        raise UserError(f"select_subset: remove_fraction must be in [0, 1), got {remove_fraction!r}")
    if order not in ORDERS:
        raise UserError(f"select_subset: order must be one of {', '.join(ORDERS)}, got {order!r}")
    n = len(values)
    n_remove = int(round(float(remove_fraction) * n))
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(n)  # a random order among equal scores
    if order == "random":
        ranked = shuffled
    else:
        key = values[shuffled] if order == "lowest" else -values[shuffled]
        ranked = shuffled[np.argsort(key, kind="stable")]  # removal order, ties in random order
    return np.sort(ranked[n_remove:]).astype(np.int64)
