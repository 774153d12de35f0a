"""One command for the GPU checks (issue 17, part 4): one table on stdout, the figures as JSON.

On a GPU machine, from the repository root (sized for under 8 minutes on one H100/H200;
not yet run on a GPU: no device was lent when it was written):

    .venv/bin/python benchmarks/gpu_check.py          # writes benchmarks/gpu_check.json

Sections, each failing soft (its error goes into the table and the JSON, the rest still runs):

1. presets: every image and audio preset (`python -m orchestrator list`; video excluded) with
   `--smoke` through the real CLI on the GPU (`--seeds 1`, 8 trials packed per GPU by
   default); CIFAR presets on generated CIFAR files (`write_cifar`, `--data-root`). Each: ok
   or the one-line error, wall time, and whether every trial really ran on CUDA (its epochs
   recorded GPU memory).
2. resnet20: the CNNtention baseline ResNet-20 (built by `trial_setup.build_model` from the
   preset's model config), training images/s at 3x32x32, batch 128 and 256, in fp32, bf16
   autocast, bf16 + channels_last, and that plus `torch.compile`; warm-up steps untimed.
3. packing: 1, 2, 4, 8 and 16 concurrent `mnist_attention` trials (model.attention=none) on
   one GPU through the CLI (`--seeds N --gpus-per-trial 1/N --max-concurrent N`, fixed
   epochs). Aggregate images/s = the sum over trials of each trial's median epoch
   `samples_per_s` from the run's epochs Parquet (the trials run together: each trains for
   many times the spread of their start-up), and its ratio to 1 trial (goal: 8 >= 4x).
4. video_model: the hmdb51_ablation network (R(2+1)D-18, 8 blocks + 1 cross + 1 self
   attention, no pretrained weights) at batch 16 x 3 x 16 x 112 x 112 in bf16 +
   channels_last_3d with Adam: clips/s, peak memory, and model FLOP utilisation (FLOPs of
   one fwd+bwd step counted by `FlopCounterMode`, over a peak bf16 dense FLOP/s looked up
   by device name; n/a for devices not in `PEAK_BF16_FLOPS`).
5. clip_store: clips/s the training-batch iterator delivers on the device (`load_dataset`
   -> clip store -> `ClipData.train_epoch`, as a video trial) from a synthetic HMDB51 set
   (`write_hmdb51`, what `orchestrator data synth hmdb51` writes), against section 4's
   model clips/s at the same batch and clip shape.

Exit code 0 when every section ran and passed; 1 when one errored (or a preset failed) or
was skipped because the whole run passed `--budget-s` (default 480 s); 2 on bad arguments.

The script itself on a CPU, at tiny sizes (2 presets, batch 4, 2 timed steps, 1 and 2
concurrent trials, 8x32x32 clips; about 3 minutes on 2 cores, `torch.compile` with the
aot_eager backend there since inductor's C++ build alone takes over a minute):

    .venv/bin/python benchmarks/gpu_check.py --device cpu --tiny --out /tmp/gpu_check.json
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import torch
import torch.nn.functional as F

from trainables.config import TrainConfig
from trainables.loop import _Precision, build_optimizer, to_memory_format
from trainables.trial_setup import build_model

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "gpu_check.json"

# Peak dense bf16 tensor-core FLOP/s by device name (first match wins). "H100 80GB HBM3" is
# the SXM part's name; the PCIe and NVL parts are slower and left out rather than guessed.
PEAK_BF16_FLOPS = (("H200", 989e12), ("H100 80GB HBM3", 989e12), ("H100 SXM", 989e12),
                   ("A100", 312e12))

# label, precision, channels_last, compile
IMAGE_MODES = (("fp32", "fp32", False, False), ("bf16", "bf16", False, False),
               ("bf16+channels_last", "bf16", True, False),
               ("bf16+channels_last+compile", "bf16", True, True))


@dataclass(frozen=True)
class Sizes:
    presets: tuple[str, ...] | None      # None: every image and audio preset
    preset_sets: dict[str, tuple[str, ...]]  # extra --set per preset (tiny: one variant)
    preset_seeds: int
    image_batches: tuple[int, ...]
    warmup: int
    steps: int
    pack_counts: tuple[int, ...]
    pack_sets: tuple[str, ...]
    video_batch: int
    frames: int
    crop: int
    video_warmup: int
    video_steps: int
    synth: dict[str, Any]                # write_hmdb51 keyword arguments
    store_data: dict[str, Any]           # data config overrides for the clip store
    store_clips: int                     # clips timed from the store


FULL = Sizes(
    presets=None, preset_sets={}, preset_seeds=1, image_batches=(128, 256), warmup=5,
    steps=30, pack_counts=(1, 2, 4, 8, 16), pack_sets=("train.epochs=15",), video_batch=16,
    frames=16, crop=112, video_warmup=3, video_steps=10,
    # 120 videos (~65 for training: 4 batches an epoch); small frames render fast, and the
    # store resizes every video to the preset's 128x171 whatever its size on disk.
    synth={"classes": 4, "videos_per_class": 30, "seconds": 2.5, "fps": 30,
           "size": (144, 192)},
    store_data={}, store_clips=480)
TINY = Sizes(
    presets=("mnist_attention", "cifar10_cnntention"),
    preset_sets={"mnist_attention": ("model.attention=none",),
                 "cifar10_cnntention": ("variant=[baseline]",)},
    preset_seeds=1, image_batches=(4,), warmup=1, steps=2, pack_counts=(1, 2),
    pack_sets=("train.epochs=2", "train.max_batches=8"), video_batch=4, frames=8, crop=32,
    video_warmup=1, video_steps=2,
    synth={"classes": 2, "videos_per_class": 4, "seconds": 2.5, "fps": 15, "size": (96, 128)},
    store_data={"height": 40, "width": 53}, store_clips=16)


@dataclass
class Context:
    device: torch.device
    sizes: Sizes
    scratch: Path
    deadline: float                      # time.monotonic() at which the budget runs out
    preset_gpus: float
    shared: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _free(device: torch.device) -> None:
    torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ---- the CLI in a subprocess ------------------------------------------------------------------
def run_cli(args: list[str], timeout: float) -> tuple[int, float, str]:
    """`python -m orchestrator ARGS`: exit code, seconds, output. Past ``timeout`` it gets
    Ctrl-C (the CLI saves state and stops its Ray), then SIGKILL to its process group."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=max(timeout, 1))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        out += f"\nerror: timed out after {timeout:.0f} s (budget)"
    return proc.returncode, time.perf_counter() - start, out


