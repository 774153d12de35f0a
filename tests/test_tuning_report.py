"""Reading a tuned run: candidates are shown, never averaged as if they were seeds."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from analysis import load_run, render_report, summarize
from analysis.load import TRIAL_DTYPES
from analysis.schema import EPOCHS_DIR, META_FILE, TRIALS_FILE
from analysis.tuning import budget_table, candidates_table, selected_configs
from tests.test_analysis import _epoch_rows, _meta, _trial_row

PROTOCOL = {"stages": ["tune", "replicate"], "samples_per_arm": 3, "search": "random",
            "search_seed": 2026, "tuning_seed": 0, "replicate_seeds": [1, 2],
            "metric": "val_acc", "mode": "max", "max_epochs": 5,
            "selection": "best val_acc over epochs on the validation split",
            "domains": {"plain": {"train.lr": "loguniform(0.0001, 0.001)"},
                        "se": {"train.lr": "loguniform(0.0001, 0.001)"}}}
LRS = [1e-4, 3e-4, 9e-4]


def _row(variant, stage, draw, seed, val, test, epochs=5, status="ok", stopped_by=None):
    row = _trial_row(variant, seed, status, val, test, 1000, epochs, 10.0)
    row.update(trial_id=f"{variant}-{stage}-{draw}-{seed}", stage=stage, draw=draw,
               stopped_by=stopped_by)
    row["cfg.train.lr"] = LRS[draw]
    return row


def _tuned_run(root: Path) -> Path:
    rows = [
        # plain: draw 1 best on validation; draw 0 stopped by ASHA after 1 epoch
        _row("plain", "tune", 0, 0, 0.50, 0.50, epochs=1, stopped_by="scheduler"),
        _row("plain", "tune", 1, 0, 0.97, 0.96),
        _row("plain", "tune", 2, 0, 0.95, 0.99),
        _row("plain", "replicate", 1, 1, 0.970, 0.970),
        _row("plain", "replicate", 1, 2, 0.972, 0.972),
        # se: a candidate that could not learn (chance level) and one that diverged
        _row("se", "tune", 0, 0, 0.10, 0.10),
        _row("se", "tune", 1, 0, 0.20, None, epochs=2, status="diverged"),
        _row("se", "tune", 2, 0, 0.98, 0.98),
        _row("se", "replicate", 2, 1, 0.980, 0.980),
        _row("se", "replicate", 2, 2, 0.982, 0.982),
    ]
    run_dir = root / "exp" / "tuned"
    (run_dir / EPOCHS_DIR).mkdir(parents=True)
    pl.DataFrame(rows, schema_overrides=TRIAL_DTYPES).write_parquet(run_dir / TRIALS_FILE)
    meta = _meta(protocol=PROTOCOL, scheduler="asha-per-variant", reported={})
    (run_dir / META_FILE).write_text(json.dumps(meta))
    for i, row in enumerate(rows):
        pl.DataFrame(_epoch_rows(row["trial_id"], row["epochs_run"], row["best_val_acc"])
                     ).write_parquet(run_dir / EPOCHS_DIR / f"t{i}.parquet")
    return run_dir


def test_load_run_keeps_candidates_apart_from_the_compared_rows(tmp_path):
    run = load_run(_tuned_run(tmp_path))
    assert set(run.trials["stage"]) == {"replicate"} and run.trials.height == 4
    assert set(run.tuning["stage"]) == {"tune"} and run.tuning.height == 6
    assert set(run.epochs["trial_id"]) == set(run.trials["trial_id"])
    assert set(run.tuning_epochs["trial_id"]) == set(run.tuning["trial_id"])


def test_statistics_average_replicates_only(tmp_path):
    summary = summarize(load_run(_tuned_run(tmp_path)))
    se = summary.filter(pl.col("variant") == "se").row(0, named=True)
    assert se["n"] == 2 and abs(se["test_acc_mean"] - 0.981) < 1e-9


def test_selected_budget_and_candidates_tables(tmp_path):
    run = load_run(_tuned_run(tmp_path))
    both = pl.concat([run.tuning, run.trials], how="diagonal_relaxed")
    chosen = selected_configs(both, PROTOCOL)
    assert chosen["plain"]["draw"] == 1 and chosen["plain"]["values"] == {"train.lr": 3e-4}
    assert chosen["plain"]["best_val_acc"] == 0.97 and chosen["se"]["draw"] == 2
    budget = {row["arm"]: row for row in budget_table(run.tuning, run.trials,
                                                      PROTOCOL).iter_rows(named=True)}
    assert budget["plain"]["trial-epochs"] == 11 and budget["plain"]["full budget"] == 2
    assert budget["plain"]["stopped early"] == 1 and budget["se"]["diverged/failed"] == 1
    assert budget["se"]["chosen config"] == "train.lr=0.0009"
    candidates = candidates_table(run.tuning, run.trials, PROTOCOL)
    assert candidates.height == 6
    assert candidates.filter(pl.col("chosen") == "yes")[["arm", "draw"]].rows() == [
        ("plain", 1), ("se", 2)]
    assert "ok (scheduler)" in candidates["status"].to_list()


def test_report_has_a_tuning_section(tmp_path):
    html = render_report(load_run(_tuned_run(tmp_path)))
    section = html.split('<h2 id="tuning">Tuning</h2>')[1].split("<h2")[0]
    assert "3 candidates" in section and "seeds 1, 2" in section
    assert "<td>train.lr=0.0003</td>" in section and ">11<" in section


def test_a_run_written_before_stages_reads_as_single_stage(tmp_path):
    from tests.test_analysis import make_run

    run_dir = make_run(tmp_path)
    frame = pl.read_parquet(run_dir / TRIALS_FILE).drop("stage", "draw", strict=False)
    frame.write_parquet(run_dir / TRIALS_FILE)
    run = load_run(run_dir)
    assert set(run.trials["stage"]) == {"single"} and run.tuning.is_empty()
    assert '<h2 id="tuning">' not in render_report(run)


def test_an_arm_whose_candidates_all_failed_is_named_in_the_answer(tmp_path):
    from analysis.study import answer, study_stats

    run_dir = _tuned_run(tmp_path)
    frame = pl.read_parquet(run_dir / TRIALS_FILE).filter(pl.col("stage") == "tune")
    frame = frame.with_columns(
        pl.when(pl.col("variant") == "se").then(pl.lit("diverged")).otherwise(
            pl.col("status")).alias("status"))
    frame.write_parquet(run_dir / TRIALS_FILE)
    run = load_run(run_dir)
    sentences = answer(study_stats(run), run)
    assert sentences[0].startswith("No arm has replicate trials yet")
    assert any(s.startswith("se: every tuning candidate diverged") for s in sentences)
    assert not any(s.startswith("plain:") for s in sentences)
