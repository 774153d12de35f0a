"""ParquetSink writes, reads back and deduplicates; a resumed sink continues the same files."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import polars as pl
import pytest

from analysis.schema import EPOCH_COLUMNS, TRIAL_COLUMNS
from orchestrator.sink import ParquetSink, _error_line
from orchestrator.space import VariantLabeler
from orchestrator.storage import RunFiles


def _trial(trial_id, attention, seed=0, error=None):
    config = {"seed": seed, "model": {"name": "mnist_cnn", "attention": attention},
              "train": {"milestones": [3, 6], "lr": 0.1}}
    return SimpleNamespace(trial_id=trial_id, config=config, error_file=None,
                           get_error=lambda: error, num_failures=1)


def _epoch(epoch, val_acc, **extra):
    row = {"epoch": epoch, "train_loss": 1.0 / epoch, "train_acc": 0.5, "val_loss": 0.3,
           "val_acc": val_acc, "lr": 0.1, "epoch_time_s": 1.0, "samples_per_s": 100.0,
           "gpu_mem_mb": 0.0, "params": 1000, "status": "running", "best_val_acc": val_acc,
           "train_time_s": float(epoch)}
    row.update(extra)
    return row


def _sink(tmp_path):
    sink = ParquetSink(str(tmp_path), VariantLabeler(("model.attention",)), min_write_interval_s=0)
    sink.setup()
    return sink


def test_rows_written_typed_and_deduplicated(tmp_path):
    sink = _sink(tmp_path)
    a, b = _trial("t0", "se"), _trial("t1", "none", seed=1)
    sink.on_trial_result(1, [], a, _epoch(1, 0.5))
    sink.on_trial_result(2, [], a, _epoch(2, 0.6))
    sink.on_trial_result(3, [], a, _epoch(2, 0.7))  # epoch 2 reported again (after a resume)
    sink.on_trial_result(4, [], a, _epoch(3, 0.8, status="ok", test_acc=0.75))
    sink.on_trial_complete(5, [], a)
    sink.on_trial_result(6, [], b, _epoch(1, 0.4))
    sink.on_trial_complete(7, [], b)  # no final report of its own: the scheduler stopped it

    epochs = pl.read_parquet(tmp_path / "epochs" / "t0.parquet")
    assert epochs.columns == list(EPOCH_COLUMNS)
    assert epochs["epoch"].to_list() == [1, 2, 3] and epochs["val_acc"].to_list() == [0.5, 0.7, 0.8]
    trials = pl.read_parquet(tmp_path / "trials.parquet")
    assert list(trials.columns[: len(TRIAL_COLUMNS)]) == list(TRIAL_COLUMNS)
    rows = {r["trial_id"]: r for r in trials.to_dicts()}
    assert rows["t0"]["status"] == "ok" and rows["t0"]["test_acc"] == 0.75
    assert rows["t0"]["variant"] == "se" and rows["t0"]["epochs_run"] == 3
    assert rows["t0"]["cfg.train.milestones"] == "[3, 6]"
    assert rows["t1"]["status"] == "early_stopped" and rows["t1"]["stopped_by"] == "scheduler"
    assert not [p for p in tmp_path.rglob(".*")]  # no temp files left behind


def test_divergence_nan_becomes_null_and_errors_recorded(tmp_path):
    sink = _sink(tmp_path)
    bad = _trial("t2", "cbam")
    sink.on_trial_result(1, [], bad, _epoch(1, float("nan"), status="diverged",
                                            stopped_by="divergence", error="non-finite loss at epoch 1 step 4"))
    sink.on_trial_complete(2, [], bad)
    broken = _trial("t3", "se", error="Traceback...\nValueError: boom")
    sink.on_trial_error(3, [], broken)
    rows = {r["trial_id"]: r for r in pl.read_parquet(tmp_path / "trials.parquet").to_dicts()}
    assert rows["t2"]["status"] == "diverged" and rows["t2"]["final_val_acc"] is None
    assert rows["t3"]["status"] == "error" and rows["t3"]["error"] == "ValueError: boom"
    assert pl.read_parquet(tmp_path / "epochs" / "t2.parquet")["val_acc"].to_list() == [None]


def test_resumed_sink_continues_without_loss_or_duplicates(tmp_path):
    first = _sink(tmp_path)
    trial = _trial("t0", "se")
    for epoch in (1, 2):
        first.on_trial_result(epoch, [], trial, _epoch(epoch, 0.1 * epoch))
    # Tune pickles callbacks with the experiment and unpickles them on restore.
    second = pickle.loads(pickle.dumps(first))
    second.setup()
    for epoch in (2, 3):
        second.on_trial_result(epoch, [], trial, _epoch(epoch, 0.1 * epoch))
    second.on_experiment_end([])
    epochs = pl.read_parquet(tmp_path / "epochs" / "t0.parquet")
    assert epochs["epoch"].to_list() == [1, 2, 3]
    assert pl.read_parquet(tmp_path / "trials.parquet").height == 1


def _rows(tmp_path):
    return {r["trial_id"]: r for r in pl.read_parquet(tmp_path / "trials.parquet").to_dicts()}


def _resumed(sink):
    """The sink as ``--resume`` gets it: unpickled from the experiment state, set up again."""
    again = pickle.loads(pickle.dumps(sink))
    again.setup()
    return again


def test_a_rerun_errored_trial_keeps_no_trace_of_the_crash(tmp_path):
    first = _sink(tmp_path)
    trial = _trial("t0", "se", error="Traceback...\nRuntimeError: CUDA out of memory")
    first.on_trial_result(1, [], trial, _epoch(1, 0.5, data_note="60000 train images"))
    first.on_trial_result(2, [], trial, _epoch(2, 0.6, data_note="60000 train images"))
    first.on_trial_error(3, [], trial)
    crashed = _rows(tmp_path)["t0"]
    assert (crashed["status"], crashed["stopped_by"]) == ("error", "error")
    assert crashed["error"] == "RuntimeError: CUDA out of memory"

    second = _resumed(first)  # --resume reruns the errored trial from its epoch-2 checkpoint
    second.on_trial_result(4, [], trial, _epoch(3, 0.55, best_val_acc=0.6))
    running = _rows(tmp_path)["t0"]
    assert running["status"] == "running" and running["error"] is None
    assert running["stopped_by"] is None and running["epochs_run"] == 3
    second.on_trial_result(5, [], trial, _epoch(4, 0.7, status="ok", stopped_by=None,
                                                test_acc=0.68, test_loss=0.9))
    second.on_trial_complete(6, [], trial)
    done = _rows(tmp_path)["t0"]
    assert (done["status"], done["error"], done["stopped_by"]) == ("ok", None, None)
    assert (done["test_acc"], done["epochs_run"], done["final_val_acc"]) == (0.68, 4, 0.7)
    # What still holds of the trial stays: its config, and the facts its reports carry.
    assert (done["variant"], done["seed"], done["cfg.train.lr"]) == ("se", 0, 0.1)
    assert done["data_note"] == "60000 train images" and done["params"] == 1000
    assert pl.read_parquet(tmp_path / "epochs" / "t0.parquet")["epoch"].to_list() == [1, 2, 3, 4]


_ENDED_BY = ("error", "stopped_by", "test_acc", "test_loss", "diverged_epoch", "diverged_step")
_DIVERGED = _epoch(3, float("nan"), status="diverged", stopped_by="divergence",
                   error="non-finite loss at epoch 3 step 4", diverged_epoch=3, diverged_step=4)
_FINISHED = _epoch(3, 0.7, status="early_stopped", stopped_by="patience", test_acc=0.66,
                   test_loss=1.1)


@pytest.mark.parametrize("ending", [_DIVERGED, _FINISHED], ids=["diverged", "finished"])
def test_a_new_attempt_clears_every_field_of_how_the_last_one_ended(tmp_path, ending):
    sink = _sink(tmp_path)
    trial = _trial("t0", "cbam", error="ray.exceptions.NodeDiedError: node lost")
    sink.on_trial_result(1, [], trial, _epoch(2, 0.6))
    sink.on_trial_result(2, [], trial, dict(ending))
    sink.on_trial_error(3, [], trial)  # and the trial's node died before Tune saw it end
    ended = _rows(tmp_path)["t0"]
    assert ended["status"] == "error" and ended["stopped_by"] == "lost"
    assert ended["error"] == "lost its worker (node died) 1 time(s); no retries left"
    assert all(ended[key] is not None for key in _ENDED_BY if key in ending)

    _resumed(sink).on_trial_result(4, [], trial, _epoch(3, 0.65))
    again = _rows(tmp_path)["t0"]
    assert again["status"] == "running"
    assert {key: again[key] for key in _ENDED_BY} == dict.fromkeys(_ENDED_BY)


def test_a_new_attempt_reads_running_even_before_its_report_says_so(tmp_path):
    sink = _sink(tmp_path)
    trial = _trial("t0", "se", error="ValueError: boom")
    sink.on_trial_error(1, [], trial)
    sink.on_trial_result(2, [], trial, {"epoch": 1, "val_acc": 0.4})  # metrics, no status
    assert _rows(tmp_path)["t0"]["status"] == "running"
    sink.on_trial_complete(3, [], trial)  # and no final report: a scheduler stopped it
    row = _rows(tmp_path)["t0"]
    assert (row["status"], row["stopped_by"], row["error"]) == ("early_stopped", "scheduler", None)


def test_row_columns_from_config_and_the_last_epoch(tmp_path):
    sink = _sink(tmp_path)
    single = _trial("t0", "se", seed=4)
    tuned = _trial("t1", "none", seed=1)
    tuned.config.update(stage="tune", draw=2)
    sink.on_trial_result(1, [], single, _epoch(1, 0.5))
    sink.on_trial_result(2, [], single, _epoch(2, 0.4, best_val_acc=0.5))
    sink.on_trial_result(3, [], tuned, _epoch(1, 0.3))
    rows = _rows(tmp_path)
    assert (rows["t0"]["seed"], rows["t0"]["stage"], rows["t0"]["draw"]) == (4, "single", 0)
    assert (rows["t1"]["seed"], rows["t1"]["stage"], rows["t1"]["draw"]) == (1, "tune", 2)
    assert rows["t0"]["final_val_acc"] == 0.4 and rows["t0"]["best_val_acc"] == 0.5


def test_a_trial_that_fails_before_reporting_has_a_row(tmp_path):
    sink = _sink(tmp_path)
    sink.on_trial_error(1, [], _trial("t0", "se", error="ImportError: no module named decord"))
    sink.on_trial_complete(2, [], _trial("t1", "none"))  # ended without a report of its own
    rows = _rows(tmp_path)
    assert rows["t0"]["status"] == "error" and rows["t0"]["stopped_by"] == "error"
    assert rows["t0"]["error"] == "ImportError: no module named decord"
    assert rows["t1"]["status"] == "early_stopped" and rows["t1"]["stopped_by"] == "scheduler"
    assert rows["t0"]["epochs_run"] == 0 and rows["t1"]["epochs_run"] == 0
    assert not (tmp_path / "epochs").exists()


def test_files_have_the_contract_types_even_when_a_column_is_all_null(tmp_path):
    sink = _sink(tmp_path)
    trial = _trial("t0", "se")
    sink.on_trial_result(1, [], trial, _DIVERGED)  # no test metrics, val_acc NaN -> null
    sink.on_trial_error(2, [], _trial("t1", "none", error="boom"))  # nothing reported at all
    trials = pl.read_parquet(tmp_path / "trials.parquet")
    text = ("trial_id", "variant", "status", "error", "stopped_by", "stage", "data_note")
    whole = ("seed", "draw", "params", "epochs_run", "best_epoch", "diverged_epoch",
             "diverged_step")
    expected = {c: pl.String if c in text else pl.Int64 if c in whole else pl.Float64
                for c in TRIAL_COLUMNS}
    assert {c: trials.schema[c] for c in TRIAL_COLUMNS} == expected
    epochs = pl.read_parquet(tmp_path / "epochs" / "t0.parquet")
    assert dict(epochs.schema) == {c: pl.String if c == "trial_id" else pl.Int64 if c == "epoch"
                                   else pl.Float64 for c in EPOCH_COLUMNS}


def test_config_columns_keep_their_type_unless_trials_disagree(tmp_path):
    sink = _sink(tmp_path)
    for i, (lr, pretrained) in enumerate([(0.1, True), (1, "weights/se.pt"), (0.01, None)]):
        trial = _trial(f"t{i}", "se")
        trial.config["train"]["lr"] = lr
        trial.config["model"]["pretrained"] = pretrained
        sink.on_trial_result(i, [], trial, _epoch(1, 0.5))
    trials = pl.read_parquet(tmp_path / "trials.parquet").sort("trial_id")
    assert trials.schema["cfg.train.lr"] == pl.Float64  # a grid of 0.1 and 1 is still numbers
    assert trials["cfg.train.lr"].to_list() == [0.1, 1.0, 0.01]
    assert trials.schema["cfg.seed"] == pl.Int64
    assert trials["cfg.model.pretrained"].to_list() == ["True", "weights/se.pt", None]


def test_running_results_are_throttled_but_never_lost(tmp_path, monkeypatch):
    clock = [0.5]
    monkeypatch.setattr("orchestrator.sink.time", SimpleNamespace(monotonic=lambda: clock[0]))
    sink = ParquetSink(str(tmp_path), VariantLabeler(("model.attention",)))  # default 2 s
    sink.setup()
    trial = _trial("t0", "se")

    def report(at, result):
        clock[0] = at
        sink.on_trial_result(0, [], trial, result)
        return _rows(tmp_path)["t0"]["epochs_run"]

    assert report(0.5, _epoch(1, 0.5)) == 1     # the first result is written at once
    assert report(2.0, _epoch(2, 0.5)) == 1     # 1.5 s later: throttled
    assert report(2.5, _epoch(3, 0.5)) == 3     # 2 s after the last write: written
    assert report(3.0, _epoch(4, 0.5)) == 3
    assert report(3.1, _epoch(5, 0.5, status="ok")) == 5  # a trial's end is written at once
    # Every way a trial or the run ends writes at once, with the throttled results in it.
    ends = {"t1": lambda t: sink.on_trial_complete(0, [], t),
            "t2": lambda t: sink.on_trial_error(0, [], t),
            "t3": lambda t: sink.on_experiment_end([])}
    for trial_id, end in ends.items():
        other = _trial(trial_id, "none")
        clock[0] += 0.1
        sink.on_trial_result(0, [], other, _epoch(1, 0.2))
        clock[0] += 0.1
        sink.on_trial_result(0, [], other, _epoch(2, 0.3))
        clock[0] += 0.1
        end(other)
        assert _rows(tmp_path)[trial_id]["epochs_run"] == 2, trial_id


def test_resume_reads_back_every_trial_and_skips_files_that_are_not_results(tmp_path,
                                                                            monkeypatch):
    # A listing's order is the filesystem's; sorted, the junk names come first.
    listing = RunFiles.list_dir
    monkeypatch.setattr(RunFiles, "list_dir", lambda self, *parts: sorted(listing(self, *parts)))
    first = _sink(tmp_path)
    done, short = _trial("t0", "se"), _trial("t1", "none", seed=1)
    first.on_trial_result(1, [], done, _epoch(1, 0.5))
    first.on_trial_result(2, [], done, _epoch(2, 0.6, status="ok", test_acc=0.61))
    first.on_trial_complete(3, [], done)
    first.on_trial_result(4, [], short, _epoch(1, 0.3))
    (tmp_path / "epochs" / "._t1.parquet").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (tmp_path / "epochs" / ".t1.parquet.tmp").write_bytes(b"PAR1 half written")
    (tmp_path / "epochs" / "notes.txt").write_text("copied by hand")

    second = _resumed(first)
    second.on_trial_result(5, [], short, _epoch(2, 0.35))
    second.on_experiment_end([])
    rows = _rows(tmp_path)
    assert rows["t0"]["status"] == "ok" and rows["t0"]["test_acc"] == 0.61
    assert rows["t1"]["epochs_run"] == 2
    assert pl.read_parquet(tmp_path / "epochs" / "t1.parquet")["val_acc"].to_list() == [0.3, 0.35]
    assert pl.read_parquet(tmp_path / "epochs" / "t0.parquet")["epoch"].to_list() == [1, 2]


@pytest.mark.parametrize(("error", "file_text", "line"), [
    ("Traceback (most recent call last):\n  File x\nValueError: bad", None, "ValueError: bad"),
    ("\n  KeyError: 'lr'  \n\n", None, "KeyError: 'lr'"),
    (None, "Traceback:\n  line 3\nOSError: disk full\n", "OSError: disk full"),
    (RuntimeError("Tune lost it"), "Traceback:\nMemoryError\n", "MemoryError"),
    (None, None, "trial failed (no error message recorded)"),
    (RuntimeError("Tune lost it"), None, "trial failed (no error message recorded)"),
    (None, "missing", "trial failed (no error message recorded)"),
    ("", "", "trial failed (no error message recorded)"),
    ("E: " + "x" * 600, None, "E: " + "x" * 497),
])
def test_error_line_is_the_last_line_of_whatever_traceback_there_is(tmp_path, error, file_text,
                                                                    line):
    error_file = None
    if file_text == "missing":
        error_file = str(tmp_path / "error.txt")
    elif file_text is not None:
        (tmp_path / "error.txt").write_text(file_text)
        error_file = str(tmp_path / "error.txt")

    def get_error():
        if isinstance(error, Exception):
            raise error
        return error

    trial = SimpleNamespace(trial_id="t0", config={"seed": 0}, error_file=error_file,
                            get_error=get_error)
    assert _error_line(trial) == line
