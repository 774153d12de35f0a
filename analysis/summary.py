"""Per-variant summary of a run: our numbers over seeds, beside the paper's reported ones.

The question an ablation answers is "does this attention variant beat the baseline by more
than seed noise, and do we reproduce the paper?". So the summary keeps the spread over seeds
(std, not just the mean), the status of every trial (a variant that diverged on one seed is
not the same result as one that trained on all), and the reported numbers in the same row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import polars as pl

from analysis.load import Run
from analysis.schema import STATUSES

__all__ = ["FAILED_STATUSES", "MISSING", "OK_STATUSES", "display_table", "format_table", "summarize", "variant_order"]

# Trials whose metrics count. Diverged, error and still-running trials are listed in
# `statuses` but would bias the means (a diverged trial's "best" accuracy is near chance).
OK_STATUSES = ("ok", "early_stopped")
# Trials that ran and produced no metric: a failed seed is an outcome of its arm.
FAILED_STATUSES = ("diverged", "error")

# Shown wherever a number is missing (never reached, no reported value, no baseline).
MISSING = "—"

# Summary columns before the `reported_<key>` ones, in order.
_BASE_COLUMNS: dict[str, pl.DataType] = {
    "variant": pl.String(),
    "n": pl.Int64(),
    "n_ok": pl.Int64(),
    "statuses": pl.String(),
    "val_acc_mean": pl.Float64(),
    "val_acc_std": pl.Float64(),
    "test_acc_mean": pl.Float64(),
    "test_acc_std": pl.Float64(),
    "params": pl.Int64(),
    "train_time_s_mean": pl.Float64(),
    "epochs_mean": pl.Float64(),
}
_DELTA = "delta_test_acc_vs_baseline"
_REPORTED = "reported_"


def variant_order(run: Run) -> list[str]:
    """Variants of the run's trials, baseline first, then as listed in meta["reported"], then A-Z.

    One order for the table, the trial list and the charts, so a reader's eye finds the
    baseline at the top everywhere and rows never reshuffle between two reports of a run.
    """
    present = {v for v in run.trials["variant"].to_list() if v is not None}
    preferred = [run.meta.get("baseline_variant"), *_reported(run.meta)]
    order = [v for v in dict.fromkeys(preferred) if v in present]
    return order + sorted(present - set(order))


def summarize(run: Run) -> pl.DataFrame:
    """One row per variant: trial counts and statuses, mean and std over seeds, reported numbers.

    Means and stds are over the trials with status ok or early_stopped only; std uses
    ddof=1 and is null with fewer than two values, because one seed says nothing about
    noise. `params` is the max over all trials (they agree unless a variant changes shape
    with the seed). `delta_test_acc_vs_baseline` is the mean paired difference in test
    accuracy to the baseline (seeds both finished), null where there is none.
    """
    reported = _reported(run.meta)
    reported_keys = list(dict.fromkeys(k for numbers in reported.values() for k in numbers))

    rows = [_variant_row(run.trials.filter(pl.col("variant") == v), v) for v in variant_order(run)]
    schema = dict(_BASE_COLUMNS)
    for key in reported_keys:
        values = [reported.get(row["variant"], {}).get(key) for row in rows]
        numeric = all(
            v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in values
        )
        schema[_REPORTED + key] = pl.Float64() if numeric else pl.String()
        for row, value in zip(rows, values, strict=True):
            row[_REPORTED + key] = value if numeric or value is None else str(value)

    summary = pl.DataFrame(rows, schema=schema)
    deltas = _paired_deltas(run.trials, run.meta.get("baseline_variant"))
    return summary.with_columns(
        pl.col("variant").replace_strict(deltas, default=None, return_dtype=pl.Float64)
        .alias(_DELTA))


def _paired_deltas(trials: pl.DataFrame, baseline: str | None) -> dict[str, float]:
    """Mean test-accuracy difference to the baseline over the seeds both finished.

    Paired, like the comparison with the baseline: a difference of means over different
    seed sets would disagree with it whenever one arm lost a seed.
    """
    if not baseline:
        return {}
    ok = trials.filter(pl.col("status").is_in(OK_STATUSES) & pl.col("test_acc").is_not_null()
                       & pl.col("test_acc").is_not_nan())
    base = ok.filter(pl.col("variant") == baseline).select(
        "seed", pl.col("test_acc").alias("base"))
    if base.is_empty():
        return {}
    paired = (ok.join(base, on="seed").group_by("variant")
              .agg((pl.col("test_acc") - pl.col("base")).mean().alias("delta")))
    return {v: d for v, d in paired.iter_rows() if v is not None}


def _reported(meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """meta["reported"] as {variant: {key: value}}, tolerating a missing or null entry."""
    reported = meta.get("reported") or {}
    return {str(v): dict(numbers or {}) for v, numbers in reported.items()}


def _variant_row(trials: pl.DataFrame, variant: str) -> dict[str, Any]:
    """Aggregate the trials of one variant into one summary row (see `summarize`)."""
    ok = trials.filter(pl.col("status").is_in(OK_STATUSES))

    def mean(column: str) -> float | None:
        return ok[column].drop_nulls().mean()  # type: ignore[return-value]

    def std(column: str) -> float | None:
        values = ok[column].drop_nulls()
        return values.std(ddof=1) if len(values) >= 2 else None  # type: ignore[return-value]

    params = trials["params"].drop_nulls()
    return {
        "variant": variant,
        "n": trials.height,
        "n_ok": ok.height,
        "statuses": _status_counts(trials["status"].to_list()),
        "val_acc_mean": mean("best_val_acc"),
        "val_acc_std": std("best_val_acc"),
        "test_acc_mean": mean("test_acc"),
        "test_acc_std": std("test_acc"),
        "params": int(params.max()) if len(params) else None,  # type: ignore[arg-type]
        "train_time_s_mean": mean("train_time_s"),
        "epochs_mean": mean("epochs_run"),
    }


def _status_counts(statuses: Sequence[str | None]) -> str:
    """'2 ok, 1 diverged': counts in the schema's status order, unknown statuses last."""
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status or "unknown"] = counts.get(status or "unknown", 0) + 1
    known = [s for s in STATUSES if s in counts]
    ordered = known + sorted(set(counts) - set(known))
    return ", ".join(f"{counts[s]} {s}" for s in ordered)


