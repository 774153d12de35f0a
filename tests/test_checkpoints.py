"""Checkpoints sized to the job, outside the loop: the adapter's best-weight artifacts, a
frozen-backbone video model's checkpoints, and cleaning a finished run's checkpoints.

The loop's own promises (cadence, frozen keys, exact resume) are pinned in
tests/test_loop_contract.py, where mutation testing judges trainables/loop.py.
"""

from __future__ import annotations

import copy
import io
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow.fs as pafs
import pytest
import torch
from torch import nn

from orchestrator.checkpoints import clean_checkpoints, clean_run, describe
from trainables.config import TrainConfig
from trainables.data.splits import DeviceSplits
from trainables.loop import fit
from trainables.seeding import seed_everything
from trainables.tune_adapter import (
    CHECKPOINT_FILE,
    BestWeights,
    TrialArtifacts,
    best_weights_name,
    checkpoint_reporter,
    is_best_weights,
    read_checkpoint,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---- the adapter: best weights as artifacts --------------------------------------------------


class Scripted(nn.Module):
    """Validation accuracy per epoch as scripted: best at epochs 1, 2 and 5 of 7."""

    RIGHT = (2, 3, 2, 1, 4, 1, 3)

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(2))
        self.register_buffer("tag", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.tag += 1
            return x[:, :2] + self.weight
        right = self.RIGHT[int(self.tag) - 1]
        return torch.tensor([[1.0, 0.0] if i < right else [0.0, 1.0] for i in range(4)])


def _scripted_data() -> DeviceSplits:
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    y, val = torch.tensor([0, 1, 0, 1]), torch.zeros(4, dtype=torch.long)
    return DeviceSplits(x, y, x, val, None, None, 2)


class Recorded(TrialArtifacts):
    """Trial artifacts on the local disk that note each file written."""

    def __init__(self, folder: Path) -> None:
        super().__init__(pafs.LocalFileSystem(), str(folder))
        self.written: list[str] = []

    def __call__(self, name: str, payload: bytes) -> None:
        self.written.append(name)
        super().__call__(name, payload)


class Killed(Exception):
    pass


class Storage:
    """What Ray does with a reported checkpoint directory: copies it to the trial's storage."""

    def __init__(self, root: Path, fail_after: int | None = None) -> None:
        self.root, self.fail_after = root, fail_after
        self.reports: list[tuple[int, Path | None]] = []

    def send(self, metrics: dict, directory: str | None) -> None:
        kept = None
        if directory is not None:
            kept = self.root / f"checkpoint_{metrics['epoch']:06d}"
            shutil.copytree(directory, kept)
        self.reports.append((metrics["epoch"], kept))
        if self.fail_after is not None and metrics["epoch"] == self.fail_after:
            raise Killed     # the trial dies right after this report

    def state(self, index: int) -> dict:
        return torch.load(self.reports[index][1] / CHECKPOINT_FILE, weights_only=False)


def test_best_weights_are_written_once_per_improvement_and_named_by_the_checkpoint(
        tmp_path, one_thread):
    files = Recorded(tmp_path / "artifacts" / "t0")
    files("maps.npz", b"not a best-weight file")
    storage = Storage(tmp_path)
    kept_after: list[list[str]] = []
    best = BestWeights(files, checkpoints_kept=1)    # a run with num_to_keep=1
    report = checkpoint_reporter(storage.send, best)

    def noting(metrics: dict, state: dict | None) -> None:
        report(metrics, state)
        kept_after.append(files.names())

    fit(Scripted(), _scripted_data(), TrainConfig(epochs=7, batch_size=4, checkpoint_every=1),
        report=noting, generator=seed_everything(0))
    assert files.written == ["maps.npz", best_weights_name(1), best_weights_name(2),
                             best_weights_name(5)]
    assert best_weights_name(5) == "best_weights_epoch0005.pt"
    named = [storage.state(i)["best_state_file"] for i in range(7)]
    assert named == [best_weights_name(e) for e in (1, 2, 2, 2, 5, 5, 5)]
    assert all("best_state" not in storage.state(i) for i in range(7))
    # The files the last two checkpoints named stay (Ray may resume from either), no others.
    both = [best_weights_name(1), best_weights_name(2)]
    assert kept_after == [[best_weights_name(1), "maps.npz"], [*both, "maps.npz"],
                          [*both, "maps.npz"], [*both, "maps.npz"],
                          [best_weights_name(2), best_weights_name(5), "maps.npz"],
                          [best_weights_name(2), best_weights_name(5), "maps.npz"],
                          [best_weights_name(2), best_weights_name(5), "maps.npz"]]
    # Each file holds the weights of its epoch (the tag buffer counts training steps).
    for epoch in (2, 5):
        weights = torch.load(io.BytesIO(files.read(best_weights_name(epoch))), weights_only=True)
        assert int(weights["tag"]) == epoch
    resumed = read_checkpoint(storage.reports[5][1], BestWeights(files))
    assert "best_state_file" not in resumed and int(resumed["best_state"]["tag"]) == 5
    assert resumed["epoch"] == 6


def test_reported_deletes_stale_and_orphaned_best_weights_only(tmp_path):
    files = TrialArtifacts(pafs.LocalFileSystem(), str(tmp_path))
    for name in ("best_weights_epoch0001.pt", "best_weights_epoch0003.pt",
                 "best_weights_epoch0009.pt", "confusion.json", "best_weights_notes.txt"):
        files(name, b"x")
    best = BestWeights(files)
    assert best.keep == 3                 # the runner keeps two checkpoints, and one in flight
    state = {"best": {"epoch": 3}, "best_state": {"w": torch.ones(1)}}
    best.unstow(best.stow(state))     # as on a resume from a checkpoint naming epoch 3
    assert best.named == ["best_weights_epoch0003.pt"]
    best.reported("best_weights_epoch0003.pt")          # nothing new: nothing deleted
    assert len(files.names()) == 5
    best.stow({"best": {"epoch": 4}, "best_state": {"w": torch.ones(1)}})
    best.reported("best_weights_epoch0004.pt")
    # 1 is older than any checkpoint names; 9 was written for a checkpoint Ray never got
    # (the trial died first): an orphan.
    assert files.names() == ["best_weights_epoch0003.pt", "best_weights_epoch0004.pt",
                             "best_weights_notes.txt", "confusion.json"]
    for epoch in (5, 6):
        best.stow({"best": {"epoch": epoch}, "best_state": {"w": torch.ones(1)}})
        best.reported(best_weights_name(epoch))
    assert [n for n in files.names() if is_best_weights(n)] == [
        best_weights_name(4), best_weights_name(5), best_weights_name(6)]
    assert is_best_weights("best_weights_epoch0004.pt")
    assert not is_best_weights("best_weights_notes.txt")
    assert not is_best_weights(".best_weights_epoch0004.pt.tmp")


def test_a_trial_killed_between_checkpoints_resumes_exactly_from_its_artifacts(
        tmp_path, one_thread):
    class Dropped(nn.Module):
        def __init__(self, seed: int) -> None:
            super().__init__()
            torch.manual_seed(seed)
            self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.5),
                                     nn.Linear(8, 2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

    g = torch.Generator().manual_seed(1)
    x, xv = torch.randn(32, 4, generator=g), torch.randn(12, 4, generator=g)
    data = DeviceSplits(x, (x[:, 0] > 0).long(), xv, (xv[:, 0] > 0).long(), xv,
                        (xv[:, 0] > 0).long(), 2)
    cfg = TrainConfig(epochs=6, batch_size=8, lr=0.05, checkpoint_every=2)

    def run(folder: Path, model: nn.Module, seed: int, storage: Storage,
            resume: dict | None = None) -> list[dict]:
        rows = []
        report = checkpoint_reporter(storage.send, best)

        def noting(metrics: dict, state: dict | None) -> None:
            rows.append({k: v for k, v in metrics.items()
                         if k not in ("epoch_time_s", "samples_per_s", "train_time_s")})
            report(metrics, state)

        fit(model, data, cfg, report=noting, generator=seed_everything(seed), resume=resume)
        return rows

    (tmp_path / "full").mkdir()
    best = BestWeights(TrialArtifacts(pafs.LocalFileSystem(), str(tmp_path / "full" / "a")))
    full = run(tmp_path / "full", Dropped(0), 5, Storage(tmp_path / "full"))

    (tmp_path / "cut").mkdir()
    folder = TrialArtifacts(pafs.LocalFileSystem(), str(tmp_path / "cut" / "a"))
    best = BestWeights(folder)
    storage = Storage(tmp_path / "cut", fail_after=3)
    with pytest.raises(Killed):
        run(tmp_path / "cut", Dropped(0), 5, storage)
    assert [(e, p is not None) for e, p in storage.reports] == [(1, False), (2, True),
                                                                 (3, False)]
    # A new process: a fresh adapter, model and seed; only the checkpoint and its artifact.
    best = BestWeights(folder)
    resume = read_checkpoint(storage.reports[1][1], best)
    assert resume["epoch"] == 2
    torch.manual_seed(99)
    again = run(tmp_path / "cut", Dropped(1), 6, Storage(tmp_path / "cut" / "again"),
                resume=resume)
    assert again == full[2:]


def test_a_checkpoint_naming_best_weights_needs_the_artifacts(tmp_path):
    (tmp_path / "c").mkdir()
    torch.save({"best_state_file": "best_weights_epoch0001.pt"}, tmp_path / "c" / CHECKPOINT_FILE)
    with pytest.raises(ValueError, match="keeps its best weights in the run's artifacts"):
        read_checkpoint(tmp_path / "c", None)
    torch.save({"best_state": {"w": torch.ones(1)}, "epoch": 1}, tmp_path / "c" / CHECKPOINT_FILE)
    assert read_checkpoint(tmp_path / "c", None)["epoch"] == 1    # no artifacts: kept inline


def test_without_a_run_location_the_checkpoint_keeps_the_best_weights(tmp_path, one_thread):
    storage = Storage(tmp_path)
    fit(Scripted(), _scripted_data(), TrainConfig(epochs=2, batch_size=4, checkpoint_every=1),
        report=checkpoint_reporter(storage.send, None), generator=seed_everything(0))
    state = storage.state(1)
    assert "best_state_file" not in state and int(state["best_state"]["tag"]) == 2


def test_trial_artifacts_work_on_any_pyarrow_filesystem(tmp_path):
    mock = TrialArtifacts(pafs._MockFileSystem(), "bucket/run/artifacts/t1")
    assert mock.names() == []
    mock("a.bin", b"123")
    mock("b.bin", b"45")
    assert mock.names() == ["a.bin", "b.bin"] and mock.read("b.bin") == b"45"
    mock.delete("a.bin")
    assert mock.names() == ["b.bin"]
    local = TrialArtifacts.at(str(tmp_path / "run"), "t2")
    local("x.json", b"{}")
    assert (tmp_path / "run" / "artifacts" / "t2" / "x.json").read_bytes() == b"{}"
    assert not list((tmp_path / "run" / "artifacts" / "t2").glob(".*"))   # no temp left


# ---- a frozen backbone ---------------------------------------------------------------------


def test_a_frozen_resnet_backbone_is_left_out_and_a_rebuilt_model_resumes_exactly(one_thread):
    from trainables.models.registry import model_builder

    def build() -> nn.Module:
        seed_everything(3)              # as a trial does before building its model
        return model_builder("frame_temporal")(num_classes=2, pooling="mean",
                                               pretrained=False)

    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, 2, 32, 32, generator=g)
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    data = DeviceSplits(x, y, x[:4], y[:4], x[:4], y[:4], 2)
    cfg = TrainConfig(epochs=3, batch_size=3, lr=0.01, checkpoint_every=1)

    def run(resume=None, seed=0):
        rows, states = [], []

        def report(metrics, state):
            rows.append({k: v for k, v in metrics.items()
                         if k not in ("epoch_time_s", "samples_per_s", "train_time_s")})
            states.append(copy.deepcopy(state))

        fit(build(), data, cfg, report=report, generator=seed_everything(seed), resume=resume)
        return rows, states

    rows, states = run()
    model = build()
    backbone = {k for k in model.state_dict() if k.startswith("backbone.")}
    assert any("running_mean" in k for k in backbone)   # its BatchNorm statistics, in eval mode
    for state in states:
        assert set(state["frozen_keys"]) == backbone
        assert not backbone & set(state["model"]) and not backbone & set(state["best_state"])
        assert set(state["model"]) == set(model.state_dict()) - backbone

    def size(obj) -> int:
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        return len(buffer.getvalue())

    # The old checkpoint saved the whole model twice (weights and best weights).
    assert size(states[0]) < 0.1 * 2 * size(model.state_dict())
    torch.manual_seed(7)
    again, resumed = run(resume=states[0], seed=9)
    assert again == rows[1:]
    assert all(torch.equal(resumed[-1]["model"][k], states[-1]["model"][k])
               for k in states[-1]["model"])


