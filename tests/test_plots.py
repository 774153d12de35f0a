"""Chart builders of analysis.plots: the numbers they hand Altair, and that every spec renders."""

from __future__ import annotations

import math
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from scipy import stats as scipy_stats

from analysis.charts import seed_spread_chart
from analysis.load import EPOCH_DTYPES, TRIAL_DTYPES, Run
from analysis.plots import (
    ARM_PALETTE,
    ARM_PARAM,
    BASELINE_COLOUR,
    STATUS_COLOURS,
    VERDICT_COLOURS,
    arm_colours,
    cost_frontier,
    effect_plot,
    export_chart,
    hparam_importance,
    hparam_importance_table,
    learning_curve_stats,
    learning_curves,
    parallel_coordinates,
    parallel_coordinates_data,
    pareto_frontier,
    status_breakdown,
)

vl_convert = pytest.importorskip("vl_convert")

ORDER = ["base", "se", "cbam"]
OFFSET = {"base": 0.0, "se": 0.03, "cbam": 0.02}
EPOCHS = 5
# (variant, seed) -> (status, epochs run): se/2 diverges in epoch 3 (NaN there), cbam/1 stops.
SPECIAL = {("se", 2): ("diverged", 3), ("cbam", 1): ("early_stopped", 3)}


def _val_acc(variant: str, seed: int, epoch: int) -> float:
    return 0.5 + 0.08 * epoch + OFFSET[variant] + 0.01 * ((seed * 7 + epoch * 3) % 5)


@pytest.fixture(scope="module")
def run_frames() -> tuple[pl.DataFrame, pl.DataFrame]:
    """3 variants x 3 seeds x up to 5 epochs, one diverged, one early-stopped, one orphan row."""
    trials: list[dict[str, Any]] = []
    epochs: list[dict[str, Any]] = []
    for variant in ORDER:
        for seed in range(3):
            trial_id = f"{variant}-{seed}"
            status, run = SPECIAL.get((variant, seed), ("ok", EPOCHS))
            diverged = status == "diverged"
            trials.append({
                "trial_id": trial_id, "variant": variant, "seed": seed, "status": status,
                "error": "loss is nan" if diverged else None,
                "stopped_by": {"diverged": "divergence", "early_stopped": "patience"}.get(status),
                "epochs_run": run, "best_val_acc": _val_acc(variant, seed, run - 1),
                "train_time_s": 10.0 * run, "diverged_epoch": run if diverged else None,
                "diverged_step": 17 if diverged else None,
            })
            for epoch in range(1, run + 1):
                value = math.nan if diverged and epoch == run else _val_acc(variant, seed, epoch)
                epochs.append({"trial_id": trial_id, "epoch": epoch, "val_acc": value,
                               "val_loss": 1.0 / epoch})
    epochs.append({"trial_id": "ghost", "epoch": 1, "val_acc": 0.99, "val_loss": 0.1})
    trial_frame = pl.DataFrame(trials).select(
        pl.col(name).cast(dtype) if name in trials[0] else pl.lit(None, dtype=dtype).alias(name)
        for name, dtype in TRIAL_DTYPES.items()
    )
    epoch_frame = pl.DataFrame(epochs).select(
        pl.col(name).cast(dtype) if name in epochs[0] else pl.lit(None, dtype=dtype).alias(name)
        for name, dtype in EPOCH_DTYPES.items()
    )
    return epoch_frame, trial_frame


@pytest.fixture(scope="module")
def search_trials() -> pl.DataFrame:
    """A random search: accuracy depends mostly on lr (log-uniform), a little on dropout."""
    rng = np.random.default_rng(0)
    n = 40
    log_lr = rng.uniform(-5.0, -1.0, n)
    dropout = rng.uniform(0.0, 0.5, n)
    optimizer = rng.choice(["adam", "sgd"], n)
    acc = 0.95 - 0.08 * (log_lr + 3.0) ** 2 - 0.02 * dropout + rng.normal(0, 0.003, n)
    return pl.DataFrame({
        "trial_id": [f"t{i:02d}" for i in range(n)],
        "variant": ["se"] * n,
        "seed": [i % 3 for i in range(n)],
        "status": ["ok"] * n,
        "best_val_acc": acc,
        "cfg.seed": [i % 3 for i in range(n)],
        "cfg.variant": ["se"] * n,
        "cfg.data.batch_size": [64] * n,
        "cfg.train.lr": 10.0**log_lr,
        "cfg.model.dropout": dropout,
        "cfg.train.optimizer": optimizer,
    })


