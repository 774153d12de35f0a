"""The training loop's contract on tiny models and synthetic data, with exact numbers.

Why a second file beside tests/test_loop.py: that one trains a real CNN on real digits to
show the loop learns, which takes minutes. Mutation testing re-runs every test that touches
``fit`` for each of ``fit``'s mutants, so each promise of the loop is pinned here on a
linear layer or a scripted model in milliseconds: the reported rows, the schedule, which
epoch is best and what is tested, the checkpoint and an exact resume, divergence, clipping,
majority votes over groups and the precision modes that run on a CPU.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import trainables.loop as loop
from trainables.config import ConfigError, TrainConfig
from trainables.data.splits import DeviceSplits
from trainables.loop import (
    CHECKPOINT_VERSION,
    FitResult,
    _Precision,
    build_optimizer,
    clip_gradients,
    count_parameters,
    evaluate,
    fit,
    lr_factor,
    majority_vote_accuracy,
    to_memory_format,
)
from trainables.seeding import seed_everything

# ---- data and models -------------------------------------------------------------------


def _points(n: int, seed: int, features: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Linearly separable points: the label is the sign of the first feature."""
    x = torch.randn(n, features, generator=torch.Generator().manual_seed(seed))
    return x, (x[:, 0] > 0).long()


def _splits(n_train: int = 32, n_val: int = 12, n_test: int | None = 10, *,
            val_is_test: bool = False) -> DeviceSplits:
    x, y = _points(n_train, 1)
    xv, yv = _points(n_val, 2)
    xt, yt = _points(n_test, 3) if n_test else (None, None)
    return DeviceSplits(x, y, xv, yv, xt, yt, 2, val_is_test=val_is_test)


def _linear(seed: int = 0, features: int = 4) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(features, 2)


def _acc(logits: torch.Tensor, y: torch.Tensor) -> float:
    return (logits.argmax(1) == y).sum().item() / len(y)


# SGD steps too small to change a float32 weight of order 0.1: losses can be recomputed.
FIXED = {"optimizer": "sgd", "lr": 1e-30, "momentum": 0.0}


@dataclass
class Run:
    result: FitResult
    rows: list[dict]
    states: list[dict | None]
    rng_matched: list[bool]


def _fit(model: nn.Module, data, *, seed: int = 0, resume: dict | None = None,
         on_finish=None, context=None, augment=None, **train) -> Run:
    """fit() with every report copied as it arrives: a reporter persists the checkpoint at
    once (Ray writes it to disk), so later training must not show through it."""
    # What a checkpoint holds is tested on one per epoch; the cadence tests pass
    # checkpoint_every=0 (automatic) or their own.
    train.setdefault("checkpoint_every", 1)
    generator = seed_everything(seed)
    rows: list[dict] = []
    states: list[dict | None] = []
    rng_matched: list[bool] = []

    def report(metrics: dict, state: dict | None) -> None:
        rows.append(dict(metrics))
        states.append(copy.deepcopy(state))
        if state is not None:   # the RNG states saved are those the next epoch starts from
            rng_matched.append(torch.equal(state["generator"], generator.get_state())
                               and torch.equal(state["torch_rng"], torch.get_rng_state()))

    def finish(model: nn.Module) -> None:   # on_finish(model, reports made before it)
        on_finish(model, len(rows))

    result = fit(model, data, TrainConfig(**train), report=report, generator=generator,
                 resume=resume, augment=augment, on_finish=on_finish and finish,
                 context=context)
    return Run(result, rows, states, rng_matched)


class Scripted(nn.Module):
    """Validation logits chosen per epoch, so best epochs and patience can be dictated.

    Each training step adds one to ``tag``, a buffer: it is checkpointed, deep-copied as
    the best state and restored like any weight. With one step per epoch the tag is the
    epoch, and evaluation returns the logits scripted for the epoch the weights came from.
    """

    def __init__(self, script: list[torch.Tensor]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(2))
        self.register_buffer("tag", torch.zeros((), dtype=torch.long))
        self.script = script

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.tag += 1
            return x[:, :2] + self.weight
        return self.script[min(int(self.tag), len(self.script)) - 1][: len(x)]


def _scripted_logits(correct: int, margin: float) -> torch.Tensor:
    """Four examples of class 0: the first ``correct`` right by ``margin``, the rest wrong."""
    return torch.tensor([[margin, 0.0] if i < correct else [0.0, margin] for i in range(4)])


Y_VAL = torch.zeros(4, dtype=torch.long)
Y_TEST = torch.tensor([1, 0, 0, 1])
# (right of 4, margin) per epoch: epoch 2 has the best accuracy, epoch 3 the lowest loss so
# far, epoch 5 the best of both; epochs 6+ are worse than all.
SCRIPT = [_scripted_logits(c, m) for c, m in [(2, 0.5), (3, 5.0), (2, 0.2), (1, 3.0),
                                               (4, 1.0), (1, 3.0)]]


def _scripted_data(val_is_test: bool = False, test: bool = True) -> DeviceSplits:
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 0, 1])
    return DeviceSplits(x, y, x, Y_VAL, x if test else None, Y_TEST if test else None, 2,
                        val_is_test=val_is_test)


def _val(epoch: int) -> tuple[float, float]:
    logits = SCRIPT[min(epoch, len(SCRIPT)) - 1]
    return F.cross_entropy(logits, Y_VAL).item(), _acc(logits, Y_VAL)


def _test(epoch: int) -> tuple[float, float]:
    logits = SCRIPT[min(epoch, len(SCRIPT)) - 1]
    return F.cross_entropy(logits, Y_TEST).item(), _acc(logits, Y_TEST)


class Recorder(nn.Module):
    """A small conv net that notes, per call, what the loop hands its forward pass."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(4, 2))
        self.calls: list[dict] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append({
            "training": self.training, "dtype": x.dtype, "n": len(x),
            "channels_last": x.is_contiguous(memory_format=torch.channels_last),
            "autocast": torch.is_autocast_enabled("cpu"),
            "autocast_dtype": torch.get_autocast_dtype("cpu"), "sum": x.float().sum().item(),
        })
        return self.net(x)


def _images(n_train: int = 16, n_eval: int = 8) -> DeviceSplits:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n_train, 3, 6, 6, generator=g)   # 3 channels: not channels_last already
    y = torch.randint(0, 2, (n_train,), generator=g)
    return DeviceSplits(x, y, x[:n_eval], y[:n_eval], x[:n_eval], y[:n_eval], 2)


@pytest.fixture(autouse=True)
def cpu() -> Iterator[torch.device]:
    """One torch thread: these tensors are too small to gain from more, and mutation testing
    forks after torch has started its thread pool, where a child that enters a parallel
    region hangs until its time limit (every surviving mutant would read as a timeout)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch.device("cpu")
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def no_compile(monkeypatch) -> None:
    """Nothing here asks for torch.compile, which would take seconds on a CPU: a call fails."""
    def refuse(model: nn.Module) -> nn.Module:
        raise AssertionError("torch.compile called with compile=False")

    monkeypatch.setattr(torch, "compile", refuse)


@pytest.fixture
def clock(monkeypatch) -> list[float]:
    """time.perf_counter reads these values in turn (two per epoch: start and end)."""
    ticks: list[float] = []

    def fake() -> float:
        return ticks.pop(0)

    monkeypatch.setattr(loop.time, "perf_counter", fake)
    return ticks


# ---- the rows -----------------------------------------------------------------------------

ROW_KEYS = {"epoch", "train_loss", "train_acc", "lr", "epoch_time_s", "samples_per_s",
            "gpu_mem_mb", "params", "train_time_s", "val_loss", "val_acc", "best_epoch",
            "best_val_acc", "best_val_loss", "status"}


def test_rows_time_and_count_each_epoch_and_carry_the_context(cpu, clock):
    clock.extend([10.0, 12.5, 20.0, 20.25, 30.0, 34.0])   # epochs of 2.5, 0.25 and 4 s
    data = _splits(n_train=32)
    run = _fit(_linear(), data, epochs=3, batch_size=8, max_batches=3,
               context={"data_note": "tiny", "rank": 7})
    assert not clock
    final = ROW_KEYS | {"test_loss", "test_acc", "stopped_by", "data_note", "rank"}
    assert [set(r) for r in run.rows] == [ROW_KEYS | {"data_note", "rank"}] * 2 + [final]
    assert [r["epoch"] for r in run.rows] == [1, 2, 3]
    assert [r["epoch_time_s"] for r in run.rows] == [2.5, 0.25, 4.0]
    assert [r["train_time_s"] for r in run.rows] == [2.5, 2.75, 6.75]
    # max_batches=3 of 8: 24 examples an epoch, not 32.
    assert [r["samples_per_s"] for r in run.rows] == [24 / 2.5, 24 / 0.25, 24 / 4.0]
    assert all(r["params"] == 10 and r["gpu_mem_mb"] == 0.0 for r in run.rows)
    assert all(r["data_note"] == "tiny" and r["rank"] == 7 for r in run.rows)
    assert [r["status"] for r in run.rows] == ["running", "running", "ok"]
    assert run.rows[-1]["stopped_by"] is None
    assert run.result.train_time_s == 6.75 and run.result.params == 10
    assert [s["train_time_s"] for s in run.states] == [2.5, 2.75, 6.75]