# ---- cleaning a finished run ---------------------------------------------------------------

STATUSES = {"aa111_00000": "ok", "aa111_00001": "early_stopped", "aa111_00002": "error",
            "aa111_00003": "running", "aa111_00004": "diverged"}


def _trial_dir(trial_id: str, index: int) -> str:
    return f"tune_trainable_{trial_id}_{index}_attention=none,seed={index}_2026-11-30_11-35-53"


def _make_run(fs: pafs.FileSystem, root: str) -> dict[str, int]:
    """A run directory laid out as Ray 2.60 and our sink leave it; returns checkpoint sizes."""
    import pyarrow.parquet as pq

    fs.create_dir(root, recursive=True)
    table = pl.DataFrame({"trial_id": list(STATUSES), "status": list(STATUSES.values()),
                          "variant": ["none"] * 5}).to_arrow()
    pq.write_table(table, f"{root}/trials.parquet", filesystem=fs)

    def put(path: str, size: int) -> None:
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(path) as stream:
            stream.write(b"\0" * size)

    sizes = {}
    for index, trial_id in enumerate(STATUSES):
        trial = f"{root}/{_trial_dir(trial_id, index)}"
        put(f"{trial}/checkpoint_000002/{CHECKPOINT_FILE}", 1000 + index)
        put(f"{trial}/checkpoint_000002/.metadata.json", 10)
        sizes[trial_id] = 1010 + index
        art = f"{root}/artifacts/{trial_id}"
        put(f"{art}/{best_weights_name(1)}", 100)
        put(f"{art}/{best_weights_name(2)}", 200)
        put(f"{art}/.{best_weights_name(3)}.tmp", 50)
        put(f"{art}/maps.npz", 7)
    # A trial dir of a trial the sink never recorded, and Ray's own files: left alone.
    put(f"{root}/{_trial_dir('zz999_00000', 0)}/checkpoint_000001/{CHECKPOINT_FILE}", 5)
    put(f"{root}/experiment_state-2026-11-30_11-35-53.json", 3)
    put(f"{root}/epochs/aa111_00000.parquet", 3)
    return sizes


