"""Checkpoint bytes written per trial-epoch and per run: the old scheme against the new.

Old (CHECKPOINT_VERSION 1): every epoch of every trial saved the whole model, a copy of the
best weights and the optimizer state. New (version 2): a checkpoint holds the trainable
state (frozen parameters and frozen eval-mode buffers left out) and the optimizer state,
at the cadence of ``train.checkpoint_every``, and the best weights (trainable state only)
go to one artifact file each time they improve.

Only state-dict sizes matter, so every model is built on torch's meta device (no memory,
no pretrained files) and sizes are tensor bytes (numel x element size; ``torch.save`` adds
about 0.1 kB per tensor, checked against a real save of the small models). The optimizer
state is what the preset's optimizer keeps after a step: Adam/AdamW two moments and a step
per trainable tensor, SGD with momentum one buffer. Per run: the preset's epochs x its
trials (variants x default seeds, no tuning), all trials running every epoch.

The new scheme's run total depends on two things a run decides: how many epochs check
point (C) and how often the best weights improve between checkpoints (I <= C). The first
table takes C = E (a checkpoint every epoch: the new scheme's worst case) and prints both
bounds on I: I = C (improves at every checkpoint) and I = 1. The second shows the
automatic cadence (at least 30 s apart while epochs take under a minute, else at least
10 minutes; C counted by the loop's own ``checkpoint_due``) at epoch times the table
assumes, with I = C.

    .venv/bin/python benchmarks/checkpoint_bytes.py
"""

from __future__ import annotations

import copy
import io
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.space import concrete_configs  # noqa: E402
from search_spaces.registry import load_experiment  # noqa: E402
from trainables.config import TrainConfig  # noqa: E402
from trainables.loop import checkpoint_due, frozen_fingerprint, frozen_state_keys  # noqa: E402
from trainables.trial_setup import build_model  # noqa: E402

# What each preset's data hands the model builder: (in_channels, classes, (height, width)).
DATA = {"mnist_attention": (1, 10, (28, 28)), "cifar10_cnntention": (3, 10, (32, 32)),
        "hmdb51_ablation": (None, 51, None), "wlasl_temporal": (None, 10, None)}
PRESETS = tuple(DATA)
RNG_BYTES = 2 * 5056          # the CPU generator's and torch's global RNG state
MB = 1e6


@dataclass
class Sizes:
    variant: str
    trainable: int            # bytes the new checkpoint's model (and a best file) hold
    frozen: int               # bytes left out
    optimizer: int

    @property
    def old_epoch(self) -> int:
        return 2 * (self.trainable + self.frozen) + self.optimizer + RNG_BYTES

    @property
    def new_epoch(self) -> int:     # a checkpoint without a new best file
        return self.trainable + self.optimizer + RNG_BYTES


def _nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def optimizer_bytes(model: nn.Module, train: dict) -> int:
    params = [p for p in model.parameters() if p.requires_grad]
    name = train.get("optimizer", "adam")
    if name in ("adam", "adamw"):
        return 2 * _nbytes(params) + 4 * len(params)      # exp_avg, exp_avg_sq, step
    return _nbytes(params) if train.get("momentum") else 0


def sizes(model: nn.Module, train: dict, variant: str) -> Sizes:
    frozen = frozen_state_keys(model)
    state = model.state_dict()
    return Sizes(variant, _nbytes(v for k, v in state.items() if k not in frozen),
                 _nbytes(v for k, v in state.items() if k in frozen),
                 optimizer_bytes(model, train))


def preset_models(name: str):
    experiment = load_experiment(name)
    channels, classes, size = DATA[name]
    for config in concrete_configs(experiment.param_space):
        values = dict(config["model"])
        if "pretrained" in values:
            values["pretrained"] = False      # same shapes; no weight file needed
        label = config.get("variant") or "/".join(
            str(config["model"][k.split(".", 1)[1]]) for k in experiment.variant_keys)
        with torch.device("meta"):
            model = build_model(values, in_channels=channels, num_classes=classes,
                                input_size=size)
        yield experiment, label, model, config["train"]


def saved_bytes(obj) -> int:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return len(buffer.getvalue())


def check_against_torch_save() -> str:
    """The estimate against real saves of the old and new checkpoints of mnist_cnn."""
    model = build_model({"name": "mnist_cnn", "attention": "none", "dropout": 0.3},
                        in_channels=1, num_classes=10, input_size=(28, 28))
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.zeros(2, 1, 28, 28)).sum().backward()
    optimizer.step()
    rng = {"generator": torch.Generator().get_state(), "torch_rng": torch.get_rng_state()}
    old = {"model": model.state_dict(), "best_state": copy.deepcopy(model.state_dict()),
           "optimizer": optimizer.state_dict(), **rng}
    new = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), **rng}
    estimate = sizes(model, {"optimizer": "adam"}, "none")
    return (f"check, mnist_cnn (none): torch.save old {saved_bytes(old):,} B vs estimate "
            f"{estimate.old_epoch:,} B; new {saved_bytes(new):,} B vs {estimate.new_epoch:,} B")