def test_an_epoch_that_takes_no_measurable_time_reports_no_rate(cpu, clock):
    clock.extend([5.0, 5.0])
    run = _fit(_linear(), _splits(), epochs=1, batch_size=8)
    assert math.isnan(run.rows[0]["samples_per_s"]) and run.rows[0]["epoch_time_s"] == 0.0


def test_train_loss_is_the_mean_of_the_step_losses_and_train_acc_counts_every_example(cpu):
    # FIXED keeps the weights, so each step's loss can be recomputed; 20 examples in
    # batches of 8, 8 and 4 make the mean of step losses differ from the mean per example.
    data = _splits(n_train=20)
    model = _linear()
    run = _fit(model, data, seed=4, epochs=1, batch_size=8, **FIXED)
    order = torch.randperm(20, generator=seed_everything(4))
    with torch.no_grad():
        logits = model(data.x_train)
        steps = [F.cross_entropy(logits[i], data.y_train[i]).item()
                 for i in order.split(8)]
        val_logits = model(data.x_val)
        test_logits = model(data.x_test)
    row = run.rows[0]
    assert row["train_loss"] == pytest.approx(sum(steps) / 3, rel=1e-6)
    assert row["train_loss"] != pytest.approx(F.cross_entropy(logits, data.y_train).item(),
                                              rel=1e-4)
    assert row["train_acc"] == _acc(logits, data.y_train)
    assert row["val_loss"] == pytest.approx(F.cross_entropy(val_logits, data.y_val).item(),
                                            rel=1e-6)
    assert row["val_acc"] == _acc(val_logits, data.y_val)
    assert row["test_loss"] == pytest.approx(F.cross_entropy(test_logits, data.y_test).item(),
                                             rel=1e-6)
    assert row["test_acc"] == _acc(test_logits, data.y_test)


def test_a_single_example_is_counted_once(cpu):
    data = DeviceSplits(torch.ones(1, 4), torch.ones(1, dtype=torch.long), torch.ones(1, 4),
                        torch.ones(1, dtype=torch.long), None, None, 2)
    model = _linear()
    with torch.no_grad():
        model.bias.copy_(torch.tensor([0.0, 100.0]))     # predicts class 1: right
    run = _fit(model, data, epochs=1, batch_size=4, **FIXED)
    assert run.rows[0]["train_acc"] == 1.0 and run.rows[0]["val_acc"] == 1.0


@dataclass
class NoTraining:
    """TrialData whose epochs hold no training batches (every clip of an epoch unreadable)."""

    base: DeviceSplits
    num_classes: int = 2
    val_is_test: bool = False
    has_test: bool = False
    memory_format: torch.memory_format = torch.channels_last

    @property
    def device(self) -> torch.device:
        return self.base.device

    def train_epoch(self, batch_size: int, *, generator, max_batches):
        return []

    def eval_batches(self, split, batch_size, *, max_batches):
        return self.base.eval_batches(split, batch_size, max_batches=max_batches)


def test_an_epoch_without_training_batches_reports_nan_loss_and_zero_rates(cpu):
    run = _fit(_linear(), NoTraining(_splits()), epochs=1, batch_size=8)
    row = run.rows[0]
    assert math.isnan(row["train_loss"])
    assert row["train_acc"] == 0.0 and row["samples_per_s"] == 0.0
    assert run.result.status == "ok"


def test_max_batches_caps_training_and_every_evaluation(cpu):
    # Validation labels flipped after the first 8 examples: a capped evaluation sees only
    # the first 8, so its accuracy differs from the whole split's.
    data = _splits(n_train=32, n_val=12)
    data = DeviceSplits(data.x_train, data.y_train, data.x_val,
                        torch.cat([data.y_val[:8], 1 - data.y_val[8:]]), data.x_val,
                        torch.cat([1 - data.y_val[:4], data.y_val[4:]]), 2)
    model = _linear()
    run = _fit(model, data, epochs=1, batch_size=8, eval_batch_size=4, max_batches=2,
               **FIXED)
    with torch.no_grad():
        logits = model(data.x_val[:8])
    row = run.rows[0]
    assert row["val_acc"] == _acc(logits, data.y_val[:8])
    assert row["val_loss"] == pytest.approx(F.cross_entropy(logits, data.y_val[:8]).item(),
                                            rel=1e-6)
    assert row["test_acc"] == _acc(logits, data.y_test[:8])


def test_max_batches_caps_the_training_steps(cpu):
    model = Recorder()
    _fit(model, _images(n_train=16), epochs=1, batch_size=4, max_batches=3)
    assert [c["n"] for c in model.calls if c["training"]] == [4, 4, 4]
    assert [c["n"] for c in model.calls if not c["training"]] == [8, 8]    # val, test


# ---- the learning-rate schedule -------------------------------------------------------------


def test_lr_factor_warmup_then_each_schedule():
    warm = TrainConfig(epochs=10, warmup_epochs=3)
    assert [lr_factor(e, warm) for e in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    step = TrainConfig(epochs=10, schedule="step", step_size=2, gamma=0.5)
    assert [lr_factor(e, step) for e in range(6)] == [1, 1, 0.5, 0.5, 0.25, 0.25]
    # The step schedule counts epochs from 0, warm-up included: epoch 3 is in its 2nd step.
    warm_step = TrainConfig(epochs=10, schedule="step", step_size=2, gamma=0.5,
                            warmup_epochs=3)
    assert [lr_factor(e, warm_step) for e in (2, 3, 4)] == [0.75, 0.5, 0.25]
    multi = TrainConfig(epochs=10, schedule="multistep", milestones=(2, 4), gamma=0.5)
    assert [lr_factor(e, multi) for e in range(6)] == [1, 1, 0.5, 0.5, 0.25, 0.25]
    cosine = TrainConfig(epochs=10, schedule="cosine", warmup_epochs=2)
    assert lr_factor(1, cosine) == pytest.approx(2 / 3)
    assert lr_factor(2, cosine) == 1.0
    assert lr_factor(4, cosine) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor(6, cosine) == pytest.approx(0.5)
    assert lr_factor(9, cosine) == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 8)))
    assert lr_factor(0, TrainConfig(epochs=1, schedule="cosine")) == 1.0
    assert lr_factor(7, TrainConfig(epochs=10)) == 1.0


def test_each_epoch_trains_at_its_scheduled_lr(cpu):
    run = _fit(_linear(), _splits(), epochs=4, batch_size=16, optimizer="sgd", lr=0.2,
               schedule="multistep", milestones=(3,), gamma=0.1, warmup_epochs=1)
    expected = [0.1, 0.2, 0.2, 0.2 * 0.1]
    assert [r["lr"] for r in run.rows] == pytest.approx(expected, rel=1e-12)
    assert [s["optimizer"]["param_groups"][0]["lr"] for s in run.states] == \
        pytest.approx(expected, rel=1e-12)


def test_the_lr_scales_the_sgd_step(cpu):
    data = _splits(n_train=8)
    steps = []
    for lr in (0.5, 0.25):
        model = _linear()
        before = model.weight.detach().clone()
        _fit(model, data, epochs=1, batch_size=8, optimizer="sgd", lr=lr, momentum=0.0,
             restore_best=False)
        steps.append(model.weight.detach() - before)
    assert torch.allclose(steps[0], 2 * steps[1], atol=1e-7)
    warm = _linear()
    before = warm.weight.detach().clone()
    _fit(warm, data, epochs=1, batch_size=8, optimizer="sgd", lr=0.5, momentum=0.0,
         warmup_epochs=1, restore_best=False)
    assert torch.allclose(warm.weight.detach() - before, steps[1], atol=1e-7)


# ---- optimizers and parameters --------------------------------------------------------------


class PartlyFrozen(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.frozen = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)
        self.frozen.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.frozen(x))


