"""The numbers a report's answer rests on: per-variant estimates with intervals, each arm
against the baseline with a verdict, failures as outcomes, and the source beside ours.

Why here and not in the summary table: the source studies compare variants from one run each
and call 0.2-0.5 point differences gains. A reader needs the interval around every mean and
a verdict that says when the seeds cannot tell, so the statistics (analysis.stats,
analysis.verdicts, analysis.sequential) are applied once, to tidy frames, and every part of
the report (the answer at the top, the tables, the effect chart, the Markdown summary)
reads the same `StudyStats`.

Which rows are compared: one per (arm, seed) from the replicate stage, or the single stage
when nothing was tuned (tuning candidates live in `run.tuning`); running trials are left
out. A (arm, seed) pair twice is an error, not an overwrite: it means two results for one
experiment and no rule picks the right one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from analysis.load import Run
from analysis.sequential import Judgement, SeedSchedule, judge, outcomes
from analysis.stats import aso_epsilon, estimate, interval_label
from analysis.summary import FAILED_STATUSES, OK_STATUSES, variant_order
from analysis.verdicts import DEFAULT_ALPHA, DEFAULT_MARGIN, Comparison

# (trials column, label, higher is better)
METRICS: tuple[tuple[str, str, bool], ...] = (
    ("best_val_acc", "best val acc", True),
    ("final_val_acc", "final val acc", True),
    ("test_acc", "test acc", True),
    ("train_time_s", "train time (s)", False),
    ("params", "parameters", False),
    ("samples_per_s", "throughput (samples/s)", True),
)
# Constants of a configuration, not outcomes of a seed: no interval.
CONSTANTS = ("params",)

# A source's reported key -> our trials column measuring the same thing. Training time is
# not here: seconds on their hardware and ours are not comparable, only ratios to each
# side's own baseline are (`time_ratios`).
REPORTED_TO_OURS = {
    "test_acc": "test_acc",
    "val_acc": "best_val_acc",
    "val_loss": "best_val_loss",
    "test_loss": "test_loss",
    "params": "params",
}


class DuplicateSeedError(ValueError):
    """Two compared trials for one (arm, seed)."""


@dataclass(frozen=True)
class StudyStats:
    """Everything statistical about one run, computed once."""

    order: list[str]
    baseline: str | None
    primary: str                      # the trials column the verdicts are about
    estimates: pl.DataFrame           # variant, metric, n, mean, std, ci_low, ci_high
    comparisons: list[Comparison]
    reproduction: pl.DataFrame        # variant, key, reported, n, ours, ci_low, ci_high, inside
    seeds: int                        # most seeds any arm ran
    schedule: SeedSchedule
    alpha: float = DEFAULT_ALPHA
    margin: float = DEFAULT_MARGIN
    interval: str = "t"
    confidence: float = 0.95
    judgement: Judgement | None = None
    failures: pl.DataFrame = field(default_factory=pl.DataFrame)  # variant, runs, failed
    time_ratios: pl.DataFrame = field(default_factory=pl.DataFrame)
    aso: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def interval_label(self) -> str:
        """How every interval of the report is made, for captions: "95% t-interval"."""
        return interval_label(self.interval, self.confidence)

    @property
    def points(self) -> bool:
        """Differences of an accuracy are shown in percentage points."""
        return self.primary.endswith("acc")

    def comparison_frame(self, *, points: bool = True) -> pl.DataFrame:
        """Comparisons as rows, differences in points for accuracies (for tables and plots)."""
        scale = 100.0 if points and self.points else 1.0
        rows = [{
            "variant": c.variant, "n_pairs": c.n_pairs, "mean_diff": c.mean_diff * scale,
            "ci_low": c.ci_low * scale, "ci_high": c.ci_high * scale, "p_value": c.p_value,
            "p_adjusted": c.p_adjusted, "p_sign_flip": c.p_sign_flip, "p_tost": c.p_tost,
            "verdict": c.verdict, "look": c.look,
            "detectable": None if c.detectable is None else c.detectable * scale,
            "seeds_for_margin": c.seeds_for_margin, "runs": c.runs, "failed": c.failed,
            "p_failures": c.p_failures, "aso_epsilon": self.aso.get(c.variant),
        } for c in self.comparisons]
        schema = {"variant": pl.String, "n_pairs": pl.Int64, "mean_diff": pl.Float64,
                  "ci_low": pl.Float64, "ci_high": pl.Float64, "p_value": pl.Float64,
                  "p_adjusted": pl.Float64, "p_sign_flip": pl.Float64, "p_tost": pl.Float64,
                  "verdict": pl.String, "look": pl.Int64, "detectable": pl.Float64,
                  "seeds_for_margin": pl.Int64, "runs": pl.Int64, "failed": pl.Int64,
                  "p_failures": pl.Float64, "aso_epsilon": pl.Float64}
        return pl.DataFrame(rows, schema=schema)

    def estimate_of(self, variant: str, metric: str) -> dict[str, Any] | None:
        rows = self.estimates.filter((pl.col("variant") == variant) & (pl.col("metric") == metric))
        return rows.row(0, named=True) if rows.height else None

    def comparison_of(self, variant: str) -> Comparison | None:
        return next((c for c in self.comparisons if c.variant == variant), None)


def compared_trials(run: Run) -> pl.DataFrame:
    """The trials the comparison rests on: ended single/replicate trials, one per (arm, seed)."""
    ended = run.trials.filter(pl.col("status") != "running")
    twice = (ended.group_by("variant", "seed").agg(pl.len().alias("rows"),
                                                   pl.col("trial_id").sort())
             .filter(pl.col("rows") > 1).sort("variant", "seed"))
    if twice.height:
        row = twice.row(0, named=True)
        raise DuplicateSeedError(
            f"trials.parquet has {row['rows']} ended trials for arm {row['variant']!r} seed "
            f"{row['seed']} ({', '.join(row['trial_id'])}); a run holds one result per arm "
            "and seed, so remove the stray rows (or report the runs separately)")
    return ended


def is_closed(run: Run) -> bool:
    """No seed will be added: nothing is running and the run ended (or predates the record).

    An interrupted run is not closed: `--resume` continues it.
    """
    if run.trials.filter(pl.col("status") == "running").height:
        return False
    state = run.meta.get("state")
    if state is None:
        return bool(run.meta.get("ended_at")) or "seed_schedule" not in run.meta
    return state in ("finished", "ok")


def trial_metrics(run: Run) -> pl.DataFrame:
    """Trials with ok status plus their mean throughput (from the epoch rows)."""
    throughput = (run.epochs.group_by("trial_id")
                  .agg(pl.col("samples_per_s").drop_nans().mean().alias("samples_per_s")))
    trials = run.trials.filter(pl.col("status").is_in(OK_STATUSES))
    return trials.join(throughput, on="trial_id", how="left")


def _estimates(ok: pl.DataFrame, order: Sequence[str], interval: str,
               confidence: float) -> pl.DataFrame:
    rows = []
    for variant in order:
        mine = ok.filter(pl.col("variant") == variant)
        for column, _, _ in METRICS:
            values = mine[column].cast(pl.Float64).to_numpy() if mine.height else np.array([])
            est = estimate(values, confidence=confidence, interval=interval)
            low, high = est.ci_low, est.ci_high
            if column in CONSTANTS:
                low = high = math.nan
            rows.append({"variant": variant, "metric": column, "n": est.n, "mean": est.mean,
                         "std": est.std, "ci_low": low, "ci_high": high})
    return pl.DataFrame(rows, schema={
        "variant": pl.String, "metric": pl.String, "n": pl.Int64, "mean": pl.Float64,
        "std": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64})


def _failures(compared: pl.DataFrame, order: Sequence[str]) -> pl.DataFrame:
    rows = []
    for variant in order:
        mine = compared.filter(pl.col("variant") == variant)
        rows.append({"variant": variant, "runs": mine.height,
                     "failed": mine.filter(pl.col("status").is_in(FAILED_STATUSES)).height})
    return pl.DataFrame(rows, schema={"variant": pl.String, "runs": pl.Int64,
                                      "failed": pl.Int64})


def study_stats(run: Run, *, alpha: float | None = None, margin: float | None = None,
                correction: str = "holm", with_aso: bool = False, confidence: float = 0.95,
                interval: str = "t") -> StudyStats:
    """The run's statistics; alpha and margin default to the run's own (meta.json)."""
    alpha = float(alpha if alpha is not None else run.meta.get("alpha") or DEFAULT_ALPHA)
    margin = float(margin if margin is not None else run.meta.get("margin") or DEFAULT_MARGIN)
    order = variant_order(run)
    baseline = run.meta.get("baseline_variant")
    baseline = baseline if baseline in order else None
    compared = compared_trials(run)
    ok = trial_metrics(run)
    primary, per_seed = outcomes(
        compared.select("variant", "seed", "status", "test_acc", "best_val_acc").to_dicts(),
        order, baseline)
    estimates = _estimates(ok, order, interval, confidence)
    failures = _failures(compared, order)
    seeds = max(failures["runs"].to_list(), default=0)
    schedule = (SeedSchedule.from_meta(run.meta.get("seed_schedule"))
                or SeedSchedule.fixed(seeds))

    notes: list[str] = []
    comparisons: list[Comparison] = []
    judgement = None
    aso: dict[str, float] = {}
    if baseline is None:
        notes.append("No baseline variant in this run, so no variant is compared with one.")
    elif len(order) > 1:
        per_seed = {baseline: per_seed[baseline],
                    **{v: per_seed[v] for v in order if v != baseline}}
        judgement = judge(per_seed, baseline, schedule, metric=primary, alpha=alpha,
                          margin=margin, correction=correction, confidence=confidence,
                          closed=is_closed(run))
        comparisons = judgement.comparisons
        if with_aso:
            base = [v for v in per_seed[baseline].values() if v is not None]
            for variant in order:
                mine = [v for v in per_seed[variant].values() if v is not None]
                if variant != baseline:
                    aso[variant] = aso_epsilon(mine, base, confidence=confidence)
    return StudyStats(order=order, baseline=baseline, primary=primary, estimates=estimates,
                      comparisons=comparisons, reproduction=reproduction_table(run, ok, order),
                      seeds=seeds, schedule=schedule, alpha=alpha, margin=margin,
                      interval=interval, confidence=confidence, judgement=judgement,
                      failures=failures, time_ratios=time_ratios(run, estimates, order),
                      aso=aso, notes=notes)


def reproduction_table(run: Run, ok: pl.DataFrame, order: Sequence[str], *,
                       confidence: float = 0.95) -> pl.DataFrame:
    """The source's numbers beside ours: inside our t-interval, and by how much they differ."""
    reported = run.meta.get("reported") or {}
    rows = []
    for variant in order:
        for key, theirs in (reported.get(variant) or {}).items():
            column = REPORTED_TO_OURS.get(key)
            if column is None or not isinstance(theirs, int | float) or isinstance(theirs, bool):
                continue
            mine = ok.filter(pl.col("variant") == variant)
            values = mine[column].cast(pl.Float64).to_numpy() if mine.height else np.array([])
            est = estimate(values, confidence=confidence)
            inside = None
            if column not in CONSTANTS and est.n >= 2 and np.isfinite(est.ci_low):
                inside = bool(est.ci_low <= theirs <= est.ci_high)
            rows.append({"variant": variant, "key": key, "reported": float(theirs),
                         "n": est.n, "ours": est.mean,
                         "ci_low": math.nan if column in CONSTANTS else est.ci_low,
                         "ci_high": math.nan if column in CONSTANTS else est.ci_high,
                         "difference": est.mean - float(theirs) if est.n else math.nan,
                         "inside": inside})
    return pl.DataFrame(rows, schema={
        "variant": pl.String, "key": pl.String, "reported": pl.Float64, "n": pl.Int64,
        "ours": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64,
        "difference": pl.Float64, "inside": pl.Boolean})