def _layers(chart: Any) -> list[dict[str, Any]]:
    spec = chart.to_dict()
    return spec.get("layer", [spec])


def _mark(layer: dict[str, Any]) -> dict[str, Any]:
    mark = layer["mark"]
    return mark if isinstance(mark, dict) else {"type": mark}


def _encoded_fields(encoding: Any) -> set[str]:
    """Every data field an encoding (channels, conditions, tooltips) reads."""
    found: set[str] = set()
    if isinstance(encoding, dict):
        if isinstance(encoding.get("field"), str):
            found.add(encoding["field"])
        for value in encoding.values():
            found |= _encoded_fields(value)
    elif isinstance(encoding, list):
        for value in encoding:
            found |= _encoded_fields(value)
    return found


def _missing_fields(chart: Any) -> list[tuple[str, str]]:
    """(mark, field) for every encoded field that some row of the layer's data lacks."""
    spec = chart.to_dict()
    missing = []
    for layer in _layers(chart):
        rows = (layer.get("data") or spec.get("data") or {}).get("values") or []
        assert rows, f"a {_mark(layer)['type']} layer has no inline data"
        present = set.intersection(*(set(row) for row in rows))
        missing += [(_mark(layer)["type"], f)
                    for f in sorted(_encoded_fields(layer.get("encoding", {})) - present)]
    return missing


def _render_svg(chart: Any) -> str:
    return vl_convert.vegalite_to_svg(chart.to_dict())


def _svg_marks(svg: str, role: str) -> int:
    """How many marks of one kind Vega drew ("point", "bar", "line mark", "area mark")."""
    return len(re.findall(f'aria-roledescription="{role}"', svg))


def _svg_texts(svg: str) -> list[str]:
    return re.findall(r"<text[^>]*>([^<]*)</text>", svg)


# ---------------------------------------------------------------------------- learning curves


class TestLearningCurves:
    def test_band_matches_hand_computation(self, run_frames) -> None:
        epochs, trials = run_frames
        stats = learning_curve_stats(epochs, trials, confidence=0.9)
        row = stats.filter((pl.col("variant") == "base") & (pl.col("epoch") == 2)).row(
            0, named=True
        )
        values = [_val_acc("base", seed, 2) for seed in range(3)]
        mean, std = statistics.mean(values), statistics.stdev(values)
        half = scipy_stats.t.ppf(0.95, 2) * std / math.sqrt(3)
        assert row["n"] == 3
        assert row["mean"] == pytest.approx(mean)
        assert row["ci_low"] == pytest.approx(mean - half)
        assert row["ci_high"] == pytest.approx(mean + half)

    def test_diverged_not_averaged_and_seeds_counted(self, run_frames) -> None:
        epochs, trials = run_frames
        stats = learning_curve_stats(epochs, trials)
        n = {(r["variant"], r["epoch"]): r["n"] for r in stats.iter_rows(named=True)}
        assert n[("se", 1)] == 2  # the diverged seed is drawn but not averaged
        assert n[("cbam", 2)] == 3 and n[("cbam", 5)] == 2  # early stop shrinks n later
        assert "ghost" not in stats["variant"].to_list()
        assert set(stats["variant"].to_list()) == set(ORDER)  # orphan epoch row dropped

    def test_single_seed_has_no_band(self, run_frames) -> None:
        epochs, trials = run_frames
        one = trials.filter(pl.col("trial_id") == "base-0")
        stats = learning_curve_stats(epochs, one)
        assert stats["n"].to_list() == [1] * EPOCHS
        assert stats["ci_low"].null_count() == EPOCHS
        chart = learning_curves(epochs, one, ORDER)
        assert not any(_mark(layer)["type"] == "area" for layer in _layers(chart))

    def test_markers_for_early_stopped_and_diverged(self, run_frames) -> None:
        epochs, trials = run_frames
        layers = _layers(learning_curves(epochs, trials, ORDER))
        by_shape = {_mark(layer).get("shape"): layer for layer in layers}
        early = by_shape["triangle-down"]["data"]["values"]
        assert [(r["trial_id"], r["epoch"]) for r in early] == [("cbam-1", 3)]
        crosses = by_shape["cross"]
        assert _mark(crosses)["color"] == "#d62728"
        # Last finite epoch is 2 (epoch 3 is NaN); the note says where it blew up.
        [row] = crosses["data"]["values"]
        assert (row["trial_id"], row["epoch"]) == ("se-2", 2)
        assert row["note"].startswith("diverged") and "epoch 3" in row["note"]
        assert "note" in [t["field"] for t in crosses["encoding"]["tooltip"]]

    def test_layers_band_and_faint_seeds(self, run_frames) -> None:
        epochs, trials = run_frames
        chart = learning_curves(epochs, trials, ORDER)
        layers = _layers(chart)
        area = next(layer for layer in layers if _mark(layer)["type"] == "area")
        assert area["encoding"]["opacity"]["condition"]["value"] == pytest.approx(0.18)
        seeds = layers[0]
        assert seeds["encoding"]["opacity"]["condition"]["value"] == pytest.approx(0.3)
        assert {r["trial_id"] for r in seeds["data"]["values"]} == set(trials["trial_id"])
        assert all(r["value"] is not None for r in seeds["data"]["values"])
        colour = layers[0]["encoding"]["color"]["scale"]["domain"]
        assert colour == ORDER
        assert chart.to_dict()["width"] == 560

    def test_empty_epochs_give_none(self, run_frames) -> None:
        epochs, trials = run_frames
        assert learning_curves(epochs.clear(), trials, ORDER) is None
        assert learning_curves(epochs, trials.clear(), ORDER) is None

    def test_bad_confidence_or_metric_raise(self, run_frames) -> None:
        epochs, trials = run_frames
        with pytest.raises(ValueError, match="confidence"):
            learning_curve_stats(epochs, trials, confidence=95)
        with pytest.raises(ValueError, match="val_accuracy"):
            learning_curves(epochs, trials, ORDER, metric="val_accuracy")