def _files(fs: pafs.FileSystem, root: str) -> set[str]:
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    return {i.path[len(root) + 1:] for i in infos if i.type == pafs.FileType.File}


@pytest.mark.parametrize("keep_best", [False, True])
def test_cleaning_removes_finished_trials_checkpoints_and_best_weights(tmp_path, keep_best):
    root = str(tmp_path / "mnist_attention" / "run1")
    fs = pafs.LocalFileSystem()
    sizes = _make_run(fs, root)
    before = _files(fs, root)
    removed = clean_checkpoints(root, keep_best=keep_best)
    gone = before - _files(fs, root)
    finished = ("aa111_00000", "aa111_00001")
    expected = {f"{_trial_dir(t, i)}/checkpoint_000002/{name}"
                for i, t in enumerate(finished) for name in (CHECKPOINT_FILE, ".metadata.json")}
    best = {f"artifacts/{t}/{n}" for t in finished
            for n in (best_weights_name(1), f".{best_weights_name(3)}.tmp")}
    best |= set() if keep_best else {f"artifacts/{t}/{best_weights_name(2)}" for t in finished}
    assert gone == expected | best
    assert not any((Path(root) / _trial_dir(t, i) / "checkpoint_000002").exists()
                   for i, t in enumerate(finished))
    assert (Path(root) / _trial_dir("aa111_00000", 0)).is_dir()   # the trial dir itself stays
    best_bytes = (100 + 50 + (0 if keep_best else 200)) * 2
    assert removed == {"trials": 2, "checkpoints": 2, "best_weights": len(best),
                       "files": len(expected) + len(best),
                       "bytes": sizes["aa111_00000"] + sizes["aa111_00001"] + best_bytes}
    assert clean_checkpoints(root, keep_best=keep_best) == {
        "trials": 2, "checkpoints": 0, "best_weights": 0, "files": 0, "bytes": 0}


