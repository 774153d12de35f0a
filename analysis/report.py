"""A single self-contained HTML report for one run.

One file that can be mailed, attached to an issue or opened on an air-gapped laptop: inline
CSS, charts as static SVG made interactive by an inlined vega-embed bundle (or inert JSON
specs, see `analysis.charts`), no script or style loaded from anywhere. Everything taken from the run (variant names, error messages, meta)
is escaped, because trial errors carry arbitrary exception text.
"""

from __future__ import annotations

import html
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from analysis.charts import (
    RENDER_PACKAGE,
    can_render_svg,
    chart_html,
    embed_script,
    seed_spread_chart,
)
from analysis.gallery import gallery_html
from analysis.load import Run, load_run
from analysis.schema import REPORT_FILE
from analysis.study import (
    METRICS,
    StudyStats,
    answer,
    format_interval,
    metric_label,
    study_stats,
)
from analysis.summary import MISSING, display_table, summarize

__all__ = ["render_report", "write_report"]

# Per-trial table: (column, header, format spec or None for text).
_TRIAL_COLUMNS: tuple[tuple[str, str, str | None], ...] = (
    ("trial_id", "trial", None),
    ("variant", "variant", None),
    ("seed", "seed", "d"),
    ("status", "status", None),
    ("stopped_by", "stopped by", None),
    ("error", "error", None),
    ("best_val_acc", "best val acc", ".4f"),
    ("test_acc", "test acc", ".4f"),
    ("epochs_run", "epochs", "d"),
    ("train_time_s", "train time s", ".1f"),
)

# meta.json facts shown at the top, in this order: (key, label).
_FACTS: tuple[tuple[str, str], ...] = (
    ("source", "source"),
    ("preset", "preset"),
    ("trainable", "trainable"),
    ("baseline_variant", "baseline"),
    ("metric", "metric"),
    ("mode", "mode"),
    ("git_revision", "git revision"),
    ("started_at", "started"),
    ("ended_at", "ended"),
    ("hardware", "hardware"),
    ("overrides", "overrides"),
    ("smoke", "smoke run"),
    ("versions", "versions"),
    ("cli", "command line"),
)

_CSS = """
table.gallery th { text-align: right; font-weight: normal; padding-right: .6em; }
table.gallery img { image-rendering: pixelated; display: block; }
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: .2em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { padding: .25em .7em; border-bottom: 1px solid #ddd; vertical-align: top; }
th { text-align: left; background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.error { max-width: 28em; overflow-wrap: anywhere; font-family: monospace; font-size: .9em; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: .15em 1em; }
dl.facts dt { font-weight: 600; } dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.smoke { background: #fff3cd; border: 1px solid #e0c060; padding: .5em 1em; }
.note { color: #555; font-style: italic; }
tr.status-diverged td, tr.status-error td { background: #fdecea; }
tr.status-running td { background: #eef4fb; }
figure.chart { margin: 1em 0; }
.answer { background: #f3f7fb; border-left: 4px solid #4a7ab8; padding: .3em 1em; }
.answer p { margin: .45em 0; }
nav.toc { margin: .6em 0 1em; padding: .4em .8em; background: #f7f7f7; line-height: 1.8; }
nav.toc a { color: #2f5d8c; text-decoration: none; white-space: nowrap; }
nav.toc a:hover { text-decoration: underline; }
h2[id] { scroll-margin-top: .5em; }
"""