def _one_line_error(out: str, run_dir: Path) -> str:
    """The first errored trial's message, else the CLI's `error:` line, else its last line."""
    trials = run_dir / "trials.parquet"
    if trials.exists():
        errors = pl.read_parquet(trials).filter(pl.col("status") == "error")["error"].drop_nulls()
        if len(errors):
            return errors[0].strip().splitlines()[-1]
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    flagged = [line for line in lines if line.startswith("error")]
    return (flagged or lines or ["no output"])[-1][:300]


def _epochs(run_dir: Path) -> pl.DataFrame:
    return pl.read_parquet(run_dir / "epochs" / "*.parquet")


# ---- section 1: every image/audio preset, --smoke, through the CLI ----------------------------
def _image_presets() -> list[str]:
    from search_spaces.registry import load_experiment, preset_names

    return [name for name in preset_names() if load_experiment(name).modality != "video"]


def _needs_data_root(preset: str) -> bool:
    from orchestrator.space import grid_axes
    from search_spaces.registry import load_experiment
    from trainables.data.registry import dataset_spec

    data = load_experiment(preset).param_space.get("data", {})
    names = grid_axes(data).get("name") or [data["name"]]
    return not all(dataset_spec(n).available(data.get("root"))[0] for n in names)


def _cifar_root(scratch: Path) -> Path:
    from trainables.data.cifar import write_cifar

    root = scratch / "cifar"
    write_cifar(root, classes=10, n_train=1000, n_test=200)
    write_cifar(root, classes=100, n_train=2000, n_test=500)
    return root


