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
