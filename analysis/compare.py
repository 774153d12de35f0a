"""Several runs side by side, and the terminal (Markdown) form of a run's answer.

Why compare runs: a study is rarely one sweep. A profile (the source's recipe vs a shared
one), another split, a rerun on a GPU: the question is then whether a variant's interval
moved, so the runs' estimates go in one table and one chart, variant by variant.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

import polars as pl

from analysis.load import Run
from analysis.study import METRICS, StudyStats, answer, format_interval, study_stats
from analysis.summary import MISSING

Labelled = tuple[str, Run]  # (a name for the run, the run)


def run_label(run: Run, fallback: str) -> str:
    """preset/run_id, with the profiles or overrides that make it different."""
    meta = run.meta
    label = f"{meta.get('preset') or 'run'}/{meta.get('run_id') or fallback}"
    overrides = meta.get("overrides") or []
    return f"{label} ({' '.join(map(str, overrides))})" if overrides else label


def _metric_label(column: str) -> str:
    return dict((c, name) for c, name, _ in METRICS).get(column, column)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def clean(cell: str) -> str:
        return str(cell).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(clean, headers)) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(map(clean, row)) + " |" for row in rows]
    return "\n".join(lines)


def run_markdown(run: Run, stats: StudyStats, title: str) -> str:
    """The answer, the variants, the comparison and the source's numbers, for a terminal."""
    out = [f"# {title}", ""]
    if run.meta.get("smoke"):
        out += ["*Smoke run: tiny budget to check the pipeline; these numbers are not "
                "results.*", ""]
    out += [f"- {sentence}" for sentence in answer(stats, run)] + [""]
    if stats.order:
        columns = {"best_val_acc": ".4f", "test_acc": ".4f", "train_time_s": ".1f",
                   "params": ",.0f"}
        rows = [[variant, *(format_interval(stats.estimate_of(variant, c), fmt, with_n=True)
                            for c, fmt in columns.items())]
                for variant in stats.order]
        out += [f"## Variants (mean [{stats.interval_label}] over seeds)", "",
                markdown_table(["variant", *map(_metric_label, columns)], rows), ""]
    frame = stats.comparison_frame()
    if frame.height:
        def num(value: float | None, fmt: str) -> str:
            return MISSING if value is None or not math.isfinite(value) else format(value, fmt)

        rows = [[r["variant"], str(r["n_pairs"]), num(r["mean_diff"], "+.2f"),
                 f"[{num(r['ci_low'], '+.2f')}, {num(r['ci_high'], '+.2f')}]",
                 num(r["p_adjusted"], ".3g"), num(r["p_sign_flip"], ".3g"),
                 num(r["p_tost"], ".3g"), r["verdict"], f"{r['failed']} / {r['runs']}",
                 MISSING if r["seeds_for_margin"] is None else str(r["seeds_for_margin"])]
                for r in frame.iter_rows(named=True)]
        unit = ", points" if stats.points else ""
        out += [f"## Against {stats.baseline} ({_metric_label(stats.primary)}{unit})", "",
                markdown_table(["variant", "seeds", "Δ", stats.interval_label, "p (t, Holm)",
                                "p (sign-flip)", "p (TOST)", "verdict", "failed / ran",
                                "seeds for the margin"], rows), ""]
    if stats.reproduction.height:
        rows = [[r["variant"], r["key"], f"{r['reported']:.4g}",
                 format_interval({"n": r["n"], "mean": r["ours"], "ci_low": r["ci_low"],
                                  "ci_high": r["ci_high"]}, with_n=True),
                 {True: "yes", False: "no", None: MISSING}[r["inside"]]]
                for r in stats.reproduction.iter_rows(named=True)]
        out += ["## Source vs reproduced", "",
                markdown_table(["variant", "measure", "source", "ours", "inside our interval"], rows),
                ""]
    return "\n".join(out)


def comparison_frame(runs: Sequence[Labelled], all_stats: Sequence[StudyStats],
                     metric: str) -> pl.DataFrame:
    """variant, run, n, mean, ci_low, ci_high: one row per (variant, run) with the metric."""
    frames = [s.estimates.filter(pl.col("metric") == metric).with_columns(
        pl.lit(label).alias("run")) for (label, _), s in zip(runs, all_stats, strict=True)]
    return pl.concat(frames).filter(pl.col("n") > 0).select(
        "variant", "run", "n", "mean", "ci_low", "ci_high")