def cli_rows(ctx: Context, runs: list[tuple[str, list[str], Path]],
             read: Callable[[Path], dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per CLI run (check name, arguments, run directory), failing soft per run: a
    non-zero exit or a failure to read the run is that row's one-line error. ``read`` turns
    a finished run's directory into the row's figures (and may set status and error)."""
    rows = []
    for check, args, run_dir in runs:
        if ctx.remaining() <= 0:
            rows.append({"check": check, "status": "skipped", "result": "skipped: budget"})
            continue
        rc, seconds, out = run_cli(args, ctx.remaining())
        row: dict[str, Any] = {"check": check, "wall_s": seconds, "exit_code": rc,
                               "command": "python -m orchestrator " + " ".join(args)}
        try:
            if rc != 0:
                raise RuntimeError(_one_line_error(out, run_dir))
            row.update({"status": "ok", **read(run_dir)})
        except Exception as err:
            row.update(status="error", error=str(err).strip().splitlines()[0] if str(err)
                       else type(err).__name__)
        if row["status"] == "error":
            row["result"] = f"error: {row['error']}"
        rows.append(row)
    return rows


def section_presets(ctx: Context) -> list[dict[str, Any]]:
    data_root = _cifar_root(ctx.scratch)
    gpus = ctx.preset_gpus if ctx.cuda else 0
    storage = ctx.scratch / "presets"
    runs = []
    for preset in ctx.sizes.presets or _image_presets():
        args = ["run", preset, "--smoke", "--seeds", str(ctx.sizes.preset_seeds),
                "--gpus-per-trial", f"{gpus:g}", "--storage", str(storage), "--name", "check",
                "-q"]
        if _needs_data_root(preset):
            args += ["--data-root", str(data_root)]
        for item in ctx.sizes.preset_sets.get(preset, ()):
            args += ["--set", item]
        runs.append((preset, args, storage / preset / "check"))

    def read(run_dir: Path) -> dict[str, Any]:
        per_trial = _epochs(run_dir).group_by("trial_id").agg(pl.col("gpu_mem_mb").max())
        n, on_cuda = per_trial.height, int((per_trial["gpu_mem_mb"] > 0).sum())
        row = {"trials": n, "trials_on_cuda": on_cuda,
               "result": f"ok ({n} trial{'s' if n != 1 else ''}"
                         + (f", {on_cuda} on cuda)" if ctx.cuda else ")")}
        if ctx.cuda and on_cuda < n:
            row.update(status="error", error=f"{n - on_cuda} of {n} trials did not run on CUDA")
        return row

    return cli_rows(ctx, runs, read)


# ---- the timed training step (sections 2 and 4) ----------------------------------------------
def time_steps(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, train: TrainConfig, *,
               precision: str, channels_last: bool, compile_backend: str | None, warmup: int,
               steps: int) -> dict[str, float]:
    """Seconds per training step (forward, loss, backward, optimizer) after ``warmup`` untimed
    steps, the loop's pieces as `loop.fit` uses them; also the warm-up's seconds."""
    device = x.device
    model.to(device).train()
    if channels_last:
        memory_format = torch.channels_last_3d if x.dim() == 5 else torch.channels_last
        to_memory_format(model, memory_format)
        x = x.contiguous(memory_format=memory_format)
    mode = _Precision(precision, device)
    optimizer = build_optimizer(model, train)
    forward = torch.compile(model, backend=compile_backend) if compile_backend else model

    def step() -> None:
        with mode.autocast():
            loss = F.cross_entropy(forward(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    start = time.perf_counter()
    for _ in range(warmup):
        step()
    _sync(device)
    timed = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return {"step_s": (time.perf_counter() - timed) / steps, "warmup_s": timed - start}


# ---- section 2: ResNet-20 images/s -------------------------------------------------------------
def section_resnet20(ctx: Context) -> list[dict[str, Any]]:
    from search_spaces.cifar10_cnntention import BASE

    train = TrainConfig(**{k: BASE["train"][k] for k in ("optimizer", "lr", "momentum",
                                                          "weight_decay")})
    backend = "inductor" if ctx.cuda else "aot_eager"
    rows = []
    for batch in ctx.sizes.image_batches:
        for label, precision, channels_last, compiled in IMAGE_MODES:
            torch.manual_seed(0)
            model = build_model(dict(BASE["model"]), in_channels=3, num_classes=10,
                                input_size=(32, 32))
            x = torch.randn(batch, 3, 32, 32, device=ctx.device)
            y = torch.randint(0, 10, (batch,), device=ctx.device)
            timing = time_steps(model, x, y, train, precision=precision,
                                channels_last=channels_last,
                                compile_backend=backend if compiled else None,
                                warmup=ctx.sizes.warmup, steps=ctx.sizes.steps)
            name = label + (f"({backend})" if compiled and not ctx.cuda else "")
            rate = batch / timing["step_s"]
            rows.append({"check": f"batch {batch} {name}", "batch": batch, "mode": name,
                         "images_per_s": rate, "step_ms": timing["step_s"] * 1000,
                         "warmup_s": timing["warmup_s"], "status": "ok",
                         "result": f"{rate:,.0f} img/s ({timing['step_s'] * 1000:.2f} ms/step)"})
            del model, x, y
            _free(ctx.device)
    return rows


# ---- section 3: packing curve --------------------------------------------------------------------
def section_packing(ctx: Context) -> list[dict[str, Any]]:
    storage = ctx.scratch / "packing"
    runs = []
    for n in ctx.sizes.pack_counts:
        args = ["run", "mnist_attention", "--set", "model.attention=none", "--seeds", str(n),
                "--gpus-per-trial", f"{1 / n:.4g}" if ctx.cuda else "0", "--cpus-per-trial",
                "1", "--max-concurrent", str(n), "--storage", str(storage), "--name",
                f"pack{n}", "-q"]
        for item in ctx.sizes.pack_sets:
            args += ["--set", item]
        runs.append((f"{n} concurrent", args, storage / "mnist_attention" / f"pack{n}"))

    def read(run_dir: Path) -> dict[str, Any]:
        epochs = _epochs(run_dir)
        steady = epochs.filter(pl.col("epoch") > 1) if epochs["epoch"].max() > 1 else epochs
        per_trial = steady.group_by("trial_id").agg(pl.col("samples_per_s").median())
        total = float(per_trial["samples_per_s"].sum())
        return {"trials": per_trial.height, "images_per_s": total,
                "per_trial_images_per_s": total / per_trial.height}

    rows = cli_rows(ctx, runs, read)
    for n, row in zip(ctx.sizes.pack_counts, rows, strict=True):
        row["concurrent"] = n
    one = next((r["images_per_s"] for r in rows if r.get("concurrent") == 1
                and r["status"] == "ok"), None)
    for row in rows:
        if row["status"] == "ok":
            row["ratio_vs_1"] = row["images_per_s"] / one if one else None
            row["result"] = (f"{row['images_per_s']:,.0f} img/s aggregate"
                             + (f", {row['ratio_vs_1']:.2f}x of 1 trial" if one else ""))
    eight = next((r for r in rows if r.get("concurrent") == 8 and r["status"] == "ok"), None)
    if eight is not None and eight["ratio_vs_1"] is not None:
        met = eight["ratio_vs_1"] >= 4
        rows.append({"check": "goal: 8 concurrent >= 4x one", "status": "ok", "goal_met": met,
                     "result": f"{'met' if met else 'NOT met'} ({eight['ratio_vs_1']:.2f}x)"})
    return rows


# ---- section 4: the video model ----------------------------------------------------------------
def peak_flops(device: torch.device) -> tuple[str, float | None]:
    if device.type != "cuda":
        return "cpu", None
    name = torch.cuda.get_device_name(device)
    return name, next((peak for key, peak in PEAK_BF16_FLOPS if key in name), None)


def count_step_flops(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                     precision: str) -> int:
    """FLOPs of one training step's forward and backward, as `FlopCounterMode` counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        with _Precision(precision, x.device).autocast():
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def section_video_model(ctx: Context) -> list[dict[str, Any]]:
    from search_spaces.hmdb51_ablation import BASE

    s = ctx.sizes
    torch.manual_seed(0)
    model = build_model(dict(BASE["model"], pretrained=False), num_classes=51).to(ctx.device)
    shape = (s.video_batch, 3, s.frames, s.crop, s.crop)
    x = torch.randn(shape, device=ctx.device)
    y = torch.randint(0, 51, (s.video_batch,), device=ctx.device)
    x = x.contiguous(memory_format=torch.channels_last_3d)
    to_memory_format(model, torch.channels_last_3d)
    flops = count_step_flops(model, x, y, "bf16")
    if ctx.cuda:
        torch.cuda.reset_peak_memory_stats(ctx.device)
    train = TrainConfig(optimizer=BASE["train"]["optimizer"], lr=BASE["train"]["lr"],
                        weight_decay=BASE["train"]["weight_decay"])
    timing = time_steps(model, x, y, train, precision="bf16", channels_last=True,
                        compile_backend=None, warmup=s.video_warmup, steps=s.video_steps)
    peak_mb = torch.cuda.max_memory_allocated(ctx.device) / 2**20 if ctx.cuda else None
    device_name, peak = peak_flops(ctx.device)
    achieved = flops / timing["step_s"]
    mfu = achieved / peak if peak else None
    clips = s.video_batch / timing["step_s"]
    ctx.shared["model_clips_per_s"] = clips
    del model, x, y
    _free(ctx.device)
    memory = f"{peak_mb / 1024:.1f} GiB peak" if peak_mb is not None else "peak mem n/a"
    return [{"check": f"8b+1c1s bf16+cl3d batch {s.video_batch}x3x{s.frames}x{s.crop}x{s.crop}",
             "status": "ok", "clips_per_s": clips, "step_ms": timing["step_s"] * 1000,
             "peak_mem_mb": peak_mb, "flops_per_step": flops, "achieved_flops_per_s": achieved,
             "device_name": device_name, "peak_bf16_flops": peak, "mfu": mfu,
             "result": f"{clips:,.1f} clips/s, {memory}, {achieved / 1e12:.2f} TFLOP/s, MFU "
                       + (f"{mfu:.1%}" if mfu is not None else "n/a")}]


# ---- section 5: the clip store against the model -----------------------------------------------
def section_clip_store(ctx: Context) -> list[dict[str, Any]]:
    from search_spaces.hmdb51_ablation import BASE
    from trainables.data.registry import load_dataset
    from trainables.data.video.synth import write_hmdb51

    s = ctx.sizes
    root = ctx.scratch / "hmdb51-synth"
    write_hmdb51(root, seed=0, **s.synth)
    data_cfg = dict(BASE["data"], root=str(root), cache_dir=str(ctx.scratch / "clip-cache"),
                    frames=s.frames, crop=s.crop, **s.store_data)
    splits = load_dataset(data_cfg)  # what run_video_trial does: builds (or opens) the store
    data = splits.to_device(ctx.device)
    generator = torch.Generator().manual_seed(0)

    def clips(count: int) -> int:
        produced = 0
        while produced < count:
            for xb, _ in data.train_epoch(s.video_batch, generator=generator, max_batches=None):
                produced += len(xb)
                if produced >= count:
                    break
        _sync(ctx.device)
        return produced

    clips(s.video_batch)  # warm-up: first gather, pinned memory, first transfer
    start = time.perf_counter()
    produced = clips(s.store_clips)
    rate = produced / (time.perf_counter() - start)
    model = ctx.shared.get("model_clips_per_s")
    ratio = rate / model if model else None
    return [{"check": f"store -> {ctx.device.type} batch {s.video_batch}, {len(splits.train)} "
                      "train videos", "status": "ok", "clips_per_s": rate,
             "model_clips_per_s": model, "store_over_model": ratio,
             "store_build_s": splits.store.build_seconds,
             "result": f"{rate:,.1f} clips/s delivered; model "
                       + (f"{model:,.1f} clips/s: store/model {ratio:.1f}x" if ratio else "n/a")}]


SECTIONS: tuple[tuple[str, str, Callable[[Context], list[dict[str, Any]]]], ...] = (
    # Cheap in-process sections first, so a budget overrun costs the CLI-driven ones.
    ("resnet20", "2 ResNet-20 img/s", section_resnet20),
    ("video_model", "4 video model", section_video_model),
    ("clip_store", "5 clip store", section_clip_store),
    ("presets", "1 presets --smoke", section_presets),
    ("packing", "3 packing", section_packing),
)


def run_section(fn: Callable[[Context], list[dict[str, Any]]], ctx: Context) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        rows = fn(ctx)
        statuses = {row["status"] for row in rows}
        status = "error" if "error" in statuses else "skipped" if "skipped" in statuses else "ok"
        result: dict[str, Any] = {"status": status, "rows": rows}
    except Exception as err:  # fail soft: record it and go on with the next section
        message = f"{type(err).__name__}: {err}".splitlines()[0][:300]
        result = {"status": "error", "error": message, "traceback": traceback.format_exc(),
                  "rows": []}
    result["seconds"] = time.perf_counter() - start
    return result


def table(sections: dict[str, dict[str, Any]]) -> str:
    lines = [("section", "check", "result", "s")]
    for key, title, _ in SECTIONS:
        section = sections[key]
        if not section["rows"]:
            note = section.get("error") or section.get("note", "")
            lines.append((title, "-", f"{section['status']}: {note}", f"{section['seconds']:.1f}"))
        timed_rows = any("wall_s" in row for row in section["rows"])
        for i, row in enumerate(section["rows"]):
            # CLI rows show their own wall time; in-process sections their total, once.
            seconds = row.get("wall_s") if timed_rows else section["seconds"] if i == 0 else None
            lines.append((title, row["check"], row["result"],
                          f"{seconds:.1f}" if seconds is not None else ""))
    widths = [max(len(line[i]) for line in lines) for i in range(3)]
    out = []
    for i, line in enumerate(lines):
        out.append("  ".join(cell.ljust(w) for cell, w in zip(line[:3], widths, strict=True))
                   + "  " + line[3].rjust(6))
        if i == 0:
            out.append("  ".join("-" * w for w in widths) + "  " + "-" * 6)
    return "\n".join(out)


def _git_revision() -> str | None:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                          capture_output=True, check=False)
    return done.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: checks the script")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    parser.add_argument("--budget-s", type=float, default=480.0,
                        help="skip the sections left once this many seconds have passed")
    parser.add_argument("--preset-gpus", type=float, default=0.125,
                        help="--gpus-per-trial for the preset smoke runs (default 0.125)")
    parser.add_argument("--only", default="", help="comma-separated sections to run "
                        f"({', '.join(key for key, _, _ in SECTIONS)}); default all")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device here; for a CPU run of the script use --device cpu --tiny")
    only = set(filter(None, args.only.split(",")))
    unknown = only - {key for key, _, _ in SECTIONS}
    if unknown:
        parser.error(f"unknown section(s) {sorted(unknown)}")
    if device.type == "cpu":
        # A smoke of the script: one thread, as OpenMP threads spin-waiting on a shared CPU
        # swung the same step's time 100-fold between runs.
        torch.set_num_threads(1)
    started = time.monotonic()
    sections: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as scratch:
        ctx = Context(device=device, sizes=TINY if args.tiny else FULL, scratch=Path(scratch),
                      deadline=started + args.budget_s, preset_gpus=args.preset_gpus)
        for key, title, fn in SECTIONS:
            if only and key not in only:
                sections[key] = {"status": "not run", "note": "not in --only", "rows": [],
                                 "seconds": 0.0}
            elif ctx.remaining() <= 0:
                sections[key] = {"status": "skipped", "rows": [], "seconds": 0.0,
                                 "note": f"budget of {args.budget_s:g} s used up"}
            else:
                print(f"[{time.monotonic() - started:6.1f} s] {title} ...", file=sys.stderr,
                      flush=True)
                sections[key] = run_section(fn, ctx)
    failed = [key for key, s in sections.items() if s["status"] in ("error", "skipped")]
    result = {
        "device": args.device, "device_name": peak_flops(device)[0], "tiny": args.tiny,
        "budget_s": args.budget_s, "elapsed_s": time.monotonic() - started,
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
        "git_revision": _git_revision(), "argv": sys.argv[1:] if argv is None else argv,
        "ok": not failed, "failed_sections": failed, "sections": sections,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(table(sections))
    print(f"{'all checks passed' if not failed else 'FAILED: ' + ', '.join(failed)}; "
          f"{result['elapsed_s']:.0f} s; JSON: {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
