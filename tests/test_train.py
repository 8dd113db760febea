import math

import pytest
import torch
from torch import nn

from mlmyths import augment
from mlmyths.errors import ConfigError
from mlmyths.train import TrainConfig, cross_entropy, evaluate, fit, lr_factor


def blobs(n=400, d=5, seed=0):
    """Three Gaussian blobs (fixed centres); ``seed`` draws a new sample."""
    centers = torch.randn(3, d, generator=torch.Generator().manual_seed(123)) * 3
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    return centers[y] + torch.randn(n, d, generator=g), y


def make_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 3))


def test_fit_learns_separable_blobs_and_reports_history():
    x, y = blobs()
    model = make_model()
    result = fit(model, x, y, TrainConfig(epochs=5, batch_size=32, lr=0.05), eval_sets={"test": blobs(seed=1)})
    assert not result.diverged and result.steps == 5 * math.ceil(400 / 32)
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4, 5]
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.final("test_accuracy") > 0.9
    assert evaluate(model, *blobs(seed=1))["accuracy"] == pytest.approx(result.final("test_accuracy"))


def test_same_seed_is_bit_for_bit_and_another_seed_is_not():
    x, y = blobs()
    cfg = TrainConfig(epochs=2, batch_size=50, lr=0.1)
    params = []
    for seed in (7, 7, 8):
        model = make_model()
        fit(model, x, y, cfg, seed=seed)
        params.append(torch.cat([p.flatten() for p in model.parameters()]))
    assert torch.equal(params[0], params[1])
    assert not torch.equal(params[0], params[2])


def test_callbacks_see_every_example_once_per_epoch_with_training_logits():
    x, y = blobs(n=130)
    seen = torch.zeros(130, dtype=torch.long)
    shapes = []

    def callback(indices, logits, targets):
        seen.index_add_(0, indices, torch.ones_like(indices))
        assert torch.equal(targets, y[indices]) and not logits.requires_grad
        shapes.append(tuple(logits.shape))

    fit(make_model(), x, y, TrainConfig(epochs=3, batch_size=40), callbacks=[callback])
    assert seen.tolist() == [3] * 130
    assert shapes[:4] == [(40, 3), (40, 3), (40, 3), (10, 3)]  # the last batch is kept, not dropped


def test_divergence_is_detected_and_recorded_not_raised():
    x, y = blobs()
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(5 if i == 0 else 16, 16) for i in range(6)], nn.Linear(16, 3))  # deep, linear
    result = fit(model, x, y, TrainConfig(epochs=3, batch_size=40, lr=1e8, momentum=0.0))
    # step 1's loss is finite; its update makes the product of 7 weight matrices overflow float32
    assert result.diverged and result.diverged_at == 2
    assert result.steps == 2 and math.isnan(result.history[-1]["train_loss"])
    assert result.history[-1]["diverged_at"] == 2


