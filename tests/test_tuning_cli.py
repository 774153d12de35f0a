"""Tune, then replicate, end to end through the CLI: what a user runs with --samples."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from tests.test_cli import ROOT, _epochs, _read_live, _trials, cli

# Two arms, three candidates each (lr only), two replicate seeds: 10 trials.
SWEEP = ("--set", "model.attention=[none,se]", "--set", "model.reduction=8",
         "--set", "train.max_batches=12", "--samples", "3", "--seeds", "2", "--smoke")
KEY = ["variant", "stage", "draw", "seed"]


def _run_dir(storage: Path, name: str) -> Path:
    return storage / "mnist_attention" / name


def _meta(run_dir: Path) -> dict:
    return json.loads((run_dir / "meta.json").read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One uninterrupted tuned run: the numbers an interrupted run must reproduce."""
    storage = tmp_path_factory.mktemp("tuned")
    out = cli("run", "mnist_attention", *SWEEP, "--storage", str(storage), "--name", "ref")
    assert out.returncode == 0, out.stderr[-3000:]
    return _run_dir(storage, "ref"), out


@pytest.mark.slow
class TestTunedRun:
    def test_every_arm_tuned_alike_then_replicated_on_fresh_seeds(self, reference):
        run_dir, out = reference
        trials = _trials(run_dir)
        assert trials.height == 10 and not trials.select(KEY).is_duplicated().any()
        assert set(trials["status"]) <= {"ok", "early_stopped"}
        tune = trials.filter(pl.col("stage") == "tune")
        assert sorted(tune.group_by("variant").len().rows()) == [("none", 3), ("se", 3)]
        assert set(tune["seed"]) == {0}
        # Common random numbers: draw i has the same learning rate in every arm.
        lrs = tune.pivot(on="variant", index="draw", values="cfg.train.lr")
        assert (lrs["none"] == lrs["se"]).all() and lrs["none"].n_unique() == 3
        replicates = trials.filter(pl.col("stage") == "replicate")
        assert sorted(replicates.select("variant", "seed").rows()) == [
            ("none", 1), ("none", 2), ("se", 1), ("se", 2)]
        selected = _meta(run_dir)["selected"]
        for arm in ("none", "se"):
            mine = tune.filter(pl.col("variant") == arm)
            best = mine.sort("best_val_acc", descending=True)["draw"][0]
            assert selected[arm]["draw"] == best
            chosen_lr = mine.filter(pl.col("draw") == best)["cfg.train.lr"][0]
            reps = replicates.filter(pl.col("variant") == arm)
            assert (reps["draw"] == best).all() and (reps["cfg.train.lr"] == chosen_lr).all()
            assert selected[arm]["values"]["train.lr"] == chosen_lr
        assert (trials["cfg.data.val_fraction"] == 0.1).all()  # never tuned on test
        assert "tuned none: draw" in out.stdout and "holds a stratified validation" in out.stdout

    def test_summary_and_report_compare_replicates_only(self, reference):
        run_dir, out = reference
        table = out.stdout.split("variant  ok/n")[1]
        assert "none      2/2" in table and "se        2/2" in table  # 2 seeds, not 5 trials
        html = (run_dir / "report.html").read_text()
        assert '<h2 id="tuning">Tuning</h2>' in html and "trial-epochs" in html
        assert "Latin-hypercube" in html and "replicate" in html
        protocol = _meta(run_dir)["protocol"]
        assert protocol["samples_per_arm"] == 3 and protocol["replicate_seeds"] == [1, 2]
        assert protocol["search_seed"] == 2026

    @pytest.mark.parametrize("stage", ["tune", "replicate"])
    def test_interrupt_in_either_stage_then_resume_matches_the_uninterrupted_run(
            self, tmp_path, reference, stage):
        ref_dir, _ = reference
        args = ["run", "mnist_attention", *SWEEP, "--storage", str(tmp_path), "--name", "int",
                "--max-concurrent", "1"]
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator", *args], cwd=ROOT,
                                text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        run_dir = _run_dir(tmp_path, "int")
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            path = run_dir / "trials.parquet"
            rows = _read_live(path) if path.exists() else None
            if rows is not None and "stage" in rows.columns:
                done = rows.filter(pl.col("status") != "running")
                if stage == "tune" and done.height >= 2:
                    break
                if stage == "replicate" and (rows["stage"] == "replicate").any():
                    break
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 130, stderr[-2000:]
        before = _trials(run_dir)
        if stage == "tune":
            assert not (before["stage"] == "replicate").any()
        else:
            assert (before["stage"] == "replicate").any()

        out = cli("run", "mnist_attention", "--storage", str(tmp_path), "--name", "int",
                  "--resume")
        assert out.returncode == 0, out.stderr[-3000:]
        trials, ref = _trials(run_dir), _trials(ref_dir)
        assert trials.height == 10 and not trials.select(KEY).is_duplicated().any()
        assert not _epochs(run_dir).select("trial_id", "epoch").is_duplicated().any()
        assert _meta(run_dir)["selected"] == _meta(ref_dir)["selected"]
        # Same candidates, same choices, same numbers as the run nobody interrupted.
        joined = trials.join(ref, on=KEY, suffix="_ref")
        assert joined.height == 10
        assert (joined["cfg.train.lr"] == joined["cfg.train.lr_ref"]).all()
        differ = joined.filter(pl.col("best_val_acc") != pl.col("best_val_acc_ref"))
        assert differ.is_empty(), differ.select(*KEY, "epochs_run", "epochs_run_ref",
                                                "best_val_acc", "best_val_acc_ref").rows()

    def test_optuna_one_study_per_arm_same_budget(self, tmp_path):
        out = cli("run", "mnist_attention", *SWEEP[:-5], "--samples", "3", "--seeds", "1",
                  "--smoke", "--search", "optuna", "--storage", str(tmp_path), "--name", "opt")
        assert out.returncode == 0, out.stderr[-3000:]
        trials = _trials(_run_dir(tmp_path, "opt"))
        counts = trials.group_by("variant", "stage").len().sort("variant", "stage").rows()
        assert counts == [("none", "replicate", 1), ("none", "tune", 3),
                          ("se", "replicate", 1), ("se", "tune", 3)]
        assert _meta(_run_dir(tmp_path, "opt"))["protocol"]["search"] == "optuna"

    def test_show_previews_the_protocol_without_the_dataset(self):
        out = cli("show", "mnist_attention", "--samples", "8", "--seeds", "5")
        assert out.returncode == 0, out.stderr
        assert "tune each of 5 arm(s) with 8 candidates" in out.stdout
        assert "per arm 28 trial-epochs tuning (halving at epochs 2, 6" in out.stdout
        assert "train.lr loguniform(0.0001, 0.001)" in out.stdout
        assert "model.heads by model.attention {self: choice([2, 4, 8])}" in out.stdout
        for preset in ("cifar10_cnntention", "hmdb51_ablation"):
            out = cli("show", preset)
            assert out.returncode == 0, out.stderr
            assert "data:       not on this machine" in out.stdout
            assert "tunable:" in out.stdout
