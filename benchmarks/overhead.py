"""Orchestrator overhead: the same training config run by the bare loop and as one Tune trial.

Prints both wall times and their ratio, measured side by side in one process run. The
orchestrated time includes everything a user waits for: Ray start-up, the trial's worker
start (torch import), the Parquet sink and the report.

    .venv/bin/python benchmarks/overhead.py [--attention none] [--epochs 10]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from search_spaces.mnist_attention import EXPERIMENT  # noqa: E402
from trainables.image import run_image_trial  # noqa: E402


def bare(attention: str, epochs: int) -> tuple[float, float]:
    config = {"seed": 0, "data": dict(EXPERIMENT.param_space["data"]),
              "model": {"name": "mnist_cnn", "attention": attention, "dropout": 0.3},
              "train": {**EXPERIMENT.param_space["train"], "epochs": epochs}}
    torch.set_num_threads(1)  # what one trial gets from the orchestrator (1 CPU per trial)
    t0 = time.perf_counter()
    result = run_image_trial(config, report=lambda m, s: None, device="cpu")
    return time.perf_counter() - t0, result.test_acc


def orchestrated(attention: str, epochs: int, storage: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "orchestrator", "run", "mnist_attention", "-q",
                    "--seeds", "1", "--set", f"model.attention={attention}",
                    "--set", f"train.epochs={epochs}", "--storage", storage, "--name", "overhead"],
                   cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attention", default="none")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    bare_s, acc = bare(args.attention, args.epochs)
    with tempfile.TemporaryDirectory() as storage:
        orch_s = orchestrated(args.attention, args.epochs, storage)
    print(f"bare loop:    {bare_s:6.1f} s  (test_acc {acc:.4f})")
    print(f"orchestrated: {orch_s:6.1f} s  (1 trial, CLI end to end incl. Ray start and report)")
    print(f"overhead ratio orchestrated/bare: {orch_s / bare_s:.2f}  (+{orch_s - bare_s:.1f} s)")


if __name__ == "__main__":
    main()