def test_build_optimizer_honours_each_choice_and_skips_frozen_weights():
    model = PartlyFrozen()
    sgd = build_optimizer(model, TrainConfig(optimizer="sgd", lr=0.3, momentum=0.7,
                                             nesterov=True, weight_decay=0.01))
    assert type(sgd) is torch.optim.SGD
    group = sgd.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == \
        (0.3, 0.7, True, 0.01)
    assert [p.shape for p in group["params"]] == [torch.Size([2, 4]), torch.Size([2])]
    plain = build_optimizer(model, TrainConfig(optimizer="sgd", momentum=0.5))
    assert plain.param_groups[0]["nesterov"] is False
    for name, kind in (("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)):
        opt = build_optimizer(model, TrainConfig(optimizer=name, lr=0.02, eps=1e-4,
                                                 weight_decay=0.0))
        assert type(opt) is kind
        group = opt.param_groups[0]
        assert (group["lr"], group["eps"], group["weight_decay"]) == (0.02, 1e-4, 0.0)
        assert len(group["params"]) == 2
    decayed = build_optimizer(model, TrainConfig(optimizer="adam", weight_decay=0.3))
    assert decayed.param_groups[0]["weight_decay"] == 0.3


def test_params_counts_trainable_weights_only(cpu):
    model = PartlyFrozen()
    assert count_parameters(model) == 10
    frozen_before = model.frozen.weight.detach().clone()
    run = _fit(model, _splits(), epochs=1, batch_size=16)
    assert run.rows[0]["params"] == 10 and run.result.params == 10
    assert torch.equal(model.frozen.weight, frozen_before)


class UsesExtraOnce(nn.Module):
    """A parameter the first training step uses and the second does not (a skipped branch)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = _linear()
        self.extra = nn.Parameter(torch.tensor(1.0))
        self.steps = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x)
        if self.training:
            self.steps += 1
            if self.steps == 1:
                out = out * self.extra
        return out


def test_a_parameter_a_step_did_not_use_is_left_alone_by_that_step(cpu):
    # Gradients are set to None between steps, so Adam skips a parameter without one;
    # zeroed gradients would let its momentum move the parameter again.
    model = UsesExtraOnce()
    _fit(model, _splits(n_train=16), epochs=1, batch_size=8, optimizer="adam", lr=0.1,
         restore_best=False)
    assert model.steps == 2
    assert abs(model.extra.item() - 1.0) == pytest.approx(0.1, rel=1e-3)


# ---- losses -------------------------------------------------------------------------------


class Regularized(nn.Module):
    def __init__(self, strength: float | None) -> None:
        super().__init__()
        self.linear = _linear()
        self.strength = strength

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)

    def regularization_loss(self) -> torch.Tensor | None:
        if self.strength is None:
            return None
        return self.strength * self.linear.weight.square().sum()


def test_regularization_loss_is_trained_and_reported(cpu):
    data = _splits(n_train=16)
    model = Regularized(0.5)
    with torch.no_grad():
        ce = F.cross_entropy(model(data.x_train), data.y_train)
        penalty = 0.5 * model.linear.weight.square().sum()
        val = F.cross_entropy(model(data.x_val), data.y_val).item()
    # One full-batch SGD step: the penalty's gradient (2 * 0.5 * w) moves the weights too.
    reference = copy.deepcopy(model.linear).requires_grad_(True)
    loss = F.cross_entropy(reference(data.x_train), data.y_train) \
        + 0.5 * reference.weight.square().sum()
    loss.backward()
    expected = reference.weight.detach() - 0.1 * reference.weight.grad
    run = _fit(model, data, epochs=1, batch_size=16, optimizer="sgd", lr=0.1, momentum=0.0,
               restore_best=False)
    assert run.rows[0]["train_loss"] == pytest.approx((ce + penalty).item(), rel=1e-6)
    with torch.no_grad():                                             # validation: no penalty
        val = F.cross_entropy(model(data.x_val), data.y_val).item()
    assert run.rows[0]["val_loss"] == pytest.approx(val, rel=1e-6)
    assert torch.allclose(model.linear.weight, expected, atol=1e-6)


def test_a_regularization_loss_of_none_adds_nothing(cpu):
    data = _splits(n_train=16)
    model = Regularized(None)
    with torch.no_grad():
        ce = F.cross_entropy(model(data.x_train), data.y_train).item()
    run = _fit(model, data, epochs=1, batch_size=16, **FIXED)
    assert run.rows[0]["train_loss"] == pytest.approx(ce, rel=1e-6)


def test_label_smoothing_applies_to_training_not_to_validation(cpu):
    data = _splits(n_train=16)
    model = _linear()
    with torch.no_grad():
        smooth = F.cross_entropy(model(data.x_train), data.y_train, label_smoothing=0.2)
        val = F.cross_entropy(model(data.x_val), data.y_val)
    run = _fit(model, data, epochs=1, batch_size=16, **FIXED,
               label_smoothing=0.2)
    assert run.rows[0]["train_loss"] == pytest.approx(smooth.item(), rel=1e-6)
    assert run.rows[0]["val_loss"] == pytest.approx(val.item(), rel=1e-6)


def test_augment_changes_training_batches_only(cpu):
    model = Recorder()
    calls = []

    def augment(x: torch.Tensor) -> torch.Tensor:
        calls.append(len(x))
        return torch.zeros_like(x)

    _fit(model, _images(n_train=16), epochs=1, batch_size=8, augment=augment)
    assert calls == [8, 8]
    assert [c["sum"] == 0.0 for c in model.calls] == [True, True, False, False]


# ---- the best epoch, patience and what is tested ------------------------------------------


def test_monitor_val_acc_picks_the_most_accurate_epoch_and_patience_counts_from_it(cpu):
    finishes = []
    run = _fit(Scripted(SCRIPT), _scripted_data(), epochs=10, batch_size=4, patience=2,
               on_finish=lambda m, n: finishes.append((n, int(m.tag), m.training)))
    # epochs 1-2 improve, 3 and 4 do not: patience 2 stops after epoch 4.
    assert [r["epoch"] for r in run.rows] == [1, 2, 3, 4]
    assert [r["best_epoch"] for r in run.rows] == [1, 2, 2, 2]
    assert [r["best_val_acc"] for r in run.rows] == [0.5, 0.75, 0.75, 0.75]
    assert [r["best_val_loss"] for r in run.rows] == [_val(1)[0]] + [_val(2)[0]] * 3
    assert [r["val_loss"] for r in run.rows] == [_val(e)[0] for e in (1, 2, 3, 4)]
    assert [r["val_acc"] for r in run.rows] == [_val(e)[1] for e in (1, 2, 3, 4)]
    assert [s["bad_epochs"] for s in run.states] == [0, 0, 1, 2]
    assert [r["status"] for r in run.rows] == ["running"] * 3 + ["early_stopped"]
    last = run.rows[-1]
    assert last["stopped_by"] == "patience"
    assert (last["test_loss"], last["test_acc"]) == _test(2)
    assert run.result == FitResult(
        status="early_stopped", epochs_run=4, best_epoch=2, best_val_acc=0.75,
        best_val_loss=_val(2)[0], test_acc=_test(2)[1], test_loss=_test(2)[0],
        train_time_s=run.result.train_time_s, stopped_by="patience", error=None, params=2)
    assert run.result.train_time_s == run.rows[-1]["train_time_s"]
    assert finishes == [(3, 2, False)]


def test_monitor_val_loss_picks_the_lowest_loss_and_an_improvement_resets_patience(cpu):
    run = _fit(Scripted(SCRIPT), _scripted_data(), epochs=20, batch_size=4, patience=2,
               monitor="val_loss")
    # Losses: 1 best, 2 worse, 3 best (reset), 4 worse, 5 best (reset), 6 and 7 worse.
    assert [r["best_epoch"] for r in run.rows] == [1, 1, 3, 3, 5, 5, 5]
    assert [s["bad_epochs"] for s in run.states] == [0, 1, 0, 1, 0, 1, 2]
    assert [s["best"] for s in run.states][2] == {
        "score": -_val(3)[0], "epoch": 3, "val_acc": _val(3)[1], "val_loss": _val(3)[0]}
    assert run.result.best_epoch == 5 and run.result.epochs_run == 7
    assert (run.result.test_loss, run.result.test_acc) == _test(5)


def test_patience_stops_when_the_count_reaches_it_not_after(cpu):
    run = _fit(Scripted(SCRIPT), _scripted_data(), epochs=20, batch_size=4, patience=3)
    # Accuracy: 2 best, 3-4 worse, 5 best (reset), 6-8 worse: three bad epochs end it.
    assert [s["bad_epochs"] for s in run.states] == [0, 0, 1, 2, 0, 1, 2, 3]
    assert run.result.status == "early_stopped" and run.result.best_epoch == 5


def test_patience_running_out_on_the_last_epoch_is_a_full_run(cpu):
    run = _fit(Scripted(SCRIPT), _scripted_data(), epochs=4, batch_size=4, patience=2)
    assert run.states[-1]["bad_epochs"] == 2            # patience is spent at epoch 4 of 4
    assert (run.result.status, run.result.stopped_by, run.result.epochs_run) == ("ok", None, 4)
    assert (run.rows[-1]["status"], run.rows[-1]["stopped_by"]) == ("ok", None)


def test_a_trial_patience_stopped_stays_stopped_when_resumed(cpu):
    stopped = _fit(Scripted(SCRIPT), _scripted_data(), epochs=10, batch_size=4, patience=2)
    assert (stopped.result.status, stopped.result.epochs_run) == ("early_stopped", 4)
    again = _fit(Scripted(SCRIPT), _scripted_data(), epochs=10, batch_size=4, patience=2,
                 resume=stopped.states[-1])
    assert again.rows == []
    assert again.result == FitResult(
        status="early_stopped", epochs_run=4, best_epoch=2, best_val_acc=0.75,
        best_val_loss=_val(2)[0], test_acc=None, test_loss=None,
        train_time_s=stopped.states[-1]["train_time_s"], stopped_by="patience", error=None,
        params=2)
    # More patience than it ran with continues it: epoch 5 is the best of all.
    longer = _fit(Scripted(SCRIPT), _scripted_data(), epochs=10, batch_size=4, patience=3,
                  resume=stopped.states[-1])
    assert longer.rows[0]["epoch"] == 5 and longer.result.best_epoch == 5


def test_a_full_run_whose_patience_ran_out_at_the_end_resumes_as_finished(cpu):
    full = _fit(Scripted(SCRIPT), _scripted_data(), epochs=4, batch_size=4, patience=2)
    again = _fit(Scripted(SCRIPT), _scripted_data(), epochs=4, batch_size=4, patience=2,
                 resume=full.states[-1])
    assert again.rows == [] and (again.result.status, again.result.stopped_by) == ("ok", None)


def test_a_tie_keeps_the_earlier_epoch(cpu):
    tied = [_scripted_logits(2, 0.5), _scripted_logits(2, 0.2)]     # same accuracy
    run = _fit(Scripted(tied), _scripted_data(), epochs=2, batch_size=4)
    assert run.result.best_epoch == 1 and run.states[-1]["bad_epochs"] == 1


def test_without_patience_every_epoch_runs_and_the_best_is_tested(cpu):
    finishes = []
    run = _fit(Scripted(SCRIPT), _scripted_data(), epochs=4, batch_size=4,
               on_finish=lambda m, n: finishes.append((n, int(m.tag))))
    assert [r["status"] for r in run.rows] == ["running"] * 3 + ["ok"]
    assert run.rows[-1]["stopped_by"] is None
    assert run.result == FitResult(
        status="ok", epochs_run=4, best_epoch=2, best_val_acc=0.75, best_val_loss=_val(2)[0],
        test_acc=_test(2)[1], test_loss=_test(2)[0], train_time_s=run.result.train_time_s,
        stopped_by=None, error=None, params=2)
    assert (run.rows[-1]["test_loss"], run.rows[-1]["test_acc"]) == _test(2)
    assert finishes == [(3, 2)]
    final = run.states[-1]
    # The checkpoint keeps the last epoch's weights (with their optimizer state) beside the
    # best ones; the model itself ends with the best weights restored.
    assert int(final["model"]["tag"]) == 4 and int(final["best_state"]["tag"]) == 2
    assert [int(s["model"]["tag"]) for s in run.states] == [1, 2, 3, 4]
    assert [int(s["best_state"]["tag"]) for s in run.states] == [1, 2, 2, 2]


def test_restore_best_false_tests_and_hands_over_the_final_weights(cpu):
    finishes = []
    run = _fit(Scripted(SCRIPT), _scripted_data(), epochs=4, batch_size=4,
               restore_best=False, on_finish=lambda m, n: finishes.append(int(m.tag)))
    assert run.result.best_epoch == 2
    assert (run.result.test_loss, run.result.test_acc) == _test(4)
    assert finishes == [4]
    assert int(run.states[-1]["model"]["tag"]) == 4
    assert int(run.states[-1]["best_state"]["tag"]) == 2


def test_without_a_test_split_nothing_is_tested(cpu):
    finishes = []
    run = _fit(Scripted(SCRIPT), _scripted_data(test=False), epochs=2, batch_size=4,
               on_finish=lambda m, n: finishes.append(int(m.tag)))
    assert "test_acc" not in run.rows[-1] and "test_loss" not in run.rows[-1]
    assert run.result.test_acc is None and run.result.test_loss is None
    assert run.result.status == "ok" and finishes == [2]


def test_no_epoch_is_chosen_on_a_test_split_used_for_validation(cpu):
    data = _scripted_data(val_is_test=True)
    with pytest.raises(ConfigError) as both:
        _fit(Scripted(SCRIPT), data, epochs=1, batch_size=4, patience=3)
    assert str(both.value) == (
        "train.restore_best=true and train.patience=3 would choose an epoch on the test "
        "split (this data validates on test); set train.restore_best=false and "
        "train.patience=none, or hold validation out (e.g. data.val_fraction=0.1)")
    with pytest.raises(ConfigError) as best:
        _fit(Scripted(SCRIPT), data, epochs=1, batch_size=4)
    assert str(best.value).startswith("train.restore_best=true would choose an epoch on the "
                                      "test split (this data validates on test); set")
    with pytest.raises(ConfigError) as patience:
        _fit(Scripted(SCRIPT), data, epochs=1, batch_size=4, restore_best=False, patience=2)
    assert str(patience.value).startswith("train.patience=2 would choose an epoch on")
    run = _fit(Scripted(SCRIPT), data, epochs=2, batch_size=4, restore_best=False)
    assert (run.result.test_loss, run.result.test_acc) == _test(2)   # the final weights
    # Validation on held-out data may choose an epoch.
    assert _fit(Scripted(SCRIPT), _scripted_data(), epochs=1, batch_size=4,
                patience=3).result.status == "ok"


# ---- checkpoints and resume ---------------------------------------------------------------


class Dropped(nn.Module):
    """Dropout draws from the global RNG, so an inexact resume shows in the losses."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_the_checkpoint_holds_everything_a_resume_needs(cpu):
    run = _fit(Scripted(SCRIPT), _scripted_data(), epochs=3, batch_size=4)
    for epoch, state in enumerate(run.states, start=1):
        assert set(state) == {"version", "model", "optimizer", "scaler", "generator",
                              "torch_rng", "cuda_rng", "epoch", "best", "best_state",
                              "bad_epochs", "train_time_s", "frozen_keys", "frozen_sha256"}
        assert state["version"] == CHECKPOINT_VERSION == 2
        assert state["frozen_keys"] == [] and state["frozen_sha256"] is None
        assert state["epoch"] == epoch
        assert state["optimizer"]["state"][0]["step"].item() == epoch   # Adam: a step an epoch
        assert state["scaler"] == {} and state["cuda_rng"] is None
    assert run.rng_matched == [True, True, True]
    assert run.states[1]["best"] == {"score": 0.75, "epoch": 2, "val_acc": 0.75,
                                     "val_loss": _val(2)[0]}


def test_resume_repeats_the_uninterrupted_run_exactly(cpu, clock):
    clock.extend([0.0, 1.0, 1.0, 3.0, 3.0, 6.0])          # epochs of 1, 2 and 3 s
    data = _splits(n_train=32)
    train = {"epochs": 3, "batch_size": 8, "optimizer": "adam", "lr": 0.05}
    full = _fit(Dropped(0), data, seed=5, **train)
    clock.extend([0.0, 1.0])
    first = _fit(Dropped(0), data, seed=5, **{**train, "epochs": 1})
    assert first.states[0]["epoch"] == 1
    # A fresh model, other global RNG draws and another seed: only the checkpoint decides.
    torch.manual_seed(99)
    clock.extend([5.0, 7.0, 7.0, 10.0])
    resumed = _fit(Dropped(1), data, seed=6, resume=first.states[0], **train)
    assert [r["epoch"] for r in resumed.rows] == [2, 3]
    assert resumed.rows == full.rows[1:]
    assert resumed.result == full.result
    assert [s["train_time_s"] for s in resumed.states] == [3.0, 6.0]
    final, again = full.states[-1], resumed.states[-1]
    assert all(torch.equal(final["model"][k], again["model"][k]) for k in final["model"])


def test_resume_restores_patience_and_the_best_epoch(cpu):
    full = _fit(Scripted(SCRIPT), _scripted_data(), epochs=10, batch_size=4, patience=2)
    state = full.states[2]                                  # after epoch 3: one bad epoch
    resumed = _fit(Scripted(SCRIPT), _scripted_data(), epochs=10, batch_size=4, patience=2,
                   resume=state)
    assert [r["epoch"] for r in resumed.rows] == [4]
    assert resumed.rows[0]["best_epoch"] == 2 and resumed.result.status == "early_stopped"
    assert resumed.result.test_acc == full.result.test_acc


def test_resume_of_a_mixed_precision_trial_restores_the_grad_scaler(cpu):
    data = _splits(n_train=32)
    train = {"epochs": 2, "batch_size": 8, "precision": "fp16", "lr": 0.01}
    full = _fit(_linear(), data, **train)
    assert [s["scaler"]["_growth_tracker"] for s in full.states] == [4, 8]
    first = _fit(_linear(), data, **{**train, "epochs": 1})
    resumed = _fit(_linear(1), data, resume=first.states[0], **train)
    assert resumed.states[0]["scaler"] == full.states[1]["scaler"]
    assert resumed.rows == [{**full.rows[1], "epoch_time_s": resumed.rows[0]["epoch_time_s"],
                             "samples_per_s": resumed.rows[0]["samples_per_s"],
                             "train_time_s": resumed.rows[0]["train_time_s"]}]


def test_resuming_a_finished_trial_trains_no_more(cpu):
    done = _fit(Scripted(SCRIPT), _scripted_data(), epochs=3, batch_size=4)
    model = Scripted(SCRIPT)
    again = _fit(model, _scripted_data(), epochs=3, batch_size=4, resume=done.states[-1])
    assert again.rows == []
    assert again.result == FitResult(
        status="ok", epochs_run=3, best_epoch=2, best_val_acc=0.75, best_val_loss=_val(2)[0],
        test_acc=None, test_loss=None, train_time_s=done.states[-1]["train_time_s"],
        stopped_by=None, error=None, params=2)
    assert int(model.tag) == 3     # the last weights, ready to train further


def test_a_checkpoint_of_another_version_is_refused(cpu):
    state = _fit(_linear(), _splits(), epochs=1, batch_size=16).states[0]
    with pytest.raises(ValueError, match=r"^checkpoint version 1 is not 2$"):
        _fit(_linear(), _splits(), epochs=2, batch_size=16, resume={**state, "version": 1})
    del state["version"]
    with pytest.raises(ValueError, match=r"^checkpoint version None is not 2$"):
        _fit(_linear(), _splits(), epochs=2, batch_size=16, resume=state)


def test_a_gpu_checkpoint_resumed_on_a_cpu_leaves_cuda_alone(cpu, monkeypatch):
    state = _fit(_linear(), _splits(), epochs=1, batch_size=16).states[0]
    touched = []
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda *a: touched.append(a))
    run = _fit(_linear(), _splits(), epochs=2, batch_size=16,
               resume={**state, "cuda_rng": torch.zeros(16, dtype=torch.uint8)})
    assert touched == [] and [r["epoch"] for r in run.rows] == [2]


# ---- checkpoint cadence ---------------------------------------------------------------------


@pytest.fixture
def wall(monkeypatch) -> list[float]:
    """The loop's wall clock for the checkpoint cadence reads these values in turn: one when
    fit starts, then two per epoch (its start, and after validation)."""
    ticks: list[float] = []

    def fake() -> float:
        return ticks.pop(0)

    monkeypatch.setattr(loop, "_wall_clock", fake)
    return ticks


def _due(epoch: int, wall_s: float = 1.0, since_s: float = 1.0, **train) -> bool:
    return loop.checkpoint_due(epoch, TrainConfig(**train), epoch_wall_s=wall_s,
                               since_last_s=since_s)


def test_checkpoint_every_n_counts_epochs_from_the_start_of_the_trial():
    assert [e for e in range(1, 10) if _due(e, checkpoint_every=3)] == [3, 6, 9]
    assert [e for e in range(1, 5) if _due(e, checkpoint_every=1)] == [1, 2, 3, 4]
    # A fixed cadence ignores time, however long or short the epochs.
    assert not _due(1, wall_s=10_000.0, since_s=10_000.0, checkpoint_every=2)
    assert _due(2, wall_s=0.0, since_s=0.0, checkpoint_every=2)


def test_automatic_cadence_is_thirty_seconds_for_short_epochs_else_ten_minutes():
    assert loop.AUTO_EVERY_EPOCH_UNDER_S == 60.0 and loop.AUTO_INTERVAL_S == 600.0
    assert loop.AUTO_SHORT_INTERVAL_S == 30.0
    for auto in ({}, {"checkpoint_every": None}, {"checkpoint_every": 0}):
        assert not _due(7, wall_s=59.9, since_s=29.9, **auto)
        assert _due(7, wall_s=59.9, since_s=30.0, **auto)
        assert not _due(7, wall_s=60.0, since_s=599.9, **auto)
        assert _due(7, wall_s=60.0, since_s=600.0, **auto)
        assert _due(7, wall_s=3000.0, since_s=3000.0, **auto)


def test_checkpoint_at_epochs_always_checkpoint():
    at = {"checkpoint_at": (2, 5)}
    assert [e for e in range(1, 8) if _due(e, checkpoint_every=3, **at)] == [2, 3, 5, 6]
    assert [e for e in range(1, 8) if _due(e, wall_s=120.0, since_s=1.0, **at)] == [2, 5]


def test_checkpoint_every_two_reports_rows_without_checkpoints_between(cpu):
    run = _fit(_linear(), _splits(), epochs=5, batch_size=16, checkpoint_every=2)
    assert [r["epoch"] for r in run.rows] == [1, 2, 3, 4, 5]
    # Epochs 2 and 4 by the cadence; 5 because the trial ends there.
    assert [s and s["epoch"] for s in run.states] == [None, 2, None, 4, 5]
    assert run.rng_matched == [True, True, True]
    stopped = _fit(Scripted(SCRIPT), _scripted_data(), epochs=20, batch_size=4, patience=3,
                   checkpoint_every=5)
    assert stopped.result.status == "early_stopped" and stopped.result.epochs_run == 8
    assert [s and s["epoch"] for s in stopped.states] == [None] * 4 + [5, None, None, 8]
    assert stopped.states[-1]["bad_epochs"] == 3


def test_automatic_cadence_follows_the_measured_epoch_wall_time(cpu, wall):
    # Fit starts at 0. Epochs of 30 s checkpoint each (30 s since the last); then epochs of
    # 4 minutes checkpoint
    # once 600 s have passed since the last (at 60): at epoch 5's end (780, not 540 or
    # 1020); epoch 7 ends the trial.
    wall.extend([0.0, 0.0, 30.0, 30.0, 60.0, 60.0, 300.0, 300.0, 540.0, 540.0, 780.0,
                 780.0, 1020.0, 1020.0, 1260.0])
    run = _fit(_linear(), _splits(), epochs=7, batch_size=16, checkpoint_every=0)
    assert not wall
    assert [s and s["epoch"] for s in run.states] == [1, 2, None, None, 5, None, 7]
    # The clock restarts at a resume: 9 minutes since then is not yet 10.
    wall.extend([0.0, 0.0, 270.0, 270.0, 540.0, 540.0, 600.0])
    resumed = _fit(_linear(), _splits(), epochs=8, batch_size=16, resume=run.states[4],
                   checkpoint_every=0)
    assert [s and s["epoch"] for s in resumed.states] == [None, None, 8]


def test_resume_from_an_epoch_two_checkpoint_repeats_the_uninterrupted_run(cpu, clock):
    data = _splits(n_train=32)
    train = {"epochs": 5, "batch_size": 8, "optimizer": "adam", "lr": 0.05,
             "checkpoint_every": 2}
    clock.extend([0.0, 1.0, 1.0, 3.0, 3.0, 6.0, 6.0, 10.0, 10.0, 15.0])
    full = _fit(Dropped(0), data, seed=5, **train)
    state = full.states[1]
    assert state["epoch"] == 2 and full.states[2] is None
    torch.manual_seed(99)                     # other global draws: only the checkpoint decides
    clock.extend([3.0, 6.0, 6.0, 10.0, 10.0, 15.0])
    resumed = _fit(Dropped(1), data, seed=6, resume=state, **train)
    assert resumed.rows == full.rows[2:]
    assert resumed.result == full.result
    assert [s and s["epoch"] for s in resumed.states] == [None, 4, 5]
    for mine, theirs in zip(resumed.states[1:], full.states[3:], strict=True):
        assert all(torch.equal(mine["model"][k], theirs["model"][k]) for k in mine["model"])
        assert all(torch.equal(mine["best_state"][k], theirs["best_state"][k])
                   for k in mine["best_state"])
        assert mine["optimizer"]["state"][0]["step"] == theirs["optimizer"]["state"][0]["step"]


# ---- frozen state -----------------------------------------------------------------------------


class FrozenFront(nn.Module):
    """A frozen linear + BatchNorm "backbone" (in eval mode while the model trains, unless
    ``follow_train``) before a trainable head with dropout."""

    def __init__(self, seed: int, follow_train: bool = False) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.backbone = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6))
        self.backbone.requires_grad_(False)
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(0.5), nn.Linear(6, 2))
        self.follow_train = follow_train

    def train(self, mode: bool = True) -> FrozenFront:
        super().train(mode)
        if not self.follow_train:
            self.backbone.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


