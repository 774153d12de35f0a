"""THE training loop, shared by every modality. Ray-agnostic: it reports through a callable.

Read it top to bottom: build optimizer and schedule, maybe resume, then for each epoch set
the LR, train, check for divergence, validate, track the best weights, checkpoint and
report. The last report of a trial carries its outcome (status, stopped_by, test metrics of
the best weights), so the caller needs no second channel to learn how a trial ended.

Checkpoints are sized to the job: an epoch reports one when ``train.checkpoint_every`` says
so (automatic by default: every 30 s while epochs are short, else every ten minutes), and
the last epoch always does. They hold what the trial changes and nothing it cannot:
frozen parameters (and the buffers of frozen modules kept in eval mode) come back from the
rebuilt model on resume, checked against a fingerprint. The best weights sit in the
checkpoint as ``best_state``; a caller with somewhere better to keep them (the Ray adapter
writes them once per improvement beside the trial's artifacts) swaps them out there.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainables.config import ConfigError, TrainConfig
from trainables.data.batches import Split, TrialData

# report(metrics, checkpoint_state): checkpoint_state is a dict to persist, or None.
Reporter = Callable[[dict[str, Any], dict[str, Any] | None], None]

# 2: frozen state left out (frozen_keys, frozen_sha256); checkpoints not every epoch.
CHECKPOINT_VERSION = 2

# Automatic cadence (train.checkpoint_every none or 0): while an epoch takes less than
# AUTO_EVERY_EPOCH_UNDER_S, once AUTO_SHORT_INTERVAL_S have passed since the last checkpoint
# (so a lost worker costs at most that much training); longer epochs, once AUTO_INTERVAL_S
# have passed (their models are the large ones). Not every short epoch: Ray snapshots the
# whole experiment's state whenever a trial writes num_to_keep checkpoints between two of
# its periodic (>= 10 s) snapshots, so checkpoints seconds apart mean a snapshot each.
AUTO_EVERY_EPOCH_UNDER_S = 60.0
AUTO_SHORT_INTERVAL_S = 30.0
AUTO_INTERVAL_S = 600.0
# Wall time for the cadence (epoch_time_s in the rows uses time.perf_counter).
_wall_clock = time.monotonic


@dataclass
class FitResult:
    """How a trial ended; the same facts are in its final report."""

    status: str                # "ok" | "early_stopped" | "diverged"
    epochs_run: int
    best_epoch: int | None
    best_val_acc: float | None
    best_val_loss: float | None
    test_acc: float | None
    test_loss: float | None
    train_time_s: float
    stopped_by: str | None
    error: str | None
    params: int


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The configured optimizer over the trainable parameters.

    On CUDA the fused implementations: one kernel per step instead of one per tensor, and
    with fp16's grad scaler the inf check stays on the device (the unfused step reads it
    with ``.item()``, a host sync every step). The CPU keeps the reference ones.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    fused = bool(params) and all(p.is_cuda for p in params)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay, nesterov=cfg.nesterov,
                               fused=fused or None)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, eps=cfg.eps, weight_decay=cfg.weight_decay,
                                fused=fused or None)
    return torch.optim.AdamW(params, lr=cfg.lr, eps=cfg.eps, weight_decay=cfg.weight_decay,
                             fused=fused or None)


def lr_factor(epoch: int, cfg: TrainConfig) -> float:
    """LR multiplier for a 0-based epoch. A pure function of the epoch, so resume is exact."""
    if epoch < cfg.warmup_epochs:
        return (epoch + 1) / (cfg.warmup_epochs + 1)
    if cfg.schedule == "step":
        return cfg.gamma ** (epoch // cfg.step_size)
    if cfg.schedule == "multistep":
        return cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    if cfg.schedule == "cosine":
        span = max(1, cfg.epochs - cfg.warmup_epochs)
        return 0.5 * (1 + math.cos(math.pi * (epoch - cfg.warmup_epochs) / span))
    return 1.0


class _Precision:
    """fp32, bf16/fp16 autocast (fp16 with a grad scaler), or a pure fp16 model."""

    def __init__(self, mode: str, device: torch.device) -> None:
        self.mode = mode
        self.device_type = device.type
        self.input_dtype = torch.float16 if mode == "fp16_pure" else torch.float32
        autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mode)
        self.autocast_dtype = autocast
        self.scaler = torch.amp.GradScaler(device.type, enabled=mode == "fp16")

    def autocast(self):
        if self.autocast_dtype is None:
            return torch.autocast(self.device_type, enabled=False)
        return torch.autocast(self.device_type, dtype=self.autocast_dtype)


@torch.no_grad()
def evaluate(model: nn.Module, data: TrialData, split: Split, cfg: TrainConfig,
             precision: _Precision) -> tuple[float, float]:
    """Mean loss per example and accuracy over a split (capped by max_batches).

    When the data groups its examples (the clips of one video), accuracy is per group: each
    group's prediction is the majority vote of its examples, ties broken by the summed
    softmax, so a video counts once however many clips cover it. The loss stays per clip.
    """
    model.eval()
    loss_sum = torch.zeros((), device=data.device)
    correct = torch.zeros((), device=data.device, dtype=torch.long)
    seen = 0
    grouped: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
    for xb, yb, groups in data.eval_batches(split, cfg.eval_batch_size,
                                            max_batches=cfg.max_batches):
        xb = xb.to(precision.input_dtype)
        if cfg.channels_last:   # as in training: a model tuned for one layout sees only it
            xb = xb.contiguous(memory_format=data.memory_format)
        with precision.autocast():
            logits = model(xb)
        loss_sum += F.cross_entropy(logits.float(), yb, reduction="sum")
        seen += len(yb)
        if groups is None:
            correct += (logits.argmax(1) == yb).sum()
        else:
            grouped.append((logits.float().softmax(1), logits.argmax(1), yb, groups))
    if not grouped:
        return (loss_sum / seen).item(), correct.item() / seen
    return (loss_sum / seen).item(), majority_vote_accuracy(
        *(torch.cat(parts) for parts in zip(*grouped, strict=True)))


def majority_vote_accuracy(probs: torch.Tensor, predicted: torch.Tensor, labels: torch.Tensor,
                           groups: torch.Tensor) -> float:
    """Accuracy over groups when each group predicts the class most of its members predict."""
    ids, groups = torch.unique(groups, return_inverse=True)
    classes = probs.shape[1]
    votes = torch.zeros(len(ids), classes, device=probs.device)
    votes.index_put_((groups, predicted), torch.ones_like(predicted, dtype=votes.dtype),
                     accumulate=True)
    confidence = torch.zeros_like(votes).index_add_(0, groups, probs)
    counts = torch.bincount(groups, minlength=len(ids)).clamp_min(1).unsqueeze(1)
    # Mean softmax < 1, so it only breaks ties between classes with equal votes.
    choice = (votes + confidence / (counts + 1)).argmax(1)
    truth = torch.zeros(len(ids), dtype=labels.dtype, device=labels.device)
    truth[groups] = labels
    return (choice == truth).float().mean().item()


def to_memory_format(model: nn.Module, memory_format: torch.memory_format) -> None:
    """Convert the weights that have the format's rank (4-D for channels_last, 5-D for
    channels_last_3d). ``Module.to(memory_format=...)`` refuses a model that mixes ranks, such
    as a frozen 2-D frame CNN feeding a temporal head on video clips."""
    rank = 5 if memory_format == torch.channels_last_3d else 4
    with torch.no_grad():
        for tensor in (*model.parameters(), *model.buffers()):
            if tensor.dim() == rank:
                tensor.data = tensor.data.contiguous(memory_format=memory_format)


def clip_gradients(parameters: Iterable[nn.Parameter], max_norm: float, mode: str) -> None:
    """Scale gradients so their norm is at most ``max_norm``, in place.

    Why two modes: a source trained with Keras' ``clipnorm`` clipped every variable's gradient
    on its own (``g * max_norm / max(||g||, max_norm)``), which leaves small gradients alone
    even when one layer's explodes; torch's usual clip scales all of them by the norm of
    the whole set. Reproducing a source means clipping the way it did.
    """
    params = [p for p in parameters if p.grad is not None]
    if mode == "global":
        nn.utils.clip_grad_norm_(params, max_norm)
        return
    if mode != "per_tensor":
        raise ValueError(f"grad_clip_mode={mode!r}: choose global or per_tensor")
    for p in params:
        norm = torch.linalg.vector_norm(p.grad, dtype=torch.float32)
        p.grad.mul_((max_norm / norm.clamp(min=max_norm)).to(p.grad.dtype))


def epoch_choosing_settings(cfg: TrainConfig) -> list[str]:
    """The settings (as ``key=value``) with which the loop picks an epoch by validation."""
    return [key for key, on in (("train.restore_best=true", cfg.restore_best),
                                (f"train.patience={cfg.patience}", cfg.patience is not None))
            if on]


def _no_epoch_chosen_on_test(data: TrialData, cfg: TrainConfig) -> None:
    """Refuse to pick an epoch by validation when validation is the test split.

    Restoring the best epoch, or stopping at the epoch after which validation stopped
    improving, both choose by the test accuracy that is then reported: the number is the
    best of several looks at the test set. The plan refuses such a sweep up front; this is
    the loop keeping its own promise for any caller.
    """
    if not data.val_is_test:
        return
    chosen = epoch_choosing_settings(cfg)
    if chosen:
        raise ConfigError(f"{' and '.join(chosen)} would choose an epoch on the test split "
                          "(this data validates on test); set train.restore_best=false and "
                          "train.patience=none, or hold validation out (e.g. "
                          "data.val_fraction=0.1)")


def checkpoint_due(epoch: int, cfg: TrainConfig, *, epoch_wall_s: float,
                   since_last_s: float) -> bool:
    """Whether a 1-based epoch that does not end the trial reports a checkpoint.

    ``epoch_wall_s``: the epoch's wall time, training and validation; ``since_last_s``: wall
    time since the last checkpoint (or since the trial started or resumed). A fixed
    ``checkpoint_every`` counts epochs from the trial's start, so a resumed trial keeps the
    cadence of an uninterrupted one.
    """
    if epoch in cfg.checkpoint_at:
        return True
    if cfg.checkpoint_every:
        return epoch % cfg.checkpoint_every == 0
    short = epoch_wall_s < AUTO_EVERY_EPOCH_UNDER_S
    return since_last_s >= (AUTO_SHORT_INTERVAL_S if short else AUTO_INTERVAL_S)


def frozen_state_keys(model: nn.Module) -> frozenset[str]:
    """The state-dict keys training cannot change, which checkpoints leave out.

    Frozen parameters (``requires_grad=False``: the optimizer never sees them), and the
    buffers of a module whose own parameters are all frozen and that stays in eval mode
    while the model trains: a frozen backbone's BatchNorm statistics, which eval mode never
    updates. A module with a trainable parameter, without parameters, or that follows
    ``model.train()`` keeps its buffers in the checkpoint.
    """
    was_training = model.training
    model.train()
    keys: set[str] = set()
    for prefix, module in model.named_modules(remove_duplicate=False):
        dot = f"{prefix}." if prefix else ""
        own = [(name, p) for name, p in module._parameters.items() if p is not None]
        keys.update(dot + name for name, p in own if not p.requires_grad)
        if own and not module.training and not any(p.requires_grad for _, p in own):
            keys.update(dot + name for name in module._buffers)
    model.train(was_training)
    # Only what the state dict holds (no non-persistent or None buffers).
    return frozenset(keys & set(model.state_dict()))


def frozen_fingerprint(model: nn.Module, keys: frozenset[str]) -> str | None:
    """SHA-256 of the frozen state (names, dtypes, shapes, bytes); None when nothing is frozen."""
    if not keys:
        return None
    state = model.state_dict()
    digest = hashlib.sha256()
    for key in sorted(keys):
        tensor = state[key].detach()
        digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def trainable_state(model: nn.Module, frozen: frozenset[str]) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` without the frozen keys (tensors shared with the model)."""
    full = model.state_dict()
    state = type(full)((k, v) for k, v in full.items() if k not in frozen)
    # Module versions (BatchNorm's) travel with the dict, as in a full state_dict.
    state._metadata = getattr(full, "_metadata", None)  # type: ignore[attr-defined]
    return state


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor],
                         frozen: frozenset[str]) -> None:
    """Load ``state`` into ``model``: exactly the frozen keys may be missing, nothing else."""
    have = set(model.state_dict())
    missing, unexpected = have - set(state), set(state) - have
    if missing != frozen or unexpected:
        problems = [f"{what}: {', '.join(sorted(keys)[:3])}"
                    + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")
                    for what, keys in (("missing and not frozen", missing - frozen),
                                       ("frozen but saved", frozen - missing),
                                       ("not in the model", unexpected)) if keys]
        raise ValueError(f"the checkpoint does not fit the model ({'; '.join(problems)})")
    model.load_state_dict(state, strict=False)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return 0.0


