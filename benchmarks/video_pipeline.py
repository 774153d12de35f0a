"""Video clips: decoding per clip vs the per-node clip store; training step precision/layout.

Side by side in one process, on one synthetic HMDB51-layout dataset written here with a
real codec (MPEG-4 Part 2 in AVI at HMDB51's 320x240 and 30 fps, like its DivX files):

1. clips/s, cold vs warm, for the training recipe (16 frames over 2 s, 128x171, random 112
   crop + flip, normalised):
   - cold: every clip decoded from its video file (decord, resize after decode), as a
     Dataset that decodes in __getitem__ does every epoch;
   - warm: the same number of clips read from the memory-mapped clip store (random window,
     crop, flip, normalise) through `ClipData`, what every epoch of every trial pays once
     the store exists; the one-off cost of building the store is printed beside them.
2. Training step time of the HMDB51 study's network (R(2+1)D-18, 8 blocks + 1 cross + 1 self):
   fp32 vs bf16 autocast with channels_last_3d, same batch, same device.

    python benchmarks/video_pipeline.py                    # CPU-sized defaults
    python benchmarks/video_pipeline.py --videos 64 --batch 16 --frames 16 --crop 112  # a GPU
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from trainables.data.registry import Hmdb51Config, _hmdb51
from trainables.data.video.decode import decode_frames, probe
from trainables.data.video.hmdb51 import load_hmdb51_index
from trainables.data.video.sampling import FrameSampling, random_starts, stored_indices, window
from trainables.data.video.synth import write_hmdb51
from trainables.loop import _Precision, to_memory_format
from trainables.models import get_model
from trainables.seeding import seed_everything


def _cold_clips(entries, frames: int, size: tuple[int, int], count: int, seed: int) -> float:
    """Seconds to decode ``count`` random training clips straight from the files."""
    rng = np.random.default_rng(seed)
    sampling = FrameSampling("rate", frames, clip_seconds=2.0)
    start = time.perf_counter()
    for i in range(count):
        entry = entries[i % len(entries)]
        indices = stored_indices(sampling, probe(entry.path), entry)
        first = random_starts(np.array([len(indices)]), frames, rng.random(1))[0]
        decode_frames(entry.path, indices[window(len(indices), int(first), frames)], size=size)
    return time.perf_counter() - start


def _warm_clips(data, batch: int, count: int) -> float:
    """Seconds to produce ``count`` training clips from the store (device-ready)."""
    produced, start = 0, time.perf_counter()
    generator = seed_everything(0)
    while produced < count:
        for x, _ in data.train_epoch(batch, generator=generator, max_batches=None):
            produced += len(x)
            if produced >= count:
                break
    if data.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _step_time(model, x, y, precision: str, channels_last: bool, steps: int) -> float:
    device = x.device
    if channels_last:
        to_memory_format(model, torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    mode = _Precision(precision, device)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        with mode.autocast():
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])  # the first step pays for allocation and tuning


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=24, help="videos in the synthetic set")
    parser.add_argument("--clips", type=int, default=48, help="clips timed per side")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--crop", type=int, default=112)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per setting")
    parser.add_argument("--step-frames", type=int, default=8,
                        help="clip length for the step timing (16 on a GPU)")
    parser.add_argument("--step-crop", type=int, default=64,
                        help="clip side for the step timing (112 on a GPU)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, "
          f"torch threads {torch.get_num_threads()}")

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "hmdb51"
        classes = 4
        write_hmdb51(root, classes=classes, videos_per_class=max(3, args.videos // classes),
                     seconds=3.0, fps=30, size=(240, 320), seed=0)
        entries = list(load_hmdb51_index(root, split=1).entries)
        size = (128, 171)
        cold = _cold_clips(entries, args.frames, size, args.clips, seed=0)

        cfg = Hmdb51Config(root=str(root), frames=args.frames, crop=args.crop,
                           cache_dir=str(Path(scratch) / "cache"))
        build_start = time.perf_counter()
        splits = _hmdb51(cfg)
        build = time.perf_counter() - build_start
        data = splits.to_device(device)
        warm = _warm_clips(data, args.batch, args.clips)
        print(f"{len(entries)} videos 320x240 30 fps MPEG-4 AVI, ~3 s each; "
              f"{args.clips} training clips of {args.frames} frames per side")
        print(f"  cold (decode per clip):   {args.clips / cold:8.1f} clips/s")
        print(f"  warm (clip store):        {args.clips / warm:8.1f} clips/s")
        print(f"  warm / cold:              {cold / warm:8.1f}x")
        print(f"  store build (one-off):    {build:8.2f} s for {len(splits.store.label)} videos, "
              f"{splits.store.nbytes / 2**20:.1f} MiB")

    torch.manual_seed(0)
    shape = (args.batch, 3, args.step_frames, args.step_crop, args.step_crop)
    x = torch.randn(shape, device=device)
    y = torch.randint(0, 51, (args.batch,), device=device)
    results = {}
    for label, precision, channels_last in (("fp32", "fp32", False),
                                            ("bf16 + channels_last_3d", "bf16", True)):
        seed_everything(0)
        model = get_model("r2plus1d_perceiver", num_classes=51, cnn_blocks=8, cross_blocks=1,
                          self_per_cross=1).to(device)
        results[label] = _step_time(model, x, y, precision, channels_last, args.steps)
        del model
    print(f"training step, 8 blocks + 1C+1S, batch {shape}:")
    for label, seconds in results.items():
        print(f"  {label:24s} {seconds * 1000:8.1f} ms/step")
    fp32, fast = results.values()
    print(f"  fp32 / bf16+cl3d:         {fp32 / fast:8.2f}x")


if __name__ == "__main__":
    main()