def write_report(run_dir: Path, out: Path | None = None, *, with_aso: bool = False,
                 alpha: float | None = None, margin: float | None = None) -> Path:
    """Write the run's HTML report (default `run_dir/report.html`) and return its path.

    Written to a dot-temp file in the same folder and renamed over the target, so a reader
    (or a sync to object storage) never sees half a report, and readers of the run dir skip
    the temp file by its leading dot.
    """
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    target = Path(out) if out is not None else run_dir / REPORT_FILE
    text = render_report(run, title_fallback=run_dir.name, run_dir=run_dir, with_aso=with_aso,
                         alpha=alpha, margin=margin)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def render_report(run: Run, title_fallback: str = "run", run_dir: Path | None = None,
                  *, with_aso: bool = False, alpha: float | None = None,
                  margin: float | None = None) -> str:
    """The report for `run` as one HTML string (see the module docstring for why offline).

    Order: the answer in a few sentences, then the tables (variants with 95% intervals, the
    comparison with the baseline, the source's numbers beside ours, the plain summary), the
    charts, the trials, and the run's metadata. With `run_dir`, the trials' attention-map
    artifacts become an inline gallery."""
    meta = run.meta
    summary = summarize(run)
    stats = study_stats(run, with_aso=with_aso, alpha=alpha, margin=margin)
    order = stats.order
    preset = meta.get("preset") or "run"
    run_id = meta.get("run_id") or title_fallback
    title = f"{preset} — {run_id}"

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_esc(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head><body>",
        f"<h1>{_esc(title)}</h1>",
    ]
    if meta.get("smoke"):
        parts.append(
            '<p class="smoke">Smoke run: tiny budget to check the pipeline; '
            "these numbers are not results.</p>"
        )
    state = run_state(run)
    if state != "finished":
        parts.append(f'<p class="smoke">Run state: {_esc(state)}. Numbers cover the trials '
                     "finished so far.</p>")

    parts.append('<h2 id="answer">Answer</h2><div class="answer">')
    parts.extend(f"<p>{_esc(sentence)}</p>" for sentence in answer(stats, run))
    parts.append("</div>")

    parts.append("<h2>Variants</h2>")
    parts.append(
        '<p class="note">Over the seeds whose trials ended ok or early_stopped: mean and '
        f"{_esc(stats.interval_label)} [low, high], n seeds. One seed gives no interval; "
        "parameter counts are constants and get none.</p>")
    parts.append(_estimates_html(stats))
    parts.append(_comparisons_html(stats))
    parts.append(_reproduction_html(stats))
    parts.append(_time_ratios_html(stats))
    parts.append(_tuning_html(run))

    parts.append("<h2>Summary</h2>")
    parts.append(
        '<p class="note">Means ± std (ddof=1) over seeds with status ok or early_stopped; '
        "diverged and error trials are counted in the statuses only. "
        "“rep.” columns are the numbers reported by the source; Δ base is our mean test "
        "accuracy minus the baseline's.</p>"
    )
    headers, rows = display_table(summary)
    if rows:
        parts.append(_table_html(headers, rows, text_columns={0, len(headers) - 1}))
    else:
        parts.append('<p class="note">No trials in this run yet.</p>')

    parts.append(_divergence_html(run))
    parts.append(_data_notes_html(run.trials))

    parts.append("<h2>Charts</h2>")
    if not can_render_svg():
        parts.append(
            f'<p class="note">{_esc(RENDER_PACKAGE)} is not installed, so the charts below are '
            "embedded as Vega-Lite specs and not drawn.</p>"
        )
    charts = report_charts(run, stats, summary)
    if not any(name == "learning_curves" for name, _, _ in charts):
        parts.append('<p class="note">No finished epochs yet: no learning curves.</p>')
    for _, chart, caption in charts:
        parts.append(chart_html(chart))
        if caption:
            parts.append(f'<p class="note">{_esc(caption)}</p>')

    if run_dir is not None:
        parts.append(gallery_html(run_dir, run.trials, order))

    parts.append("<h2>Trials</h2>")
    parts.append(_trials_html(run.trials, order))
    parts.append("<h2>Run</h2>")
    parts.append(_facts_html(meta))
    if charts:
        parts.append(embed_script())
    parts.append("</body></html>")
    return "\n".join(_with_contents(parts)) + "\n"


def run_state(run: Run) -> str:
    """finished, or how far a run got: a report may be written mid-sweep or after a crash."""
    state = run.meta.get("state")
    running = run.trials.filter(pl.col("status") == "running").height
    if state in (None, "running") and not run.meta.get("ended_at"):
        return f"in progress ({running} trial(s) running)" if running else "in progress"
    if state and state not in ("finished", "ok"):
        return str(state)
    return "finished"


