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


def _weights_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_early_stopping_tests_the_best_epoch_and_checkpoints_the_last(small_mnist, cpu):
    # Adam at 1e-3 learns in epoch 1; from epoch 2 the step schedule multiplies the rate by
    # 100, which wrecks the weights: epoch 1 stays the best and patience 2 stops at epoch 3.
    result, rows = _train(small_mnist, cpu, epochs=10, patience=2, schedule="step",
                          step_size=1, gamma=100.0, checkpoint_every=1)
    assert result.status == "early_stopped" and result.stopped_by == "patience"
    assert result.epochs_run == 3 and result.best_epoch == 1
    first_state, final_state = rows[0][1], rows[-1][1]
    assert rows[0][0]["val_acc"] > max(m["val_acc"] for m, _ in rows[1:]) + 0.2
    assert _weights_equal(final_state["best_state"], first_state["model"])
    # The last checkpoint holds the last epoch's weights (with its optimizer state), not the
    # restored best, so training the trial further continues from where it stopped.
    assert not _weights_equal(final_state["model"], first_state["model"])
    # ...and the reported test accuracy is the best epoch's weights', not the last's.
    data = small_mnist.to_device(cpu)

    def test_acc(weights: dict) -> float:
        model = get_model("mnist_cnn", attention="se")
        model.load_state_dict(weights)
        model.eval()
        with torch.no_grad():
            return (model(data.x_test).argmax(1) == data.y_test).float().mean().item()

    assert result.test_acc == pytest.approx(test_acc(first_state["model"]), abs=1e-6)
    assert result.test_acc > test_acc(final_state["model"]) + 0.2
    assert rows[-1][0]["test_acc"] == result.test_acc


def test_a_finished_trial_extended_continues_from_its_last_epoch(small_mnist, cpu):
    _, short = _train(small_mnist, cpu, seed=2, epochs=2, max_batches=4)
    _, longer = _train(small_mnist, cpu, seed=2, epochs=3, max_batches=4)
    _, extended = _train(small_mnist, cpu, seed=2, epochs=3, max_batches=4,
                         resume=short[-1][1])
    assert [m["epoch"] for m, _ in extended] == [3]
    assert extended[0][0]["train_loss"] == pytest.approx(longer[-1][0]["train_loss"], rel=1e-5)
    assert extended[0][0]["val_acc"] == longer[-1][0]["val_acc"]


def test_no_epoch_is_chosen_on_a_test_split_used_for_validation(small_mnist, cpu):
    from dataclasses import replace

    on_test = replace(small_mnist, x_val=small_mnist.x_test, y_val=small_mnist.y_test,
                      val_is_test=True)
    assert on_test.to_device(cpu).val_is_test
    with pytest.raises(ConfigError, match=r"train\.restore_best=true would choose an epoch "
                                          r"on the test split"):
        _train(on_test, cpu, epochs=1)
    with pytest.raises(ConfigError, match=r"train\.patience=2 would choose"):
        _train(on_test, cpu, epochs=1, restore_best=False, patience=2)
    result, rows = _train(on_test, cpu, epochs=2, max_batches=4, restore_best=False)
    assert result.test_acc == rows[-1][0]["val_acc"]   # the final weights, looked at once


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


def test_per_tensor_clipping_is_keras_clipnorm_and_global_is_torch():
    from trainables.loop import clip_gradients

    def params_with(grads):
        params = [nn.Parameter(torch.zeros_like(g)) for g in grads]
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        return params

    big, small = torch.tensor([3.0, 4.0]), torch.tensor([0.3, 0.4, 0.0])   # norms 5 and 0.5
    per = params_with([big, small])
    clip_gradients(per, 1.0, "per_tensor")
    # Keras clip_by_norm: g * clipnorm / max(||g||, clipnorm), each variable on its own.
    assert torch.allclose(per[0].grad, big / 5.0) and torch.equal(per[1].grad, small)
    both = params_with([big, small])
    clip_gradients(both, 1.0, "global")
    total = math.sqrt(25 + 0.25)
    assert torch.allclose(both[0].grad, big / total) and torch.allclose(both[1].grad, small / total)
    with pytest.raises(ValueError, match="grad_clip_mode='layer'"):
        clip_gradients(params_with([big]), 1.0, "layer")
    with pytest.raises(ConfigError, match=r"train\.grad_clip_mode='layer' is not allowed"):
        parse(TrainConfig, {"grad_clip_mode": "layer"}, "train")


def test_per_tensor_clipping_bounds_each_parameter_step(cpu):
    from trainables.data.splits import DeviceSplits

    model = nn.Linear(4, 2)
    x = torch.randn(8, 4) * 1e3
    y = torch.zeros(8, dtype=torch.long)
    data = DeviceSplits(x, y, x, y, None, None, 2)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(epochs=1, batch_size=8, optimizer="sgd", lr=1.0, momentum=0.0,
                      grad_clip=0.5, grad_clip_mode="per_tensor", restore_best=False)
    fit(model, data, cfg, report=lambda m, s: None, generator=seed_everything(0))
    steps = {k: (v.detach() - before[k]).norm().item() for k, v in model.state_dict().items()}
    # The weight's huge gradient is cut to 0.5; the bias's is cut on its own, also to 0.5 at
    # most, where a global clip would have shrunk the bias's share far below that.
    assert steps["weight"] == pytest.approx(0.5, rel=1e-4)
    assert 0.05 < steps["bias"] <= 0.5 + 1e-6


