"""The training loop without Ray: it learns, stops, diverges, resumes and reports honestly."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainables.config import ConfigError, TrainConfig, parse
from trainables.loop import fit, lr_factor
from trainables.models import get_model
from trainables.seeding import seed_everything


def _train(splits, cpu, seed=0, resume=None, **overrides):
    cfg = TrainConfig(**{"epochs": 2, "batch_size": 64, **overrides})
    generator = seed_everything(seed)
    model = get_model("mnist_cnn", attention="se")
    rows = []
    result = fit(model, splits.to_device(cpu), cfg, report=lambda m, s: rows.append((m, s)),
                 generator=generator, resume=resume)
    return result, rows


def test_learns_real_digits(small_mnist, cpu):
    result, rows = _train(small_mnist, cpu, epochs=3)
    metrics = [m for m, _ in rows]
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]
    assert result.status == "ok" and result.stopped_by is None
    assert result.test_acc is not None and result.test_acc > 0.8  # chance is 0.1
    assert result.params == 225_326
    for m in metrics:
        assert m["samples_per_s"] > 0 and m["epoch_time_s"] > 0 and m["lr"] == pytest.approx(1e-3)
    assert metrics[-1]["test_acc"] == result.test_acc


def test_same_seed_same_numbers_and_resume_is_exact(small_mnist, cpu):
    full, full_rows = _train(small_mnist, cpu, seed=3, epochs=3, max_batches=6)
    again, _ = _train(small_mnist, cpu, seed=3, epochs=3, max_batches=6)
    assert again.best_val_acc == full.best_val_acc
    # Stop after epoch 1, resume from its checkpoint in a fresh model: identical epochs 2-3.
    _, first = _train(small_mnist, cpu, seed=3, epochs=1, max_batches=6)
    state = first[-1][1]
    _, resumed = _train(small_mnist, cpu, seed=3, epochs=3, max_batches=6, resume=state)
    assert [m["epoch"] for m, _ in resumed] == [2, 3]
    for (a, _), (b, _) in zip(full_rows[1:], resumed, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_acc"] == b["val_acc"]


def test_divergence_ends_trial_with_epoch_and_step(small_mnist, cpu):
    result, rows = _train(small_mnist, cpu, optimizer="sgd", lr=1e30, divergence_check_every=1)
    assert result.status == "diverged" and result.stopped_by == "divergence"
    assert "non-finite loss at epoch 1 step" in result.error
    step = int(result.error.rsplit(" ", 1)[1])
    assert step >= 2  # the first step has a finite loss; the 1e30 update breaks the next
    last, state = rows[-1]
    assert last["status"] == "diverged" and state is None
    assert math.isnan(last["val_acc"])


def test_early_stopping_restores_best_weights(small_mnist, cpu):
    # lr 0 after the first epoch: validation never improves, patience 2 stops at epoch 3.
    result, rows = _train(small_mnist, cpu, epochs=10, patience=2, schedule="step",
                          step_size=1, gamma=0.0)
    assert result.status == "early_stopped" and result.stopped_by == "patience"
    assert result.epochs_run == 3 and result.best_epoch == 1
    assert rows[-1][0]["test_acc"] == result.test_acc


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains(small_mnist, cpu, precision):
    result, _ = _train(small_mnist, cpu, precision=precision, max_batches=5, epochs=1)
    assert result.status == "ok" and result.best_val_acc > 0.1


def test_grad_clip_and_schedules():
    cfg = TrainConfig(epochs=10, schedule="multistep", milestones=(3, 6), gamma=0.1)
    assert [lr_factor(e, cfg) for e in (0, 3, 6)] == pytest.approx([1, 0.1, 0.01])
    cosine = TrainConfig(epochs=10, schedule="cosine")
    assert lr_factor(0, cosine) == 1.0 and lr_factor(5, cosine) == pytest.approx(0.5)
    warm = TrainConfig(epochs=10, warmup_epochs=1)
    assert lr_factor(0, warm) == 0.5


def test_grad_clip_bounds_update(cpu):
    model = nn.Linear(4, 2)
    from trainables.data.splits import DeviceSplits

    x = torch.randn(8, 4) * 1e3
    y = torch.zeros(8, dtype=torch.long)
    data = DeviceSplits(x, y, x, y, None, None, 2)
    before = model.weight.detach().clone()
    cfg = TrainConfig(epochs=1, batch_size=8, optimizer="sgd", lr=1.0, momentum=0.0, grad_clip=0.5)
    fit(model, data, cfg, report=lambda m, s: None, generator=seed_everything(0))
    assert (model.weight.detach() - before).norm() <= 0.5 + 1e-5


def test_config_rejects_unknown_and_ill_typed_keys():
    with pytest.raises(ConfigError, match=r"unknown config key train\.lrr"):
        parse(TrainConfig, {"lrr": 0.1}, "train")
    with pytest.raises(ConfigError, match=r"train\.epochs='ten'"):
        parse(TrainConfig, {"epochs": "ten"}, "train")
    with pytest.raises(ConfigError, match=r"train\.optimizer='rmsprop' is not allowed"):
        parse(TrainConfig, {"optimizer": "rmsprop"}, "train")
    assert parse(TrainConfig, {"lr": 1, "milestones": [3, 5]}).milestones == (3, 5)


def test_restore_best_false_tests_the_final_weights(small_mnist, cpu):
    kept, _ = _train(small_mnist, cpu, epochs=3, max_batches=8, restore_best=False)
    best, _ = _train(small_mnist, cpu, epochs=3, max_batches=8, restore_best=True)
    # Same seed, same training; only what is evaluated on the test split differs.
    assert kept.best_val_acc == best.best_val_acc
    assert best.test_acc == best.best_val_acc  # val is the test split in this fixture
    _, rows = _train(small_mnist, cpu, epochs=3, max_batches=8, restore_best=False)
    assert kept.test_acc == rows[-1][0]["val_acc"]  # the final epoch's weights
