"""mlmyths.forgetting: the tracker against hand-made sequences and a plain reference loop,
merging, save/load, EL2N, subset selection; the CIFAR ResNet-18."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mlmyths.errors import DataError, UserError
from mlmyths.forgetting import ForgettingTracker, IndexedDataset, el2n, el2n_scores, select_subset
from mlmyths.models.resnet18 import ResNet18
from mlmyths.train import TrainConfig, fit

# -- helpers ---------------------------------------------------------------------------------------


def logits_for(predicted: list[int] | np.ndarray, classes: int = 3) -> torch.Tensor:
    """Logits whose argmax is ``predicted``."""
    return F.one_hot(torch.as_tensor(predicted), classes).float() * 2.0 - 1.0


def present(tracker: ForgettingTracker, correctness: list[list[int]], targets: list[int]) -> None:
    """One update per step; ``correctness[step][i]`` says whether example i is right at that step."""
    y = torch.tensor(targets)
    for row in correctness:
        predicted = [t if ok else (t + 1) % 3 for t, ok in zip(targets, row)]
        tracker.update(torch.arange(len(targets)), logits_for(predicted), y)


def reference(accuracy_lists: list[list[int]]) -> dict[str, list[int | bool]]:
    """The paper's statistics from per-example accuracy sequences, one example at a time
    (what mtoneva/example_forgetting's compute_forgetting_statistics and
    sort_examples_by_forgetting do, written as a plain loop)."""
    out: dict[str, list] = {"presentations": [], "events": [], "counts": [], "first": [], "unforgettable": []}
    for acc in accuracy_lists:
        events = sum(1 for a, b in zip(acc, acc[1:]) if a == 1 and b == 0)
        first = next((i for i, a in enumerate(acc) if a == 1), -1)
        out["presentations"].append(len(acc))
        out["events"].append(events)
        out["counts"].append(events if first >= 0 else len(acc))
        out["first"].append(first)
        out["unforgettable"].append(first >= 0 and events == 0)
    return out


# -- hand-made sequences -------------------------------------------------------------------------------


def test_hand_made_sequences() -> None:
    # columns: learned->forgotten->relearned, never learned, learned at the last presentation,
    # always right, right-wrong-wrong-right-wrong (two events)
    steps = [
        [1, 0, 0, 1, 1],
        [0, 0, 0, 1, 0],
        [1, 0, 0, 1, 0],
        [1, 0, 0, 1, 1],
        [1, 0, 1, 1, 0],
    ]
    t = ForgettingTracker(5)
    present(t, steps, targets=[0, 1, 2, 0, 1])
    assert t.presentations().tolist() == [5, 5, 5, 5, 5]
    assert t.forgetting_events().tolist() == [1, 0, 0, 0, 2]
    assert t.forgetting_counts().tolist() == [1, 5, 0, 0, 2]  # never learned: counts its 5 presentations
    assert t.first_learned().tolist() == [0, -1, 4, 0, 0]
    assert t.learned().tolist() == [True, False, True, True, True]
    assert t.unforgettable().tolist() == [False, False, True, True, False]


def test_examples_never_presented_are_neither_learned_nor_unforgettable() -> None:
    t = ForgettingTracker(4)
    t.update(torch.tensor([0, 2]), logits_for([1, 1]), torch.tensor([1, 1]))
    assert t.presentations().tolist() == [1, 0, 1, 0]
    assert t.forgetting_counts().tolist() == [0, 0, 0, 0]
    assert t.unforgettable().tolist() == [True, False, True, False]
    assert t.first_learned().tolist() == [0, -1, 0, -1]


def test_varying_batches_follow_each_example_separately() -> None:
    # example 3 is right then wrong in two different batches: one event; example 1 only once.
    t = ForgettingTracker(4)
    t.update(torch.tensor([3, 1]), logits_for([2, 0]), torch.tensor([2, 0]))
    t.update(torch.tensor([0, 3]), logits_for([1, 0]), torch.tensor([1, 2]))
    t.update(torch.tensor([3]), logits_for([2]), torch.tensor([2]))
    assert t.presentations().tolist() == [1, 1, 0, 3]
    assert t.forgetting_events().tolist() == [0, 0, 0, 1]
    assert t.first_learned().tolist() == [0, 0, -1, 0]


# -- the vectorized tracker equals a plain reference loop ------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_tracker_equals_reference_loop_on_random_sequences(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, classes, epochs = 37, 4, int(rng.integers(1, 9))
    targets = torch.from_numpy(rng.integers(0, classes, n))
    skill = rng.uniform(0, 1, n)  # per-example probability of being right: a mix of easy and hard
    accuracy_lists: list[list[int]] = [[] for _ in range(n)]
    t = ForgettingTracker(n, history=epochs + 2)
    margins_ref = np.full((n, epochs + 2), np.nan)
    for _ in range(epochs):
        order = rng.permutation(n)
        order = order[: int(rng.integers(n // 2, n + 1))]  # some epochs stop early (max_steps)
        for batch in np.array_split(order, int(rng.integers(1, 6))):
            if not len(batch):
                continue
            logits = torch.from_numpy(rng.normal(size=(len(batch), classes))).float()
            right = rng.uniform(size=len(batch)) < skill[batch]
            boost = torch.from_numpy(np.where(right, 10.0, -10.0)).float()
            logits[torch.arange(len(batch)), targets[batch]] += boost
            idx = torch.from_numpy(batch)
            t.update(idx, logits, targets[idx])
            for j, i in enumerate(batch):
                accuracy_lists[i].append(int(logits[j].argmax() == targets[i]))
                others = np.delete(logits[j].numpy(), int(targets[i]))
                margins_ref[i, len(accuracy_lists[i]) - 1] = float(logits[j, targets[i]]) - others.max()
    ref = reference(accuracy_lists)
    assert t.presentations().tolist() == ref["presentations"]
    assert t.forgetting_events().tolist() == ref["events"]
    assert t.forgetting_counts().tolist() == ref["counts"]
    assert t.first_learned().tolist() == ref["first"]
    assert t.unforgettable().tolist() == ref["unforgettable"]
    np.testing.assert_allclose(t.margins(), margins_ref, rtol=1e-5, atol=1e-5)


def test_history_records_margin_and_loss_and_ignores_presentations_past_capacity() -> None:
    t = ForgettingTracker(2, history=2)
    y = torch.tensor([0, 1])
    first = torch.tensor([[3.0, 1.0, 0.0], [2.0, 0.5, 0.0]])
    t.update(torch.arange(2), first, y)
    for _ in range(3):  # presentations 2..4 do not fit: nothing changes in the history
        t.update(torch.arange(2), torch.zeros(2, 3), y)
    np.testing.assert_allclose(t.margins()[:, 0], [2.0, -1.5])
    np.testing.assert_allclose(t.margins()[:, 1], [0.0, 0.0])
    np.testing.assert_allclose(t.losses()[:, 0], F.cross_entropy(first, y, reduction="none").numpy(), rtol=1e-6)
    np.testing.assert_allclose(t.losses()[:, 1], [np.log(3)] * 2, rtol=1e-6)
    assert t.presentations().tolist() == [4, 4]
    with pytest.raises(UserError, match="history"):
        ForgettingTracker(2).margins()


# -- with the training loop --------------------------------------------------------------------------------


def _toy_problem(n: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, 0] + 0.8 * torch.randn(n, generator=g) > 0).long()  # noisy labels: some examples get forgotten
    return x, y


def test_fit_callback_counts_every_presentation_and_matches_train_accuracy() -> None:
    x, y = _toy_problem()
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 2)
    t = ForgettingTracker(len(x), history=5)
    result = fit(model, x, y, TrainConfig(epochs=5, batch_size=16, lr=0.5, momentum=0.0), callbacks=[t.update])
    assert (t.presentations() == 5).all()
    # The fraction right at each epoch's presentations is fit's own running train accuracy.
    right = t.margins() > 0  # (N, epochs)
    np.testing.assert_allclose(right.mean(0), [row["train_accuracy"] for row in result.history], atol=1e-9)
    assert t.forgetting_events().sum() > 0


def test_fit_checkpoint_resumes_the_tracker(tmp_path) -> None:
    x, y = _toy_problem()
    cfg = TrainConfig(epochs=6, batch_size=16, lr=0.5, momentum=0.0)

    def train(epochs: int, tracker: ForgettingTracker, checkpoint=None) -> None:
        torch.manual_seed(0)
        model = torch.nn.Linear(6, 2)
        fit(model, x, y, TrainConfig(**{**cfg.__dict__, "epochs": epochs}), callbacks=[tracker],
            checkpoint=checkpoint, seed=3)

    whole = ForgettingTracker(len(x))
    train(6, whole)
    ckpt = tmp_path / "ckpt.pt"
    train(3, ForgettingTracker(len(x)), checkpoint=ckpt)  # "interrupted" after 3 epochs
    resumed = ForgettingTracker(len(x))
    train(6, resumed, checkpoint=ckpt)
    assert (resumed.presentations() == 6).all()
    np.testing.assert_array_equal(resumed.forgetting_counts(), whole.forgetting_counts())
    np.testing.assert_array_equal(resumed.first_learned(), whole.first_learned())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_tracker_on_cuda_equals_cpu() -> None:
    rng = np.random.default_rng(0)
    n, classes = 300, 5
    targets = torch.from_numpy(rng.integers(0, classes, n))
    cpu, gpu = ForgettingTracker(n, history=4), ForgettingTracker(n, device="cuda", history=4)
    for _ in range(4):
        for batch in np.array_split(rng.permutation(n), 7):
            idx = torch.from_numpy(batch)
            logits = torch.from_numpy(rng.normal(size=(len(batch), classes))).float()
            cpu.update(idx, logits, targets[idx])
            gpu.update(idx.cuda(), logits.cuda(), targets[idx].cuda())
    for query in ("presentations", "forgetting_counts", "unforgettable", "first_learned"):
        np.testing.assert_array_equal(getattr(gpu, query)(), getattr(cpu, query)())
    np.testing.assert_allclose(gpu.margins(), cpu.margins(), rtol=1e-5, atol=1e-5)
    merged = ForgettingTracker.merge([gpu, gpu])
    np.testing.assert_array_equal(merged.forgetting_counts(), 2 * gpu.forgetting_counts())


# -- merging and saving ---------------------------------------------------------------------------------------


def _random_tracker(seed: int, n: int = 20, steps: int = 5, history: int = 0) -> ForgettingTracker:
    rng = np.random.default_rng(seed)
    t = ForgettingTracker(n, history=history)
    y = rng.integers(0, 3, n)
    for _ in range(steps):
        right = rng.uniform(size=n) < 0.6
        present(t, [right.astype(int).tolist()], y.tolist())
    return t


def test_merge_sums_counts_and_requires_unforgettable_in_every_run() -> None:
    runs = [_random_tracker(s) for s in range(3)]
    merged = ForgettingTracker.merge(runs)
    assert merged.runs == 3
    np.testing.assert_array_equal(merged.forgetting_counts(), sum(r.forgetting_counts() for r in runs))
    np.testing.assert_array_equal(merged.presentations(), sum(r.presentations() for r in runs))
    np.testing.assert_array_equal(merged.unforgettable(), np.logical_and.reduce([r.unforgettable() for r in runs]))
    np.testing.assert_array_equal(merged.forgetting_counts(per_run=True), [r.forgetting_counts() for r in runs])
    np.testing.assert_array_equal(merged.first_learned(), [r.first_learned() for r in runs])
    # merging is associative: ((a, b), c) == (a, b, c)
    again = ForgettingTracker.merge([ForgettingTracker.merge(runs[:2]), runs[2]])
    np.testing.assert_array_equal(again.forgetting_counts(per_run=True), merged.forgetting_counts(per_run=True))
    # the paper: summed count 0 <=> unforgettable in every run, for examples learned every time
    learned = merged.learned()
    np.testing.assert_array_equal(merged.unforgettable()[learned], merged.forgetting_counts()[learned] == 0)
    with pytest.raises(UserError, match="read-only"):
        merged.update(torch.tensor([0]), torch.zeros(1, 3), torch.tensor([0]))
    with pytest.raises(UserError, match="different training sets"):
        ForgettingTracker.merge([runs[0], ForgettingTracker(7)])


def test_save_load_round_trip(tmp_path) -> None:
    single = _random_tracker(0, history=4)
    merged = ForgettingTracker.merge([single, _random_tracker(1, history=4)])
    for tracker in (single, merged):
        path = tracker.save(tmp_path / f"stats{tracker.runs}.npz")
        back = ForgettingTracker.load(path)
        assert (back.n_examples, back.runs, back.history) == (tracker.n_examples, tracker.runs, tracker.history)
        np.testing.assert_array_equal(back.forgetting_counts(per_run=True), tracker.forgetting_counts(per_run=True))
        np.testing.assert_array_equal(back.first_learned(), tracker.first_learned())
        np.testing.assert_array_equal(back.unforgettable(), tracker.unforgettable())
        np.testing.assert_array_equal(back.margins(), tracker.margins())
        np.testing.assert_array_equal(back.losses(), tracker.losses())
    # a loaded single-run tracker keeps counting where it stopped
    back = ForgettingTracker.load(tmp_path / "stats1.npz")
    present(back, [[0] * 20], [0] * 20)
    assert (back.presentations() == single.presentations() + 1).all()
    np.save(tmp_path / "other.npy", np.zeros(3))
    with pytest.raises(DataError, match="cannot read"):
        ForgettingTracker.load(tmp_path / "other.npy")
    np.savez(tmp_path / "foreign.npz", meta=np.frombuffer(b'{"format": "x"}', dtype=np.uint8))
    with pytest.raises(DataError, match="not a forgetting-statistics file"):
        ForgettingTracker.load(tmp_path / "foreign.npz")


# -- input checks -------------------------------------------------------------------------------------------


def test_bad_inputs_raise_user_errors_naming_the_problem() -> None:
    t = ForgettingTracker(4, validate=True)
    y = torch.tensor([0, 1])
    with pytest.raises(UserError, match=r"indices must lie in \[0, 4\), got values from 0 to 4"):
        t.update(torch.tensor([0, 4]), torch.zeros(2, 3), y)
    with pytest.raises(UserError, match=r"indices must lie in \[0, 4\), got values from -1 to 1"):
        ForgettingTracker(4).update(torch.tensor([-1, 1]), torch.zeros(2, 3), y)  # checked even without validate
    with pytest.raises(UserError, match="distinct"):
        t.update(torch.tensor([1, 1]), torch.zeros(2, 3), y)
    with pytest.raises(UserError, match="same length"):
        t.update(torch.tensor([0, 1, 2]), torch.zeros(2, 3), y)
    with pytest.raises(UserError, match=r"logits \(B, C\)"):
        t.update(torch.tensor([0, 1]), torch.zeros(2), y)
    with pytest.raises(UserError, match=r"targets must lie in \[0, 3\)"):
        t.update(torch.tensor([0, 1]), torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(UserError, match="integer"):
        t.update(torch.tensor([0.0, 1.0]), torch.zeros(2, 3), y)
    with pytest.raises(UserError, match="n_examples must be a positive int, got 0"):
        ForgettingTracker(0)
    assert t.presentations().sum() == 0  # nothing was half-applied


# -- EL2N ---------------------------------------------------------------------------------------------------


def test_el2n_equals_direct_computation() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 7)) * 3
    y = rng.integers(0, 7, 50)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    direct = np.sqrt(((p - np.eye(7)[y]) ** 2).sum(1))
    np.testing.assert_allclose(el2n(torch.tensor(logits), torch.tensor(y)).numpy(), direct, rtol=1e-5)
    # closed forms: a confident right answer scores 0, a confident wrong one sqrt(2)
    extreme = el2n(torch.tensor([[50.0, 0.0], [0.0, 50.0]]), torch.tensor([0, 0]))
    np.testing.assert_allclose(extreme.numpy(), [0.0, np.sqrt(2)], atol=1e-6)


def test_el2n_scores_use_eval_mode_and_the_transform() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 3))
    x = torch.randint(0, 255, (40, 5), dtype=torch.uint8)
    y = torch.randint(0, 3, (40,))
    scores = el2n_scores(model, x, y, batch_size=16, transform=lambda b: b.float() / 255)
    model.eval()
    with torch.no_grad():
        direct = el2n(model(x.float() / 255), y).numpy()
    np.testing.assert_allclose(scores, direct, rtol=1e-6)  # dropout off: eval mode
    model.train()
    el2n_scores(model, x, y, transform=lambda b: b.float())
    assert model.training  # the caller's mode is restored


# -- subset selection -----------------------------------------------------------------------------------------


def test_select_subset_removes_lowest_first_with_random_ties_under_a_seed() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, 1000)  # heavy ties
    kept = select_subset(scores, 0.3, order="lowest", seed=1)
    assert len(kept) == 700 and np.all(np.diff(kept) > 0)
    removed = np.setdiff1d(np.arange(1000), kept)
    assert scores[removed].max() <= scores[kept].min()  # nothing removed above anything kept
    np.testing.assert_array_equal(kept, select_subset(scores, 0.3, order="lowest", seed=1))  # same seed, same subset
    other = select_subset(scores, 0.3, order="lowest", seed=2)
    assert not np.array_equal(kept, other)  # ties broken differently
    np.testing.assert_array_equal(np.sort(scores[kept]), np.sort(scores[other]))  # the same score profile
    # the tied block is cut at random, not by index: removed zeros spread over the whole range
    boundary = scores[removed].max()
    cut = removed[scores[removed] == boundary]
    assert cut.min() < 200 and cut.max() > 800


def test_select_subset_highest_random_and_edge_cases() -> None:
    scores = np.arange(10.0)
    np.testing.assert_array_equal(select_subset(scores, 0.3, order="highest"), np.arange(7))
    np.testing.assert_array_equal(select_subset(scores, 0.3, order="lowest"), np.arange(3, 10))
    np.testing.assert_array_equal(select_subset(scores, 0.0), np.arange(10))
    draws = np.stack([np.isin(np.arange(200), select_subset(np.zeros(200), 0.5, order="random", seed=s))
                      for s in range(200)])
    assert abs(draws.mean() - 0.5) < 1e-12  # exactly half kept each time
    assert np.abs(draws.mean(0) - 0.5).max() < 0.15  # every example kept about half the time
    with pytest.raises(UserError, match=r"remove_fraction must be in \[0, 1\), got 1.0"):
        select_subset(scores, 1.0)
    with pytest.raises(UserError, match="order must be one of lowest, highest, random, got 'least'"):
        select_subset(scores, 0.1, order="least")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="NaN"):
        select_subset([0.0, np.nan], 0.5)
    with pytest.raises(UserError, match="1-D"):
        select_subset(np.zeros((2, 2)), 0.5)


def test_indexed_dataset_appends_each_items_index() -> None:
    data = IndexedDataset(torch.utils.data.TensorDataset(torch.arange(5.0), torch.arange(5) % 2))
    assert len(data) == 5
    x, y, i = data[3]
    assert (float(x), int(y), i) == (3.0, 1, 3)
    assert IndexedDataset([{"x": 1}, {"x": 2}])[1] == {"x": 2, "indices": 1}
    assert IndexedDataset(["a", "b"])[0] == ("a", 0)
    batch = next(iter(torch.utils.data.DataLoader(data, batch_size=5, shuffle=True,
                                                  generator=torch.Generator().manual_seed(0))))
    torch.testing.assert_close(batch[0], batch[2].float())  # the index travels with its example


# -- the ResNet-18 -------------------------------------------------------------------------------------------


def test_resnet18_has_the_cifar_resnet18_parameter_count_and_shapes() -> None:
    model = ResNet18(num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == 11_173_962
    small = ResNet18(num_classes=10, in_channels=1, width=8)
    small.eval()
    with torch.inference_mode():
        assert small(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
        assert small(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    # a residual network: the shortcut carries the input when the block's convs are zero
    block = small.stages[0][0]
    for conv in (block.conv1, block.conv2):
        torch.nn.init.zeros_(conv.weight)
    block.eval()
    x = torch.rand(2, 8, 6, 6)
    torch.testing.assert_close(block(x), x.relu())
    with pytest.raises(UserError, match="width=0"):
        ResNet18(width=0)