def test_cleaning_works_on_a_bucket_filesystem():
    fs = pafs._MockFileSystem()
    _make_run(fs, "bucket/runs/mnist_attention/r")
    removed = clean_run(fs, "bucket/runs/mnist_attention/r", keep_best=False)
    assert (removed["checkpoints"], removed["best_weights"]) == (2, 6)
    left = _files(fs, "bucket/runs/mnist_attention/r")
    assert not [p for p in left if "aa111_00000" in p and ("checkpoint_" in p or "best" in p)]
    assert f"{_trial_dir('aa111_00002', 2)}/checkpoint_000002/{CHECKPOINT_FILE}" in left


def test_a_run_without_trials_parquet_loses_nothing(tmp_path):
    fs = pafs.LocalFileSystem()
    _make_run(fs, str(tmp_path))
    (tmp_path / "trials.parquet").unlink()
    before = _files(fs, str(tmp_path))
    assert clean_checkpoints(str(tmp_path), keep_best=False)["files"] == 0
    assert _files(fs, str(tmp_path)) == before


def test_a_trial_dir_naming_two_known_trials_is_left_alone(tmp_path):
    import pyarrow.parquet as pq

    pq.write_table(pl.DataFrame({"trial_id": ["a_1", "b_2"], "status": ["ok", "ok"]}).to_arrow(),
                   str(tmp_path / "trials.parquet"))
    odd = tmp_path / "t_a_1_b_2_x" / "checkpoint_000001"
    odd.mkdir(parents=True)
    (odd / CHECKPOINT_FILE).write_bytes(b"1")
    plain = tmp_path / "t_b_2_x" / "checkpoint_000001"
    plain.mkdir(parents=True)
    (plain / CHECKPOINT_FILE).write_bytes(b"1")
    assert clean_checkpoints(str(tmp_path), keep_best=False)["checkpoints"] == 1
    assert odd.is_dir() and not plain.exists()