# ---------------------------------------------------------------------------- display


def _acc(mean: float | None, std: float | None) -> str:
    if mean is None:
        return MISSING
    return f"{mean:.4f}" if std is None else f"{mean:.4f} ± {std:.4f}"


def _num(fmt: str) -> Callable[[Any], str]:
    def show(value: Any) -> str:
        if value is None:
            return MISSING
        return format(value, fmt) if isinstance(value, int | float) else str(value)

    return show


# Reported keys that sit beside one of our columns: key -> (our column, header, format).
_BESIDE: dict[str, tuple[str, str, str]] = {
    "val_acc": ("val acc", "rep. val", ".4f"),
    "test_acc": ("test acc", "rep. test", ".4f"),
    "params": ("params", "rep. params", ",.0f"),
    "train_time_s": ("time s", "rep. time", ".1f"),
    "epochs": ("epochs", "rep. ep", ".0f"),
}


def _not_plain_ok(statuses: str) -> str:
    """'2 ok, 1 diverged' -> '1 diverged': the "ok" count is already in the ok/n column."""
    return ", ".join(part for part in statuses.split(", ") if not part.endswith(" ok"))


def display_table(summary: pl.DataFrame) -> tuple[list[str], list[list[str]]]:
    """The summary as (headers, rows of strings): the one rendering behind text and HTML tables.

    Keeping a single rendering means the terminal table and the report can never disagree
    on what a cell says. Each reported number sits right after our matching column; reported
    keys we have no column for go at the end, followed by the statuses other than "ok"
    (those are counted in "ok/n", which also counts early_stopped).
    """
    columns: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("variant", lambda r: str(r["variant"])),
        ("ok/n", lambda r: f"{r['n_ok']}/{r['n']}"),
        ("val acc", lambda r: _acc(r["val_acc_mean"], r["val_acc_std"])),
        ("test acc", lambda r: _acc(r["test_acc_mean"], r["test_acc_std"])),
        ("Δ base", lambda r: MISSING if r[_DELTA] is None else f"{r[_DELTA]:+.4f}"),
        ("params", lambda r: _num(",d")(r["params"])),
        ("time s", lambda r: _num(".1f")(r["train_time_s_mean"])),
        ("epochs", lambda r: _num(".1f")(r["epochs_mean"])),
    ]
    reported_keys = [c.removeprefix(_REPORTED) for c in summary.columns if c.startswith(_REPORTED)]
    for key in reported_keys:
        ours, header, fmt = _BESIDE.get(key, ("", f"rep. {key}", ".4g"))
        show = _num(fmt)
        cell = (header, lambda r, c=_REPORTED + key, show=show: show(r[c]))
        where = next((i + 1 for i, (h, _) in enumerate(columns) if h == ours), len(columns))
        columns.insert(where, cell)
    columns.append(("other", lambda r: _not_plain_ok(r["statuses"])))

    rows = [[render(r) for _, render in columns] for r in summary.iter_rows(named=True)]
    return [header for header, _ in columns], rows


def format_table(summary: pl.DataFrame) -> str:
    """The summary as a fixed-width plain-text table for a terminal.

    Text left-aligned, numbers right-aligned so decimal points line up; the statuses column
    comes last so that a long one ("1 early_stopped, 1 diverged") only widens the end.
    """
    headers, rows = display_table(summary)
    if not rows:
        return "(no trials)"
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    left = {0, len(headers) - 1}  # variant and statuses

    def line(cells: Sequence[str]) -> str:
        padded = [
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])