BACKBONE_PARAMS = ["backbone.0.bias", "backbone.0.weight", "backbone.1.bias", "backbone.1.weight"]
BN_BUFFERS = ["backbone.1.num_batches_tracked", "backbone.1.running_mean",
              "backbone.1.running_var"]


def test_frozen_parameters_and_the_buffers_of_frozen_eval_modules_are_left_out(cpu):
    model = FrozenFront(0)
    assert loop.frozen_state_keys(model) == frozenset(BACKBONE_PARAMS + BN_BUFFERS)
    assert model.training and model.backbone.training is False       # modes left as found
    model.eval()
    assert loop.frozen_state_keys(model) == frozenset(BACKBONE_PARAMS + BN_BUFFERS)
    assert not model.training and not model.head.training
    # A frozen BatchNorm that follows train() updates its statistics: they stay in.
    assert loop.frozen_state_keys(FrozenFront(0, follow_train=True)) == frozenset(BACKBONE_PARAMS)
    # A module with a trainable parameter keeps its buffers even in eval mode; one without
    # parameters keeps them too; nothing is frozen in a model that trains everything.
    partly = FrozenFront(0)
    partly.backbone[1].bias.requires_grad_(True)
    assert loop.frozen_state_keys(partly) == frozenset(
        ["backbone.0.bias", "backbone.0.weight", "backbone.1.weight"])
    bare = nn.BatchNorm1d(3, affine=False).eval()
    bare.train = lambda mode=True: bare    # stays in eval mode, but has no parameters
    assert loop.frozen_state_keys(bare) == frozenset()
    assert loop.frozen_state_keys(Scripted(SCRIPT)) == frozenset()
    # Only keys the state dict holds: not a non-persistent buffer, nor one left out by a hook.
    quiet = FrozenFront(0)
    quiet.backbone[1].register_buffer("scratch", torch.zeros(2), persistent=False)
    quiet.backbone[0]._register_state_dict_hook(
        lambda module, state, prefix, local: state.pop(prefix + "bias"))
    assert loop.frozen_state_keys(quiet) == frozenset(BACKBONE_PARAMS + BN_BUFFERS) - {
        "backbone.0.bias"}
    # The model itself may be frozen: its own keys have no prefix.
    assert loop.frozen_state_keys(nn.Linear(2, 2).requires_grad_(False)) == {"weight", "bias"}
    # A shared frozen module appears under each name the state dict gives it.
    shared = nn.Linear(2, 2).requires_grad_(False)
    twice = nn.ModuleDict({"a": shared, "b": shared, "c": nn.Linear(2, 2)})
    assert loop.frozen_state_keys(twice) == frozenset(["a.weight", "a.bias", "b.weight", "b.bias"])