_H2 = re.compile(r"<h2(?P<attrs>[^>]*)>(?P<text>.*?)</h2>", re.S)
_ID = re.compile(r"""\bid\s*=\s*["']([^"']*)["']""")


def _with_contents(parts: list[str]) -> list[str]:
    """`parts` with an id on every <h2> and, after the <h1>, a <nav> linking to each.

    Read off the assembled parts rather than listed by hand, so a section added later is in
    the contents without anyone remembering to. Script parts (the vega bundle) are skipped.
    """
    used: set[str] = set()
    links: list[str] = []

    def anchor(match: re.Match[str]) -> str:
        attrs, text = match["attrs"], match["text"]
        found = _ID.search(attrs)
        label = html.unescape(re.sub(r"<[^>]+>", "", text)).strip()
        slug = found[1] if found else (re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
                                       or "section")
        unique, n = slug, 2
        while unique in used and not found:
            unique, n = f"{slug}-{n}", n + 1
        used.add(unique)
        links.append(f'<a href="#{_esc(unique)}">{_esc(label)}</a>')
        if not found:
            attrs = f' id="{_esc(unique)}"{attrs}'
        return f"<h2{attrs}>{text}</h2>"

    out = [part if part.lstrip().startswith("<script") else _H2.sub(anchor, part)
           for part in parts]
    if len(links) < 2:
        return out
    nav = ('<nav class="toc" aria-label="Contents"><b>Contents</b> '
           + " · ".join(links) + "</nav>")
    at = next((i + 1 for i, part in enumerate(out) if part.startswith("<h1")), 0)
    return [*out[:at], nav, *out[at:]]


def report_charts(run: Run, stats: StudyStats, summary: pl.DataFrame
                  ) -> list[tuple[str, Any, str]]:
    """(name, Altair chart, caption) for every chart this run has data for, in report order.

    Every chart that shows arms takes one variant -> colour mapping (the baseline grey), so an
    arm has the same colour everywhere on the page."""
    from analysis import plots

    label = dict((c, name) for c, name, _ in METRICS).get(stats.primary, stats.primary)
    interval = getattr(stats, "interval_label", "95% bootstrap interval")
    colours = plots.arm_colours(stats.order, stats.baseline)
    out: list[tuple[str, Any, str]] = []

    def add(name: str, chart: Any, caption: str = "") -> None:
        if chart is not None:
            out.append((name, chart, caption))

    add("learning_curves",
        plots.learning_curves(run.epochs, run.trials, stats.order, colours=colours),
        "Mean over seeds with a 95% t-interval band; each seed faint behind (hover a dot for "
        "its seed). ▼ early stop, ✕ divergence. The axis spans the values drawn. Click an arm "
        "in any legend to highlight it in every chart; click elsewhere or double-click to "
        "clear.")
    comparisons = stats.comparison_frame()
    if comparisons.height:
        unit = " (points)" if stats.primary.endswith("acc") else ""
        add("effect", plots.effect_plot(
            comparisons, metric_title=f"difference in {label} vs {stats.baseline}{unit}",
            interval=interval),
            f"Mean paired difference with its {interval}; colour is the verdict.")
    primary = stats.estimates.filter(pl.col("metric") == stats.primary).select(
        "variant", "mean", "ci_low", "ci_high")
    for column, title, name in (("train_time_s", "mean training time (s)", "cost_time"),
                                ("params", "trainable parameters", "cost_params")):
        cost = stats.estimates.filter(pl.col("metric") == column).select(
            "variant", pl.col("mean").alias(column))
        frame = primary.join(cost, on="variant").drop_nulls(["mean", column]).filter(
            pl.col("mean").is_finite() & pl.col(column).is_finite())
        if frame.height >= 2:
            add(name, plots.cost_frontier(frame, x=column, x_title=title, y_title=label,
                                          colours=colours),
                f"Bars: the {label} {interval}.")
    add("seed_spread", seed_spread_chart(run, summary, stats.order, colours),
        "Dots: one per seed (ok or early_stopped). Black tick and bar: mean ± std. "
        "Red diamond: the reported number.")
    add("status", plots.status_breakdown(run.trials, stats.order))
    add("hparam_importance", plots.hparam_importance(run.trials, metric=stats.primary),
        "Share of the metric's variance each hyperparameter explains alone (η²).")
    add("parallel_coordinates", plots.parallel_coordinates(run.trials, metric=stats.primary))
    return out