def compare_chart(frame: pl.DataFrame, metric: str) -> Any:
    """Each variant's mean and interval, one colour per run, runs side by side."""
    import altair as alt

    from analysis.charts import _json_rows

    if frame.is_empty():
        return None
    data = alt.Data(values=_json_rows(frame))
    y = alt.Y("variant:N", title=None, sort=list(dict.fromkeys(frame["variant"].to_list())))
    offset = alt.YOffset("run:N")
    colour = alt.Color("run:N", title="run", legend=alt.Legend(orient="bottom", columns=1,
                                                                labelLimit=500))
    bars = alt.Chart(data).mark_rule(strokeWidth=2).encode(
        x=alt.X("ci_low:Q", title=f"{_metric_label(metric)} (mean, 95% CI)",
                scale=alt.Scale(zero=False)),
        x2="ci_high:Q", y=y, yOffset=offset, color=colour)
    points = alt.Chart(data).mark_point(filled=True, size=70).encode(
        x="mean:Q", y=y, yOffset=offset, color=colour,
        tooltip=["run:N", "variant:N", "n:Q", alt.Tooltip("mean:Q", format=".4f"),
                 alt.Tooltip("ci_low:Q", format=".4f"), alt.Tooltip("ci_high:Q", format=".4f")])
    return alt.layer(bars, points, title=f"{_metric_label(metric)} by run").properties(
        width=560, height=alt.Step(22))


def comparison_markdown(runs: Sequence[Labelled]) -> str:
    stats = [study_stats(run) for _, run in runs]
    metric = _shared_metric(stats)
    frame = comparison_frame(runs, stats, metric)
    labels = [label for label, _ in runs]
    out = [f"# {len(runs)} runs compared on {_metric_label(metric)}", ""]
    for (label, run), s in zip(runs, stats, strict=True):
        first = answer(s, run)[0]
        out.append(f"- **{label}**: {first}")
    out += ["", markdown_table(["variant", *labels], _side_by_side(frame, labels))]
    return "\n".join(out) + "\n"


def render_comparison(runs: Sequence[Labelled]) -> str:
    """One self-contained HTML page comparing runs (same offline rules as a run's report)."""
    from analysis.charts import chart_html, embed_script
    from analysis.report import _CSS, _table_html

    stats = [study_stats(run) for _, run in runs]
    metric = _shared_metric(stats)
    frame = comparison_frame(runs, stats, metric)
    labels = [label for label, _ in runs]
    title = f"{len(runs)} runs compared on {_metric_label(metric)}"
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title>", f"<style>{_CSS}</style>",
             "</head><body>", f"<h1>{html.escape(title)}</h1>", '<div class="answer">']
    for (label, run), s in zip(runs, stats, strict=True):
        parts.append(f"<p><b>{html.escape(label)}</b>: "
                     f"{html.escape(' '.join(answer(s, run)[:2]))}</p>")
    parts.append("</div><h2>Side by side</h2>")
    parts.append('<p class="note">Mean [95% bootstrap CI] (n seeds) per run; a variant a '
                 "run lacks is marked —.</p>")
    parts.append(_table_html(["variant", *labels], _side_by_side(frame, labels),
                             text_columns={0}))
    chart = compare_chart(frame, metric)
    if chart is not None:
        parts.append("<h2>Chart</h2>")
        parts.append(chart_html(chart))
        parts.append(embed_script())
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _shared_metric(stats: Sequence[StudyStats]) -> str:
    """test_acc when every run has it, else best_val_acc (every run has that)."""
    return "test_acc" if all(s.primary == "test_acc" for s in stats) else "best_val_acc"


def _side_by_side(frame: pl.DataFrame, labels: Sequence[str]) -> list[list[str]]:
    rows = []
    for variant in dict.fromkeys(frame["variant"].to_list()):
        cells = [variant]
        for label in labels:
            match = frame.filter((pl.col("variant") == variant) & (pl.col("run") == label))
            cells.append(format_interval(match.row(0, named=True) if match.height else None,
                                         with_n=True))
        rows.append(cells)
    return rows
