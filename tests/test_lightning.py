"""mlmyths.integrations.lightning.ForgettingCallback under a real lightning Trainer (CPU).

Each test's LightningModule records what its training_step saw (indices, training-pass logits,
targets); replaying those into a plain ForgettingTracker, and into the one-example-at-a-time
reference of test_forgetting, must give the callback's statistics exactly.
"""
from __future__ import annotations

import doctest
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from mlmyths.errors import UserError
from mlmyths.forgetting import ForgettingTracker, IndexedDataset
from test_forgetting import reference

L = pytest.importorskip("lightning.pytorch", reason="lightning is not installed (pip install mlmyths[lightning])")
from mlmyths.integrations import lightning as integration  # noqa: E402  (needs lightning)
from mlmyths.integrations.lightning import ForgettingCallback  # noqa: E402

N, FEATURES, CLASSES = 300, 8, 4

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Four overlapping Gaussian blobs, 12% of the labels replaced at random: some examples are
    learned at once, some forgotten and relearned, some (mislabelled) never learned."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, CLASSES, (N,), generator=g)
    centers = torch.randn(CLASSES, FEATURES, generator=g) * 1.5
    x = centers[y] + torch.randn(N, FEATURES, generator=g)
    noisy = torch.rand(N, generator=g) < 0.12
    y = torch.where(noisy, torch.randint(0, CLASSES, (N,), generator=g), y)
    return x, y


class Recorder(L.LightningModule):
    """A tiny classifier following the callback's convention; ``layout`` says how batches look."""

    def __init__(self, layout: str = "tuple", lr: float = 0.2):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(FEATURES, 16), nn.ReLU(), nn.Linear(16, CLASSES))
        self.layout, self.lr = layout, lr
        self.seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # test instrumentation

    def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        if self.layout == "dict":
            x, y, idx = batch["x"], batch["targets"], batch["indices"]
        elif self.layout == "own-keys":  # (index, x, label): the step returns indices and targets itself
            idx, x, y = batch
        else:
            x, y, idx = batch
        logits = self.net(x)
        self.seen.append((idx.clone(), logits.detach().clone(), y.clone()))
        out = {"loss": F.cross_entropy(logits, y), "logits": logits.detach()}
        if self.layout == "own-keys":
            out.update(indices=idx, targets=y)
        return out

    def configure_optimizers(self):  # type: ignore[no-untyped-def]
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def _trainer(tmp_path: Path, epochs: int, callback: ForgettingCallback, **kwargs) -> L.Trainer:
    return L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, callbacks=[callback], logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     default_root_dir=tmp_path, **kwargs)


def _loader(dataset: Dataset, *, seed: int = 0, batch_size: int = 32, drop_last: bool = False) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=drop_last,
                      generator=torch.Generator().manual_seed(seed))


def _fit(tmp_path: Path, epochs: int = 6, *, layout: str = "tuple", drop_last: bool = False,
         callback: ForgettingCallback | None = None) -> tuple[ForgettingCallback, Recorder]:
    x, y = _data()
    if layout == "dict":
        dataset: Dataset = IndexedDataset([{"x": x[i], "targets": y[i]} for i in range(N)])
    elif layout == "own-keys":
        dataset = TensorDataset(torch.arange(N), x, y)
    else:
        dataset = IndexedDataset(TensorDataset(x, y))
    torch.manual_seed(0)
    model = Recorder(layout)
    callback = callback or ForgettingCallback()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the dataloader does not have many workers" and the like
        _trainer(tmp_path, epochs, callback).fit(model, _loader(dataset, drop_last=drop_last))
    return callback, model