def test_checkpoints_hold_only_what_training_changes(cpu):
    run = _fit(FrozenFront(0), _splits(), epochs=3, batch_size=16)
    trainable = ["head.2.bias", "head.2.weight"]
    for state in run.states:
        assert sorted(state["model"]) == trainable and sorted(state["best_state"]) == trainable
        assert state["frozen_keys"] == sorted(BACKBONE_PARAMS + BN_BUFFERS)
        assert state["frozen_sha256"] == loop.frozen_fingerprint(
            FrozenFront(0), frozenset(BACKBONE_PARAMS + BN_BUFFERS))
        # Module versions travel as in a full state dict (BatchNorm reads them on load).
        assert state["model"]._metadata == FrozenFront(0).state_dict()._metadata
    # BN statistics that follow train() change, so they are saved (and the fingerprint
    # covers only the frozen parameters).
    moving = _fit(FrozenFront(0, follow_train=True), _splits(), epochs=1, batch_size=16)
    assert sorted(moving.states[0]["model"]) == sorted(BN_BUFFERS + trainable)
    assert moving.states[0]["model"]["backbone.1.num_batches_tracked"].item() == 2


def test_a_frozen_backbone_trial_resumes_exactly_from_a_rebuilt_model(cpu, clock):
    data = _splits(n_train=32)
    train = {"epochs": 4, "batch_size": 8, "optimizer": "adam", "lr": 0.05}
    clock.extend([0.0, 1.0, 1.0, 3.0, 3.0, 6.0, 6.0, 10.0])
    full = _fit(FrozenFront(0), data, seed=5, **train)
    torch.manual_seed(99)
    clock.extend([1.0, 3.0, 3.0, 6.0, 6.0, 10.0])
    resumed = _fit(FrozenFront(0), data, seed=6, resume=full.states[0], **train)
    assert resumed.rows == full.rows[1:] and resumed.result == full.result
    final, again = full.states[-1], resumed.states[-1]
    assert all(torch.equal(final["model"][k], again["model"][k]) for k in final["model"])
    # The restored best weights were tested: equal test numbers to the uninterrupted run.
    assert resumed.rows[-1]["test_acc"] == full.rows[-1]["test_acc"]