# ---------------------------------------------------------------------------- cost frontier


def _costs(xs: list[float], means: list[float]) -> pl.DataFrame:
    return pl.DataFrame({
        "variant": [f"v{i}" for i in range(len(xs))],
        "train_time_s": xs,
        "mean": means,
        "ci_low": [m - 0.01 for m in means],
        "ci_high": [m + 0.01 for m in means],
    })


class TestCostFrontier:
    def test_pareto_set_excludes_dominated(self) -> None:
        # v2 costs more than v1 and is worse; v4 ties v3's cost but is worse.
        summary = _costs([10.0, 100.0, 200.0, 300.0, 300.0], [0.80, 0.85, 0.83, 0.90, 0.88])
        front = pareto_frontier(summary, x="train_time_s")
        assert front["variant"].to_list() == ["v0", "v1", "v3"]
        layers = _layers(cost_frontier(summary, x="train_time_s", x_title="training time (s)"))
        step = next(layer for layer in layers if _mark(layer).get("interpolate") == "step-after")
        assert [r["variant"] for r in step["data"]["values"]] == ["v0", "v1", "v3"]
        points = next(layer for layer in layers if _mark(layer)["type"] == "point")
        flags = {r["variant"]: r["frontier"] for r in points["data"]["values"]}
        assert flags == {"v0": "on frontier", "v1": "on frontier", "v2": "dominated",
                         "v3": "on frontier", "v4": "dominated"}
        # Dominated points are hollow: no fill, but a stroke in the arm's colour.
        fill = points["encoding"]["fillOpacity"]["scale"]
        assert dict(zip(fill["domain"], fill["range"], strict=True)) == {
            "on frontier": 1.0, "dominated": 0.0}
        stroke, colour = points["encoding"]["stroke"], points["encoding"]["color"]
        assert stroke["field"] == "variant" and stroke["scale"] == colour["scale"]

    def test_log_scale_only_when_span_exceeds_20(self) -> None:
        wide = cost_frontier(_costs([10.0, 300.0], [0.8, 0.9]), x="train_time_s", x_title="s")
        narrow = cost_frontier(_costs([10.0, 150.0], [0.8, 0.9]), x="train_time_s", x_title="s")
        assert _layers(wide)[0]["encoding"]["x"]["scale"]["type"] == "log"
        assert "type" not in _layers(narrow)[0]["encoding"]["x"]["scale"]

    def test_titles_and_nothing_to_draw(self) -> None:
        summary = _costs([1e5, 2e5], [0.8, 0.9]).rename({"train_time_s": "params"})
        spec = cost_frontier(summary, x="params", x_title="parameters").to_dict()
        assert spec["layer"][0]["encoding"]["x"]["title"] == "parameters"
        assert spec["layer"][0]["encoding"]["y"]["title"] == "best val acc"
        empty = _costs([1.0], [0.5]).with_columns(pl.lit(None, dtype=pl.Float64).alias("mean"))
        assert cost_frontier(empty, x="train_time_s", x_title="s") is None


# ---------------------------------------------------------------------------- effect plot