def _replay(seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> ForgettingTracker:
    tracker = ForgettingTracker(N)
    for idx, logits, y in seen:
        tracker.update(idx, logits, y)
    return tracker


def _assert_same(callback: ForgettingCallback, seen: list) -> dict[str, np.ndarray]:
    got, want = callback.tracker, _replay(seen)
    assert got is not None and got.n_examples == N
    for query in ("presentations", "forgetting_events", "forgetting_counts", "learned", "unforgettable",
                  "first_learned"):
        np.testing.assert_array_equal(getattr(got, query)(), getattr(want, query)(), err_msg=query)
    # ... and the plain per-example reference (example_forgetting's rules as a Python loop).
    accuracy: list[list[int]] = [[] for _ in range(N)]
    for idx, logits, y in seen:
        for i, ok in zip(idx.tolist(), (logits.argmax(-1) == y).tolist()):
            accuracy[i].append(int(ok))
    ref = reference(accuracy)
    np.testing.assert_array_equal(got.forgetting_counts(), ref["counts"])
    np.testing.assert_array_equal(got.first_learned(), ref["first"])
    np.testing.assert_array_equal(got.unforgettable(), ref["unforgettable"])
    return {"counts": got.forgetting_counts(), "learned": got.learned(), "events": got.forgetting_events(),
            "presentations": got.presentations()}


# -- counts equal the tracker's ---------------------------------------------------------------------------


def test_counts_equal_a_tracker_fed_the_same_batches(tmp_path: Path) -> None:
    epochs = 6
    callback, model = _fit(tmp_path, epochs)
    stats = _assert_same(callback, model.seen)
    assert len(model.seen) == epochs * -(-N // 32)
    np.testing.assert_array_equal(stats["presentations"], epochs)  # a shuffled full pass per epoch
    # The run exercises every case: shuffled batches, never learned, forgotten, unforgettable.
    per_epoch = len(model.seen) // epochs
    orders = [torch.cat([s[0] for s in model.seen[e * per_epoch:(e + 1) * per_epoch]]) for e in range(epochs)]
    assert not torch.equal(orders[0], orders[1]) and sorted(orders[0].tolist()) == list(range(N))
    never = ~stats["learned"]
    assert never.sum() >= 5 and np.all(stats["counts"][never] == epochs)
    assert ((stats["events"] > 0) & stats["learned"]).sum() >= 5
    assert callback.tracker is not None and callback.tracker.unforgettable().sum() >= 100


def test_never_learned_examples_count_their_presentations_not_the_epochs(tmp_path: Path) -> None:
    """The one difference from example_forgetting: with drop_last=True (44 of 300 examples left out
    of each epoch at random) a never-learned example counts the presentations it had."""
    epochs = 6
    callback, model = _fit(tmp_path, epochs, drop_last=True)
    stats = _assert_same(callback, model.seen)
    never = ~stats["learned"]
    assert never.sum() >= 5
    np.testing.assert_array_equal(stats["counts"][never], stats["presentations"][never])
    assert np.any(stats["presentations"][never] < epochs)  # example_forgetting would give them `epochs`
    assert stats["presentations"].sum() == epochs * (N // 32) * 32


@pytest.mark.parametrize("layout", ["dict", "own-keys"])
def test_dict_batches_and_indices_returned_by_the_step(tmp_path: Path, layout: str) -> None:
    callback, model = _fit(tmp_path, 3, layout=layout)
    stats = _assert_same(callback, model.seen)
    np.testing.assert_array_equal(stats["presentations"], 3)


def test_resuming_from_a_checkpoint_continues_the_counts(tmp_path: Path) -> None:
    """A checkpoint written after 3 epochs carries the tracker; a fresh callback resumes it to 6."""
    x, y = _data()
    loader = _loader(IndexedDataset(TensorDataset(x, y)), seed=1)
    path = tmp_path / "three.ckpt"
    torch.manual_seed(0)
    model = Recorder()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = _trainer(tmp_path, 3, ForgettingCallback(n_examples=N))
        first.fit(model, loader)
        first.save_checkpoint(path)
        fresh = ForgettingCallback()
        _trainer(tmp_path, 6, fresh).fit(model, loader, ckpt_path=path)
    assert len(model.seen) == 6 * -(-N // 32)
    stats = _assert_same(fresh, model.seen)
    np.testing.assert_array_equal(stats["presentations"], 6)


def test_n_examples_given_or_read_from_the_dataset(tmp_path: Path) -> None:
    callback, model = _fit(tmp_path, 2, callback=ForgettingCallback(N, history=2))
    _assert_same(callback, model.seen)
    assert callback.tracker is not None and callback.tracker.margins().shape == (N, 2)
    assert not np.isnan(callback.tracker.margins()).any()
    with pytest.raises(UserError, match=r"indices must lie in \[0, 100\)"):
        _fit(tmp_path, 1, callback=ForgettingCallback(100))


class LossOnly(Recorder):
    def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        return super().training_step(batch, batch_idx)["loss"]


class TwoItemBatches(Recorder):
    def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        x, y = batch
        logits = self.net(x)
        return {"loss": F.cross_entropy(logits, y), "logits": logits}


class SkipsEveryOtherStep(Recorder):
    def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        out = super().training_step(batch, batch_idx)
        if batch_idx % 2:
            self.seen.pop()
            return None
        return out


def test_convention_errors_say_what_to_return(tmp_path: Path) -> None:
    x, y = _data()
    indexed = _loader(IndexedDataset(TensorDataset(x, y)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(UserError, match=r"training_step returned a dict with keys \['loss'\], without the logits"):
            _trainer(tmp_path, 1, ForgettingCallback()).fit(LossOnly(), indexed)
        with pytest.raises(UserError, match=r"cannot find the example indices and targets; the batch is a list of "
                                            r"length 2"):
            _trainer(tmp_path, 1, ForgettingCallback()).fit(TwoItemBatches(), _loader(TensorDataset(x, y)))
        skipping, callback = SkipsEveryOtherStep(), ForgettingCallback()
        _trainer(tmp_path, 2, callback).fit(skipping, indexed)  # skipped steps are not presentations
    assert len(skipping.seen) == 2 * 5
    _assert_same(callback, skipping.seen)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_the_tracker_lives_on_the_device_and_counts_the_same(tmp_path: Path) -> None:
    x, y = _data()
    torch.manual_seed(0)
    model, callback = Recorder(), ForgettingCallback()
    trainer = L.Trainer(max_epochs=3, accelerator="gpu", devices=1, callbacks=[callback], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, _loader(IndexedDataset(TensorDataset(x, y))))
    assert callback.tracker is not None and callback.tracker.device.type == "cuda"
    assert model.seen[0][1].device.type == "cuda"
    _assert_same(callback, model.seen)


def test_docstring_example_runs() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        failures, attempted = doctest.testmod(integration)
    assert attempted > 0 and failures == 0