def fit(
    model: nn.Module,
    data: TrialData,
    cfg: TrainConfig,
    *,
    report: Reporter,
    generator: torch.Generator,
    resume: dict[str, Any] | None = None,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    on_finish: Callable[[nn.Module], None] | None = None,
    context: dict[str, Any] | None = None,
) -> FitResult:
    """Train ``model`` on ``data``; report one row per epoch; return how the trial ended.

    ``augment`` runs on whole training batches on the device. ``resume`` is a checkpoint
    state from an earlier report of the same trial: training continues after its epoch.
    ``on_finish(model)`` runs once with the final (or restored best) weights *before* the
    last report, because a scheduler may stop the trial the moment it sees that report.
    ``context`` is merged into every report (e.g. ``data_note``: what the data loader
    skipped), so the facts reach the results even when a trial stops early.

    Epochs between checkpoints (see ``checkpoint_due``) report ``report(row, None)``. A
    checkpoint state leaves out the frozen state (``frozen_state_keys``); resuming needs the
    same model rebuilt the same way, which its ``frozen_sha256`` checks.

    A model with a ``regularization_loss()`` method (returning a tensor or None) has that
    term added to the training loss, as Keras adds its kernel regularizers: gradient
    clipping sees it, and the reported ``train_loss`` includes it.
    """
    _no_epoch_chosen_on_test(data, cfg)
    device = data.device
    params = count_parameters(model)
    model.to(device)
    if cfg.channels_last:
        to_memory_format(model, data.memory_format)
    precision = _Precision(cfg.precision, device)
    if precision.mode == "fp16_pure":
        model.half()
    optimizer = build_optimizer(model, cfg)
    forward = torch.compile(model) if cfg.compile else model
    regularization = getattr(model, "regularization_loss", None)
    frozen = frozen_state_keys(model)
    fingerprint = frozen_fingerprint(model, frozen)

    start_epoch, best, best_state, bad_epochs, train_time = 0, None, None, 0, 0.0
    if resume is not None:
        if resume.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"checkpoint version {resume.get('version')} is not {CHECKPOINT_VERSION}")
        if resume["frozen_sha256"] != fingerprint:
            raise ValueError("the rebuilt model's frozen weights are not those the checkpoint "
                             "trained with: a resumed trial must rebuild its frozen layers the "
                             "same way (same pretrained file, same seed)")
        load_trainable_state(model, resume["model"], frozen)
        optimizer.load_state_dict(resume["optimizer"])
        precision.scaler.load_state_dict(resume["scaler"])
        generator.set_state(resume["generator"])
        # Dropout draws from the global RNG: without it a resumed trial is a different trial.
        torch.set_rng_state(resume["torch_rng"])
        if device.type == "cuda" and resume.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(resume["cuda_rng"], device)
        start_epoch, best, bad_epochs = resume["epoch"], resume["best"], resume["bad_epochs"]
        best_state, train_time = resume["best_state"], resume["train_time_s"]
        if cfg.patience is not None and bad_epochs >= cfg.patience and start_epoch < cfg.epochs:
            # The checkpoint of a trial patience stopped: it stays stopped (a larger
            # train.patience than it ran with would continue it).
            return _result("early_stopped", start_epoch, best, None, train_time, "patience",
                           None, params)

    last_checkpoint = _wall_clock()
    for epoch in range(start_epoch, cfg.epochs):
        epoch_started = _wall_clock()
        lr = cfg.lr * lr_factor(epoch, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

        # ---- train one epoch -----------------------------------------------------------
        model.train()
        batches = data.train_epoch(cfg.batch_size, generator=generator,
                                   max_batches=cfg.max_batches)
        losses = torch.zeros(len(batches), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen, steps_done, diverged_at = 0, 0, None
        t0 = time.perf_counter()
        for step, (xb, yb) in enumerate(batches):
            if augment is not None:
                xb = augment(xb)
            xb = xb.to(precision.input_dtype)
            if cfg.channels_last:
                xb = xb.contiguous(memory_format=data.memory_format)
            with precision.autocast():
                logits = forward(xb)
                loss = F.cross_entropy(logits.float(), yb, label_smoothing=cfg.label_smoothing)
                penalty = regularization() if regularization is not None else None
                if penalty is not None:
                    loss = loss + penalty
            optimizer.zero_grad(set_to_none=True)
            precision.scaler.scale(loss).backward()
            if cfg.grad_clip is not None:
                precision.scaler.unscale_(optimizer)
                clip_gradients(model.parameters(), cfg.grad_clip, cfg.grad_clip_mode)
            precision.scaler.step(optimizer)
            precision.scaler.update()
            losses[step] = loss.detach()
            correct += (logits.detach().argmax(1) == yb).sum()
            seen += len(yb)
            steps_done = step + 1
            # Looking at the loss forces a device sync, so do it every few steps, not every one.
            last = step + 1 == len(batches)
            if (step + 1) % cfg.divergence_check_every == 0 or last:
                finite = torch.isfinite(losses[: step + 1])
                if not bool(finite.all()):
                    diverged_at = int((~finite).nonzero()[0])
                    break
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        epoch_time = time.perf_counter() - t0
        train_time += epoch_time

        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": losses[:steps_done].mean().item() if steps_done else float("nan"),
            "train_acc": correct.item() / max(seen, 1),
            "lr": lr,
            "epoch_time_s": epoch_time,
            "samples_per_s": seen / epoch_time if epoch_time > 0 else float("nan"),
            "gpu_mem_mb": _peak_memory_mb(device),
            "params": params,
            "train_time_s": train_time,
            **(context or {}),
        }

        if diverged_at is not None:
            message = f"non-finite loss at epoch {epoch + 1} step {diverged_at + 1}"
            row.update(val_loss=float("nan"), val_acc=float("nan"), status="diverged",
                       stopped_by="divergence", error=message, diverged_epoch=epoch + 1,
                       diverged_step=diverged_at + 1)
            row.update(_best_fields(best))
            report(row, None)
            return _result("diverged", epoch + 1, best, None, train_time, "divergence", message, params)

        # ---- validate, track the best weights --------------------------------------------
        val_loss, val_acc = evaluate(forward, data, "val", cfg, precision)
        row.update(val_loss=val_loss, val_acc=val_acc)
        score = val_acc if cfg.monitor == "val_acc" else -val_loss
        if best is None or score > best["score"]:
            best = {"score": score, "epoch": epoch + 1, "val_acc": val_acc, "val_loss": val_loss}
            best_state = copy.deepcopy(trainable_state(model, frozen))
            bad_epochs = 0
        else:
            bad_epochs += 1

        # Patience running out on the last epoch stops nothing: the trial ran its budget.
        last_epoch = epoch + 1 == cfg.epochs
        out_of_patience = (cfg.patience is not None and bad_epochs >= cfg.patience
                           and not last_epoch)
        finished = out_of_patience or last_epoch
        now = _wall_clock()
        checkpoint = finished or checkpoint_due(epoch + 1, cfg, epoch_wall_s=now - epoch_started,
                                                since_last_s=now - last_checkpoint)
        row.update(_best_fields(best))
        row["status"] = "running"
        test = None
        last_weights = None
        if finished:
            # The reported test numbers are the best checkpoint's (never chosen on the test
            # split: see _no_epoch_chosen_on_test). The checkpoint keeps the last epoch's
            # weights beside the best, so training a finished trial further continues from
            # where it stopped, with the optimizer state that belongs to those weights.
            if cfg.restore_best:
                last_weights = copy.deepcopy(trainable_state(model, frozen))
                load_trainable_state(model, best_state, frozen)
            if data.has_test:
                test = evaluate(forward, data, "test", cfg, precision)
                row.update(test_loss=test[0], test_acc=test[1])
            row["status"] = "early_stopped" if out_of_patience else "ok"
            row["stopped_by"] = "patience" if out_of_patience else None
            if on_finish is not None:
                on_finish(model)

        state = None
        if checkpoint:
            if frozen_fingerprint(model, frozen) != fingerprint:
                raise RuntimeError("frozen state changed during training (a frozen parameter, or "
                                   "a buffer of a frozen module in eval mode): checkpoints that "
                                   "leave it out could not resume this trial")
            state = {
                "version": CHECKPOINT_VERSION,
                "model": (last_weights if last_weights is not None
                          else trainable_state(model, frozen)),
                "optimizer": optimizer.state_dict(),
                "scaler": precision.scaler.state_dict(),
                "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                "epoch": epoch + 1,
                "best": best,
                "best_state": best_state,
                "bad_epochs": bad_epochs,
                "train_time_s": train_time,
                "frozen_keys": sorted(frozen),
                "frozen_sha256": fingerprint,
            }
            last_checkpoint = now
        report(row, state)
        if finished:
            return _result(row["status"], epoch + 1, best, test, train_time,
                           row["stopped_by"], None, params)

    # Resumed from the final checkpoint: nothing left to train.
    return _result("ok", cfg.epochs, best, None, train_time, None, None, params)


def _best_fields(best: dict[str, Any] | None) -> dict[str, Any]:
    if best is None:
        return {"best_epoch": None, "best_val_acc": None, "best_val_loss": None}
    return {"best_epoch": best["epoch"], "best_val_acc": best["val_acc"],
            "best_val_loss": best["val_loss"]}


def _result(status: str, epochs_run: int, best: dict[str, Any] | None,
            test: tuple[float, float] | None, train_time: float, stopped_by: str | None,
            error: str | None, params: int) -> FitResult:
    fields = _best_fields(best)
    return FitResult(
        status=status, epochs_run=epochs_run, best_epoch=fields["best_epoch"],
        best_val_acc=fields["best_val_acc"], best_val_loss=fields["best_val_loss"],
        test_acc=None if test is None else test[1], test_loss=None if test is None else test[0],
        train_time_s=train_time, stopped_by=stopped_by, error=error, params=params,
    )