def test_describe_is_one_line_for_the_cli():
    assert describe({"trials": 15, "checkpoints": 15, "best_weights": 15, "files": 30,
                     "bytes": 54_321_000}) == (
        "removed 15 checkpoint(s) and 15 best-weight file(s) of 15 finished trial(s): 54.3 MB")
    assert describe({"trials": 0, "checkpoints": 0, "best_weights": 0, "files": 0,
                     "bytes": 0}).endswith(": 0 bytes")
    assert describe({"trials": 1, "checkpoints": 1, "best_weights": 0, "files": 1,
                     "bytes": 1500}).endswith(": 1.5 kB")


@pytest.mark.slow
def test_a_real_sweep_writes_best_weights_once_and_cleans_to_nothing(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "orchestrator", "run", "mnist_attention", "--smoke", "--seeds",
         "1", "--set", "model.attention=[none,se]", "--set", "train.epochs=3",
         "--set", "train.checkpoint_every=1", "--keep-checkpoints", "--storage",
         str(tmp_path), "--name", "clean", "-q"],
        cwd=ROOT, text=True, capture_output=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    run = tmp_path / "mnist_attention" / "clean"
    trials = pl.read_parquet(run / "trials.parquet")
    assert set(trials["status"]) == {"ok"}
    checkpoints = sorted(run.glob("tune_trainable_*/checkpoint_*"))
    assert len(checkpoints) >= 2            # Ray keeps each trial's newest (num_to_keep)
    for trial_id, best_epoch in trials.select("trial_id", "best_epoch").iter_rows():
        best = sorted(p.name for p in (run / "artifacts" / trial_id).glob("best_weights_*"))
        assert best_weights_name(best_epoch) in best and len(best) <= 3
        kept = sorted(run.glob(f"*_{trial_id}_*/checkpoint_*"))
        for checkpoint in kept:
            state = torch.load(checkpoint / CHECKPOINT_FILE, weights_only=False)
            assert "best_state" not in state and state["best_state_file"] in best
        assert state["best_state_file"] == best_weights_name(best_epoch)   # the newest
    size = sum(p.stat().st_size for c in checkpoints for p in c.rglob("*") if p.is_file())
    removed = clean_checkpoints(str(run), keep_best=True)
    assert removed["checkpoints"] == len(checkpoints) and removed["bytes"] >= size
    assert not list(run.glob("tune_trainable_*/checkpoint_*"))
    assert all(len(list((run / "artifacts" / t).glob("best_weights_*"))) == 1
               for t in trials["trial_id"])
    clean_checkpoints(str(run), keep_best=False)
    assert not list(run.glob("artifacts/*/best_weights_*"))
    assert (run / "trials.parquet").is_file() and (run / "report.html").is_file()
