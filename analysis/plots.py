"""Chart builders for the report: learning curves, cost frontiers, effects, outcomes, searches.

Each builder aggregates in Polars and hands Altair a small, already aggregated frame as an
inline dataset (`alt.Data(values=...)`): the spec is then self-contained (it renders offline
and can be re-rendered from the HTML it was embedded in) and stays small however many trials a
run has. Builders return None when there is nothing to draw, so the report can skip a section
instead of showing an empty frame. Altair, scipy and vl_convert are imported inside the
functions that need them, because `import analysis` must stay fast.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from analysis.charts import _json_rows
from analysis.load import TRIAL_DTYPES
from analysis.schema import CONFIG_PREFIX, STATUSES

if TYPE_CHECKING:
    import altair as alt

__all__ = [
    "ARM_PALETTE",
    "ARM_PARAM",
    "BASELINE_COLOUR",
    "STATUS_COLOURS",
    "VERDICT_COLOURS",
    "arm_colours",
    "cost_frontier",
    "effect_plot",
    "export_chart",
    "hparam_importance",
    "hparam_importance_table",
    "learning_curve_stats",
    "learning_curves",
    "parallel_coordinates",
    "parallel_coordinates_data",
    "pareto_frontier",
    "status_breakdown",
]

_WIDTH = 560
_HEIGHT = 300
_RED = "#d62728"

_GREY = "#8c8c8c"
_ORANGE = "#ff7f0e"

# Fixed colours, so that "red" means the same thing in every chart and every report. Two
# vocabularies: t-interval verdicts (better/worse/equivalent/inconclusive) and the older
# bootstrap ones; the same meaning gets the same colour in both.
VERDICT_COLOURS: dict[str, str] = {
    "better": "#2ca02c",
    "worse": _RED,
    "equivalent": _GREY,
    "inconclusive": _ORANGE,
    "no detectable difference": _GREY,
    "needs more seeds": _ORANGE,
}
_VERDICT_VOCABULARIES = (
    ("better", "worse", "equivalent", "inconclusive"),
    ("better", "worse", "no detectable difference", "needs more seeds"),
)
# Arms (variants): the baseline in a neutral dark grey, the others from Tableau 10 without
# its grey, red, green and orange, so that no arm looks like a verdict ("worse" is red) or a
# status; gold is darkened for lines on white, indigo added for a seventh arm.
BASELINE_COLOUR = "#4d4d4d"
ARM_PALETTE: tuple[str, ...] = (
    "#4c78a8", "#d6a427", "#b279a2", "#72b7b2", "#9d755d", "#ff9da6", "#5e4fa2",
)
# The selection every chart showing arms shares: clicking an arm in a legend (or a mark)
# selects it; the report's script (analysis.charts) copies it into every other chart.
ARM_PARAM = "arm"
STATUS_COLOURS: dict[str, str] = {
    "ok": "#2ca02c",
    "early_stopped": "#1f77b4",
    "diverged": _RED,
    "error": "#6a3d9a",
    "running": "#bdbdbd",
}
# For categories a fixed mapping does not know (a new verdict or status): still distinct.
_SPARE_COLOURS = ("#8c564b", "#e377c2", "#17becf", "#bcbd22", "#9467bd")

# Trials left out of the mean curve: a diverged or failed trial's accuracy is near chance
# and would drag the band down (the same rule as the summary's means). Their own faint
# curves and markers are still drawn. Running trials count: a live report needs a band.
_NOT_AVERAGED = ("diverged", "error")
# cfg columns that label a trial rather than tune it.
_NOT_HPARAMS = (f"{CONFIG_PREFIX}seed", f"{CONFIG_PREFIX}variant")
_MIN_SEARCH_TRIALS = 6
_MIN_HPARAMS = 2
_MAX_LEVELS = 6  # numeric columns with more distinct values are binned into quintiles
_LOG_SPAN = 100.0  # a positive column spanning more than 2 decades is drawn on a log scale
_UNSET = "(unset)"
_EXPORT_SUFFIXES = (".png", ".svg")


# ---------------------------------------------------------------------------- helpers


def _with_columns_or_null(df: pl.DataFrame, names: Iterable[str]) -> pl.DataFrame:
    """Add the contract columns a hand-made or older frame lacks, as typed nulls.

    Lets the builders select optional columns (stopped_by, error, ...) without checks.
    """
    missing = [n for n in names if n not in df.columns]
    return df.with_columns(pl.lit(None, dtype=TRIAL_DTYPES.get(n, pl.String())).alias(n)
                           for n in missing)


def _domain(preferred: Sequence[str], present: Iterable[str | None]) -> list[str]:
    """`preferred` first, then any other present value A-Z: nothing is ever left uncoloured."""
    known = list(dict.fromkeys(preferred))
    return known + sorted({p for p in present if p is not None} - set(known))


def _fixed_colours(mapping: Mapping[str, str], present: Iterable[str | None]) -> alt.Scale:
    """A colour scale with `mapping` fixed and spare colours for values it does not name."""
    import altair as alt

    domain = _domain(list(mapping), present)
    extra = len(domain) - len(mapping)
    spares = [_SPARE_COLOURS[i % len(_SPARE_COLOURS)] for i in range(extra)]
    return alt.Scale(domain=domain, range=[*mapping.values(), *spares])


def arm_colours(order: Sequence[str], baseline: str | None = None) -> dict[str, str]:
    """variant -> colour: `baseline` grey, the others in `order` from `ARM_PALETTE`.

    Build it once per page and hand it to every chart, so an arm keeps its colour from chart
    to chart (Vega would otherwise assign colours per chart, by each chart's own domain).
    """
    colours: dict[str, str] = {}
    others = 0
    for variant in dict.fromkeys(order):
        if variant == baseline:
            colours[variant] = BASELINE_COLOUR
        else:
            colours[variant] = ARM_PALETTE[others % len(ARM_PALETTE)]
            others += 1
    return colours


def _arm_scale(colours: Mapping[str, str], present: Iterable[str | None]) -> alt.Scale:
    """Colour scale of the arms: `colours` fixed, palette colours for arms it does not name."""
    import altair as alt

    domain = _domain(list(colours), present)
    used = sum(1 for c in colours.values() if c != BASELINE_COLOUR)
    extra = [v for v in domain if v not in colours]
    mapping = {**colours, **{v: ARM_PALETTE[(used + i) % len(ARM_PALETTE)]
                             for i, v in enumerate(extra)}}
    return alt.Scale(domain=domain, range=[mapping[v] for v in domain])


def _arm_selection(*, legend: bool) -> alt.Parameter:
    """The shared `ARM_PARAM` selection on the variant field, bound to the legend or to clicks.

    A legend-bound one reacts to the legend only (a click elsewhere clears it); the other
    selects the arm of a clicked mark and clears on a double click.
    """
    import altair as alt

    if legend:
        return alt.selection_point(name=ARM_PARAM, fields=["variant"], bind="legend")
    return alt.selection_point(name=ARM_PARAM, fields=["variant"], on="click", clear="dblclick")


def _arm_opacity(selected: float, dimmed: float) -> dict[str, object]:
    """Opacity channel: `selected` for the chosen arm (or all, when none is), else `dimmed`."""
    return {"condition": {"param": ARM_PARAM, "value": selected}, "value": dimmed}


def _arm_legend(**extra: object) -> alt.Legend:
    """A variant legend that says it can be clicked; long arm names are cut, not overlapped.

    symbolOpacity is fixed: a symbol opacity taken from a layer's opacity condition would
    replace the legend encoding that the legend binding adds (the clicks would do nothing).
    """
    import altair as alt

    return alt.Legend(**{"title": "variant (click)", "labelLimit": 180, "symbolOpacity": 1,
                         **extra})


def _is_finite(name: str) -> pl.Expr:
    """True where a column holds a finite number (null and NaN/inf are False)."""
    return pl.col(name).cast(pl.Float64).is_finite().fill_null(False)


def _title(metric: str) -> str:
    """'best_val_acc' -> 'best val acc': axis titles read as words, not identifiers."""
    return metric.replace("_", " ")


# ---------------------------------------------------------------------------- learning curves


def _labelled_epochs(epochs: pl.DataFrame, trials: pl.DataFrame, metric: str) -> pl.DataFrame:
    """Epoch rows with a finite `metric` (as `value`), labelled with their trial's fields.

    Inner join: an epoch whose trial is not in trials.parquet has no variant to be drawn under.
    """
    if metric not in epochs.columns:
        raise ValueError(f"epochs have no column {metric!r}; available: {epochs.columns}")
    names = ("trial_id", "variant", "seed", "status", "stopped_by", "error",
             "diverged_epoch", "diverged_step")
    labels = _with_columns_or_null(trials, names).select(names).unique("trial_id", keep="first")
    return (
        epochs.filter(_is_finite(metric) & pl.col("epoch").is_not_null())
        .select("trial_id", "epoch", pl.col(metric).cast(pl.Float64).alias("value"))
        .join(labels, on="trial_id", how="inner")
        .sort("trial_id", "epoch")
    )


def learning_curve_stats(
    epochs: pl.DataFrame,
    trials: pl.DataFrame,
    *,
    metric: str = "val_acc",
    confidence: float = 0.95,
) -> pl.DataFrame:
    """Per (variant, epoch): n seeds, mean, std and the t-interval of `metric`.

    The band is mean ± t_{(1+c)/2, n-1} * std / sqrt(n): with the 3-5 seeds an ablation
    affords, a normal quantile would claim a band far too narrow (t_{0.975, 2} = 4.3, not
    1.96). ci_low/ci_high are null where n < 2, because one seed says nothing about noise.
    Diverged and error trials are left out (see `_NOT_AVERAGED`).
    """
    return _curve_stats(_labelled_epochs(epochs, trials, metric), confidence)


def _curve_stats(labelled: pl.DataFrame, confidence: float) -> pl.DataFrame:
    """`learning_curve_stats` on already labelled epochs (value column = the metric)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    stats = (
        labelled.filter(~pl.col("status").is_in(_NOT_AVERAGED).fill_null(False))
        .group_by("variant", "epoch")
        .agg(
            pl.len().alias("n"),
            pl.col("value").mean().alias("mean"),
            pl.col("value").std(ddof=1).alias("std"),
        )
        .sort("variant", "epoch")
    )
    half = pl.col("t") * pl.col("std") / pl.col("n").cast(pl.Float64).sqrt()
    return (
        stats.join(_t_quantiles(stats["n"], confidence), on="n", how="left")
        .with_columns(
            (pl.col("mean") - half).alias("ci_low"), (pl.col("mean") + half).alias("ci_high")
        )
        .drop("t")
    )


def _t_quantiles(n: pl.Series, confidence: float) -> pl.DataFrame:
    """Student-t quantile per distinct sample size n >= 2 (columns n, t): one scipy call."""
    sizes = n.filter(n >= 2).unique().sort()
    if sizes.is_empty():
        return pl.DataFrame(schema={"n": n.dtype, "t": pl.Float64()})
    from scipy import stats

    t = stats.t.ppf((1.0 + confidence) / 2.0, sizes.to_numpy() - 1)
    return pl.DataFrame({"n": sizes, "t": pl.Series(t, dtype=pl.Float64())})


def _end_markers(labelled: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Last drawn epoch of early-stopped and of diverged trials, with a one-line note each.

    The marker sits on the last epoch with a finite value, because that is where the curve
    ends on screen; the note says where the trial actually stopped or blew up.
    """
    last = labelled.group_by("trial_id").agg(pl.all().sort_by("epoch").last())
    early = last.filter(pl.col("status") == "early_stopped").with_columns(
        pl.concat_str(
            pl.lit("early stopped"),
            pl.concat_str(pl.lit(" by "), pl.col("stopped_by")).fill_null(""),
        ).alias("note")
    )
    where = pl.concat_str(
        pl.lit(" in epoch "), pl.col("diverged_epoch").cast(pl.String),
        pl.concat_str(pl.lit(", step "), pl.col("diverged_step").cast(pl.String)).fill_null(""),
    ).fill_null("")
    diverged = last.filter(pl.col("status") == "diverged").with_columns(
        pl.concat_str(pl.lit("diverged"), where).alias("note")
    )
    columns = ("trial_id", "variant", "seed", "status", "epoch", "value", "note", "error")
    return early.select(columns).sort("trial_id"), diverged.select(columns).sort("trial_id")


def _padded_domain(values: pl.Series, *, bounded: bool) -> list[float]:
    """[low, high] of the drawn values plus 5% of their span on each side (0.5 points, or 1% of
    the value, where they do not spread), within [0, 1] when `bounded`.

    The axis follows the data, not zero and not [0, 1]: differences of half a point between
    arms at 98% accuracy are the result, and a 0-1 axis flattens them into one line.
    """
    low, high = float(values.min()), float(values.max())  # type: ignore[arg-type]
    span = high - low
    pad = 0.05 * span if span > 0 else (0.005 if bounded else 0.01 * max(abs(high), 1.0))
    low, high = low - pad, high + pad
    if bounded:
        low, high = max(low, 0.0), min(high, 1.0)
    return [low, high]


def _seed_values(labelled: pl.DataFrame) -> pl.DataFrame:
    """Per (variant, epoch) of the averaged trials, 'seed 0: 0.9812, seed 1: 0.9790, ...'."""
    averaged = labelled.filter(~pl.col("status").is_in(_NOT_AVERAGED).fill_null(False))
    text = pl.Series([f"{v:.4f}" for v in averaged["value"].to_list()], dtype=pl.String())
    return (
        averaged.with_columns(text.alias("text"))
        .sort("variant", "epoch", "seed", "trial_id", nulls_last=True)
        .group_by("variant", "epoch", maintain_order=True)
        .agg(pl.format("seed {}: {}", pl.col("seed").cast(pl.String).fill_null("?"),
                       pl.col("text")).str.join(", ").alias("seeds"))
    )


def learning_curves(
    epochs: pl.DataFrame,
    trials: pl.DataFrame,
    order: Sequence[str],
    *,
    metric: str = "val_acc",
    confidence: float = 0.95,
    colours: Mapping[str, str] | None = None,
) -> alt.TopLevelMixin | None:
    """Mean curve per variant with a t-interval band, each seed faint behind it.

    The band answers "is the gap between variants larger than seed noise, and from which
    epoch on?"; the faint seed curves keep an outlier seed visible instead of hiding it in a
    mean. Early-stopped trials end in a triangle, diverged ones in a red cross (tooltip
    "diverged ..."), so a curve that stops is never mistaken for one that was cut off. The y
    axis spans the drawn values (`_padded_domain`); a wider band is clipped. `colours` maps
    variants to colours (default `arm_colours(order)`); clicking an arm in the legend
    highlights it (`ARM_PARAM`). Returns None when no epoch has a finite `metric`.
    """
    import altair as alt

    labelled = _labelled_epochs(epochs, trials, metric)
    if labelled.is_empty():
        return None
    stats = _curve_stats(labelled, confidence).join(
        _seed_values(labelled), on=["variant", "epoch"], how="left")
    early, diverged = _end_markers(labelled)

    y_title = _title(metric)
    # The legend takes its look from the faint seed layer otherwise: force solid strokes.
    colour = alt.Color(
        "variant:N",
        scale=_arm_scale(arm_colours(order) if colours is None else colours, labelled["variant"]),
        legend=_arm_legend(symbolType="stroke", symbolStrokeWidth=3),
    )
    first, last = int(labelled["epoch"].min()), int(labelled["epoch"].max())  # type: ignore[arg-type]
    # Few epochs: a tick on each (Vega would put one at 1.5); many: Vega's, whole numbers.
    ticks = {"values": list(range(first, last + 1))} if last - first <= 12 else {}
    x = alt.X("epoch:Q", title="epoch", scale=alt.Scale(domain=[first, last], nice=False),
              axis=alt.Axis(tickMinStep=1, format="d", labelOverlap="greedy", **ticks))
    # A symmetric t-band around an accuracy near 1 pokes above 1; the axis should not follow.
    bounded = "acc" in metric and labelled["value"].is_between(0.0, 1.0).all()
    y_scale = alt.Scale(zero=False, nice=False,
                        domain=_padded_domain(labelled["value"], bounded=bounded))

    def y(field: str) -> alt.Y:
        return alt.Y(f"{field}:Q", title=y_title, scale=y_scale,
                     axis=alt.Axis(labelOverlap="greedy", labelSeparation=4))

    value_format = ".4f"
    pct = f"{confidence:.0%}"
    seed_columns = ("trial_id", "variant", "seed", "status", "epoch", "value")
    seed_data = alt.Data(values=_json_rows(labelled.select(seed_columns)))
    seed_tip = ["variant:N", alt.Tooltip("seed:O", title="seed"),
                alt.Tooltip("epoch:Q", format="d"),
                alt.Tooltip("value:Q", title=metric, format=value_format),
                "status:N", alt.Tooltip("trial_id:N", title="trial")]

    layers: list[alt.Chart] = [
        alt.Chart(seed_data)
        .mark_line(strokeWidth=1, clip=True)
        .encode(x=x, y=y("value"), color=colour, detail="trial_id:N",
                opacity=_arm_opacity(0.3, 0.05), tooltip=seed_tip),
        # One dot per seed and epoch: a line's tooltip would show only its first point.
        alt.Chart(seed_data)
        .mark_circle(size=18, clip=True)
        .encode(x=x, y=y("value"), color=colour, opacity=_arm_opacity(0.45, 0.05),
                tooltip=seed_tip),
    ]
    band = stats.filter(pl.col("ci_low").is_not_null())
    if bounded:
        band = band.with_columns(pl.col("ci_low").clip(0.0, 1.0), pl.col("ci_high").clip(0.0, 1.0))
    if not band.is_empty():
        layers.append(
            alt.Chart(alt.Data(values=_json_rows(band)))
            .mark_area(clip=True)
            .encode(x=x, y=y("ci_low"), y2="ci_high:Q", color=colour,
                    opacity=_arm_opacity(0.18, 0.03))
        )
    mean_data = alt.Data(values=_json_rows(stats))
    mean_tip = ["variant:N", alt.Tooltip("epoch:Q", format="d"),
                alt.Tooltip("n:Q", title="seeds averaged"),
                alt.Tooltip("mean:Q", title=f"mean {metric}", format=value_format),
                alt.Tooltip("ci_low:Q", title=f"{pct} CI low", format=value_format),
                alt.Tooltip("ci_high:Q", title=f"{pct} CI high", format=value_format),
                alt.Tooltip("seeds:N", title="each seed")]
    layers += [
        alt.Chart(mean_data)
        .mark_line(strokeWidth=2.5, clip=True)
        .encode(x=x, y=y("mean"), color=colour, opacity=_arm_opacity(1.0, 0.12),
                tooltip=mean_tip)
        .add_params(_arm_selection(legend=True)),
        alt.Chart(mean_data)
        .mark_circle(size=40, clip=True)
        .encode(x=x, y=y("mean"), color=colour, opacity=_arm_opacity(1.0, 0.12),
                tooltip=mean_tip),
    ]
    marker_tip = [alt.Tooltip("note:N", title="status"), "variant:N",
                  alt.Tooltip("seed:O", title="seed"), alt.Tooltip("epoch:Q", format="d"),
                  alt.Tooltip("value:Q", title=metric, format=value_format),
                  alt.Tooltip("trial_id:N", title="trial")]
    if not early.is_empty():
        layers.append(
            alt.Chart(alt.Data(values=_json_rows(early)))
            .mark_point(shape="triangle-down", filled=True, size=90, clip=True)
            .encode(x=x, y=y("value"), color=colour, opacity=_arm_opacity(0.9, 0.1),
                    tooltip=marker_tip)
        )
    if not diverged.is_empty():
        layers.append(
            alt.Chart(alt.Data(values=_json_rows(diverged)))
            .mark_point(shape="cross", filled=True, size=120, color=_RED, clip=True)
            .encode(x=x, y=y("value"), opacity=_arm_opacity(1.0, 0.15),
                    tooltip=[*marker_tip, "error:N"])
        )
    title = alt.TitleParams(
        f"{y_title.capitalize()} per epoch: mean over seeds with {pct} CI",
        subtitle="faint: single seeds; ▼ early stopped; red ✕ diverged",
    )
    return alt.layer(*layers, title=title).properties(width=_WIDTH, height=_HEIGHT)


# ---------------------------------------------------------------------------- cost frontier


def pareto_frontier(summary: pl.DataFrame, *, x: str, y: str = "mean") -> pl.DataFrame:
    """Rows of `summary` that no other row dominates, sorted by `x` (cost, lower is better).

    A row is dominated when another is at most as costly and at least as good, and strictly
    one of the two: such a variant is never the one to pick, whatever the budget. Rows with a
    missing or non-finite x or y are not candidates.
    """
    points = summary.filter(_is_finite(x) & _is_finite(y)).with_row_index("_row")
    others = points.select(pl.col(x).alias("_ox"), pl.col(y).alias("_oy"))
    dominated = (
        points.join(others, how="cross")
        .filter(
            (pl.col("_ox") <= pl.col(x)) & (pl.col("_oy") >= pl.col(y))
            & ((pl.col("_ox") < pl.col(x)) | (pl.col("_oy") > pl.col(y)))
        )
        .select("_row")
        .unique()
    )
    return (
        points.join(dominated, on="_row", how="anti")
        .sort([x, y], descending=[False, True])
        .drop("_row")
    )


def _scale_type(values: pl.Series, *, span: float = 20.0) -> str:
    """'log' when positive values span more than `span` times (params, seconds), else 'linear'.

    On a linear axis a 50x spread of costs squeezes all cheap variants into one corner.
    """
    numbers = values.cast(pl.Float64)
    finite = numbers.filter(numbers.is_finite())
    low, high = finite.min(), finite.max()
    if low is None or high is None or low <= 0:  # type: ignore[operator]
        return "linear"
    return "log" if high / low > span else "linear"  # type: ignore[operator]


# Number formats by unit, as d3 format strings: (axis, tooltip). Axes of accuracies keep
# Vega's default, which picks the decimals from the tick step (0.981, 0.982 or 0.2, 0.4).
_SECONDS = ",.1f"
_PARAMS = ",.0f"
_POINTS = "+.2f"
_ACC = ".4f"
_UNIT_FORMATS: dict[str, tuple[str, str]] = {
    "train_time_s": ("seconds", _SECONDS),
    "params": ("~s", _PARAMS),  # axis: 225k, 1.2M; tooltip: 225,034
    "samples_per_s": ("~s", ",.0f"),
}


def _cost_axis(column: str) -> alt.Axis:
    """Axis of a cost column: seconds end in " s", parameter counts in SI (225k)."""
    import altair as alt

    axis_format = _UNIT_FORMATS.get(column, ("", ""))[0]
    common = {"labelOverlap": "greedy", "labelSeparation": 6}
    if axis_format == "seconds":
        return alt.Axis(labelExpr="format(datum.value, ',~r') + ' s'", **common)
    if axis_format:
        return alt.Axis(format=axis_format, **common)
    return alt.Axis(**common)


def cost_frontier(
    summary: pl.DataFrame,
    *,
    x: str,
    x_title: str,
    y: str = "mean",
    y_title: str = "best val acc",
    colours: Mapping[str, str] | None = None,
) -> alt.TopLevelMixin | None:
    """Accuracy against a cost (training time, parameters) per variant, with the Pareto front.

    "Attention helps" is only half an answer when it costs 3x the time: the step line joins
    the variants worth considering at some budget, everything below it is dominated (drawn
    hollow). Error bars are the CI columns (ci_low, ci_high) of `summary`. Points take the
    arms' `colours` (default `arm_colours` of the summary's order) and the legend names them:
    text beside the points would overlap wherever two arms cost about the same. Returns None
    when no variant has both numbers.
    """
    import altair as alt

    ci = [c for c in ("ci_low", "ci_high") if c not in summary.columns]
    summary = summary.with_columns(pl.lit(None, dtype=pl.Float64()).alias(c) for c in ci)
    front = pareto_frontier(summary, x=x, y=y)
    on_front = set(front["variant"].to_list())
    points = (
        summary.filter(_is_finite(x) & _is_finite(y))
        .select(
            pl.col("variant").cast(pl.String),
            pl.col(x).cast(pl.Float64).alias("x"),
            pl.col(y).cast(pl.Float64).alias("y"),
            pl.col("ci_low").cast(pl.Float64),
            pl.col("ci_high").cast(pl.Float64),
        )
        .with_columns(
            pl.when(pl.col("variant").is_in(list(on_front)))
            .then(pl.lit("on frontier")).otherwise(pl.lit("dominated")).alias("frontier")
        )
    )
    if points.is_empty():
        return None

    # padding (pixels): the cheapest and dearest points sit inside the frame, not on its edge.
    scale = (
        alt.Scale(type="log", padding=12) if _scale_type(points["x"]) == "log"
        else alt.Scale(zero=False, padding=12)
    )
    x_enc = alt.X("x:Q", title=x_title, scale=scale, axis=_cost_axis(x))
    y_axis = alt.Axis(labelOverlap="greedy", labelSeparation=4)
    # A t-interval of an accuracy can reach below 0 or above 1; the axis stops at the bounds.
    drawn = pl.concat([points["y"], points["ci_low"], points["ci_high"]]).drop_nulls()
    bounded = "acc" in f"{y} {y_title}" and points["y"].is_between(0.0, 1.0).all()
    y_scale = (alt.Scale(zero=False, domain=[max(0.0, float(drawn.min())),  # type: ignore[arg-type]
                                             min(1.0, float(drawn.max()))])  # type: ignore[arg-type]
               if bounded else alt.Scale(zero=False))
    y_enc = alt.Y("y:Q", title=y_title, scale=y_scale, axis=y_axis)
    x_format = _UNIT_FORMATS.get(x, ("", ",.4g"))[1]
    tooltip = ["variant:N", alt.Tooltip("x:Q", title=x_title, format=x_format),
               alt.Tooltip("y:Q", title=y_title, format=_ACC),
               alt.Tooltip("ci_low:Q", title="CI low", format=_ACC),
               alt.Tooltip("ci_high:Q", title="CI high", format=_ACC), "frontier:N"]
    if colours is None:
        colours = arm_colours(points["variant"].to_list())
    arm_scale = _arm_scale(colours, points["variant"])
    colour = alt.Color("variant:N", scale=arm_scale, legend=_arm_legend())
    step = points.filter(pl.col("frontier") == "on frontier").sort("x")
    bars = points.filter(pl.col("ci_low").is_not_null() & pl.col("ci_high").is_not_null())
    layers: list[alt.Chart] = [
        alt.Chart(alt.Data(values=_json_rows(step)))
        .mark_line(interpolate="step-after", color="#999999", strokeDash=[5, 3])
        .encode(x=x_enc, y=y_enc),
    ]
    if not bars.is_empty():
        layers.append(
            alt.Chart(alt.Data(values=_json_rows(bars)))
            .mark_rule(strokeWidth=1.5, clip=True)
            .encode(x=x_enc, y=alt.Y("ci_low:Q", title=y_title, scale=y_scale, axis=y_axis),
                    y2="ci_high:Q",
                    color=colour, opacity=_arm_opacity(0.6, 0.1))
        )
    layers.append(
        alt.Chart(alt.Data(values=_json_rows(points)))
        .mark_point(filled=True, size=90, strokeWidth=2)
        .encode(
            x=x_enc, y=y_enc, tooltip=tooltip, color=colour,
            # A filled mark has no stroke of its own: without one a hollow point vanishes.
            stroke=alt.Stroke("variant:N", scale=arm_scale, legend=None),
            fillOpacity=alt.FillOpacity("frontier:N", title=None, scale=alt.Scale(
                domain=["on frontier", "dominated"], range=[1.0, 0.0])),
            opacity=_arm_opacity(1.0, 0.15),
        )
        .add_params(_arm_selection(legend=True))
    )
    title = alt.TitleParams(
        f"{y_title.capitalize()} vs {x_title}",
        subtitle="bars: confidence interval; dashed steps: Pareto frontier; hollow: dominated",
    )
    return alt.layer(*layers, title=title).properties(width=_WIDTH, height=_HEIGHT)


# ---------------------------------------------------------------------------- effect plot


def _verdict_scale(present: Iterable[str | None]) -> alt.Scale:
    """Verdict colours for the legend: the vocabulary `present` uses (all four of its names,
    so a reader sees what each colour would mean), plus any other verdict that occurs."""
    seen = [v for v in present if v is not None]
    vocabulary = max(_VERDICT_VOCABULARIES, key=lambda names: len(set(names) & set(seen)))
    names = [*vocabulary, *(v for v in seen if v in VERDICT_COLOURS)]
    return _fixed_colours({v: VERDICT_COLOURS[v] for v in names}, seen)


def effect_plot(
    comparisons: pl.DataFrame,
    *,
    metric_title: str = "difference in best val acc (points)",
    interval: str = "confidence interval",
) -> alt.TopLevelMixin | None:
    """Difference to the baseline per variant: point at the mean, bar over the CI, rule at 0.

    Reading "does attention help?" off one picture: a bar that crosses the zero rule is no
    detectable difference, whatever its mean. Colours follow the verdict column with a fixed
    mapping (`VERDICT_COLOURS`, either vocabulary), rows keep the order of `comparisons`;
    differences are in points (tooltips: 2 decimals, signed). `interval` names the bars in
    the title ("95% t-interval"). Clicking a row selects its arm (`ARM_PARAM`). Returns None
    when no row has a finite mean_diff.
    """
    import altair as alt

    rows = comparisons.filter(_is_finite("mean_diff")).select(
        pl.col("variant").cast(pl.String), "mean_diff", "ci_low", "ci_high",
        pl.col("verdict").cast(pl.String),
    )
    if rows.is_empty():
        return None
    y = alt.Y("variant:N", title=None, sort=rows["variant"].to_list(),
              axis=alt.Axis(labelLimit=180))
    x_axis = alt.Axis(labelOverlap="greedy", labelSeparation=6)
    x_title = metric_title
    colour = alt.Color("verdict:N", title="verdict", scale=_verdict_scale(rows["verdict"]),
                       legend=alt.Legend(labelLimit=220))
    tooltip = ["variant:N", "verdict:N",
               alt.Tooltip("mean_diff:Q", title="mean difference", format=_POINTS),
               alt.Tooltip("ci_low:Q", title=f"{interval}: low", format=_POINTS),
               alt.Tooltip("ci_high:Q", title=f"{interval}: high", format=_POINTS)]
    data = alt.Data(values=_json_rows(rows))
    bars = rows.filter(pl.col("ci_low").is_not_null() & pl.col("ci_high").is_not_null())
    layers: list[alt.Chart] = [
        alt.Chart(alt.Data(values=[{"zero": 0.0}]))
        .mark_rule(color="black", strokeDash=[4, 3])
        .encode(x=alt.X("zero:Q", title=x_title, axis=x_axis)),
        alt.Chart(alt.Data(values=_json_rows(bars)))
        .mark_rule(strokeWidth=2.5)
        .encode(x=alt.X("ci_low:Q", title=x_title, axis=x_axis), x2="ci_high:Q", y=y,
                color=colour, opacity=_arm_opacity(1.0, 0.2), tooltip=tooltip),
        alt.Chart(data)
        .mark_point(filled=True, size=90)
        .encode(x=alt.X("mean_diff:Q", title=x_title, axis=x_axis), y=y, color=colour,
                opacity=_arm_opacity(1.0, 0.2), tooltip=tooltip)
        .add_params(_arm_selection(legend=False)),
    ]
    return alt.layer(
        *layers, title=f"Difference from the baseline (point: mean; bar: {interval})"
    ).properties(width=_WIDTH, height=alt.Step(30))


# ---------------------------------------------------------------------------- statuses


def status_breakdown(trials: pl.DataFrame, order: Sequence[str]) -> alt.TopLevelMixin | None:
    """Trials per variant stacked by outcome, one fixed colour per status.

    A variant whose mean rests on 2 of 5 seeds (the rest diverged) is a different result from
    one that trained on all five; this makes that visible before anyone reads a mean. The
    tooltip lists the seeds of each bar; clicking a bar selects its arm (`ARM_PARAM`).
    Returns None when there are no trials.
    """
    import altair as alt

    if trials.is_empty():
        return None
    rank = {status: i for i, status in enumerate(STATUSES)}
    counts = (
        _with_columns_or_null(trials, ["seed"]).select(
            pl.col("variant").cast(pl.String).fill_null("(no variant)"),
            pl.col("status").cast(pl.String).fill_null("unknown"),
            pl.col("seed"),
        )
        .group_by("variant", "status")
        .agg(pl.len().alias("count"),
             pl.col("seed").sort().cast(pl.String).fill_null("?").str.join(", ").alias("seeds"))
        .with_columns(
            pl.col("status").replace_strict(rank, default=len(rank), return_dtype=pl.Int64)
            .alias("status_rank")
        )
        .sort("variant", "status_rank", "status")
    )
    variants = _domain(order, counts["variant"])
    return (
        alt.Chart(alt.Data(values=_json_rows(counts)), title="Trial outcomes per variant")
        .mark_bar()
        .encode(
            x=alt.X("count:Q", title="trials", stack="zero",
                    axis=alt.Axis(tickMinStep=1, format="d", labelOverlap="greedy")),
            y=alt.Y("variant:N", title=None, sort=variants, axis=alt.Axis(labelLimit=180)),
            color=alt.Color("status:N", title="status",
                            scale=_fixed_colours(STATUS_COLOURS, counts["status"])),
            order=alt.Order("status_rank:Q"),
            opacity=_arm_opacity(1.0, 0.25),
            tooltip=["variant:N", "status:N", alt.Tooltip("count:Q", title="trials"),
                     alt.Tooltip("seeds:N", title="seeds")],
        )
        .add_params(_arm_selection(legend=False))
        .properties(width=_WIDTH, height=alt.Step(26))
    )


# ---------------------------------------------------------------------------- searches


def _as_text(series: pl.Series) -> pl.Series:
    """Values as strings for use as categories; lists and structs via Python's str()."""
    if series.dtype in (pl.String, pl.Boolean) or series.dtype.is_numeric():
        return series.cast(pl.String)
    if series.dtype == pl.Categorical or series.dtype == pl.Enum:
        return series.cast(pl.String)
    return pl.Series(series.name, [None if v is None else str(v) for v in series.to_list()],
                     dtype=pl.String())


def _search_rows(trials: pl.DataFrame, metric: str) -> tuple[pl.DataFrame, list[str]]:
    """Trials with a finite `metric`, and the cfg columns that vary among those trials.

    Variation is judged on the trials that have the metric, since a value seen only on
    failed trials explains nothing about the metric. Null counts as a value ("unset"): a
    conditional hyperparameter that is present on some trials does vary.
    """
    if metric not in trials.columns:
        raise ValueError(f"trials have no column {metric!r}; available: {trials.columns}")
    rows = trials.filter(_is_finite(metric))
    candidates = [c for c in rows.columns if c.startswith(CONFIG_PREFIX) and c not in _NOT_HPARAMS]
    varying = [c for c in candidates if _as_text(rows[c]).n_unique() > 1]
    return rows, varying


def _groups(series: pl.Series) -> pl.Series:
    """Group label per trial for the ANOVA: quintile bins for finely valued numbers.

    Binning keeps a continuous hyperparameter (lr drawn log-uniformly: every trial unique)
    from scoring eta^2 = 1 just because each trial is its own group.
    """
    if series.dtype.is_numeric() and series.drop_nulls().n_unique() > _MAX_LEVELS:
        return _quintiles(series).fill_null(_UNSET)
    return _as_text(series).fill_null(_UNSET)


def _quintiles(series: pl.Series) -> pl.Series:
    """'Q1'..'Q5' by the series' own quintile cuts; equal values always share a bin.

    Written out rather than with Series.qcut (deprecated in Polars 2) or its experimental
    successors, so the bins do not move under a Polars upgrade.
    """
    values = series.cast(pl.Float64)
    cuts = sorted({values.quantile(q, "linear") for q in (0.2, 0.4, 0.6, 0.8)} - {None})
    above = pl.sum_horizontal(pl.col("v") > cut for cut in cuts) if cuts else pl.lit(0)
    label = pl.concat_str(pl.lit("Q"), (above + 1).cast(pl.String))
    frame = pl.DataFrame({"v": values})
    return frame.select(pl.when(pl.col("v").is_not_null()).then(label)).to_series()


def _eta_squared(groups: pl.Series, y: pl.Series) -> tuple[float | None, int]:
    """(between-group sum of squares / total sum of squares, number of groups).

    None when the metric does not vary at all: no share of zero variance is meaningful.
    """
    frame = pl.DataFrame({"g": groups, "y": y.cast(pl.Float64)})
    grand = frame["y"].mean()
    total = frame.select(((pl.col("y") - grand) ** 2).sum()).item()
    # Groups in a fixed order: summed in Polars' hash order, the last digit of eta^2 (and so
    # the chart's SVG) changed from one report of the same run to the next.
    by_group = (frame.group_by("g").agg(pl.len().alias("n"), pl.col("y").mean().alias("m"))
                .sort("g"))
    between = by_group.select((pl.col("n") * (pl.col("m") - grand) ** 2).sum()).item()
    return (between / total if total > 0 else None), by_group.height


def _importance(rows: pl.DataFrame, columns: Sequence[str], metric: str) -> pl.DataFrame:
    """eta^2 and level count of each cfg column in `columns` (full column names)."""
    stats = [(c, *_eta_squared(_groups(rows[c]), rows[metric])) for c in columns]
    return pl.DataFrame(
        {
            "column": [c for c, _, _ in stats],
            "eta_squared": [e for _, e, _ in stats],
            "levels": [n for _, _, n in stats],
        },
        schema={"column": pl.String(), "eta_squared": pl.Float64(), "levels": pl.Int64()},
    ).sort("eta_squared", "column", descending=[True, False], nulls_last=True)


def hparam_importance_table(trials: pl.DataFrame, metric: str = "best_val_acc") -> pl.DataFrame:
    """Per varying hyperparameter: share of the metric's variance it explains on its own.

    One-way ANOVA eta^2 over the trials with a finite `metric`: numeric columns with more
    than 6 distinct values are binned into quintiles, everything else is a category (null is
    its own level). Columns: hyperparameter (the cfg name without the "cfg." prefix),
    eta_squared (null when the metric is constant), levels; sorted by eta_squared, largest
    first. It ignores interactions and, with few trials per level, overstates small effects;
    it ranks, it does not prove. Empty when fewer than 6 trials have the metric.
    """
    rows, varying = _search_rows(trials, metric)
    if rows.height < _MIN_SEARCH_TRIALS:
        varying = []
    table = _importance(rows, varying, metric)
    return table.select(
        pl.col("column").str.strip_prefix(CONFIG_PREFIX).alias("hyperparameter"),
        "eta_squared",
        "levels",
    )


def hparam_importance(
    trials: pl.DataFrame, *, metric: str = "best_val_acc"
) -> alt.TopLevelMixin | None:
    """Bar chart of `hparam_importance_table`: which knob of a search mattered most.

    Returns None when fewer than 2 hyperparameters vary, fewer than 6 trials have the
    metric, or the metric does not vary (no ranking is then meaningful).
    """
    import altair as alt

    table = hparam_importance_table(trials, metric).filter(pl.col("eta_squared").is_not_null())
    if table.height < _MIN_HPARAMS:
        return None
    title = alt.TitleParams(
        f"Hyperparameter importance for {_title(metric)}",
        subtitle="share of variance explained by each alone (one-way η²; numbers in quintiles)",
    )
    return (
        alt.Chart(alt.Data(values=_json_rows(table)), title=title)
        .mark_bar(color="#4c78a8")
        .encode(
            x=alt.X("eta_squared:Q", title="share of variance explained (η²)",
                    scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("hyperparameter:N", title=None, sort="-x"),
            tooltip=["hyperparameter:N", alt.Tooltip("eta_squared:Q", title="η²", format=".3f"),
                     alt.Tooltip("levels:Q", title="levels (bins)")],
        )
        .properties(width=_WIDTH, height=alt.Step(26))
    )


def _normalise(series: pl.Series) -> tuple[pl.Series, str]:
    """Positions in [0, 1] and the scale used ('linear', 'log' or 'categorical').

    Log when a positive numeric column spans more than 2 decades (lr, weight decay): on a
    linear axis every trial but the largest would crowd at 0. Categories get evenly spaced
    positions in sorted order. A column with a single value sits at 0.5.
    """
    if series.dtype.is_numeric():
        values = series.cast(pl.Float64)
        finite = values.filter(values.is_finite())
        scale = "linear"
        if _scale_type(finite, span=_LOG_SPAN) == "log":
            values, finite, scale = values.log10(), finite.log10(), "log"
        low, high = finite.min(), finite.max()
        if low is None or high is None or high == low:
            return values * 0.0 + 0.5, scale  # null and NaN stay missing
        return (values - low) / (high - low), scale  # type: ignore[operator]
    text = _as_text(series).fill_null(_UNSET)
    levels = sorted(set(text.to_list()))
    step = 1.0 / (len(levels) - 1) if len(levels) > 1 else 0.0
    offset = 0.0 if len(levels) > 1 else 0.5
    mapping = {level: offset + i * step for i, level in enumerate(levels)}
    return text.replace_strict(mapping, return_dtype=pl.Float64), "categorical"


def _display(series: pl.Series) -> pl.Series:
    """Raw values as short strings for tooltips and axis end labels."""
    if series.dtype.is_float():
        return pl.Series([None if v is None else f"{v:.4g}" for v in series.to_list()],
                         dtype=pl.String())
    return _as_text(series).fill_null(_UNSET)


def parallel_coordinates_data(trials: pl.DataFrame, metric: str = "best_val_acc") -> pl.DataFrame:
    """Long form for `parallel_coordinates`: one row per (trial, axis).

    Columns: line (row number), trial_id, axis (label, "(log)" appended for log axes),
    axis_index (left to right), scale, position (in [0, 1]), value (raw value as text) and
    metric (the trial's metric, for colour). Axes are the varying hyperparameters in
    increasing order of eta^2, then the metric, so the most telling one sits next to the
    metric and its lines cross least. Empty under the same conditions as
    `hparam_importance` returns None.
    """
    rows, varying = _search_rows(trials, metric)
    if rows.height < _MIN_SEARCH_TRIALS or len(varying) < _MIN_HPARAMS:
        return pl.DataFrame(schema={
            "line": pl.UInt32(), "trial_id": pl.String(), "axis": pl.String(),
            "axis_index": pl.Int64(), "scale": pl.String(), "position": pl.Float64(),
            "value": pl.String(), "metric": pl.Float64(),
        })
    ranked = _importance(rows, varying, metric)["column"].to_list()[::-1]
    frames = []
    ids = _with_columns_or_null(rows, ["trial_id"]).select(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("line"),
        pl.col("trial_id").cast(pl.String),
        pl.col(metric).cast(pl.Float64).alias("metric"),
    )
    frames = []
    for index, column in enumerate([*ranked, metric]):
        position, scale = _normalise(rows[column])
        label = column.removeprefix(CONFIG_PREFIX) + (" (log)" if scale == "log" else "")
        frames.append(ids.with_columns(
            pl.lit(label).alias("axis"),
            pl.lit(index, dtype=pl.Int64).alias("axis_index"),
            pl.lit(scale).alias("scale"),
            position.cast(pl.Float64).alias("position"),
            _display(rows[column]).alias("value"),
        ))
    columns = ("line", "trial_id", "axis", "axis_index", "scale", "position", "value", "metric")
    return pl.concat(frames).select(columns).sort("line", "axis_index")


def _axis_labels(data: pl.DataFrame) -> pl.DataFrame:
    """Text at the ends of numeric axes (min, max) and at every level of categorical ones."""
    numeric = data.filter(pl.col("scale") != "categorical").group_by("axis").agg(
        pl.col("value").sort_by("position").first().alias("low"),
        pl.col("value").sort_by("position").last().alias("high"),
    )
    ends = pl.concat([
        numeric.select("axis", pl.lit(0.0).alias("position"), pl.col("low").alias("label")),
        numeric.select("axis", pl.lit(1.0).alias("position"), pl.col("high").alias("label")),
    ])
    levels = (
        data.filter(pl.col("scale") == "categorical")
        .select("axis", "position", pl.col("value").alias("label"))
        .unique()
    )
    return pl.concat([ends, levels]).drop_nulls().sort("axis", "position")


def parallel_coordinates(
    trials: pl.DataFrame, *, metric: str = "best_val_acc"
) -> alt.TopLevelMixin | None:
    """One line per search trial across the varying hyperparameters and the metric.

    Shows what the importance bars cannot: where in a hyperparameter's range the good trials
    lie, and which combinations they share. Lines are coloured by the metric. Returns None
    when fewer than 2 hyperparameters vary or fewer than 6 trials have the metric.
    """
    import altair as alt

    data = parallel_coordinates_data(trials, metric)
    if data.is_empty():
        return None
    axes = data.unique("axis_index").sort("axis_index")["axis"].to_list()
    x = alt.X("axis:N", title=None, sort=axes, axis=alt.Axis(labelAngle=0, labelLimit=160))
    y = alt.Y("position:Q", title="normalised (bottom: min / first level, top: max)",
              scale=alt.Scale(domain=[0, 1], nice=False),
              axis=alt.Axis(labels=False, ticks=False, grid=False))
    layers = [
        alt.Chart(alt.Data(values=[{"axis": a} for a in axes]))
        .mark_rule(color="#bbbbbb").encode(x=x),
        alt.Chart(alt.Data(values=_json_rows(data)))
        .mark_line(strokeWidth=1.3, opacity=0.75)
        .encode(
            x=x, y=y, detail="line:N",
            color=alt.Color("metric:Q", title=_title(metric),
                            scale=alt.Scale(scheme="viridis")),
            tooltip=["trial_id:N", "axis:N", "value:N",
                     alt.Tooltip("metric:Q", title=metric, format=".4f")],
        ),
        alt.Chart(alt.Data(values=_json_rows(_axis_labels(data))))
        .mark_text(align="left", dx=4, fontSize=9, color="#333333")
        .encode(x=x, y=y, text="label:N"),
    ]
    title = alt.TitleParams(
        f"Search trials across hyperparameters, coloured by {_title(metric)}",
        subtitle="each axis min-max normalised; (log) axes on a log scale",
    )
    return alt.layer(*layers, title=title).properties(width=_WIDTH, height=_HEIGHT)


# ---------------------------------------------------------------------------- export


def export_chart(chart: alt.TopLevelMixin, path: Path) -> Path:
    """Write `chart` as PNG (2x scale, for slides) or SVG (for papers) by `path`'s suffix.

    Rendered with vl_convert, which bundles the Vega JavaScript, so export works offline.
    Any other suffix is a ValueError naming the allowed ones, raised before rendering.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _EXPORT_SUFFIXES:
        raise ValueError(
            f"cannot export a chart to {path.name!r}: suffix must be one of "
            f"{', '.join(_EXPORT_SUFFIXES)}"
        )
    import vl_convert

    spec = chart.to_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".svg":
        path.write_text(vl_convert.vegalite_to_svg(spec), encoding="utf-8")
    else:
        path.write_bytes(vl_convert.vegalite_to_png(spec, scale=2))
    return path