def test_a_rebuilt_model_with_other_frozen_weights_cannot_resume(cpu):
    state = _fit(FrozenFront(0), _splits(), epochs=1, batch_size=16).states[0]
    with pytest.raises(ValueError, match=r"^the rebuilt model's frozen weights are not those "
                                         r"the checkpoint trained with: a resumed trial must "
                                         r"rebuild its frozen layers the same way \(same "
                                         r"pretrained file, same seed\)$"):
        _fit(FrozenFront(1), _splits(), epochs=2, batch_size=16, resume=state)
    # Another set of frozen keys changes the fingerprint too, with equal values.
    partly = FrozenFront(0)
    partly.backbone[1].bias.requires_grad_(True)
    with pytest.raises(ValueError, match=r"^the rebuilt model's frozen weights"):
        _fit(partly, _splits(), epochs=2, batch_size=16, resume=state)


def test_a_checkpoint_missing_more_than_the_frozen_keys_is_refused(cpu):
    state = _fit(FrozenFront(0), _splits(), epochs=1, batch_size=16).states[0]
    del state["model"]["head.2.bias"]
    with pytest.raises(ValueError, match=r"^the checkpoint does not fit the model \(missing and "
                                         r"not frozen: head.2.bias\)$"):
        _fit(FrozenFront(0), _splits(), epochs=2, batch_size=16, resume=state)
    model = FrozenFront(0)
    frozen = loop.frozen_state_keys(model)
    full = model.state_dict()
    with pytest.raises(ValueError, match=r"^the checkpoint does not fit the model \(frozen but "
                                         r"saved: backbone.0.bias, backbone.0.weight, "
                                         r"backbone.1.bias \(\+4 more\); not in the model: "
                                         r"extra\)$"):
        loop.load_trainable_state(model, {**full, "extra": torch.zeros(1)}, frozen)
    with pytest.raises(ValueError, match=r"\(not in the model: w, x, y \(\+1 more\)\)$"):
        loop.load_trainable_state(model, {**full, **dict.fromkeys("wxyz", torch.zeros(1))},
                                  frozenset())
    with pytest.raises(ValueError, match=r"\(not in the model: x, y, z\)$"):
        loop.load_trainable_state(model, {**full, **dict.fromkeys("xyz", torch.zeros(1))},
                                  frozenset())
    with pytest.raises(ValueError, match=r"\(frozen but saved: backbone.1.weight\)$"):
        loop.load_trainable_state(
            model, {k: v for k, v in full.items() if k in ("backbone.1.weight", "head.2.bias",
                                                             "head.2.weight")}, frozen)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loop.load_trainable_state(model, {"head.2.weight": torch.ones(2, 6),
                                      "head.2.bias": torch.ones(2)}, frozen)
    assert torch.equal(model.head[2].weight, torch.ones(2, 6))
    assert all(torch.equal(model.state_dict()[k], before[k]) for k in frozen)