COMPARISONS = pl.DataFrame({
    "variant": ["se", "cbam", "eca", "aa"],
    "mean_diff": [0.8, -1.2, 0.1, 0.5],
    "ci_low": [0.3, -2.0, -0.4, -1.5],
    "ci_high": [1.3, -0.4, 0.6, 2.5],
    "verdict": ["better", "worse", "no detectable difference", "needs more seeds"],
})


def _verdict_legend(comparisons: pl.DataFrame) -> dict[str, str]:
    layers = _layers(effect_plot(comparisons))
    point = next(layer for layer in layers if _mark(layer)["type"] == "point")
    scale = point["encoding"]["color"]["scale"]
    return dict(zip(scale["domain"], scale["range"], strict=True))


class TestEffectPlot:
    def test_colours_follow_verdicts(self) -> None:
        colour = _verdict_legend(COMPARISONS)
        assert list(colour) == ["better", "worse", "no detectable difference",
                                "needs more seeds"]
        assert colour == {v: VERDICT_COLOURS[v] for v in colour}
        assert colour["better"] == "#2ca02c" and colour["worse"] == "#d62728"
        layers = _layers(effect_plot(COMPARISONS))
        point = next(layer for layer in layers if _mark(layer)["type"] == "point")
        assert point["encoding"]["y"]["sort"] == ["se", "cbam", "eca", "aa"]

    def test_t_interval_verdicts_coloured_like_their_bootstrap_namesakes(self) -> None:
        new = COMPARISONS.with_columns(
            pl.Series("verdict", ["better", "worse", "equivalent", "inconclusive"]))
        colour = _verdict_legend(new)
        assert list(colour) == ["better", "worse", "equivalent", "inconclusive"]
        assert colour["equivalent"] == VERDICT_COLOURS["no detectable difference"]
        assert colour["inconclusive"] == VERDICT_COLOURS["needs more seeds"]
        assert colour["worse"] == "#d62728" and colour["better"] == "#2ca02c"
        only_some = new.head(1)  # the legend still explains all four colours
        assert list(_verdict_legend(only_some)) == list(colour)

    def test_interval_named_and_differences_in_points(self) -> None:
        spec = effect_plot(COMPARISONS, interval="95% t-interval").to_dict()
        assert "95% t-interval" in str(spec["title"])
        point = next(layer for layer in spec["layer"] if _mark(layer)["type"] == "point")
        tips = {t["field"]: t for t in point["encoding"]["tooltip"]}
        assert tips["ci_low"]["title"].startswith("95% t-interval")
        assert {tips[f]["format"] for f in ("mean_diff", "ci_low", "ci_high")} == {"+.2f"}

    def test_rule_at_zero_and_ci_bars(self) -> None:
        layers = _layers(effect_plot(COMPARISONS))
        zero = [layer for layer in layers if layer["data"]["values"] == [{"zero": 0.0}]]
        assert len(zero) == 1 and _mark(zero[0])["type"] == "rule"
        assert zero[0]["encoding"]["x"]["field"] == "zero"
        bars = next(layer for layer in layers if "x2" in layer["encoding"])
        assert [(r["ci_low"], r["ci_high"]) for r in bars["data"]["values"]] == [
            (0.3, 1.3), (-2.0, -0.4), (-0.4, 0.6), (-1.5, 2.5)
        ]

    def test_unknown_verdict_still_coloured_and_empty_is_none(self) -> None:
        odd = COMPARISONS.with_columns(pl.lit("mixed").alias("verdict"))
        layers = _layers(effect_plot(odd))
        point = next(layer for layer in layers if _mark(layer)["type"] == "point")
        scale = point["encoding"]["color"]["scale"]
        assert "mixed" in scale["domain"] and len(scale["range"]) == len(scale["domain"])
        assert effect_plot(COMPARISONS.clear()) is None


# ---------------------------------------------------------------------------- statuses


class TestStatusBreakdown:
    def test_counts_per_variant_and_status(self, run_frames) -> None:
        _, trials = run_frames
        spec = status_breakdown(trials, ORDER).to_dict()
        counts = {(r["variant"], r["status"]): r["count"] for r in spec["data"]["values"]}
        assert counts == {("base", "ok"): 3, ("se", "ok"): 2, ("se", "diverged"): 1,
                          ("cbam", "ok"): 2, ("cbam", "early_stopped"): 1}
        scale = spec["encoding"]["color"]["scale"]
        assert dict(zip(scale["domain"], scale["range"], strict=True)) == STATUS_COLOURS
        assert spec["encoding"]["y"]["sort"] == ORDER
        assert status_breakdown(trials.clear(), ORDER) is None