def test_checkpoint_resume_equals_an_uninterrupted_run(tmp_path):
    x, y = blobs()

    class Counter:
        def __init__(self):
            self.n = torch.zeros(())

        def update(self, indices, logits, targets):
            self.n += len(indices)

        def state_dict(self):
            return {"n": self.n}

        def load_state_dict(self, state):
            self.n = state["n"].clone()

    straight_model, straight_counter = make_model(), Counter()
    straight = fit(straight_model, x, y, TrainConfig(epochs=4, batch_size=64, schedule="cosine"), seed=3,
                   callbacks=[straight_counter.update])
    ckpt = tmp_path / "fit.pt"
    first = make_model()
    fit(first, x, y, TrainConfig(epochs=2, batch_size=64, schedule="cosine"), seed=3, checkpoint=ckpt)
    # "interrupted" after epoch 2 of 2; now continue to epoch 4 from the checkpoint (schedule over 4 epochs)
    resumed_model, resumed_counter = make_model(99), Counter()
    state = torch.load(ckpt, weights_only=True)
    state["callbacks"] = [{"n": torch.tensor(2.0 * 400)}]
    torch.save(state, ckpt)
    resumed = fit(resumed_model, x, y, TrainConfig(epochs=4, batch_size=64, schedule="cosine"), seed=3,
                  checkpoint=ckpt, callbacks=[resumed_counter.update])
    assert resumed.steps == straight.steps and len(resumed.history) == 4
    assert float(resumed_counter.n) == float(straight_counter.n) == 1600
    # the lr schedule differs in epochs 1-2 (it was computed for 2 epochs there), so compare a constant run
    a, b = make_model(), make_model(5)
    full = fit(a, x, y, TrainConfig(epochs=3, batch_size=64), seed=1)
    ckpt2 = tmp_path / "const.pt"
    fit(make_model(), x, y, TrainConfig(epochs=1, batch_size=64), seed=1, checkpoint=ckpt2)
    fit(b, x, y, TrainConfig(epochs=3, batch_size=64), seed=1, checkpoint=ckpt2)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    assert full.history[-1]["train_loss"] == pytest.approx(
        fit(make_model(), x, y, TrainConfig(epochs=3, batch_size=64), seed=1).history[-1]["train_loss"])


def test_lr_schedules():
    cfg = TrainConfig(epochs=10, schedule="step", milestones=(5, 8), gamma=0.1)
    assert [lr_factor(s * 10, 10, cfg) for s in (0, 4, 5, 8, 9)] == pytest.approx([1, 1, 0.1, 0.01, 0.01])
    warm = TrainConfig(epochs=10, schedule="cosine", warmup_epochs=1)
    assert lr_factor(0, 10, warm) == pytest.approx(0.1) and lr_factor(9, 10, warm) == pytest.approx(1.0)
    assert lr_factor(55, 10, warm) == pytest.approx(0.5, abs=0.01)
    assert lr_factor(99, 10, TrainConfig(epochs=10, schedule="linear")) == pytest.approx(0.01)


def test_max_steps_param_groups_and_sequence_targets():
    vocab, t = 7, 6
    x = torch.randint(0, vocab, (50, t))
    y = torch.roll(x, -1, dims=1)
    model = nn.Sequential(nn.Embedding(vocab, 8), nn.Linear(8, vocab))
    groups = [{"params": model[0].parameters(), "lr": 0.01}, {"params": model[1].parameters()}]
    result = fit(model, x, y, TrainConfig(epochs=5, batch_size=10, lr=0.1, max_steps=7), param_groups=groups,
                 eval_sets={"val": (x, y)})
    assert result.steps == 7 and len(result.history) == 2 and "val_loss" in result.history[-1]
    assert cross_entropy(torch.zeros(2, 3, vocab), torch.zeros(2, 3, dtype=torch.long)) == pytest.approx(math.log(vocab))


def test_bad_train_config_is_a_config_error():
    with pytest.raises(ConfigError, match="batch_size=0"):
        TrainConfig(batch_size=0)


def test_augmentations_keep_shape_and_repeat_under_a_seed():
    x = torch.rand(6, 3, 8, 8)
    a = augment.crop_flip(x, torch.Generator().manual_seed(1), padding=2)
    b = augment.crop_flip(x, torch.Generator().manual_seed(1), padding=2)
    assert a.shape == x.shape and torch.equal(a, b)
    flipped = augment.random_flip(x, torch.Generator().manual_seed(0), p=1.0)
    assert torch.equal(flipped, x.flip(-1))
    same = augment.random_crop(x, torch.Generator().manual_seed(0), padding=0)
    assert torch.equal(same, x)
    holes = augment.cutout(torch.ones(4, 1, 9, 9), torch.Generator().manual_seed(0), size=2)
    assert ((holes == 0).flatten(1).sum(1) > 0).all() and ((holes == 0).flatten(1).sum(1) <= 9).all()
