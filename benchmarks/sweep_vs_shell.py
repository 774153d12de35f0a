"""The full mnist_attention sweep through the orchestrator vs the same trials from a shell loop.

What a user without the tool would do on a 2-core machine: one bare training process per
(arm, seed), two at a time (``xargs -P 2``), each with one torch thread. Both sides train
the same 15 configs (5 arms x 3 seeds x 10 epochs); the orchestrated side's wall time
includes everything the user waits for: Ray start, workers, the Parquet sink, the summary
and report.html. Both run in this one invocation, side by side, and the ratio is printed
with the single-trial ratio of ``benchmarks/overhead.py``.

    .venv/bin/python benchmarks/sweep_vs_shell.py [--epochs 10] [--seeds 3] [--jobs 2]
    .venv/bin/python benchmarks/sweep_vs_shell.py --bare-trial none 0 10   # one shell job
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARMS = ("none", "spatial", "self", "cbam", "se")


def bare_trial(attention: str, seed: int, epochs: int) -> None:
    """One shell-loop job: the preset's recipe for one (arm, seed), by the bare loop."""
    sys.path.insert(0, str(ROOT))
    import torch

    from search_spaces.mnist_attention import EXPERIMENT
    from trainables.image import run_image_trial

    torch.set_num_threads(1)  # two jobs on two cores, as the orchestrator gives each trial
    config = {"seed": seed, "data": dict(EXPERIMENT.param_space["data"]),
              "model": {"name": "mnist_cnn", "attention": attention, "dropout": 0.3},
              "train": {**EXPERIMENT.param_space["train"], "epochs": epochs}}
    result = run_image_trial(config, report=lambda metrics, state: None, device="cpu")
    print(f"{attention} seed={seed}: test_acc {result.test_acc:.4f}", flush=True)


def shell_loop(epochs: int, seeds: int, jobs: int) -> float:
    commands = [[sys.executable, __file__, "--bare-trial", arm, str(seed), str(epochs)]
                for seed in range(seeds) for arm in ARMS]
    started = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        for done in pool.map(lambda c: subprocess.run(c, cwd=ROOT, capture_output=True,
                                                      text=True), commands):
            if done.returncode:
                sys.exit(f"a shell-loop job failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def sweep(epochs: int, seeds: int, storage: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "orchestrator", "run", "mnist_attention", "-q",
                    "--seeds", str(seeds), "--set", f"train.epochs={epochs}",
                    "--storage", storage, "--name", "bench"], cwd=ROOT, check=True,
                   capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2, help="shell-loop jobs at once")
    parser.add_argument("--bare-trial", nargs=3, metavar=("ARM", "SEED", "EPOCHS"))
    args = parser.parse_args()
    if args.bare_trial:
        arm, seed, epochs = args.bare_trial
        bare_trial(arm, int(seed), int(epochs))
        return
    with tempfile.TemporaryDirectory() as storage:
        orchestrated = sweep(args.epochs, args.seeds, storage)
    loop = shell_loop(args.epochs, args.seeds, args.jobs)
    trials = len(ARMS) * args.seeds
    print(f"sweep ({trials} trials, {args.epochs} epochs, CLI incl. Ray and report): "
          f"{orchestrated:6.1f} s")
    print(f"shell loop (same trials, {args.jobs} bare processes at a time):          "
          f"{loop:6.1f} s")
    print(f"sweep / shell loop: {orchestrated / loop:.2f}")
    overhead = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "overhead.py"),
                               "--epochs", str(args.epochs)], cwd=ROOT, capture_output=True,
                              text=True)
    ratio = [line for line in overhead.stdout.splitlines() if "ratio" in line]
    print(f"single trial (benchmarks/overhead.py): {ratio[0] if ratio else overhead.stderr[-300:]}")


if __name__ == "__main__":
    main()