# ---------------------------------------------------------------------------- searches


class TestHparamImportance:
    def test_lr_ranked_first(self, search_trials) -> None:
        table = hparam_importance_table(search_trials, "best_val_acc")
        assert table.columns == ["hyperparameter", "eta_squared", "levels"]
        # Seed, variant and the constant batch size are not hyperparameters of the search.
        assert set(table["hyperparameter"]) == {"train.lr", "model.dropout", "train.optimizer"}
        assert table["hyperparameter"][0] == "train.lr"
        assert table["eta_squared"][0] > 0.5
        assert table["eta_squared"].is_between(0.0, 1.0).all()
        levels = dict(zip(table["hyperparameter"], table["levels"], strict=True))
        assert levels == {"train.lr": 5, "model.dropout": 5, "train.optimizer": 2}

    def test_chart_sorted_descending(self, search_trials) -> None:
        spec = hparam_importance(search_trials).to_dict()
        assert spec["encoding"]["y"]["sort"] == "-x"
        assert spec["data"]["values"][0]["hyperparameter"] == "train.lr"

    def test_none_and_empty_cases(self, search_trials) -> None:
        few = search_trials.head(5)
        assert hparam_importance_table(few).is_empty()
        assert hparam_importance(few) is None
        one_knob = search_trials.drop("cfg.model.dropout", "cfg.train.optimizer")
        assert hparam_importance_table(one_knob).height == 1
        assert hparam_importance(one_knob) is None
        missing = search_trials.with_columns(
            pl.when(pl.int_range(pl.len()) < 35).then(None).otherwise(pl.col("best_val_acc"))
            .alias("best_val_acc")
        )
        assert hparam_importance(missing) is None
        constant = search_trials.with_columns(pl.lit(0.5).alias("best_val_acc"))
        assert hparam_importance(constant) is None


class TestParallelCoordinates:
    def test_positions_normalised_with_log_lr(self, search_trials) -> None:
        data = parallel_coordinates_data(search_trials)
        assert data["position"].is_between(0.0, 1.0).all()
        assert data.height == search_trials.height * 4
        scales = dict(data.select("axis", "scale").unique().iter_rows())
        assert scales == {"train.lr (log)": "log", "model.dropout": "linear",
                          "train.optimizer": "categorical", "best_val_acc": "linear"}
        lr = search_trials["cfg.train.lr"].log10()
        expected = ((lr - lr.min()) / (lr.max() - lr.min())).to_list()
        got = data.filter(pl.col("axis") == "train.lr (log)").sort("line")["position"]
        assert got.to_list() == pytest.approx(expected)
        opt = data.filter(pl.col("axis") == "train.optimizer")
        assert set(opt["position"].to_list()) == {0.0, 1.0}

    def test_metric_axis_last_most_important_next_to_it(self, search_trials) -> None:
        data = parallel_coordinates_data(search_trials)
        axes = data.unique("axis_index").sort("axis_index")["axis"].to_list()
        assert axes[-2:] == ["train.lr (log)", "best_val_acc"]

    def test_chart_and_none(self, search_trials) -> None:
        spec = parallel_coordinates(search_trials).to_dict()
        lines = next(layer for layer in spec["layer"] if _mark(layer)["type"] == "line")
        assert lines["encoding"]["color"]["field"] == "metric"
        assert parallel_coordinates(search_trials.head(5)) is None
        one_knob = search_trials.drop("cfg.train.lr", "cfg.model.dropout")
        assert parallel_coordinates(one_knob) is None


# ---------------------------------------------------------------------------- rendering


def _all_charts(run_frames, search_trials) -> dict[str, Any]:
    epochs, trials = run_frames
    summary = _costs([10.0, 300.0, 120.0], [0.8, 0.9, 0.85])
    return {
        "learning_curves": learning_curves(epochs, trials, ORDER),
        "cost_frontier": cost_frontier(summary, x="train_time_s", x_title="training time (s)"),
        "effect_plot": effect_plot(COMPARISONS),
        "status_breakdown": status_breakdown(trials, ORDER),
        "hparam_importance": hparam_importance(search_trials),
        "parallel_coordinates": parallel_coordinates(search_trials),
    }


