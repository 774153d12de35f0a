"""The numbers a report's answer rests on: per-variant estimates with confidence intervals,
paired comparisons with the baseline, and the source's numbers beside ours.

Why here and not in the summary table: the seed studies compare variants from one run each
and call 0.2-0.5 point differences gains. A reader needs to see the interval around every
mean and a verdict that says when the seeds cannot tell, so the statistics (analysis.stats)
are applied once, to tidy frames, and every part of the report (the answer at the top, the
tables, the effect plot, the Markdown summary) reads the same `StudyStats`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from analysis.load import Run
from analysis.stats import estimate
from analysis.summary import OK_STATUSES, variant_order
from analysis.verdicts import Comparison, compare_to_baseline

# (trials column, label, higher is better, shown in points when an accuracy)
METRICS: tuple[tuple[str, str, bool], ...] = (
    ("best_val_acc", "best val acc", True),
    ("final_val_acc", "final val acc", True),
    ("test_acc", "test acc", True),
    ("train_time_s", "train time (s)", False),
    ("params", "parameters", False),
    ("samples_per_s", "throughput (samples/s)", True),
)

# A source's reported key -> our trials column measuring the same thing.
REPORTED_TO_OURS = {
    "test_acc": "test_acc",
    "val_acc": "best_val_acc",
    "val_loss": "best_val_loss",
    "test_loss": "test_loss",
    "train_time_s": "train_time_s",
    "params": "params",
}


@dataclass(frozen=True)
class StudyStats:
    """Everything statistical about one run, computed once."""

    order: list[str]
    baseline: str | None
    primary: str                      # the trials column the verdicts are about
    estimates: pl.DataFrame           # variant, metric, n, mean, std, ci_low, ci_high
    comparisons: list[Comparison]
    reproduction: pl.DataFrame        # variant, key, reported, ours, ci_low, ci_high, inside
    seeds: int                        # most ok seeds any variant has
    notes: list[str] = field(default_factory=list)

    def comparison_frame(self, *, points: bool = True) -> pl.DataFrame:
        """Comparisons as rows, differences in points for accuracies (for tables and plots)."""
        scale = 100.0 if points and self.primary.endswith("acc") else 1.0
        rows = [{
            "variant": c.variant, "n_pairs": c.n_pairs, "mean_diff": c.mean_diff * scale,
            "ci_low": c.ci_low * scale, "ci_high": c.ci_high * scale, "p_value": c.p_value,
            "p_adjusted": c.p_adjusted, "verdict": c.verdict,
            "seeds_suggested": c.seeds_suggested, "aso_epsilon": c.aso_epsilon,
        } for c in self.comparisons]
        schema = {"variant": pl.String, "n_pairs": pl.Int64, "mean_diff": pl.Float64,
                  "ci_low": pl.Float64, "ci_high": pl.Float64, "p_value": pl.Float64,
                  "p_adjusted": pl.Float64, "verdict": pl.String,
                  "seeds_suggested": pl.Int64, "aso_epsilon": pl.Float64}
        return pl.DataFrame(rows, schema=schema)

    def estimate_of(self, variant: str, metric: str) -> dict[str, Any] | None:
        rows = self.estimates.filter((pl.col("variant") == variant) & (pl.col("metric") == metric))
        return rows.row(0, named=True) if rows.height else None


def trial_metrics(run: Run) -> pl.DataFrame:
    """Trials with ok status plus their mean throughput (from the epoch rows)."""
    throughput = (run.epochs.group_by("trial_id")
                  .agg(pl.col("samples_per_s").drop_nans().mean().alias("samples_per_s")))
    trials = run.trials.filter(pl.col("status").is_in(OK_STATUSES))
    return trials.join(throughput, on="trial_id", how="left")


def primary_metric(trials: pl.DataFrame, baseline: str | None) -> str:
    """test_acc where the baseline's ok trials have one (the held-out number), else best_val_acc."""
    scope = trials.filter(pl.col("variant") == baseline) if baseline else trials
    if scope.height and scope["test_acc"].drop_nulls().drop_nans().len() > 0:
        return "test_acc"
    return "best_val_acc"


def study_stats(run: Run, *, test: str = "sign_flip", correction: str = "holm",
                alpha: float = 0.05, min_effect: float = 0.005, with_aso: bool = False,
                confidence: float = 0.95) -> StudyStats:
    order = variant_order(run)
    baseline = run.meta.get("baseline_variant")
    baseline = baseline if baseline in order else None
    ok = trial_metrics(run)
    primary = primary_metric(ok, baseline)

    rows = []
    for variant in order:
        mine = ok.filter(pl.col("variant") == variant)
        for column, _, _ in METRICS:
            values = mine[column].cast(pl.Float64).to_numpy() if mine.height else np.array([])
            est = estimate(values, confidence=confidence)
            rows.append({"variant": variant, "metric": column, "n": est.n, "mean": est.mean,
                         "std": est.std, "ci_low": est.ci_low, "ci_high": est.ci_high})
    estimates = pl.DataFrame(rows, schema={
        "variant": pl.String, "metric": pl.String, "n": pl.Int64, "mean": pl.Float64,
        "std": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64})

    notes: list[str] = []
    comparisons: list[Comparison] = []
    if baseline is None:
        notes.append("No baseline variant in this run, so no variant is compared with one.")
    elif len(order) > 1:
        per_seed = {
            variant: {int(s): float(v) for s, v in ok.filter(pl.col("variant") == variant)
                      .select("seed", primary).drop_nulls().iter_rows()}
            for variant in order
        }
        comparisons = compare_to_baseline(
            per_seed, baseline, metric=primary, higher_is_better=True, test=test,
            correction=correction, alpha=alpha, min_effect=min_effect, with_aso=with_aso,
            confidence=confidence)
    seeds = max((ok.filter(pl.col("variant") == v).height for v in order), default=0)
    return StudyStats(order=order, baseline=baseline, primary=primary, estimates=estimates,
                      comparisons=comparisons, reproduction=reproduction_table(run, ok, order),
                      seeds=seeds, notes=notes)