def _estimates_html(stats: StudyStats) -> str:
    if not stats.order:
        return '<p class="note">No trials in this run yet.</p>'
    formats = {"params": ",.0f", "train_time_s": ".1f", "samples_per_s": ",.0f"}
    columns = [(c, name, formats.get(c, ".4f")) for c, name, _ in METRICS]
    headers = ["variant", "n", *(name for _, name, _ in columns)]
    rows = []
    for variant in stats.order:
        first = stats.estimate_of(variant, stats.primary)
        cells = [variant, str(first["n"] if first else 0)]
        cells += [format_interval(stats.estimate_of(variant, c), fmt) for c, _, fmt in columns]
        rows.append(cells)
    return _table_html(headers, rows, text_columns={0})


def _comparisons_html(stats: StudyStats) -> str:
    if not stats.comparisons:
        return "".join(f'<p class="note">{_esc(n)}</p>' for n in stats.notes)
    unit = " (points)" if stats.points else ""
    frame = stats.comparison_frame()
    headers = ["variant", "seeds paired", f"Δ {metric_label(stats.primary)}{unit}",
               stats.interval_label, "p (t)", f"p (t, {_CORRECTION_NAMES['holm']})",
               "p (sign-flip check)", "p (TOST)", "verdict", "failed / ran",
               "p (failures, Fisher)", "detectable at 80% power", "seeds for the margin"]
    with_aso = any(r["aso_epsilon"] is not None for r in frame.iter_rows(named=True))
    if with_aso:
        headers.append("ASO ε")
    base = stats.failures.filter(pl.col("variant") == stats.baseline)
    base_text = (f"{base['failed'][0]} / {base['runs'][0]}" if base.height else MISSING)
    rows = [[str(stats.baseline), MISSING, MISSING, MISSING, MISSING, MISSING, MISSING,
             MISSING, "baseline", base_text, MISSING, MISSING, MISSING]
            + ([MISSING] if with_aso else [])]
    for r in frame.iter_rows(named=True):
        def num(value: Any, fmt: str) -> str:
            return MISSING if value is None or not math.isfinite(value) else format(value, fmt)

        rows.append([r["variant"], str(r["n_pairs"]), num(r["mean_diff"], "+.2f"),
                     f"[{num(r['ci_low'], '+.2f')}, {num(r['ci_high'], '+.2f')}]",
                     num(r["p_value"], ".3g"), num(r["p_adjusted"], ".3g"),
                     num(r["p_sign_flip"], ".3g"), num(r["p_tost"], ".3g"), r["verdict"],
                     f"{r['failed']} / {r['runs']}", num(r["p_failures"], ".3g"),
                     num(r["detectable"], ".2f"),
                     MISSING if r["seeds_for_margin"] is None else str(r["seeds_for_margin"])]
                    + ([num(r["aso_epsilon"], ".2f")] if with_aso else []))
    margin = stats.margin * (100 if stats.points else 1)
    unit_text = " points" if stats.points else ""
    schedule = stats.schedule
    level = (f"α = {stats.alpha:g} / {len(schedule.looks)} planned looks = "
             f"{schedule.alpha_per_look(stats.alpha):.3g} at every look (looks at "
             f"{', '.join(map(str, schedule.looks))} seeds; an arm's verdict is the one of "
             "the first look that decided it)" if schedule.adaptive else f"α = {stats.alpha:g}")
    note = (f'<p class="note">Paired by seed against {_esc(stats.baseline)}, on the seeds both '
            f"finished; differences are arm − baseline with their {_esc(stats.interval_label)}. "
            f"Better/worse: paired t-test, Holm-corrected across arms, at {_esc(level)}. "
            "The exact sign-flip permutation test (same correction) is a distribution-free "
            "check beside it; with few seeds it cannot reach α (3 seeds: p ≥ 0.25). "
            f"Equivalent: TOST (same correction) rejects both one-sided nulls of a difference beyond "
            f"±{margin:.2f}{unit_text} at the same level. Otherwise inconclusive, with the "
            "smallest difference these seeds detect and the seeds that would detect one of the "
            "margin (80% power, paired t at the per-arm level). A diverged or failed trial "
            "is an outcome: failed / ran counts them and Fisher's exact test compares the "
            "failure rate with the baseline's.</p>")
    return (f'<h2 id="comparison">Against the baseline</h2>{note}'
            + _table_html(headers, rows, text_columns={0, 8, 9}))