# Chart -> (the data marks Vega must draw, how many, texts the drawing must show): one mark
# per row of the inputs above, and the labels that only come from those rows.
DRAWN = {
    # 9 seed lines (se-2's NaN epoch ends its line early) + 3 means; a band per variant
    "learning_curves": [("line mark", 12, {"base", "se", "cbam", "epoch"}),
                        ("area mark", 3, set())],
    "cost_frontier": [("point", 3, {"v0", "v1", "v2", "training time (s)"})],
    "effect_plot": [("point", 4, {"se", "cbam", "eca", "aa", "better", "worse"})],
    # base ok, se ok + diverged, cbam ok + early_stopped; 3 trials at most per variant
    "status_breakdown": [("bar", 5, {"base", "se", "cbam", "3"})],
    "hparam_importance": [("bar", 3, {"train.lr", "model.dropout", "train.optimizer"})],
    "parallel_coordinates": [("line mark", 40, {"train.lr (log)", "adam", "sgd"})],
}


def test_every_chart_draws_its_data_with_title(run_frames, search_trials) -> None:
    for name, chart in _all_charts(run_frames, search_trials).items():
        assert chart is not None, name
        spec = chart.to_dict()
        assert spec.get("title"), name
        assert spec["width"] == 560, name
        assert _missing_fields(chart) == [], name   # an absent field draws nothing, silently
        svg = _render_svg(chart)
        texts = set(_svg_texts(svg))
        assert str(spec["title"]["text"] if isinstance(spec["title"], dict)
                   else spec["title"]) in texts, name
        for role, count, labels in DRAWN[name]:
            assert _svg_marks(svg, role) == count, (name, role)
            assert labels <= texts, (name, labels - texts)


def test_a_field_the_data_lacks_is_caught() -> None:
    """The check above is not vacuous: a chart encoding a column its rows lack fails it."""
    import altair as alt

    rows = [{"variant": "se", "mean_diff": 0.5}]
    good = alt.Chart(alt.Data(values=rows)).mark_point().encode(x="mean_diff:Q", y="variant:N")
    bad = alt.Chart(alt.Data(values=rows)).mark_point().encode(x="diff:Q", y="variant:N")
    assert _missing_fields(good) == []
    assert _missing_fields(bad) == [("point", "diff")]


def test_export_png_and_svg(run_frames, tmp_path: Path) -> None:
    _, trials = run_frames
    chart = status_breakdown(trials, ORDER)
    png = export_chart(chart, tmp_path / "out" / "status.png")
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    svg = export_chart(chart, tmp_path / "status.SVG")
    assert svg.read_text(encoding="utf-8").lstrip().startswith("<svg")
    with pytest.raises(ValueError, match=r"\.png, \.svg"):
        export_chart(chart, tmp_path / "status.pdf")


def test_import_does_not_load_altair() -> None:
    code = "import sys, analysis.plots; print('altair' in sys.modules, 'scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# ---------------------------------------------------------------------------- arms across charts


def _narrow_frames() -> tuple[pl.DataFrame, pl.DataFrame]:
    """mnist-like: three arms 0.2-0.7 points apart near 98%, two seeds, three epochs."""
    base = {"base": 0.9800, "se": 0.9820, "cbam": 0.9870}
    trials = pl.DataFrame({
        "trial_id": [f"{v}-{s}" for v in base for s in range(2)],
        "variant": [v for v in base for _ in range(2)],
        "seed": [s for _ in base for s in range(2)],
        "status": ["ok"] * 6,
    })
    epochs = pl.DataFrame({
        "trial_id": [f"{v}-{s}" for v in base for s in range(2) for _ in range(3)],
        "epoch": [e for _ in base for _ in range(2) for e in (1, 2, 3)],
        "val_acc": [base[v] - 0.001 * (3 - e) + 0.0005 * s
                    for v in base for s in range(2) for e in (1, 2, 3)],
    })
    return epochs, trials


def _spread_run(trials: pl.DataFrame) -> Run:
    ok = trials.filter(pl.col("status") == "ok").with_columns(
        (0.9 + pl.col("seed") * 0.01).alias("test_acc"))
    return Run(meta={}, trials=ok, epochs=pl.DataFrame(schema=EPOCH_DTYPES))


def _spread_summary(trials: pl.DataFrame) -> pl.DataFrame:
    return pl.DataFrame({"variant": ORDER, "test_acc_mean": [0.9] * 3, "test_acc_std": [0.01] * 3})


def _arm_charts(run_frames) -> dict[str, Any]:
    """Every chart that shows arms, drawn with one colour mapping (base is the baseline)."""
    epochs, trials = run_frames
    colours = arm_colours(ORDER, "base")
    costs = _costs([10.0, 300.0, 120.0], [0.8, 0.9, 0.85]).with_columns(
        pl.Series("variant", ORDER))
    effects = COMPARISONS.head(2).with_columns(pl.Series("variant", ["se", "cbam"]))
    return {
        "learning_curves": learning_curves(epochs, trials, ORDER, colours=colours),
        "cost_frontier": cost_frontier(costs, x="train_time_s", x_title="time (s)",
                                       colours=colours),
        "effect_plot": effect_plot(effects),
        "status_breakdown": status_breakdown(trials, ORDER),
        "seed_spread": seed_spread_chart(_spread_run(trials), _spread_summary(trials), ORDER,
                                         colours),
    }