def reproduction_table(run: Run, ok: pl.DataFrame, order: Sequence[str]) -> pl.DataFrame:
    """The source's numbers beside ours: does theirs fall inside our 95% interval?"""
    reported = run.meta.get("reported") or {}
    rows = []
    for variant in order:
        for key, theirs in (reported.get(variant) or {}).items():
            column = REPORTED_TO_OURS.get(key)
            if column is None or not isinstance(theirs, int | float) or isinstance(theirs, bool):
                continue
            mine = ok.filter(pl.col("variant") == variant)
            values = mine[column].cast(pl.Float64).to_numpy() if mine.height else np.array([])
            est = estimate(values)
            inside = None
            if est.n >= 2 and np.isfinite(est.ci_low):
                inside = bool(est.ci_low <= theirs <= est.ci_high)
            rows.append({"variant": variant, "key": key, "reported": float(theirs),
                         "n": est.n, "ours": est.mean, "ci_low": est.ci_low,
                         "ci_high": est.ci_high, "inside": inside})
    return pl.DataFrame(rows, schema={
        "variant": pl.String, "key": pl.String, "reported": pl.Float64, "n": pl.Int64,
        "ours": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64, "inside": pl.Boolean})


def _untuned_arms(run: Run) -> list[str]:
    """A tuned run with no replicates yet: say what tuning produced, arm by arm."""
    usable = run.tuning.filter(pl.col("status").is_in(["ok", "early_stopped"]))
    out = ["No arm has replicate trials yet, so nothing is compared."]
    for arm in run.tuning["variant"].unique(maintain_order=True).to_list():
        if usable.filter(pl.col("variant") == arm).is_empty():
            out.append(f"{arm}: every tuning candidate diverged or failed, so nothing was "
                       "replicated; see the Tuning section and widen or move its domains.")
    return out


def answer(stats: StudyStats, run: Run) -> list[str]:
    """The report's opening: a few plain sentences with effect sizes and what they rest on."""
    label = dict((c, name) for c, name, _ in METRICS).get(stats.primary, stats.primary)
    out: list[str] = []
    if not stats.order:
        if not run.tuning.is_empty():
            return _untuned_arms(run)
        return ["This run has no trials yet."]
    if stats.baseline is None or not stats.comparisons:
        out.extend(stats.notes or ["Only one variant: nothing to compare."])
        return out
    verdicts = [c.verdict for c in stats.comparisons]
    better = [c.variant for c in stats.comparisons if c.verdict == "better"]
    worse = [c.variant for c in stats.comparisons if c.verdict == "worse"]
    unclear = [c.variant for c in stats.comparisons if c.verdict == "needs more seeds"]
    same = [c.variant for c in stats.comparisons if c.verdict == "no detectable difference"]
    head = (f"Does attention help here? On {label}, with up to {stats.seeds} seed(s) per "
            f"variant, against the baseline '{stats.baseline}': ")
    parts = []
    if better:
        parts.append(f"{_names(better)} {'is' if len(better) == 1 else 'are'} better")
    if worse:
        parts.append(f"{_names(worse)} {'is' if len(worse) == 1 else 'are'} worse")
    if same:
        parts.append(f"{_names(same)} show{'s' if len(same) == 1 else ''} no detectable "
                     "difference")
    if unclear:
        parts.append(f"the seeds cannot tell for {_names(unclear)}")
    out.append(head + "; ".join(parts) + ".")
    if not better and "better" not in verdicts:
        out.append("No attention variant beats the baseline by more than seed noise.")
    out.extend(c.sentence() for c in stats.comparisons)
    cost = _cost_sentence(stats)
    if cost:
        out.append(cost)
    failed = run.trials.filter(~pl.col("status").is_in([*OK_STATUSES, "running"])).height
    if failed:
        out.append(f"{failed} trial(s) diverged or failed and are left out of these numbers "
                   "(see Status).")
    return out


def _cost_sentence(stats: StudyStats) -> str:
    base = stats.estimate_of(stats.baseline or "", "train_time_s")
    if not base or not base["mean"] or not np.isfinite(base["mean"]):
        return ""
    parts = []
    for variant in stats.order:
        if variant == stats.baseline:
            continue
        mine = stats.estimate_of(variant, "train_time_s")
        if mine and mine["mean"] and np.isfinite(mine["mean"]):
            parts.append(f"{variant} {mine['mean'] / base['mean']:.2f}×")
    if not parts:
        return ""
    return "Training time relative to the baseline: " + ", ".join(parts) + "."


def format_interval(row: dict[str, Any] | None, fmt: str = ".4f", *,
                    with_n: bool = False) -> str:
    """'mean [low, high]' from an estimate row (n, mean, ci_low, ci_high); — when empty."""
    from analysis.summary import MISSING

    if not row or not row["n"] or row["mean"] is None or not np.isfinite(row["mean"]):
        return MISSING
    text = format(row["mean"], fmt)
    if row["ci_low"] is not None and np.isfinite(row["ci_low"]):
        text += f" [{format(row['ci_low'], fmt)}, {format(row['ci_high'], fmt)}]"
    return f"{text} (n={row['n']})" if with_n else text


def _names(names: Sequence[str]) -> str:
    return ", ".join(names)