class Drifting(FrozenFront):
    """Breaks the promise: a frozen weight changes in every training forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                self.backbone[0].bias += 1
        return super().forward(x)


def test_frozen_state_that_changes_in_training_fails_loudly_at_the_checkpoint(cpu):
    with pytest.raises(RuntimeError, match=r"^frozen state changed during training \(a frozen "
                                           r"parameter, or a buffer of a frozen module in eval "
                                           r"mode\): checkpoints that leave it out could not "
                                           r"resume this trial$"):
        _fit(Drifting(0), _splits(), epochs=2, batch_size=16)
    # Between checkpoints nothing is checked: the rows of epoch 1 went out first.
    rows = []
    with pytest.raises(RuntimeError):
        fit(Drifting(0), _splits(), TrainConfig(epochs=3, batch_size=16, checkpoint_every=2),
            report=lambda row, state: rows.append(row["epoch"]), generator=seed_everything(0))
    assert rows == [1]


def test_fingerprints_tell_dtype_shape_names_and_values_apart():
    base = nn.Linear(3, 2)
    keys = frozenset(["weight", "bias"])
    print_ = loop.frozen_fingerprint(base, keys)
    assert print_ == loop.frozen_fingerprint(copy.deepcopy(base), keys)
    assert len(print_) == 64 and loop.frozen_fingerprint(base, frozenset()) is None
    other = copy.deepcopy(base)
    with torch.no_grad():
        other.bias[1] += 1e-6
    assert loop.frozen_fingerprint(other, keys) != print_
    assert loop.frozen_fingerprint(copy.deepcopy(base).double(), keys) != print_
    assert loop.frozen_fingerprint(base, frozenset(["weight"])) != print_
    # Same bytes under another name or shape differ as well.
    a, b = nn.Module(), nn.Module()
    a.register_buffer("x", torch.arange(6.0))
    b.register_buffer("y", torch.arange(6.0))
    assert loop.frozen_fingerprint(a, frozenset("x")) != loop.frozen_fingerprint(b, frozenset("y"))
    b.register_buffer("x", torch.arange(6.0).reshape(2, 3))
    assert loop.frozen_fingerprint(a, frozenset("x")) != loop.frozen_fingerprint(b, frozenset("x"))
    c = nn.Module()
    # The same values in another memory layout (channels_last, say) are the same state.
    c.register_buffer("x", torch.arange(6.0).reshape(2, 3).t().contiguous().t())
    assert not c.x.is_contiguous()
    assert loop.frozen_fingerprint(c, frozenset("x")) == loop.frozen_fingerprint(b, frozenset("x"))


# ---- divergence ---------------------------------------------------------------------------


class Diverging(nn.Module):
    """A linear model whose training call number ``at`` (counted from 1) returns NaN."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.linear = _linear()
        self.at, self.calls = at, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x)
        if self.training:
            self.calls += 1
            if self.calls == self.at:
                out = out * float("nan")
        return out


@pytest.mark.parametrize(("at", "every", "calls"), [(3, 1, 3), (3, 2, 4), (2, 25, 4),
                                                     (4, 25, 4), (1, 3, 3)])
def test_divergence_names_the_first_non_finite_step(cpu, at, every, calls):
    # 32 examples in batches of 8: 4 steps. The loss is looked at every `every` steps and
    # after the last one; the first non-finite step is named whenever it is found.
    model = Diverging(at)
    run = _fit(model, _splits(n_train=32), epochs=3, batch_size=8, optimizer="sgd",
               divergence_check_every=every, context={"data_note": "n"})
    assert model.calls == calls
    message = f"non-finite loss at epoch 1 step {at}"
    assert run.result == FitResult(
        status="diverged", epochs_run=1, best_epoch=None, best_val_acc=None,
        best_val_loss=None, test_acc=None, test_loss=None, train_time_s=run.result.train_time_s,
        stopped_by="divergence", error=message, params=10)
    (row,) = run.rows
    assert run.states == [None]
    assert set(row) == ROW_KEYS | {"stopped_by", "error", "diverged_epoch", "diverged_step",
                                   "data_note"}
    assert (row["status"], row["stopped_by"], row["error"]) == ("diverged", "divergence",
                                                                message)
    assert (row["diverged_epoch"], row["diverged_step"]) == (1, at)
    assert math.isnan(row["val_loss"]) and math.isnan(row["val_acc"])
    assert math.isnan(row["train_loss"])
    assert (row["best_epoch"], row["best_val_acc"], row["best_val_loss"]) == (None, None, None)
    assert row["train_time_s"] == run.result.train_time_s and row["data_note"] == "n"


def test_divergence_in_a_later_epoch_keeps_the_best_so_far(cpu):
    model = Diverging(6)       # epoch 2, step 2
    run = _fit(model, _splits(n_train=32), epochs=3, batch_size=8, optimizer="sgd",
               divergence_check_every=1)
    first, row = run.rows
    assert first["status"] == "running" and run.states[1] is None
    assert row["error"] == "non-finite loss at epoch 2 step 2"
    assert (row["diverged_epoch"], row["diverged_step"]) == (2, 2)
    assert (row["best_epoch"], row["best_val_acc"], row["best_val_loss"]) == \
        (1, first["val_acc"], first["val_loss"])
    assert (run.result.epochs_run, run.result.best_epoch, run.result.best_val_loss) == \
        (2, 1, first["val_loss"])
    assert run.result.train_time_s == row["train_time_s"]


# ---- gradient clipping --------------------------------------------------------------------


def _params_with(*grads: torch.Tensor | None) -> list[nn.Parameter]:
    params = []
    for g in grads:
        p = nn.Parameter(torch.zeros(2))
        p.grad = None if g is None else g.clone()
        params.append(p)
    return params


def test_clip_gradients_global_and_per_tensor():
    big, small = torch.tensor([3.0, 4.0]), torch.tensor([0.3, 0.4])   # norms 5 and 0.5
    per = _params_with(big, None, small)
    clip_gradients(iter(per), 1.0, "per_tensor")
    assert torch.allclose(per[0].grad, big / 5) and torch.equal(per[2].grad, small)
    assert per[1].grad is None
    both = _params_with(big, None, small)
    clip_gradients(iter(both), 1.0, "global")
    total = math.sqrt(25.25)
    assert torch.allclose(both[0].grad, big / total) and torch.allclose(both[2].grad,
                                                                        small / total)
    under = _params_with(small)
    clip_gradients(under, 1.0, "global")
    assert torch.equal(under[0].grad, small)
    with pytest.raises(ValueError) as err:
        clip_gradients(_params_with(big), 1.0, "layer")
    assert str(err.value) == "grad_clip_mode='layer': choose global or per_tensor"


def test_per_tensor_clipping_measures_half_precision_gradients_in_float32():
    # The norm of these fp16 gradients (120000) overflows fp16; measured in fp32 it does not.
    p = nn.Parameter(torch.zeros(4, dtype=torch.float16))
    p.grad = torch.full((4,), 60000.0, dtype=torch.float16)
    clip_gradients([p], 1.0, "per_tensor")
    assert p.grad.dtype == torch.float16
    assert torch.allclose(p.grad.float(), torch.full((4,), 0.5), rtol=1e-3)


def _one_sgd_step(grad_clip: float | None, mode: str = "global",
                  precision: str = "fp32", scale: float = 1e3) -> dict[str, float]:
    model = _linear()
    x, _ = _points(8, 5)
    data = DeviceSplits(x * scale, torch.zeros(8, dtype=torch.long), x, torch.zeros(8,
                        dtype=torch.long), None, None, 2)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    _fit(model, data, epochs=1, batch_size=8, optimizer="sgd", lr=1.0, momentum=0.0,
         grad_clip=grad_clip, grad_clip_mode=mode, precision=precision, restore_best=False)
    return {k: (v.detach() - before[k]).norm().item() for k, v in model.state_dict().items()}


def test_fit_clips_globally_or_per_tensor(cpu):
    free = _one_sgd_step(None)
    assert free["weight"] > 10
    glob = _one_sgd_step(0.5)
    assert math.hypot(glob["weight"], glob["bias"]) == pytest.approx(0.5, rel=1e-4)
    per = _one_sgd_step(0.5, "per_tensor")
    assert per["weight"] == pytest.approx(0.5, rel=1e-4)
    assert per["bias"] == pytest.approx(min(0.5, free["bias"]), rel=1e-4)
    assert per["bias"] > glob["bias"] * 10