def _variant_scales(spec: Any) -> list[dict[str, Any]]:
    """Every colour scale on the variant field anywhere in a spec."""
    found = []
    if isinstance(spec, dict):
        colour = spec.get("color")
        if isinstance(colour, dict) and colour.get("field") == "variant" and "scale" in colour:
            found.append(colour["scale"])
        for value in spec.values():
            found += _variant_scales(value)
    elif isinstance(spec, list):
        for value in spec:
            found += _variant_scales(value)
    return found


class TestArms:
    def test_baseline_grey_and_no_arm_looks_like_a_verdict_or_status(self) -> None:
        many = [f"arm{i}" for i in range(len(ARM_PALETTE) + 1)]
        colours = arm_colours(["base", *many], "base")
        assert colours["base"] == BASELINE_COLOUR
        assert [colours[a] for a in many[:len(ARM_PALETTE)]] == list(ARM_PALETTE)
        assert len(set(ARM_PALETTE)) == len(ARM_PALETTE)
        reserved = {*VERDICT_COLOURS.values(), *STATUS_COLOURS.values()}
        assert not ({BASELINE_COLOUR, *ARM_PALETTE} & reserved)
        assert arm_colours(["a", "b"]) == {"a": ARM_PALETTE[0], "b": ARM_PALETTE[1]}

    def test_an_arm_has_one_colour_in_every_chart(self, run_frames) -> None:
        colours = arm_colours(ORDER, "base")
        checked = 0
        for name, chart in _arm_charts(run_frames).items():
            for scale in _variant_scales(chart.to_dict()):
                mapping = dict(zip(scale["domain"], scale["range"], strict=True))
                assert {v: mapping[v] for v in ORDER} == colours, name
                checked += 1
        assert checked >= 3  # learning curves, cost frontier, seed spread

    def test_every_arm_chart_shares_the_arm_selection(self, run_frames) -> None:
        for name, chart in _arm_charts(run_frames).items():
            spec = chart.to_dict()
            [param] = [p for p in spec.get("params", []) if p["name"] == ARM_PARAM]
            assert param["select"]["fields"] == ["variant"], name
            # Every layer that draws arms (not the frontier's line through them) dims when
            # another arm is chosen.
            for layer in _layers(chart):
                rows = (layer.get("data") or spec.get("data") or {}).get("values") or [{}]
                if "variant" in rows[0] and "'variant'" in str(layer["encoding"]):
                    condition = layer["encoding"]["opacity"]["condition"]
                    assert condition["param"] == ARM_PARAM, (name, layer["mark"])
                    assert condition["value"] > layer["encoding"]["opacity"]["value"], name

    def test_legends_of_arms_are_clickable(self, run_frames) -> None:
        # A symbol opacity inherited from a layer's opacity condition replaces the encoding
        # the legend binding adds: then clicks do nothing. Check what Vega gets.
        charts = _arm_charts(run_frames)
        for name in ("learning_curves", "cost_frontier"):
            assert _layers(charts[name]) and charts[name].to_dict()["params"][0]["bind"] == "legend"
            vega = vl_convert.vegalite_to_vega(charts[name].to_dict())
            [legend] = [g for g in vega["legends"] if g.get("title") == "variant (click)"]
            assert legend["encode"]["labels"]["interactive"] is True, name
            assert legend["encode"]["labels"]["name"] == "variant_legend_labels", name
            assert any(s["name"] == f"{ARM_PARAM}_variant_legend" for s in vega["signals"])


