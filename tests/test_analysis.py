"""Tests for `analysis`: run dirs are written here in the exact on-disk format the sink uses."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import statistics
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from analysis import format_table, load_run, render_report, summarize, variant_order, write_report
from analysis.load import EPOCH_DTYPES, TRIAL_DTYPES
from analysis.schema import (
    ARTIFACTS_DIR,
    EPOCH_COLUMNS,
    EPOCHS_DIR,
    MAPS_FILE,
    META_FILE,
    REPORT_FILE,
    TRIAL_COLUMNS,
    TRIALS_FILE,
)
from analysis.summary import display_table

# (variant, seed, status, best_val_acc, test_acc, params, epochs_run, train_time_s)
# "plain" is the baseline (not first alphabetically); meta["reported"] lists se before cbam;
# "aa" is unreported and has a single seed, so it comes last and has no std.
TRIALS: list[tuple[str, int, str, float | None, float | None, int, int, float]] = [
    ("plain", 0, "ok", 0.9690, 0.9700, 1_234_567, 5, 40.0),
    ("plain", 1, "ok", 0.9720, 0.9720, 1_234_567, 5, 42.0),
    ("plain", 2, "early_stopped", 0.9700, 0.9710, 1_234_567, 3, 26.0),
    ("se", 0, "ok", 0.9750, 0.9760, 1_250_001, 5, 44.0),
    ("se", 1, "ok", 0.9770, 0.9790, 1_250_001, 5, 45.0),
    ("se", 2, "ok", 0.9740, 0.9745, 1_250_001, 5, 43.0),
    ("cbam", 0, "ok", 0.9730, 0.9740, 1_260_000, 5, 50.0),
    ("cbam", 1, "ok", 0.9710, 0.9700, 1_260_000, 5, 52.0),
    ("cbam", 2, "diverged", 0.1135, None, 1_260_000, 2, 19.0),
    ("aa", 0, "ok", 0.9600, 0.9610, 1_300_000, 5, 60.0),
]
REPORTED = {
    "se": {"test_acc": 0.9712, "train_time_s": 41.5},
    "cbam": {"test_acc": 0.9655},
    "plain": {"test_acc": 0.9688},
}
ORDER = ["plain", "se", "cbam", "aa"]


def _trial_row(variant: str, seed: int, status: str, val: Any, test: Any, params: int,
               epochs: int, seconds: float) -> dict[str, Any]:  # fmt: skip
    diverged = status == "diverged"
    return {
        "trial_id": f"{variant}_{seed:05d}",
        "variant": variant,
        "seed": seed,
        "status": status,
        "error": "loss is nan at epoch 2, step 37" if diverged else None,
        "stopped_by": {"diverged": "divergence", "early_stopped": "patience"}.get(status),
        "params": params,
        "epochs_run": epochs,
        "best_epoch": epochs,
        "best_val_acc": val,
        "best_val_loss": 0.1,
        "final_val_acc": val,
        "test_acc": test,
        "test_loss": None if diverged else 0.1,
        "train_time_s": seconds,
        "cfg.model.attention": variant,
        "cfg.train.seed": seed,
    }


def _epoch_rows(trial_id: str, epochs: int, final_val: float) -> list[dict[str, Any]]:
    return [
        {
            "trial_id": trial_id,
            "epoch": e,
            "train_loss": 1.0 / e,
            "train_acc": 0.5 + e / 20,
            "val_loss": 1.0 / (e + 1),
            "val_acc": final_val - (epochs - e) * 0.01,
            "lr": 0.1 * 0.5 ** (e - 1),
            "epoch_time_s": 8.0,
            "samples_per_s": 625.0,
            "gpu_mem_mb": 0.0,
        }
        for e in range(1, epochs + 1)
    ]


def _meta(**overrides: Any) -> dict[str, Any]:
    meta = {
        "run_id": "20250101-120000-ab12",
        "preset": "mnist_small",
        "source": "Hu et al., Squeeze-and-Excitation Networks (2018)",
        "trainable": "image_classifier",
        "metric": "val_acc",
        "mode": "max",
        "baseline_variant": "plain",
        "reported": REPORTED,
        "overrides": ["train.epochs=5", "seeds=3"],
        "cli": ["orchestrator", "run", "mnist_small"],
        "git_revision": "0123abcd",
        "versions": {"torch": "2.14.1", "ray": "2.50.0"},
        "hardware": {"cpu": "16 cores", "gpu": None},
        "started_at": "2025-01-01T12:00:00Z",
        "ended_at": "2025-01-01T12:30:00Z",
        "smoke": False,
    }
    meta.update(overrides)
    return meta


def make_run(
    root: Path,
    trials: list[tuple] = TRIALS,
    meta: dict[str, Any] | None = None,
    with_epochs: bool = True,
) -> Path:
    """Write a run dir: meta.json, trials.parquet, one epochs file per trial."""
    run_dir = root / "exp" / "run1"
    (run_dir / EPOCHS_DIR).mkdir(parents=True)
    rows = [_trial_row(*t) for t in trials]
    pl.DataFrame(rows, schema_overrides=TRIAL_DTYPES).write_parquet(run_dir / TRIALS_FILE)
    (run_dir / META_FILE).write_text(json.dumps(meta or _meta()), encoding="utf-8")
    if with_epochs:
        for i, row in enumerate(rows):  # file names by index: trial ids may hold "/"
            epochs = pl.DataFrame(
                _epoch_rows(row["trial_id"], row["epochs_run"], row["best_val_acc"])
            )
            epochs.write_parquet(run_dir / EPOCHS_DIR / f"trial{i:03d}.parquet")
    return run_dir


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_run(tmp_path)


def _ok_values(variant: str, index: int) -> list[float]:
    """Hand-side selection: the metric at `index` of TRIALS for ok/early_stopped trials."""
    return [t[index] for t in TRIALS if t[0] == variant and t[2] in ("ok", "early_stopped")]


# ------------------------------------------------------------------------------ load


class TestLoadRun:
    def test_contract_dtypes_list_schema_columns_in_order(self) -> None:
        assert tuple(TRIAL_DTYPES) == TRIAL_COLUMNS
        assert tuple(EPOCH_DTYPES) == EPOCH_COLUMNS

    def test_reads_meta_trials_and_all_epochs(self, run_dir: Path) -> None:
        run = load_run(run_dir)
        assert run.meta["preset"] == "mnist_small"
        assert run.trials.height == len(TRIALS)
        assert run.trials.columns[: len(TRIAL_COLUMNS)] == list(TRIAL_COLUMNS)
        assert "cfg.model.attention" in run.trials.columns
        assert run.epochs.height == sum(t[6] for t in TRIALS)
        assert run.epochs.columns == list(EPOCH_COLUMNS)
        keys = run.epochs.select("trial_id", "epoch").rows()
        assert keys == sorted(keys)

    def test_missing_epoch_columns_are_null(self, run_dir: Path) -> None:
        # An epoch file from an older writer without gpu_mem_mb, with an int lr column.
        pl.DataFrame(
            {"trial_id": ["plain_00000"], "epoch": [6], "val_acc": [0.5], "lr": [1]}
        ).write_parquet(run_dir / EPOCHS_DIR / "zz_old.parquet")
        epochs = load_run(run_dir).epochs
        old = epochs.filter(pl.col("epoch") == 6)
        assert old["gpu_mem_mb"].to_list() == [None]
        assert old["lr"].to_list() == [1.0]
        assert epochs["gpu_mem_mb"].null_count() == 1
        assert epochs.schema["lr"] == pl.Float64

    def test_dot_files_in_epochs_are_ignored(self, run_dir: Path) -> None:
        before = load_run(run_dir).epochs.height
        # A temp file mid-write (not parquet at all) and a dot-named parquet file.
        (run_dir / EPOCHS_DIR / ".plain_00000.parquet.tmp").write_bytes(b"PAR1 half written")
        pl.DataFrame(_epoch_rows("ghost", 3, 0.5)).write_parquet(
            run_dir / EPOCHS_DIR / ".ghost.parquet"
        )
        epochs = load_run(run_dir).epochs
        assert epochs.height == before
        assert "ghost" not in epochs["trial_id"].to_list()

    def test_reads_files_a_live_sweep_keeps_replacing(self, run_dir: Path) -> None:
        # The sink rewrites a trial's epochs file (temp name, then rename) after every
        # epoch; a report on a live run must read whole versions, never the footer of one
        # and the pages of the next.
        import threading

        from orchestrator.storage import RunFiles

        files, stop = RunFiles(str(run_dir)), threading.Event()

        def keep_replacing() -> None:
            epochs = 1
            while not stop.is_set():
                epochs = epochs % 400 + 1
                files.write_parquet(pl.DataFrame(_epoch_rows("live", epochs, 0.5)),
                                    EPOCHS_DIR, "live.parquet")

        files.write_parquet(pl.DataFrame(_epoch_rows("live", 1, 0.5)), EPOCHS_DIR,
                            "live.parquet")
        writer = threading.Thread(target=keep_replacing)
        writer.start()
        try:
            counts = {load_run(run_dir).epochs.filter(pl.col("trial_id") == "live").height
                      for _ in range(40)}
        finally:
            stop.set()
            writer.join()
        assert len(counts) > 1 and all(1 <= n <= 400 for n in counts)

    def test_no_epochs_gives_empty_typed_frame(self, tmp_path: Path) -> None:
        run = load_run(make_run(tmp_path, with_epochs=False))
        assert run.epochs.is_empty()
        assert run.epochs.columns == list(EPOCH_COLUMNS)
        assert run.epochs.schema["val_acc"] == pl.Float64

    def test_missing_run_dir_names_the_path(self, tmp_path: Path) -> None:
        missing = tmp_path / "no" / "such" / "run"
        with pytest.raises(FileNotFoundError, match=re.escape(str(missing))) as info:
            load_run(missing)
        assert TRIALS_FILE in str(info.value)
        assert "\n" not in str(info.value)

    def test_missing_trials_file_names_the_path(self, run_dir: Path) -> None:
        (run_dir / TRIALS_FILE).unlink()
        (run_dir / META_FILE).unlink()
        with pytest.raises(FileNotFoundError, match=re.escape(str(run_dir / TRIALS_FILE))):
            load_run(run_dir)

    def test_a_started_run_without_trials_reads_as_empty(self, run_dir: Path) -> None:
        """A sweep that has not finished a trial yet is still a run, with no trials."""
        (run_dir / TRIALS_FILE).unlink()
        run = load_run(run_dir)
        assert run.trials.is_empty() and "status" in run.trials.columns

    def test_missing_meta_reads_as_empty(self, run_dir: Path) -> None:
        (run_dir / META_FILE).unlink()
        assert load_run(run_dir).meta == {}


# --------------------------------------------------------------------------- summary


class TestSummarize:
    def test_order_baseline_then_reported_then_alphabetical(self, run_dir: Path) -> None:
        run = load_run(run_dir)
        assert variant_order(run) == ORDER
        assert summarize(run)["variant"].to_list() == ORDER

    def test_means_and_stds_match_hand_computation(self, run_dir: Path) -> None:
        summary = summarize(load_run(run_dir))
        rows = {r["variant"]: r for r in summary.iter_rows(named=True)}
        for variant in ("plain", "se", "cbam"):
            row = rows[variant]
            assert row["val_acc_mean"] == pytest.approx(statistics.mean(_ok_values(variant, 3)))
            assert row["val_acc_std"] == pytest.approx(statistics.stdev(_ok_values(variant, 3)))
            assert row["test_acc_mean"] == pytest.approx(statistics.mean(_ok_values(variant, 4)))
            assert row["test_acc_std"] == pytest.approx(statistics.stdev(_ok_values(variant, 4)))
            assert row["train_time_s_mean"] == pytest.approx(
                statistics.mean(_ok_values(variant, 7))
            )
        # Written out once by hand: plain's test accuracies are 0.970, 0.972, 0.971.
        assert rows["plain"]["test_acc_mean"] == pytest.approx(0.9710)
        assert rows["plain"]["test_acc_std"] == pytest.approx(0.0010)
        assert rows["plain"]["epochs_mean"] == pytest.approx((5 + 5 + 3) / 3)

    def test_diverged_counted_in_statuses_but_not_in_means(self, run_dir: Path) -> None:
        cbam = summarize(load_run(run_dir)).row(2, named=True)
        assert cbam["variant"] == "cbam"
        assert (cbam["n"], cbam["n_ok"]) == (3, 2)
        assert cbam["statuses"] == "2 ok, 1 diverged"
        # The diverged seed's 0.1135 would drag the mean to ~0.69 if it were included.
        assert cbam["val_acc_mean"] == pytest.approx((0.9730 + 0.9710) / 2)
        assert cbam["train_time_s_mean"] == pytest.approx((50.0 + 52.0) / 2)
        assert cbam["params"] == 1_260_000

    def test_statuses_in_schema_order(self, run_dir: Path) -> None:
        plain = summarize(load_run(run_dir)).row(0, named=True)
        assert plain["statuses"] == "2 ok, 1 early_stopped"
        assert plain["n_ok"] == 3

    def test_single_seed_has_null_std(self, run_dir: Path) -> None:
        aa = summarize(load_run(run_dir)).row(3, named=True)
        assert aa["variant"] == "aa"
        assert aa["test_acc_mean"] == pytest.approx(0.9610)
        assert aa["test_acc_std"] is None
        assert aa["val_acc_std"] is None

    def test_reported_columns_and_delta_vs_baseline(self, run_dir: Path) -> None:
        summary = summarize(load_run(run_dir))
        assert summary["reported_test_acc"].to_list() == [0.9688, 0.9712, 0.9655, None]
        assert summary["reported_train_time_s"].to_list() == [None, 41.5, None, None]
        # Paired by seed, like the comparison: aa ran seed 0 only, so its Δ is against the
        # baseline's seed 0 (a difference of unpaired means would be -0.0100, not -0.0090).
        ok = {(t[0], t[1]): t[4] for t in TRIALS if t[2] in ("ok", "early_stopped")}
        expected = [statistics.mean(ok[v, s] - ok["plain", s] for (w, s) in ok
                                    if w == v and ("plain", s) in ok) for v in ORDER]
        assert summary["delta_test_acc_vs_baseline"].to_list() == pytest.approx(expected)
        assert summary["delta_test_acc_vs_baseline"][0] == 0.0
        assert summary["delta_test_acc_vs_baseline"][3] == pytest.approx(-0.0090)

    def test_params_is_the_max(self, tmp_path: Path) -> None:
        trials = [("se", 0, "ok", 0.9, 0.9, 100, 1, 1.0), ("se", 1, "ok", 0.9, 0.9, 120, 1, 1.0)]
        summary = summarize(load_run(make_run(tmp_path, trials=trials)))
        assert summary["params"].to_list() == [120]
        assert summary.schema["params"] == pl.Int64

    def test_all_diverged_gives_null_metrics(self, tmp_path: Path) -> None:
        trials = [
            (v, s, "diverged", 0.1, None, 10, 1, 1.0) for v in ("plain", "se") for s in (0, 1)
        ]
        summary = summarize(load_run(make_run(tmp_path, trials=trials)))
        assert summary["statuses"].to_list() == ["2 diverged", "2 diverged"]
        assert summary["n_ok"].to_list() == [0, 0]
        for column in (
            "val_acc_mean",
            "val_acc_std",
            "test_acc_mean",
            "delta_test_acc_vs_baseline",
        ):
            assert summary[column].to_list() == [None, None], column

    def test_no_baseline_means_no_delta(self, tmp_path: Path) -> None:
        run = load_run(make_run(tmp_path, meta=_meta(baseline_variant=None)))
        summary = summarize(run)
        assert summary["delta_test_acc_vs_baseline"].null_count() == summary.height
        assert summary["variant"].to_list() == ["se", "cbam", "plain", "aa"]


# The summary of TRIALS, worked out by hand: plain's val accuracies 0.969, 0.972, 0.970 have
# mean 0.97033 and std sqrt((1.78 + 2.78 + 0.11)e-6 / 2) = 0.0015; se's test accuracies
# 0.976, 0.979, 0.9745 give 0.9765 ± 0.0023; cbam's two finished seeds 0.974, 0.970 give
# 0.9720 ± 0.0028 (its diverged seed counts in ok/n only). Δ base is paired by seed: se
# (0.006 + 0.007 + 0.0035) / 3 = +0.0055, cbam (0.004 - 0.002) / 2 = +0.0010, aa 0.961 -
# 0.970 = -0.0090. Time: plain (40 + 42 + 26) / 3 = 36.0; epochs (5 + 5 + 3) / 3 = 4.3.
SUMMARY_HEADERS = ["variant", "ok/n", "val acc", "test acc", "rep. test", "Δ base", "params",
                   "time s", "rep. time", "epochs", "other"]
SUMMARY_ROWS = [
    ["plain", "3/3", "0.9703 ± 0.0015", "0.9710 ± 0.0010", "0.9688", "+0.0000", "1,234,567",
     "36.0", "—", "4.3", "1 early_stopped"],
    ["se", "3/3", "0.9753 ± 0.0015", "0.9765 ± 0.0023", "0.9712", "+0.0055", "1,250,001",
     "44.0", "41.5", "5.0", ""],
    ["cbam", "2/3", "0.9720 ± 0.0014", "0.9720 ± 0.0028", "0.9655", "+0.0010", "1,260,000",
     "51.0", "—", "5.0", "1 diverged"],
    ["aa", "1/1", "0.9600", "0.9610", "—", "-0.0090", "1,300,000", "60.0", "—", "5.0", ""],
]
SUMMARY_TEXT = """\
variant  ok/n          val acc         test acc  rep. test   Δ base     params  time s  rep. time  epochs  other
-------  ----  ---------------  ---------------  ---------  -------  ---------  ------  ---------  ------  ---------------
plain     3/3  0.9703 ± 0.0015  0.9710 ± 0.0010     0.9688  +0.0000  1,234,567    36.0          —     4.3  1 early_stopped
se        3/3  0.9753 ± 0.0015  0.9765 ± 0.0023     0.9712  +0.0055  1,250,001    44.0       41.5     5.0
cbam      2/3  0.9720 ± 0.0014  0.9720 ± 0.0028     0.9655  +0.0010  1,260,000    51.0          —     5.0  1 diverged
aa        1/1           0.9600           0.9610          —  -0.0090  1,300,000    60.0          —     5.0"""


class TestFormatTable:
    def test_the_whole_table_word_for_word(self, run_dir: Path) -> None:
        assert format_table(summarize(load_run(run_dir))) == SUMMARY_TEXT
        assert display_table(summarize(load_run(run_dir))) == (SUMMARY_HEADERS, SUMMARY_ROWS)

    def test_contains_our_and_reported_numbers(self, run_dir: Path) -> None:
        text = format_table(summarize(load_run(run_dir)))
        plain_mean = statistics.mean(_ok_values("plain", 4))
        plain_std = statistics.stdev(_ok_values("plain", 4))
        assert f"{plain_mean:.4f} ± {plain_std:.4f}" in text
        assert "0.9712" in text  # se's reported test accuracy
        assert "41.5" in text  # se's reported training time
        assert "1,234,567" in text
        assert "1 diverged" in text
        assert "2/3" in text  # cbam: 2 of 3 trials count

    def test_rows_in_order_with_dash_for_missing(self, run_dir: Path) -> None:
        lines = format_table(summarize(load_run(run_dir))).splitlines()
        assert [line.split()[0] for line in lines[2:]] == ORDER
        aa = lines[-1]
        assert "0.9610" in aa and "±" not in aa  # single seed: no std
        assert "—" in aa  # nothing reported for aa

    def test_fits_a_terminal_with_five_variants(self, tmp_path: Path) -> None:
        variants = ["baseline", "se", "cbam", "eca", "gc_block"]
        trials = [
            (v, s, "diverged" if s == 2 else "ok", 0.97, 0.97, 12_345_678, 100, 1234.5)
            for v in variants
            for s in range(3)
        ]
        reported = {v: {"test_acc": 0.97, "train_time_s": 1234.5} for v in variants}
        run = load_run(
            make_run(tmp_path, trials, _meta(baseline_variant="baseline", reported=reported))
        )
        lines = format_table(summarize(run)).splitlines()
        assert len(lines) == 2 + len(variants)
        assert max(len(line) for line in lines) <= 120


# ---------------------------------------------------------------------------- report


def _no_remote_resources(text: str) -> None:
    assert "<link" not in text.lower()
    assert not re.search(r"<script[^>]*\bsrc\s*=", text, re.IGNORECASE)
    # A hyperlink (the cited source's address) fetches nothing until the reader follows it.
    fetching = re.sub(r"<a\s+href=\"[^\"<>]*\">", "<a>", text)
    assert not re.search(r"""\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", fetching, re.IGNORECASE)
    assert "@import" not in text


