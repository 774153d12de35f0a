"""The report's answer and CLI on hand-made runs: finished, partial (in flight, failed trials),
empty, several side by side, Markdown, exported charts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from test_analysis import TRIALS, _meta, make_run

from analysis.load import load_run, load_runs
from analysis.schema import META_FILE, TRIALS_FILE
from analysis.study import answer, study_stats

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=300)


def _gain_trials(seeds: int, gain: float) -> list[tuple]:
    """plain vs se over `seeds` seeds; se better by `gain` with small seed noise."""
    rows = []
    for seed in range(seeds):
        noise = 0.001 * ((seed * 7) % 5 - 2)
        rows.append(("plain", seed, "ok", 0.95 + noise, 0.95 + noise, 100, 5, 10.0))
        rows.append(("se", seed, "ok", 0.95 + gain + noise * 0.5, 0.95 + gain + noise * 0.5,
                     120, 5, 12.0))
    return rows


def test_answer_says_better_with_enough_seeds_and_flags_the_sign_flip_check_with_three(
        tmp_path):
    run = load_run(make_run(tmp_path / "a", _gain_trials(8, 0.02), _meta(reported={})))
    stats = study_stats(run)
    (comparison,) = stats.comparisons
    assert comparison.verdict == "better" and comparison.n_pairs == 8
    assert comparison.ci_low > 0 and stats.primary == "test_acc"
    text = " ".join(answer(stats, run))
    assert "se vs plain on test acc: +2.00 points (95% t-interval" in text
    assert "better at α = 0.05" in text and "se 1.20×" in text
    assert "disagrees" not in text  # 8 seeds: the sign-flip check agrees

    few = load_run(make_run(tmp_path / "b", _gain_trials(3, 0.02), _meta(reported={})))
    stats = study_stats(few)
    (comparison,) = stats.comparisons
    # The paired t-test decides at 3 seeds; the exact sign-flip check cannot go below 0.25,
    # and the sentence says the verdict rests on the t-test.
    assert comparison.verdict == "better" and comparison.p_sign_flip == 0.25
    text = " ".join(answer(stats, few))
    assert "The sign-flip check disagrees (with 3 seeds it cannot go below 0.25)" in text


def test_source_inside_or_outside_our_interval_and_time_as_ratios(tmp_path):
    reported = {"plain": {"test_acc": 0.95, "train_time_s": 100.0},
                "se": {"test_acc": 0.90, "train_time_s": 150.0}}
    run = load_run(make_run(tmp_path, _gain_trials(6, 0.02), _meta(reported=reported)))
    stats = study_stats(run)
    inside = {(r["variant"], r["key"]): r["inside"] for r in stats.reproduction.iter_rows(named=True)}
    assert inside == {("plain", "test_acc"): True, ("se", "test_acc"): False}
    se = stats.reproduction.filter(pl.col("variant") == "se").row(0, named=True)
    assert se["difference"] == pytest.approx(0.97 - 0.90, abs=1e-3)
    # Seconds from their hardware are never set against ours; ratios to each baseline are.
    assert stats.time_ratios.rows() == [("se", pytest.approx(1.2), pytest.approx(1.5))]
    text = " ".join(answer(stats, run))
    assert "falls inside our 95% t-interval for 1 of 2 arm(s); outside for se +6.98 points (ours 0.9698 vs 0.9000)" in text
    assert "se 1.20× (source 1.50×)" in text


def test_partial_run_in_flight_with_failures_is_labelled(tmp_path):
    trials = [*TRIALS, ("aa", 1, "running", 0.5, None, 1_300_000, 1, 5.0),
              ("se", 3, "error", None, None, 1_250_001, 0, 0.0)]
    meta = _meta()
    meta.pop("ended_at", None)
    meta["state"] = "running"
    run_dir = make_run(tmp_path, trials, meta)
    out = cli("report", str(run_dir), "-q")
    assert out.returncode == 0, out.stderr
    text = (run_dir / "report.html").read_text()
    assert "Run state: in progress (1 trial(s) running)" in text
    assert "cbam failed on 1 of 3 seeds, plain on 0 of 3" in text
    assert "se failed on 1 of 4 seeds, plain on 0 of 3" in text


def test_empty_and_started_runs_report_without_trials(tmp_path):
    run_dir = make_run(tmp_path, trials=[])
    (run_dir / TRIALS_FILE).unlink()  # the sweep has not finished a trial yet
    out = cli("report", str(run_dir), "--format", "md")
    assert out.returncode == 0, out.stderr
    assert "This run has no trials yet." in out.stdout
    out = cli("report", str(run_dir), "-q")
    assert out.returncode == 0 and "No trials in this run yet" in (run_dir / "report.html").read_text()


def test_markdown_several_runs_and_export(tmp_path):
    first = make_run(tmp_path / "one")
    second = tmp_path / "two" / "exp" / "run2"
    shutil.copytree(first, second)
    meta = json.loads((second / META_FILE).read_text())
    meta.update(run_id="second-run", overrides=["--profile", "other"])
    (second / META_FILE).write_text(json.dumps(meta))
    trials = pl.read_parquet(second / TRIALS_FILE).with_columns(
        pl.col("test_acc") + 0.01)
    trials.write_parquet(second / TRIALS_FILE)

    md = cli("report", str(first), "--format", "md")
    assert md.returncode == 0, md.stderr
    assert md.stdout.startswith("# mnist_small/") and "| variant |" in md.stdout
    assert "## Source vs reproduced" in md.stdout and "0.9712" in md.stdout

    both = cli("report", str(first), str(second))
    assert both.returncode == 0, both.stderr
    page = Path(both.stdout.strip().split("comparison: ")[1])
    text = page.read_text()
    assert "second-run" in text and "Side by side" in text and "<script src" not in text

    both_md = cli("report", str(first), str(second), "--format", "md")
    assert "| variant | mnist_small/20250101-120000-ab12" in both_md.stdout

    runs, tidy_trials, tidy_epochs = load_runs([first, second])
    assert len(runs) == 2 and set(tidy_trials["run"]) == {"20250101-120000-ab12", "second-run"}
    assert tidy_trials.height == 2 * len(TRIALS) and "run" in tidy_epochs.columns

    pytest.importorskip("vl_convert")
    exported = cli("report", str(first), "-q", "--export", str(tmp_path / "charts"),
                   "--export-format", "svg")
    assert exported.returncode == 0, exported.stderr
    files = sorted(p.name for p in (tmp_path / "charts").iterdir())
    assert "learning_curves.svg" in files and "effect.svg" in files
    assert (tmp_path / "charts" / "effect.svg").read_text().lstrip().startswith("<svg")


def test_bad_run_dir_is_one_line(tmp_path):
    out = cli("report", str(tmp_path / "nothing"))
    assert out.returncode == 2 and out.stderr.startswith("error: ")
    assert len(out.stderr.strip().splitlines()) == 1


def test_an_arm_that_diverged_on_four_of_ten_seeds_reads_with_its_failures(tmp_path):
    # +1 point on the 6 seeds it finished; paired only on those, its failures in the sentence.
    trials = []
    for seed in range(10):
        base = 0.95 + 0.001 * ((seed * 3) % 4)
        trials.append(("plain", seed, "ok", base, base, 100, 5, 10.0))
        if seed in (1, 4, 6, 9):
            trials.append(("se", seed, "diverged", 0.1, None, 120, 2, 3.0))
        else:
            trials.append(("se", seed, "ok", base + 0.01, base + 0.01 + 0.0004 * (seed % 3),
                           120, 5, 12.0))
    run = load_run(make_run(tmp_path, trials, _meta(reported={})))
    stats = study_stats(run)
    (c,) = stats.comparisons
    assert (c.n_pairs, c.failed, c.runs, c.baseline_failed) == (6, 4, 10, 0)
    text = " ".join(answer(stats, run))
    assert "se failed on 4 of 10 seeds, plain on 0 of 10 (Fisher p = 0.087)" in text
    assert "Note it failed on 4 of 10 seeds" in text
    assert "see Status" not in text


def test_a_baseline_that_lost_a_seed_gives_one_delta_in_the_whole_report(tmp_path):
    trials = [("plain", 0, "ok", 0.95, 0.950, 100, 5, 10.0),
              ("plain", 1, "diverged", 0.10, None, 100, 2, 3.0),
              ("plain", 2, "ok", 0.96, 0.962, 100, 5, 10.0),
              ("se", 0, "ok", 0.95, 0.951, 120, 5, 12.0),
              ("se", 1, "ok", 0.90, 0.900, 120, 5, 12.0),   # the seed the baseline lost
              ("se", 2, "ok", 0.96, 0.963, 120, 5, 12.0)]
    run = load_run(make_run(tmp_path, trials, _meta(reported={})))
    (c,) = study_stats(run).comparisons
    summary = summarize_delta(run)
    assert c.mean_diff == pytest.approx(0.001) and summary == pytest.approx(c.mean_diff)
    assert (c.baseline_failed, c.baseline_runs, c.n_pairs) == (1, 3, 2)


def summarize_delta(run) -> float:
    from analysis.summary import summarize

    row = summarize(run).filter(pl.col("variant") == "se").row(0, named=True)
    return row["delta_test_acc_vs_baseline"]


def test_duplicate_seed_rows_are_a_one_line_error(tmp_path):
    trials = [*TRIALS, ("se", 1, "ok", 0.9, 0.91, 1_250_001, 5, 44.0)]
    rows = pl.read_parquet(make_run(tmp_path, trials) / TRIALS_FILE)
    run_dir = tmp_path / "exp" / "run1"
    # make_run names trials by (variant, seed): give the stray row its own id, as a second
    # sink writing into the same run would.
    rows = rows.with_columns(pl.when(pl.int_range(pl.len()) == rows.height - 1)
                             .then(pl.lit("se_00001_again")).otherwise(pl.col("trial_id"))
                             .alias("trial_id"))
    rows.write_parquet(run_dir / TRIALS_FILE)
    out = cli("report", str(run_dir), "-q")
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert "2 ended trials for arm 'se' seed 1 (se_00001, se_00001_again)" in lines[0]


def test_report_margin_and_alpha_options_change_the_verdicts(tmp_path):
    wobble = [0.009, -0.0075, 0.006, -0.0105, 0.0075, -0.0045]
    trials = [row for seed, w in enumerate(wobble) for row in (
        ("plain", seed, "ok", 0.95, 0.95, 100, 5, 10.0),
        ("se", seed, "ok", 0.95 + w, 0.95 + w, 120, 5, 12.0))]
    run_dir = make_run(tmp_path, trials, _meta(reported={}))
    default = cli("report", str(run_dir), "--format", "md")
    wide = cli("report", str(run_dir), "--format", "md", "--margin", "0.02")
    assert default.returncode == 0 and wide.returncode == 0, default.stderr + wide.stderr
    assert "equivalence margin ±0.50 points" in default.stdout
    assert "inconclusive at α = 0.05" in default.stdout
    assert "equivalent within ±2.00 points" in wide.stdout
    strict = cli("report", str(run_dir), "--format", "md", "--alpha", "0.000001")
    assert "α = 1e-06" in strict.stdout and "equivalent" not in strict.stdout
    bad = cli("report", str(run_dir), "--alpha", "2")
    assert bad.returncode != 0 and "--alpha must be between 0 and 1, got 2" in bad.stderr