class TestReadableCharts:
    def test_curves_axis_spans_the_data_not_zero_to_one(self) -> None:
        epochs, trials = _narrow_frames()
        layers = _layers(learning_curves(epochs, trials, ["base", "se", "cbam"]))
        scale = layers[0]["encoding"]["y"]["scale"]
        low, high = scale["domain"]
        values = epochs["val_acc"]
        pad = 0.05 * (values.max() - values.min())
        assert (low, high) == pytest.approx((values.min() - pad, values.max() + pad))
        assert low > 0.97 and high < 0.99  # 0.7 points fill the plot, not 1% of it
        assert scale["zero"] is False and scale["nice"] is False
        assert all(_mark(layer).get("clip") for layer in layers)  # a wider band is cut
        assert layers[0]["encoding"]["x"]["axis"]["values"] == [1, 2, 3]

    def test_curves_axis_stays_within_zero_and_one(self, run_frames) -> None:
        epochs, trials = run_frames
        flat = epochs.with_columns(pl.lit(0.999).alias("val_acc"))
        low, high = _layers(learning_curves(flat, trials, ORDER))[0]["encoding"]["y"][
            "scale"]["domain"]
        assert low < 0.999 and high == 1.0

    def test_each_seed_in_the_tooltips(self) -> None:
        epochs, trials = _narrow_frames()
        layers = _layers(learning_curves(epochs, trials, ["base", "se", "cbam"]))
        dots = next(layer for layer in layers if _mark(layer)["type"] == "circle"
                    and "seed" in layer["data"]["values"][0])
        tips = {t["field"]: t for t in dots["encoding"]["tooltip"]}
        assert {"seed", "epoch", "value", "trial_id"} <= set(tips)
        assert tips["value"] == {"field": "value", "type": "quantitative", "title": "val_acc",
                                 "format": ".4f"}
        mean = next(layer for layer in layers if _mark(layer)["type"] == "line"
                    and "seeds" in layer["data"]["values"][0])
        row = next(r for r in mean["data"]["values"] if (r["variant"], r["epoch"]) == ("se", 2))
        assert row["seeds"] == "seed 0: 0.9810, seed 1: 0.9815"
        assert "seeds" in [t["field"] for t in mean["encoding"]["tooltip"]]

    def test_numbers_formatted_by_unit(self) -> None:
        def x_of(chart: Any) -> tuple[dict[str, Any], dict[str, str]]:
            point = next(layer for layer in _layers(chart) if _mark(layer)["type"] == "point")
            tips = {t["field"]: t.get("format") for t in point["encoding"]["tooltip"]
                    if isinstance(t, dict)}
            return point["encoding"]["x"]["axis"], tips

        seconds = _costs([10.0, 150.0], [0.8, 0.9])
        axis, tips = x_of(cost_frontier(seconds, x="train_time_s", x_title="time (s)"))
        assert "' s'" in axis["labelExpr"] and tips["x"] == ",.1f"
        assert tips["y"] == tips["ci_low"] == ".4f"
        params = seconds.rename({"train_time_s": "params"})
        axis, tips = x_of(cost_frontier(params, x="params", x_title="parameters"))
        assert axis["format"] == "~s" and tips["x"] == ",.0f"
        status = status_breakdown(_narrow_frames()[1], ["base", "se", "cbam"]).to_dict()
        assert status["encoding"]["x"]["axis"]["format"] == "d"

    def test_labels_do_not_overlap(self, run_frames) -> None:
        charts = _arm_charts(run_frames)
        # Arm names sit in a legend, not as text beside points that may coincide.
        assert not [layer for layer in _layers(charts["cost_frontier"])
                    if _mark(layer)["type"] == "text"]
        for name, chart in charts.items():
            for layer in _layers(chart):
                for channel in ("x", "y"):
                    encoding = layer.get("encoding", {}).get(channel, {})
                    axis = encoding.get("axis") or {}
                    if encoding.get("type") == "quantitative":
                        assert axis.get("labelOverlap") == "greedy", (name, channel)
                    if encoding.get("field") == "variant":
                        assert axis.get("labelLimit"), (name, channel)


# ---------------------------------------------------------------------------- report page


def test_table_of_contents_links_every_section() -> None:
    from analysis.report import _with_contents

    parts = ["<html>", "<h1>run</h1>", '<h2 id="answer">Answer</h2>', "<p>x</p>",
             "<h2>Against the baseline</h2><h2>Charts</h2>", "<h2>Charts</h2>",
             "<script>var s = '<h2>not a section</h2>';</script>"]
    out = _with_contents(parts)
    assert out[2].startswith('<nav class="toc"') and out[:2] == parts[:2]
    assert out[-1] == parts[-1]  # scripts are left alone
    links = re.findall(r'href="#([^"]+)">([^<]+)</a>', out[2])
    assert links == [("answer", "Answer"), ("against-the-baseline", "Against the baseline"),
                     ("charts", "Charts"), ("charts-2", "Charts")]
    ids = re.findall(r'<h2 id="([^"]+)"', "".join(out[3:-1]))
    assert ids == [link for link, _ in links]
    assert _with_contents(["<h1>x</h1>", "<h2>only</h2>"])[1] == '<h2 id="only">only</h2>'