def time_ratios(run: Run, estimates: pl.DataFrame, order: Sequence[str]) -> pl.DataFrame:
    """Training time of each arm relative to its baseline, ours beside the source's.

    Seconds measured on different hardware say nothing about each other; the ratio to the
    baseline trained on the same hardware does.
    """
    baseline = run.meta.get("baseline_variant")
    reported = run.meta.get("reported") or {}

    def ours(variant: str) -> float | None:
        row = estimates.filter((pl.col("variant") == variant)
                               & (pl.col("metric") == "train_time_s"))
        mean = row["mean"][0] if row.height else None
        return mean if mean is not None and math.isfinite(mean) and mean > 0 else None

    def theirs(variant: str) -> float | None:
        value = (reported.get(variant) or {}).get("train_time_s")
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
        return float(value) if ok else None

    rows = []
    if baseline in order and ours(baseline):
        for variant in order:
            if variant == baseline or ours(variant) is None:
                continue
            source = (theirs(variant) / theirs(baseline)
                      if theirs(variant) and theirs(baseline) else None)
            rows.append({"variant": variant, "ours": ours(variant) / ours(baseline),
                         "source": source})
    return pl.DataFrame(rows, schema={"variant": pl.String, "ours": pl.Float64,
                                      "source": pl.Float64})


