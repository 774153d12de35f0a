"""ParquetSink writes, reads back and deduplicates; a resumed sink continues the same files."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import polars as pl

from analysis.schema import EPOCH_COLUMNS, TRIAL_COLUMNS
from orchestrator.sink import ParquetSink
from orchestrator.space import VariantLabeler


def _trial(trial_id, attention, seed=0, error=None):
    config = {"seed": seed, "model": {"name": "mnist_cnn", "attention": attention},
              "train": {"milestones": [3, 6], "lr": 0.1}}
    return SimpleNamespace(trial_id=trial_id, config=config, error_file=None,
                           get_error=lambda: error)


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