_CORRECTION_NAMES = {"holm": "Holm", "bh": "BH", "none": "unadjusted"}


def _reproduction_html(stats: StudyStats) -> str:
    table = stats.reproduction
    if not table.height:
        return ""
    headers = ["variant", "measure", "source reported", f"ours (mean [{stats.interval_label}])",
               "n", "ours − source", "source inside our interval"]
    rows = []
    for r in table.iter_rows(named=True):
        inside = {True: "yes", False: "no", None: MISSING}[r["inside"]]
        if r["inside"] is None and r["key"] != "params":
            inside = "— (needs ≥ 2 seeds)"
        ours = format_interval({"n": r["n"], "mean": r["ours"], "ci_low": r["ci_low"],
                                "ci_high": r["ci_high"]}, ",.0f" if r["key"] == "params"
                               else ".4f")
        difference = MISSING
        if r["difference"] is not None and math.isfinite(r["difference"]):
            difference = (f"{r['difference'] * 100:+.2f} points" if r["key"].endswith("acc")
                          else f"{r['difference']:+,.4g}")
        rows.append([r["variant"], r["key"], f"{r['reported']:,.4g}", ours, str(r["n"]),
                     difference, inside])
    return ('<h2 id="reproduction">Source vs reproduced</h2>'
            + _table_html(headers, rows, text_columns={0, 1, 6}))


def _time_ratios_html(stats: StudyStats) -> str:
    table = stats.time_ratios
    if not table.height:
        return ""
    rows = [[r["variant"], f"{r['ours']:.2f}×",
             MISSING if r["source"] is None else f"{r['source']:.2f}×"]
            for r in table.iter_rows(named=True)]
    note = (f'<p class="note">Mean training time relative to {_esc(stats.baseline)}, each '
            "side on its own hardware: seconds from different machines are not comparable, "
            "ratios to the same machine's baseline are.</p>")
    return ('<h2 id="training-time">Training time vs the baseline</h2>' + note
            + _table_html(["variant", "ours", "source"], rows, text_columns={0}))


def _divergence_html(run: Run) -> str:
    """The (variant x precision) diverged/n grid and its sentences, when anything diverged."""
    from analysis.divergence import divergence_matrix, divergence_sentences, divergence_table

    table = divergence_table(run)
    sentences = divergence_sentences(table)
    if not sentences:
        return ""
    headers, rows = divergence_matrix(table)
    items = "".join(f"<li>{_esc(s)}</li>" for s in sentences)
    return ("<h2>Divergence by precision</h2>"
            + _table_html(headers, rows, text_columns={0}) + f"<ul>{items}</ul>")


def _tuning_html(run: Run) -> str:
    """Each arm's candidates and budget, so a reader can see the arms were tuned alike."""
    from analysis.tuning import budget_table, candidates_table

    protocol = run.meta.get("protocol") or {}
    if run.tuning.is_empty() and "tune" not in protocol.get("stages", []):
        return ""
    search = ("one Optuna study per arm" if protocol.get("search") == "optuna"
              else "the same Latin-hypercube draws for every arm")
    intro = (f"Each arm was tuned with {protocol.get('samples_per_arm', '?')} candidates "
             f"({search}, search seed {protocol.get('search_seed', '?')}) on seed "
             f"{protocol.get('tuning_seed', '?')}, scheduled by {run.meta.get('scheduler', '?')}; "
             f"its best on validation ({protocol.get('selection', 'best validation metric')}) "
             "was replicated on fresh seeds "
             f"{', '.join(map(str, protocol.get('replicate_seeds', [])))}. Every other table "
             "and chart compares the replicates only. Trial-epochs is the budget each arm "
             "spent tuning.")
    parts = ['<h2 id="tuning">Tuning</h2>', f'<p class="note">{_esc(intro)}</p>']
    for table in (budget_table(run.tuning, run.trials, protocol),
                  candidates_table(run.tuning, run.trials, protocol)):
        if table.is_empty():
            continue
        headers = table.columns
        rows = [[_cell(v) for v in row] for row in table.iter_rows()]
        numeric = {i for i, dtype in enumerate(table.dtypes) if dtype.is_numeric()}
        parts.append(_table_html(headers, rows,
                                 text_columns=set(range(len(headers))) - numeric))
    return "".join(parts)