def test_evaluation_sees_the_memory_format_training_used(cpu):
    from trainables.data.splits import DeviceSplits

    layouts = []

    class Recorder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                     nn.Linear(4, 2))

        def forward(self, x):
            layouts.append((self.training, x.is_contiguous(memory_format=torch.channels_last)))
            return self.net(x)

    x = torch.rand(16, 3, 8, 8)      # 3 channels: a 1-channel tensor is in both layouts at once
    y = torch.randint(0, 2, (16,))
    data = DeviceSplits(x, y, x[:8], y[:8], x[8:], y[8:], 2)
    assert not x.is_contiguous(memory_format=torch.channels_last)
    cfg = TrainConfig(epochs=1, batch_size=8, channels_last=True, restore_best=False)
    fit(Recorder(), data, cfg, report=lambda m, s: None, generator=seed_everything(0))
    assert {train for train, _ in layouts} == {True, False}
    assert all(is_last for _, is_last in layouts)


def test_config_rejects_unknown_and_ill_typed_keys():
    with pytest.raises(ConfigError, match=r"unknown config key train\.lrr"):
        parse(TrainConfig, {"lrr": 0.1}, "train")
    with pytest.raises(ConfigError, match=r"train\.epochs='ten'"):
        parse(TrainConfig, {"epochs": "ten"}, "train")
    with pytest.raises(ConfigError, match=r"train\.optimizer='rmsprop' is not allowed"):
        parse(TrainConfig, {"optimizer": "rmsprop"}, "train")
    assert parse(TrainConfig, {"lr": 1, "milestones": [3, 5]}).milestones == (3, 5)


@pytest.mark.parametrize(("values", "message"), [
    ({"epochs": -3}, r"train\.epochs=-3 must be >= 1$"),
    ({"batch_size": 0}, r"train\.batch_size=0 must be >= 1$"),
    ({"lr": 0}, r"train\.lr=0\.0 must be a finite number > 0$"),
    ({"lr": float("inf")}, r"train\.lr=inf must be"),
    ({"gamma": -0.1}, r"train\.gamma=-0\.1 must be a finite number > 0$"),
    ({"grad_clip": 0}, r"train\.grad_clip=0\.0 must be a finite number > 0 \(or none\)$"),
    ({"momentum": 1}, r"train\.momentum=1\.0 must be in \[0, 1\)$"),
    ({"label_smoothing": -0.1}, r"train\.label_smoothing=-0\.1 must be in \[0, 1\)$"),
    ({"patience": 0}, r"train\.patience=0 must be >= 1 or none$"),
    ({"max_batches": 0}, r"train\.max_batches=0 must be >= 1 or none$"),
    ({"warmup_epochs": -1}, r"train\.warmup_epochs=-1 must be >= 0$"),
    ({"weight_decay": -1e-4}, r"train\.weight_decay=-0\.0001 must be >= 0$"),
    ({"milestones": [5, 3]}, r"train\.milestones=\[5, 3\] must be increasing epochs >= 1$"),
    ({"milestones": [0, 3]}, r"train\.milestones=\[0, 3\] must be increasing"),
    ({"divergence_check_every": 0}, r"train\.divergence_check_every=0 must be >= 1$"),
])
def test_config_refuses_values_the_loop_would_fail_on_later(values, message):
    with pytest.raises(ConfigError, match=message):
        parse(TrainConfig, values, "train")


def test_config_accepts_the_edges_of_each_range():
    edge = parse(TrainConfig, {"epochs": 1, "batch_size": 1, "momentum": 0, "eps": 0,
                               "weight_decay": 0, "warmup_epochs": 0, "label_smoothing": 0,
                               "patience": 1, "max_batches": 1, "milestones": [1, 2],
                               "grad_clip": "none", "gamma": 100}, "train")
    assert (edge.epochs, edge.patience, edge.grad_clip, edge.milestones) == (1, 1, None, (1, 2))


def test_restore_best_false_tests_the_final_weights(small_mnist, cpu):
    kept, kept_rows = _train(small_mnist, cpu, epochs=2, restore_best=False,
                             schedule="step", step_size=1, gamma=100.0)
    best, best_rows = _train(small_mnist, cpu, epochs=2, restore_best=True,
                             schedule="step", step_size=1, gamma=100.0)
    # Same seed, same training; only which weights meet the test split differs.
    assert [m["val_acc"] for m, _ in kept_rows] == [m["val_acc"] for m, _ in best_rows]
    assert kept.best_epoch == best.best_epoch == 1
    assert kept.test_acc < best.test_acc - 0.2
    assert _weights_equal(kept_rows[-1][1]["model"], best_rows[-1][1]["model"])