def _untuned_arms(run: Run) -> list[str]:
    """A tuned run with no replicates yet: say what tuning produced, arm by arm."""
    usable = run.tuning.filter(pl.col("status").is_in(["ok", "early_stopped"]))
    out = ["No arm has replicate trials yet, so nothing is compared."]
    for arm in run.tuning["variant"].unique(maintain_order=True).to_list():
        if usable.filter(pl.col("variant") == arm).is_empty():
            out.append(f"{arm}: every tuning candidate diverged or failed, so nothing was "
                       "replicated; see the Tuning section and widen or move its domains.")
    return out


def metric_label(column: str) -> str:
    return dict((c, name) for c, name, _ in METRICS).get(column, column)


def answer(stats: StudyStats, run: Run) -> list[str]:
    """The report's opening: what the data say about each arm, and nothing they do not."""
    if not stats.order:
        if not run.tuning.is_empty():
            return _untuned_arms(run)
        return ["This run has no trials yet."]
    if stats.baseline is None or not stats.comparisons:
        return list(stats.notes or ["Only one variant: nothing to compare."])
    out = [_design_sentence(stats)]
    out.extend(c.sentence(points=stats.points, label=metric_label(stats.primary))
               for c in stats.comparisons)
    out.extend(reproduction_sentences(stats))
    cost = _cost_sentence(stats)
    if cost:
        out.append(cost)
    return out


