"""The video presets and `data` commands end to end, in subprocesses, on synthetic datasets
written with real codecs. The clip cache and the torch hub live in the test's own folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import needs_video_codecs

needs_video_codecs()

ROOT = Path(__file__).resolve().parents[1]


def cli(env_root: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "ORCHESTRATOR_CACHE": str(env_root / "cache"),
           "TORCH_HOME": str(env_root / "torch")}
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def hmdb_root(tmp_path_factory) -> Path:
    """A synthetic HMDB51 tree plus one listed video that is garbage."""
    from trainables.data.video.hmdb51 import SPLIT_DIR
    from trainables.data.video.synth import corrupt_copy

    base = tmp_path_factory.mktemp("video")
    root = base / "hmdb51"
    out = cli(base, "data", "synth", "hmdb51", "--out", str(root), "--classes", "4",
              "--videos", "8")
    assert out.returncode == 0, out.stderr
    assert "--data-root" in out.stdout
    klass = sorted(p for p in root.iterdir() if p.is_dir() and p.name != SPLIT_DIR)[0]
    corrupt_copy(next(klass.glob("*.avi")), klass / "broken_clip_f_cm_np1_ri_med_9.avi",
                 "garbage")
    for split in (1, 2, 3):
        listing = root / SPLIT_DIR / f"{klass.name}_test_split{split}.txt"
        listing.write_text(listing.read_text() + "broken_clip_f_cm_np1_ri_med_9.avi 2 \n")
    return root


@pytest.mark.slow
class TestHmdb51:
    def test_check_counts_the_corrupt_video(self, hmdb_root, tmp_path):
        out = cli(tmp_path, "data", "check", "hmdb51", "--data-root", str(hmdb_root))
        assert out.returncode == 0, out.stderr
        assert "1 corrupt" in out.stdout and "broken_clip" in out.stdout

    def test_smoke_runs_every_row_and_skips_the_corrupt_video(self, hmdb_root, tmp_path):
        out = cli(tmp_path, "run", "hmdb51_ablation", "--smoke", "--seeds", "1", "--data-root",
                  str(hmdb_root), "--storage", str(tmp_path / "runs"), "--name", "smoke")
        assert out.returncode == 0, out.stderr[-3000:]
        assert "running on CPU" in out.stdout  # the preset's whole GPU is dropped here
        run_dir = tmp_path / "runs" / "hmdb51_ablation" / "smoke"
        trials = pl.read_parquet(run_dir / "trials.parquet")
        assert trials.height == 10 and (trials["status"] == "ok").all()
        rows = {r["cfg.variant"]: r for r in trials.iter_rows(named=True)}
        assert set(rows) == {"baseline", "8b+1c6s", "8b+1c2s", "8b+1c1s", "8b+1c", "8b+1s",
                             "7b+1c1s", "6b+1c6s", "4b+1c6s", "4b+2c12s"}
        # The baseline is the plain R(2+1)D-18 with a 4-class head: 31,300,125 + 512*4 + 4.
        assert rows["baseline"]["params"] == 31_302_177
        assert rows["4b+2c12s"]["cfg.model.cross_blocks"] == 2
        assert rows["4b+2c12s"]["cfg.model.self_per_cross"] == 6
        assert rows["4b+1c6s"]["params"] < rows["6b+1c6s"]["params"] < rows["8b+1c6s"]["params"]
        note = rows["baseline"]["data_note"]
        assert "skipped 1 undecodable video(s): broken_clip" in note and "clip cache" in note
        assert "0.7270" in out.stdout and "0.2815" in out.stdout  # the source's numbers
        assert "clip cache: 9 trial(s) read decoded clips, 1 decoded them" in out.stdout
        epochs = pl.concat([pl.read_parquet(p) for p in (run_dir / "epochs").glob("*.parquet")])
        # Validation accuracy is per video: a multiple of 1 / (validation videos).
        n_val = int(note.split("test ")[1].split(" ")[0])
        scaled = epochs["val_acc"] * n_val
        assert ((scaled - scaled.round()).abs() < 1e-6).all()
        assert (run_dir / "report.html").exists()
        # The sweep decoded the videos once; pre-decoding now finds them already there.
        again = cli(tmp_path, "data", "cache", "hmdb51_ablation", "--smoke", "--data-root",
                    str(hmdb_root))
        assert again.returncode == 0, again.stderr
        assert "hit (already decoded)" in again.stdout

    def test_missing_pretrained_weights_stop_the_run_before_it_starts(self, hmdb_root,
                                                                      tmp_path):
        out = cli(tmp_path, "run", "hmdb51_ablation", "--data-root", str(hmdb_root),
                  "--storage", str(tmp_path / "runs"), timeout=120)
        assert out.returncode == 2
        assert "r2plus1d_18-91a641e6.pth" in out.stderr and "pretrained=false" in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
        assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.parquet"))


@pytest.mark.slow
def test_wlasl_smoke_compares_mean_tcn_and_attention_pooling(tmp_path):
    root = tmp_path / "wlasl"
    out = cli(tmp_path, "data", "synth", "wlasl", "--out", str(root), "--classes", "3",
              "--videos", "6")
    assert out.returncode == 0, out.stderr
    out = cli(tmp_path, "run", "wlasl_temporal", "--smoke", "--seeds", "1", "--data-root",
              str(root), "--storage", str(tmp_path / "runs"), "--name", "smoke")
    assert out.returncode == 0, out.stderr[-3000:]
    trials = pl.read_parquet(tmp_path / "runs" / "wlasl_temporal" / "smoke" / "trials.parquet")
    assert sorted(trials["cfg.model.pooling"].to_list()) == ["attention", "mean", "tcn"]
    assert (trials["status"] == "ok").all() and trials["test_acc"].is_not_null().all()
    params = dict(trials.select("cfg.model.pooling", "params").iter_rows())
    # Only the temporal head trains: the frozen ResNet-18's 11.2M are not counted.
    assert params["mean"] == 512 * 3 + 3 and params["tcn"] > params["attention"] > 10_000
    assert "1 listed video(s) absent on disk" in trials["data_note"][0]


@pytest.mark.parametrize(("args", "message"), [
    (("run", "hmdb51_ablation"), "testTrainMulti_7030_splits"),
    (("run", "wlasl_temporal", "--data-root", "/nonexistent"), "WLASL_v0.3.json"),
    (("data", "check", "hmdb51", "--data-root", "/nonexistent"), "HMDB51 not found"),
    (("show", "hmdb51_ablation", "--set", "model.cnn_blocks=5"), "cnn_blocks must be one of"),
    (("show", "hmdb51_ablation", "--set", "variant=[baseline,8b+3s]"), "unknown variant='8b+3s'"),
    (("show", "wlasl_temporal", "--set", "model.pooling=lstm"), "pooling"),
    (("data", "cache", "mnist_attention"), "not a video preset"),
])
def test_one_line_error_and_nonzero_exit(args, message, tmp_path):
    out = cli(tmp_path, *args, timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], out.stderr