def _title(spec: dict[str, Any]) -> str:
    title = spec.get("title", "")
    return title.get("text", "") if isinstance(title, dict) else str(title)


@pytest.fixture
def no_vl_convert(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `import vl_convert` fail, whatever is installed."""
    monkeypatch.setitem(sys.modules, "vl_convert", None)


@pytest.fixture
def fake_vl_convert(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """A stand-in `vl_convert` that records the specs it was asked to render."""
    specs: list[dict[str, Any]] = []

    def vegalite_to_svg(vl_spec: str, **_: Any) -> str:
        specs.append(json.loads(vl_spec))
        return '<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"><g/></svg>'

    module = types.ModuleType("vl_convert")
    module.vegalite_to_svg = vegalite_to_svg  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vl_convert", module)
    return specs


class TestWriteReport:
    def test_writes_self_contained_report(self, run_dir: Path, no_vl_convert: None) -> None:
        out = write_report(run_dir)
        assert out == run_dir / REPORT_FILE
        text = out.read_text(encoding="utf-8")
        _no_remote_resources(text)
        assert "mnist_small — 20250101-120000-ab12" in text
        for variant in ORDER:
            assert f"<td>{variant}</td>" in text
        for value in ("0.9712", "0.9655", "0.9688", "41.5"):  # reported numbers
            assert value in text
        assert "0123abcd" in text and "train.epochs=5" in text
        assert "loss is nan at epoch 2, step 37" in text
        assert text.count('<tr class="status-diverged">') == 1

    def test_summary_table_says_what_the_terminal_table_says(
            self, run_dir: Path, no_vl_convert: None) -> None:
        text = render_report(load_run(run_dir))
        table = re.split(r"<h2[^>]*>Summary</h2>", text)[1].split("</table>")[0]
        headers = re.findall(r"<th>(.*?)</th>", table)
        rows = [re.findall(r"<td[^>]*>(.*?)</td>", row)
                for row in re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>")[1])]
        assert [html.unescape(h) for h in headers] == SUMMARY_HEADERS
        assert [[html.unescape(c) for c in row] for row in rows] == SUMMARY_ROWS

    def test_no_temp_file_left_behind(self, run_dir: Path, no_vl_convert: None) -> None:
        write_report(run_dir)
        write_report(run_dir)  # overwriting an existing report too
        leftovers = [p.name for p in run_dir.iterdir() if p.name.startswith(".")]
        assert leftovers == []

    def test_custom_out_path(self, run_dir: Path, tmp_path: Path, no_vl_convert: None) -> None:
        out = write_report(run_dir, tmp_path / "reports" / "r.html")
        assert out == tmp_path / "reports" / "r.html"
        assert out.is_file()
        assert not (run_dir / REPORT_FILE).exists()
        assert [p.name for p in out.parent.iterdir()] == ["r.html"]

    def test_without_vl_convert_specs_are_embedded_as_inert_json(
        self, run_dir: Path, no_vl_convert: None
    ) -> None:
        text = write_report(run_dir).read_text(encoding="utf-8")
        blocks = re.findall(
            r'<script type="application/json" class="vega-lite-spec">(.*?)</script>', text, re.S
        )
        assert len(blocks) == text.count('<figure class="chart">') >= 4
        specs = [json.loads(b) for b in blocks]
        titles = [_title(spec) for spec in specs]
        assert any("Validation accuracy" in t or "val" in t.lower() for t in titles), titles
        assert "vl-convert-python" in text  # the note names what would draw them
        # Nothing executable without the bundle: the specs are inert data.
        assert "<script>" not in text.replace('<script type="application/json"', "")

    def test_with_vl_convert_charts_are_inline_svg(
        self, run_dir: Path, fake_vl_convert: list[dict[str, Any]]
    ) -> None:
        text = write_report(run_dir).read_text(encoding="utf-8")
        figures = text.count('<figure class="chart">')
        assert figures >= 4 and text.count('<div class="vega-target"><svg') == figures
        assert "<?xml" not in text
        _no_remote_resources(text)
        spread = next(s for s in fake_vl_convert if _title(s) == "Test accuracy per variant")
        # The strip chart has one dot per counted seed, the mean ± std, and reported marks.
        layer_values = [layer["data"]["values"] for layer in spread["layer"]]
        assert len(layer_values[0]) == sum(1 for t in TRIALS if t[2] != "diverged")
        assert {r["variant"]: r["reported_test_acc"] for r in layer_values[-1]} == {
            v: REPORTED[v]["test_acc"] for v in REPORTED
        }

    def test_rendering_failure_falls_back_to_spec(
        self, run_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        module = types.ModuleType("vl_convert")

        def broken(vl_spec: str, **_: Any) -> str:
            raise RuntimeError("unsupported vega-lite version")

        module.vegalite_to_svg = broken  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "vl_convert", module)
        text = write_report(run_dir).read_text(encoding="utf-8")
        assert text.count('class="vega-lite-spec"') == text.count('<figure class="chart">') >= 4
        assert "unsupported vega-lite version" in text

    def test_user_text_is_escaped(self, tmp_path: Path, no_vl_convert: None) -> None:
        evil = "<script>alert(1)</script>"
        trials = [(evil, 0, "ok", 0.9, 0.9, 10, 1, 1.0)]
        meta = _meta(preset=evil, source=evil, reported={evil: {"test_acc": 0.5}})
        text = write_report(make_run(tmp_path, trials, meta)).read_text(encoding="utf-8")
        assert evil not in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text

    def test_source_addresses_are_escaped_links(self) -> None:
        from analysis.report import _facts_html

        def source_html(source: str, url: str | None = None) -> str:
            text = _facts_html(_meta(source=source, source_url=url))
            _no_remote_resources(text)
            return re.search(r"<dt>source</dt><dd>(.*?)</dd>", text).group(1)

        dd = source_html('"CNNtention: Can CNNs do better with Attention?", 2024, '
                         'https://arxiv.org/abs/2412.11657; data: "<b>", https://x.org/a?b=1&c=2',
                         "https://arxiv.org/abs/2412.11657")
        assert dd.count("<a ") == 2 and "&lt;b&gt;" in dd and "<b>" not in dd
        assert ('<a href="https://arxiv.org/abs/2412.11657">https://arxiv.org/abs/2412.11657</a>;'
                in dd)
        assert '<a href="https://x.org/a?b=1&amp;c=2">' in dd
        # An address only in source_url is added; anything not http(s) is never a link.
        assert source_html("a course report", 'https://e.org/r"><x') == (
            'a course report <a href="https://e.org/r&quot;&gt;&lt;x">https://e.org/r&quot;&gt;&lt;x</a>')
        assert source_html("javascript:alert(1)", "javascript:alert(1)") == "javascript:alert(1)"
        assert source_html("Hu et al. (2018)") == "Hu et al. (2018)"  # a run from before source_url

    def test_zero_epochs(self, tmp_path: Path, no_vl_convert: None) -> None:
        trials = [(v, 0, "running", None, None, 10, 0, 0.0) for v in ("plain", "se")]
        text = write_report(make_run(tmp_path, trials, with_epochs=False)).read_text()
        assert "No finished epochs yet" in text
        assert "1 running" in text

    def test_single_seed_and_all_diverged(self, tmp_path: Path, no_vl_convert: None) -> None:
        trials = [
            ("plain", 0, "ok", 0.97, 0.97, 10, 5, 10.0),
            ("se", 0, "diverged", 0.10, None, 12, 2, 4.0),
            ("se", 1, "error", None, None, 12, 0, 0.0),
        ]
        run_dir = make_run(tmp_path, trials)
        text = write_report(run_dir).read_text(encoding="utf-8")
        assert "0.9700" in text and "0.9700 ±" not in text
        assert "1 diverged, 1 error" in text
        _no_remote_resources(text)

    def test_empty_run(self, tmp_path: Path, no_vl_convert: None) -> None:
        text = render_report(load_run(make_run(tmp_path, trials=[])))
        assert "No trials in this run yet" in text
        assert "No finished epochs yet" in text

    def test_missing_run_dir(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "gone"))):
            write_report(tmp_path / "gone")


# ------------------------------------------------------------------------------ gallery


def _write_maps(path: Path, n: int = 10, with_attention: bool = True) -> None:
    rng = np.random.default_rng(0)
    payload = {
        "images": rng.integers(0, 256, (n, 1, 28, 28), dtype=np.uint8),
        "labels": np.arange(n) % 10,
        "predictions": (np.arange(n) + 1) % 10,
        "confidence": np.full(n, 0.5, dtype=np.float32),
        "index": np.arange(n),
        "gradcam": rng.random((n, 28, 28)).astype(np.float16),
        "class_names": np.array([f"digit{k}" for k in range(10)]),
    }
    if with_attention:
        payload["attention/attn1.block"] = rng.random((n, 28, 28)).astype(np.float16)
        payload["channel/attn2"] = rng.random((n, 16)).astype(np.float16)
    path.parent.mkdir(parents=True)
    np.savez_compressed(path, **payload)


class TestGallery:
    def test_report_embeds_one_gallery_per_variant_with_maps(
        self, run_dir: Path, no_vl_convert: None
    ) -> None:
        trials = pl.read_parquet(run_dir / TRIALS_FILE)
        first = {v: trials.filter(pl.col("variant") == v).sort("seed")["trial_id"][0]
                 for v in ("cbam", "se")}
        _write_maps(run_dir / ARTIFACTS_DIR / first["cbam"] / MAPS_FILE)
        _write_maps(run_dir / ARTIFACTS_DIR / first["se"] / MAPS_FILE, with_attention=False)
        text = write_report(run_dir).read_text(encoding="utf-8")
        _no_remote_resources(text)
        assert "What the models looked at" in text
        # cbam: input + Grad-CAM + one attention map; se: input + Grad-CAM. Channel gates
        # have no picture.
        assert text.count("data:image/png;base64,") == 5
        assert "attn1.block" in text and "digit0→digit1" in text
        png = re.search(r'data:image/png;base64,([^"]+)"', text).group(1)
        from PIL import Image

        strip = Image.open(io.BytesIO(base64.b64decode(png)))
        assert strip.size == (8 * 64, 64)  # eight images of 64 px in a row

    def test_damaged_or_missing_maps_leave_the_report_intact(
        self, run_dir: Path, no_vl_convert: None
    ) -> None:
        trials = pl.read_parquet(run_dir / TRIALS_FILE)
        broken = run_dir / ARTIFACTS_DIR / trials["trial_id"][0] / MAPS_FILE
        broken.parent.mkdir(parents=True)
        broken.write_bytes(b"not a zip")
        text = write_report(run_dir).read_text(encoding="utf-8")
        assert "What the models looked at" not in text and ">Trials</h2>" in text