def _design_sentence(stats: StudyStats) -> str:
    unit = " points" if stats.points else ""
    margin = stats.margin * (100 if stats.points else 1)
    ran = sorted(set(stats.failures["runs"].to_list()))
    seeds = (f"{ran[0]}" if len(ran) == 1 else f"{ran[0]}–{ran[-1]}") if ran else "0"
    text = (f"Does attention help here? Each arm against the baseline '{stats.baseline}' on "
            f"{metric_label(stats.primary)}, paired by seed, {seeds} seed(s) per arm")
    schedule = stats.schedule
    if schedule.adaptive:
        looks = stats.judgement.look if stats.judgement else 0
        text += (f" (adaptive: {schedule.initial} to {schedule.maximum} seeds, looks at "
                 f"{', '.join(map(str, schedule.looks))}, {looks} reached; every test at "
                 f"α {stats.alpha:g} / {len(schedule.looks)} looks)")
    return text + (f"; equivalence margin ±{margin:.2f}{unit}, "
                   f"α = {stats.alpha:g} with Holm across arms.")


def reproduction_sentences(stats: StudyStats) -> list[str]:
    """Whether the source's numbers fall inside our intervals, and by how much they differ."""
    table = stats.reproduction.filter(pl.col("key").is_in(["test_acc", "val_acc"])
                                      & pl.col("n").gt(0))
    if not table.height:
        return []
    inside = table.filter(pl.col("inside") == True)  # noqa: E712 (polars expression)
    outside = table.filter(pl.col("inside") == False)  # noqa: E712
    parts = []
    for r in outside.iter_rows(named=True):
        parts.append(f"{r['variant']} {r['difference'] * 100:+.2f} points "
                     f"(ours {r['ours']:.4f} vs {r['reported']:.4f})")
    head = (f"Reproduction: the source's {metric_label(REPORTED_TO_OURS[table['key'][0]])} "
            f"falls inside our {stats.interval_label} for {inside.height} of "
            f"{table.height} arm(s)")
    text = head + (f"; outside for {', '.join(parts)}" if parts else "")
    unknown = table.filter(pl.col("inside").is_null())
    if unknown.height:
        text += (f"; {', '.join(unknown['variant'].to_list())} need at least 2 seeds for an "
                 "interval")
    return [text + "."]


def _cost_sentence(stats: StudyStats) -> str:
    if not stats.time_ratios.height:
        return ""
    parts = []
    for r in stats.time_ratios.iter_rows(named=True):
        theirs = f" (source {r['source']:.2f}×)" if r["source"] is not None else ""
        parts.append(f"{r['variant']} {r['ours']:.2f}×{theirs}")
    return ("Training time relative to the baseline on the same hardware, ours (and the "
            "source's): " + ", ".join(parts) + ".")


def format_interval(row: dict[str, Any] | None, fmt: str = ".4f", *,
                    with_n: bool = False) -> str:
    """'mean [low, high]' from an estimate row (n, mean, ci_low, ci_high); — when empty.

    A constant (no interval, or an interval of zero width) is the plain value.
    """
    from analysis.summary import MISSING

    if not row or not row["n"] or row["mean"] is None or not np.isfinite(row["mean"]):
        return MISSING
    text = format(row["mean"], fmt)
    low, high = row["ci_low"], row["ci_high"]
    if low is not None and np.isfinite(low) and high != low:
        text += f" [{format(low, fmt)}, {format(high, fmt)}]"
    return f"{text} (n={row['n']})" if with_n else text