def fingerprint_cost() -> str:
    """What the frozen-state check costs per checkpoint for wlasl_temporal's ResNet-18."""
    model = build_model({"name": "frame_temporal", "pooling": "mean", "pretrained": False},
                        num_classes=10)
    keys = frozen_state_keys(model)
    frozen_fingerprint(model, keys)
    t0 = time.perf_counter()
    for _ in range(3):
        frozen_fingerprint(model, keys)
    seconds = (time.perf_counter() - t0) / 3
    return (f"frozen-state fingerprint (SHA-256 of {len(keys)} tensors, "
            f"{_nbytes(model.state_dict()[k] for k in keys) / MB:.1f} MB) of wlasl_temporal's "
            f"ResNet-18 on this CPU: {seconds:.3f} s per checkpoint")


def automatic_checkpoints(epochs: int, epoch_s: float) -> int:
    """Checkpoints a trial of ``epochs`` epochs of ``epoch_s`` seconds reports (automatic
    cadence, the last epoch included), as the loop decides them."""
    cfg, since, count = TrainConfig(epochs=epochs), 0.0, 0
    for epoch in range(1, epochs + 1):
        since += epoch_s
        if epoch == epochs or checkpoint_due(epoch, cfg, epoch_wall_s=epoch_s,
                                             since_last_s=since):
            count, since = count + 1, 0.0
    return count


EPOCH_TIMES = (5.0, 30.0, 120.0, 300.0, 900.0)
KEPT = 2      # the runner's CheckpointConfig(num_to_keep=2)


def main() -> None:
    print("| preset | variant | trainable MB | frozen MB | optimizer MB | old MB/epoch | "
          "new MB/epoch (no new best / new best) | epoch ratio (no new best / new best) | "
          "run: epochs x seeds | old GB/run | new GB/run (I=C / I=1) | run ratio (I=C / I=1) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    presets = {}
    for name in PRESETS:
        rows = [(sizes(model, train, label), train["epochs"])
                for _, label, model, train in preset_models(name)]
        seeds = load_experiment(name).seeds
        presets[name] = (rows, seeds)
        total_old = total_upper = total_lower = 0
        for size, epochs in rows:
            old = epochs * seeds * size.old_epoch
            upper = epochs * seeds * (size.new_epoch + size.trainable)
            lower = seeds * (epochs * size.new_epoch + size.trainable)
            total_old, total_upper, total_lower = (total_old + old, total_upper + upper,
                                                   total_lower + lower)
            best_epoch = size.new_epoch + size.trainable
            print(f"| {name} | {size.variant} | {size.trainable / MB:.2f} | "
                  f"{size.frozen / MB:.2f} | {size.optimizer / MB:.2f} | "
                  f"{size.old_epoch / MB:.2f} | {size.new_epoch / MB:.2f} / {best_epoch / MB:.2f} "
                  f"| {size.old_epoch / size.new_epoch:.2f}x / {size.old_epoch / best_epoch:.2f}x "
                  f"| {epochs} x {seeds} | {old / 1e9:.3f} | {upper / 1e9:.3f} / "
                  f"{lower / 1e9:.3f} | {old / upper:.2f}x / {old / lower:.2f}x |")
        print(f"| **{name}** | all {len(rows)} variants | | | | | | | {len(rows) * seeds} trials "
              f"| **{total_old / 1e9:.3f}** | **{total_upper / 1e9:.3f} / "
              f"{total_lower / 1e9:.3f}** | **{total_old / total_upper:.2f}x / "
              f"{total_old / total_lower:.2f}x** |")
    print()
    print("Automatic cadence at assumed epoch times (I = C): checkpoints per trial, new GB/run, "
          "ratio old/new")
    print()
    print("| preset | old GB/run | " + " | ".join(f"{t:g} s epochs" for t in EPOCH_TIMES) + " |")
    print("|---|---|" + "---|" * len(EPOCH_TIMES))
    for name in PRESETS:
        rows, seeds = presets[name]
        old = sum(epochs * seeds * size.old_epoch for size, epochs in rows)
        cells = []
        for seconds in EPOCH_TIMES:
            new = sum(automatic_checkpoints(epochs, seconds) * seeds
                      * (size.new_epoch + size.trainable) for size, epochs in rows)
            count = automatic_checkpoints(rows[0][1], seconds)
            cells.append(f"{count} of {rows[0][1]}: {new / 1e9:.3f} GB, {old / new:.1f}x")
        print(f"| {name} | {old / 1e9:.3f} | " + " | ".join(cells) + " |")
    print()
    print(f"Left on disk when the run ends (Ray keeps {KEPT} checkpoints per trial; a trial "
          f"keeps up to {KEPT + 1} best-weight files): GB")
    print()
    print("| preset | old | new, before cleaning (at most) | after clean_checkpoints "
          "(keep_best=True) | after clean_checkpoints (keep_best=False) |")
    print("|---|---|---|---|---|")
    for name, (rows, seeds) in presets.items():
        old = sum(seeds * KEPT * size.old_epoch for size, _ in rows)
        new = sum(seeds * (KEPT * size.new_epoch + (KEPT + 1) * size.trainable)
                  for size, _ in rows)
        best = sum(seeds * size.trainable for size, _ in rows)
        print(f"| {name} | {old / 1e9:.3f} | {new / 1e9:.3f} | {best / 1e9:.3f} | 0 |")
    print()
    print(check_against_torch_save())
    print(fingerprint_cost())


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