def _cell(value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _data_notes_html(trials: pl.DataFrame) -> str:
    """What the data loaders reported (distinct notes), e.g. unreadable files they skipped."""
    if "data_note" not in trials.columns:
        return ""
    notes = [n for n in trials["data_note"].drop_nulls().unique(maintain_order=True).to_list() if n]
    if not notes:
        return ""
    items = "".join(f"<li>{_esc(n)}</li>" for n in notes)
    return f'<h2>Data</h2><ul class="note">{items}</ul>'


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fact_text(value: Any) -> str:
    """A meta value as one line of plain text: lists comma-joined, dicts as key=value."""
    if value is None or value == "" or value == [] or value == {}:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fact_text(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value)
    return str(value)


def _cited_html(text: str, url: Any = None) -> str:
    """A citation, escaped, its http(s) addresses as links (plain <a href>: nothing is fetched).

    ``url`` (meta.json's ``source_url``) is appended when the text does not already give it.
    """
    def piece(token: str) -> str:
        address = token.rstrip(",;.)")
        if not address.startswith(("https://", "http://")):
            return _esc(token)
        return f'<a href="{_esc(address)}">{_esc(address)}</a>{_esc(token[len(address):])}'

    out = " ".join(piece(token) for token in text.split(" "))
    if isinstance(url, str) and url.startswith(("https://", "http://")) and url not in text:
        out += " " + piece(url)
    return out


def _facts_html(meta: dict[str, Any]) -> str:
    items = [
        f"<dt>{_esc(label)}</dt><dd>"
        + (_cited_html(_fact_text(meta.get(key)), meta.get("source_url")) if key == "source"
           else _esc(_fact_text(meta.get(key))))
        + "</dd>"
        for key, label in _FACTS
    ]
    return '<dl class="facts">' + "".join(items) + "</dl>"


def _table_html(
    headers: Sequence[str], rows: Sequence[Sequence[str]], text_columns: set[int]
) -> str:
    """A table of already formatted cells; columns not in `text_columns` are right-aligned."""
    css = ["" if i in text_columns else ' class="num"' for i in range(len(headers))]
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td{css[i]}>{_esc(cell)}</td>" for i, cell in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _trials_html(trials: pl.DataFrame, order: Sequence[str]) -> str:
    """Every trial, grouped by variant in report order, then by seed."""
    if trials.is_empty():
        return '<p class="note">No trials in this run yet.</p>'
    rank = {variant: i for i, variant in enumerate(order)}
    ordered = trials.with_columns(
        pl.col("variant")
        .replace_strict(rank, default=len(rank), return_dtype=pl.Int64)
        .alias("_rank")
    ).sort("_rank", "seed", "trial_id", nulls_last=True)

    head = "".join(f"<th>{_esc(header)}</th>" for _, header, _ in _TRIAL_COLUMNS)
    rows = []
    for trial in ordered.iter_rows(named=True):
        cells = []
        for column, _, fmt in _TRIAL_COLUMNS:
            value = trial[column]
            if fmt is None:
                css = ' class="error"' if column == "error" else ""
                cells.append(f"<td{css}>{_esc(MISSING if value is None else value)}</td>")
            else:
                text = MISSING if value is None else format(value, fmt)
                cells.append(f'<td class="num">{_esc(text)}</td>')
        status = "".join(c if c.isalnum() or c in "-_" else "-" for c in str(trial["status"]))
        rows.append(f'<tr class="status-{status}">{"".join(cells)}</tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