def test_fp16_gradients_are_unscaled_before_clipping(cpu):
    # The grad scaler multiplies the loss by 65536; clipping the scaled gradients would leave
    # a step 65536 times too small.
    step = _one_sgd_step(0.01, precision="fp16", scale=0.1)
    assert math.hypot(step["weight"], step["bias"]) == pytest.approx(0.01, rel=1e-3)


# ---- evaluation ---------------------------------------------------------------------------


def test_evaluate_averages_the_loss_per_example_over_uneven_batches(cpu):
    x, y = _points(10, 7)
    data = DeviceSplits(x, y, x, 1 - y, None, None, 2)
    model = _linear()
    cfg = TrainConfig(eval_batch_size=3)
    loss, acc = evaluate(model, data, "val", cfg, _Precision("fp32", cpu))
    with torch.no_grad():
        logits = model(x)
    assert loss == pytest.approx(F.cross_entropy(logits, 1 - y).item(), rel=1e-6)
    assert acc == _acc(logits, 1 - y)
    assert not model.training


def test_majority_vote_with_ties_broken_by_summed_softmax():
    probs = torch.tensor([
        [0.49, 0.51], [0.49, 0.51], [0.99, 0.01],      # group 10: votes 1,1,0 -> 1 (label 1)
        [0.55, 0.45], [0.40, 0.60],                    # group 3: a tie; softmax says 1 (label 1)
        [0.30, 0.70],                                  # group 7: one clip -> 1 (label 1)
        [0.80, 0.20], [0.90, 0.10], [0.45, 0.55],      # group 5: votes 0,0,1 -> 0 (label 1)
    ])
    predicted = probs.argmax(1)
    labels = torch.tensor([1, 1, 1, 1, 1, 1, 1, 1, 1])
    groups = torch.tensor([10, 10, 10, 3, 3, 7, 5, 5, 5])
    assert majority_vote_accuracy(probs, predicted, labels, groups) == 0.75
    # The tie goes the other way when the summed softmax does.
    flipped = probs.clone()
    flipped[3:5] = torch.tensor([[0.65, 0.35], [0.40, 0.60]])
    assert majority_vote_accuracy(flipped, flipped.argmax(1), labels, groups) == 0.5


@dataclass
class Grouped:
    """Validation and test examples that belong to groups (the clips of a video)."""

    base: DeviceSplits
    groups: torch.Tensor
    asked: list[str] = field(default_factory=list)
    num_classes: int = 2
    val_is_test: bool = False
    has_test: bool = True

    @property
    def device(self) -> torch.device:
        return self.base.device

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last

    def train_epoch(self, batch_size: int, *, generator, max_batches):
        return self.base.train_epoch(batch_size, generator=generator, max_batches=max_batches)

    def eval_batches(self, split, batch_size, *, max_batches) -> Iterator:
        self.asked.append(split)
        x, y = (self.base.x_val, self.base.y_val) if split == "val" else (self.base.x_test,
                                                                          self.base.y_test)
        for start in range(0, len(x), batch_size):
            yield (x[start:start + batch_size], y[start:start + batch_size],
                   self.groups[start:start + batch_size])


class Logits(nn.Module):
    """Inputs are the logits (plus a weight for the optimizer, which FIXED leaves at ~0)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.weight


def test_grouped_evaluation_votes_per_group_and_keeps_the_loss_per_example(cpu):
    probs = torch.tensor([[0.49, 0.51], [0.49, 0.51], [0.99, 0.01], [0.55, 0.45],
                          [0.40, 0.60], [0.30, 0.70], [0.80, 0.20], [0.90, 0.10],
                          [0.45, 0.55]])
    logits = probs.log()
    labels = torch.ones(9, dtype=torch.long)
    test_labels = torch.tensor([1, 1, 1, 0, 0, 0, 0, 0, 0])
    groups = torch.tensor([10, 10, 10, 3, 3, 7, 5, 5, 5])
    data = Grouped(DeviceSplits(logits, labels, logits, labels, logits, test_labels, 2),
                   groups)
    run = _fit(Logits(), data, epochs=2, batch_size=9, eval_batch_size=4, **FIXED)
    assert data.asked == ["val", "val", "test"]
    clip_acc = _acc(logits, labels)
    assert clip_acc == 5 / 9
    assert run.rows[0]["val_acc"] == 0.75                       # per group, not 5/9 per clip
    assert run.rows[0]["val_loss"] == pytest.approx(F.cross_entropy(logits, labels).item(),
                                                    rel=1e-6)
    assert run.result.test_acc == 0.5                           # groups 10 and 5 are right
    assert run.result.test_loss == pytest.approx(
        F.cross_entropy(logits, test_labels).item(), rel=1e-6)


# ---- memory format, precision, compile ----------------------------------------------------


def test_to_memory_format_converts_the_weights_of_its_rank_only():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv3d(4, 2, 2), nn.Linear(2, 2))
    model.register_buffer("grid", torch.rand(2, 3, 4, 5))
    to_memory_format(model, torch.channels_last)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not model[0].weight.is_contiguous()
    assert model.grid.is_contiguous(memory_format=torch.channels_last)
    assert model[1].weight.is_contiguous()
    assert model[2].weight.is_contiguous()
    to_memory_format(model, torch.channels_last_3d)
    assert model[1].weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert not model[1].weight.is_contiguous()


def test_channels_last_trains_and_evaluates_in_that_layout(cpu):
    model = Recorder()
    _fit(model, _images(), epochs=1, batch_size=8, channels_last=True)
    assert [c["training"] for c in model.calls] == [True, True, False, False]
    assert all(c["channels_last"] for c in model.calls)
    weight = model.net[0].weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    plain = Recorder()
    _fit(plain, _images(), epochs=1, batch_size=8)
    assert not any(c["channels_last"] for c in plain.calls)
    assert plain.net[0].weight.is_contiguous()


@pytest.mark.parametrize(("precision", "autocast", "dtype", "input_dtype", "scaled"), [
    ("fp32", False, None, torch.float32, False),
    ("bf16", True, torch.bfloat16, torch.float32, False),
    ("fp16", True, torch.float16, torch.float32, True),
    ("fp16_pure", False, None, torch.float16, False),
])
def test_precision_modes(cpu, precision, autocast, dtype, input_dtype, scaled):
    model = Recorder()
    # SGD: Adam's default eps is 0 in float16, and 0/0 on a zero gradient would diverge.
    run = _fit(model, _images(), epochs=1, batch_size=8, precision=precision, optimizer="sgd")
    assert run.result.status == "ok"
    assert {c["autocast"] for c in model.calls} == {autocast}
    if dtype is not None:
        assert {c["autocast_dtype"] for c in model.calls} == {dtype}
    assert {c["dtype"] for c in model.calls} == {input_dtype}
    assert next(model.parameters()).dtype == (torch.float16 if precision == "fp16_pure"
                                              else torch.float32)
    scaler = run.states[0]["scaler"]
    assert (scaler != {}) is scaled
    if scaled:
        assert scaler["scale"] == 65536.0 and scaler["_growth_tracker"] == 2


def test_compile_trains_and_evaluates_the_compiled_module_and_saves_the_original(
        cpu, monkeypatch):
    compiled = []

    class Compiled(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner, self.calls = inner, []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls.append(self.inner.training)
            return self.inner(x)

    def fake_compile(model: nn.Module) -> nn.Module:
        compiled.append(Compiled(model))
        return compiled[-1]

    monkeypatch.setattr(torch, "compile", fake_compile)
    model = _linear()
    run = _fit(model, _splits(n_train=16), epochs=1, batch_size=8, compile=True)
    assert len(compiled) == 1 and compiled[0].inner is model
    assert compiled[0].calls == [True, True, False, False]
    assert set(run.states[0]["model"]) == {"weight", "bias"}
    _fit(_linear(), _splits(n_train=16), epochs=1, batch_size=8)
    assert len(compiled) == 1


def test_peak_memory_is_reported_in_mib_on_cuda(monkeypatch):
    asked = []
    monkeypatch.setattr(torch.cuda, "max_memory_allocated",
                        lambda device: asked.append(device) or 3 * 2**20)
    assert loop._peak_memory_mb(torch.device("cuda", 1)) == 3.0
    assert asked == [torch.device("cuda", 1)]        # the data's GPU, not the current one
    assert loop._peak_memory_mb(torch.device("cpu")) == 0.0
