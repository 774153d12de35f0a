"""Spectrogram features computed once per node and cached vs recomputed every epoch.

What it measures, side by side in one process on the same recordings:
- extract: read every WAV (soundfile), resample if needed, compute the log-mel image;
  this is what a pipeline that builds features on the fly pays every epoch.
- cache hit: load the node cache's .npz, what every trial after the first pays once.
Ratios are then given for one trial (EPOCHS epochs) and a whole sweep (TRIALS trials).

    python benchmarks/audio_features.py                      # the bundled 600 recordings
    python benchmarks/audio_features.py --generated 3000     # an FSDD-sized generated set
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from trainables.data.fsdd import compute_features, find_recordings, write_fsdd
from trainables.data.node_cache import cache_key, cached_arrays
from trainables.data.spectrogram import SpectrogramSpec
from trainables.data.spoken_digits import BUNDLED_ROOT


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generated", type=int, default=0,
                        help="use a generated FSDD-layout set of about this many files")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15, help="fsdd_attention's budget")
    parser.add_argument("--trials", type=int, default=36, help="fsdd_attention's full grid")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        root = BUNDLED_ROOT
        if args.generated:
            root = Path(scratch) / "fsdd"
            write_fsdd(root, speakers=6, takes=max(1, args.generated // 60))
        recordings, _ = find_recordings(root)
        spec = SpectrogramSpec()  # the preset's: log-mel 128x128
        cache = Path(scratch) / "cache"
        key = cache_key({"bench": str(root), "n": len(recordings)})

        compute_features(recordings[:20], spec)  # warm up imports and the mel filterbank
        extract = _median_time(lambda: compute_features(recordings, spec), args.repeats)
        build = _median_time(lambda: cached_arrays(cache / str(time.perf_counter_ns()), key,
                                                   lambda: compute_features(recordings, spec)),
                             1)
        cached_arrays(cache / "shared", key, lambda: compute_features(recordings, spec))
        hit = _median_time(lambda: cached_arrays(cache / "shared", key, _never), args.repeats * 3)

    per_trial_fly = args.epochs * extract
    sweep_fly = args.trials * per_trial_fly
    sweep_cached = build + (args.trials - 1) * hit
    print(f"recordings: {len(recordings)} ({'generated' if args.generated else 'bundled'}), "
          f"features {spec.kind} {spec.height}x{spec.width}")
    print(f"extract all (per epoch if on the fly): {extract:.3f} s "
          f"({1e3 * extract / len(recordings):.2f} ms per recording)")
    print(f"first trial on a node (extract + write cache): {build:.3f} s")
    print(f"cache hit (every later trial): {hit:.4f} s")
    print(f"one trial, {args.epochs} epochs: on the fly {per_trial_fly:.2f} s vs cache hit "
          f"{hit:.4f} s -> {per_trial_fly / hit:,.0f}x")
    print(f"sweep of {args.trials} trials: on the fly {sweep_fly:.1f} s vs cached "
          f"{sweep_cached:.2f} s -> {sweep_fly / sweep_cached:,.0f}x")


def _never():
    raise AssertionError("a cache hit must not rebuild")


if __name__ == "__main__":
    main()
