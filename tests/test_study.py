"""analysis.study on small runs built in memory: every number checked by hand or against scipy.

The statistics themselves are tested in test_stats.py and test_verdicts.py; here the question
is whether the study feeds them the right rows (ended, ok, paired, one per arm and seed) and
says what they found, word for word.
"""

from __future__ import annotations

import math
import statistics
import sys
from typing import Any

import polars as pl
import pytest
from scipy import stats as st

from analysis.load import EPOCH_DTYPES, TRIAL_DTYPES, Run
from analysis.sequential import SeedSchedule
from analysis.study import (
    DuplicateSeedError,
    answer,
    compared_trials,
    format_interval,
    is_closed,
    metric_label,
    reproduction_sentences,
    study_stats,
)

# Test accuracy of the baseline on seeds 0-3, and each arm's paired difference from it.
PLAIN = [0.90, 0.92, 0.91, 0.93]
SE_GAIN = [0.030, 0.034, 0.026, 0.030]     # mean 0.030, sd 0.0032660: clearly better
CBAM_GAIN = [0.004, -0.002, 0.006, 0.000]  # mean 0.002, sd 0.0036515: cannot tell
TIME = {"plain": [10.0, 10.0, 11.0, 11.0], "se": [12.0, 13.0, 12.0, 13.0],
        "cbam": [15.0, 15.0, 16.0, 16.0]}
PARAMS = {"plain": 100, "se": 120, "cbam": 130}
# Throughput per epoch: one NaN epoch (a timer that failed) must not poison the mean.
SPEED = {"plain": [100.0, 300.0], "se": [90.0, float("nan")], "cbam": [80.0, 60.0]}


def _trial(variant: str, seed: int, status: str = "ok", test: float | None = None,
           val: float | None = None, seconds: float = 1.0, params: int = 1,
           trial_id: str | None = None) -> dict[str, Any]:
    return {"trial_id": trial_id or f"{variant}-{seed}", "variant": variant, "seed": seed,
            "stage": "single", "status": status, "params": params, "best_val_acc": val,
            "final_val_acc": None if val is None else val - 0.001, "test_acc": test,
            "train_time_s": seconds}


def _frame(rows: list[dict[str, Any]], dtypes: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame([{name: row.get(name) for name in dtypes} for row in rows],
                        schema=dtypes)


def _run(rows: list[dict[str, Any]], meta: dict[str, Any] | None = None,
         epochs: list[dict[str, Any]] | None = None,
         tuning: list[dict[str, Any]] | None = None) -> Run:
    return Run(meta={"baseline_variant": "plain", **(meta or {})},
               trials=_frame(rows, TRIAL_DTYPES), epochs=_frame(epochs or [], EPOCH_DTYPES),
               tuning=_frame(tuning or [], TRIAL_DTYPES))


def _three_arms(*, running: bool = True, **meta: Any) -> Run:
    """plain, se and cbam on seeds 0-3; a fifth se seed is still running."""
    rows, epochs = [], []
    for variant, gain in (("plain", [0.0] * 4), ("se", SE_GAIN), ("cbam", CBAM_GAIN)):
        for seed, (base, g) in enumerate(zip(PLAIN, gain, strict=True)):
            # validation accuracy differs from test accuracy so that a mix-up shows
            rows.append(_trial(variant, seed, test=base + g, val=base - 0.1 + 2 * g,
                               seconds=TIME[variant][seed], params=PARAMS[variant]))
            epochs += [{"trial_id": f"{variant}-{seed}", "epoch": e + 1, "samples_per_s": v}
                       for e, v in enumerate(SPEED[variant])]
    if running:
        rows.append(_trial("se", 4, status="running", test=0.5, val=0.5, seconds=99.0))
    reported = {"plain": {"test_acc": 0.915, "train_time_s": 100.0},
                "se": {"train_time_s": 150.0, "test_acc": 0.90, "note": "from table 2",
                       "flag": True, "params": 120},
                "cbam": {"test_acc": "n/a"}}
    return _run(rows, {"reported": reported, "state": "finished", **meta}, epochs)


def _t_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    mean, sd = statistics.mean(values), statistics.stdev(values)
    half = st.t.ppf(0.5 + confidence / 2, len(values) - 1) * sd / math.sqrt(len(values))
    return mean - half, mean + half


def _plus(gain: list[float]) -> list[float]:
    return [b + g for b, g in zip(PLAIN, gain, strict=True)]


COMPARISON_SCHEMA = pl.Schema({
    "variant": pl.String, "n_pairs": pl.Int64, "mean_diff": pl.Float64, "ci_low": pl.Float64,
    "ci_high": pl.Float64, "p_value": pl.Float64, "p_adjusted": pl.Float64,
    "p_sign_flip": pl.Float64, "p_tost": pl.Float64, "verdict": pl.String, "look": pl.Int64,
    "detectable": pl.Float64, "seeds_for_margin": pl.Int64, "runs": pl.Int64,
    "failed": pl.Int64, "p_failures": pl.Float64, "aso_epsilon": pl.Float64})
ESTIMATE_SCHEMA = pl.Schema({
    "variant": pl.String, "metric": pl.String, "n": pl.Int64, "mean": pl.Float64,
    "std": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64})


# --------------------------------------------------------------------------- rows compared


def test_estimates_are_over_ok_trials_with_t_intervals():
    stats = study_stats(_three_arms())
    assert stats.order == ["plain", "se", "cbam"] and stats.baseline == "plain"
    assert stats.primary == "test_acc" and stats.seeds == 4
    assert stats.schedule == SeedSchedule.fixed(4)
    se = stats.estimate_of("se", "test_acc")
    values = _plus(SE_GAIN)                         # the running seed is not among them
    assert se["n"] == 4 and se["mean"] == pytest.approx(statistics.mean(values))
    assert se["std"] == pytest.approx(statistics.stdev(values))
    assert (se["ci_low"], se["ci_high"]) == pytest.approx(_t_interval(values))
    val = stats.estimate_of("cbam", "best_val_acc")
    assert val["mean"] == pytest.approx(statistics.mean(PLAIN) - 0.1 + 2 * 0.002)
    final = stats.estimate_of("cbam", "final_val_acc")
    assert final["mean"] == pytest.approx(val["mean"] - 0.001)
    time = stats.estimate_of("plain", "train_time_s")
    assert (time["n"], time["mean"]) == (4, pytest.approx(10.5))
    assert (time["ci_low"], time["ci_high"]) == pytest.approx(_t_interval(TIME["plain"]))
    # A configuration's size has no seed noise: the value, no interval.
    params = stats.estimate_of("se", "params")
    assert (params["mean"], params["std"]) == (120.0, 0.0)
    assert math.isnan(params["ci_low"]) and math.isnan(params["ci_high"])
    # Throughput: the mean over every epoch of every seed, NaN epochs left out.
    assert stats.estimate_of("plain", "samples_per_s")["mean"] == pytest.approx(200.0)
    assert stats.estimate_of("se", "samples_per_s")["mean"] == pytest.approx(90.0)
    assert stats.estimates.height == 3 * 6
    assert stats.estimate_of("se", "nothing") is None and stats.estimate_of("x", "params") is None


def test_confidence_and_interval_kind_reach_every_interval():
    stats = study_stats(_three_arms(), confidence=0.9)
    se = stats.estimate_of("se", "test_acc")
    assert (se["ci_low"], se["ci_high"]) == pytest.approx(_t_interval(_plus(SE_GAIN), 0.9))
    (se_vs, _) = stats.comparisons
    assert (se_vs.ci_low, se_vs.ci_high) == pytest.approx(_t_interval(SE_GAIN, 0.9))
    assert stats.interval_label == "90% t-interval" and stats.confidence == 0.9
    bca = study_stats(_three_arms(), interval="bca")
    assert bca.interval == "bca" and bca.interval_label == "95% bootstrap interval (BCa)"
    row = bca.estimate_of("se", "test_acc")
    assert (row["ci_low"], row["ci_high"]) != pytest.approx(_t_interval(_plus(SE_GAIN)))
    assert row["ci_low"] < statistics.mean(_plus(SE_GAIN)) < row["ci_high"]


def test_failed_seeds_are_counted_and_left_out_of_the_means():
    rows = [_trial("plain", s, test=v, val=v) for s, v in enumerate(PLAIN)]
    rows += [_trial("se", 0, test=0.95, val=0.95), _trial("se", 1, "diverged", val=0.1),
             _trial("se", 2, "error"), _trial("se", 3, "early_stopped", test=0.96, val=0.96),
             _trial("se", 4, "running", test=0.2, val=0.2)]
    stats = study_stats(_run(rows))
    assert stats.failures.rows() == [("plain", 4, 0), ("se", 4, 2)]
    assert stats.seeds == 4
    se = stats.estimate_of("se", "test_acc")
    assert (se["n"], se["mean"]) == (2, pytest.approx(0.955))
    (c,) = stats.comparisons
    assert (c.n_pairs, c.failed, c.runs) == (2, 2, 4)
    assert c.mean_diff == pytest.approx(statistics.mean([0.95 - 0.90, 0.96 - 0.93]))


def test_the_metric_is_validation_accuracy_when_the_baseline_has_no_test_accuracy():
    rows = [_trial("plain", s, test=None, val=v) for s, v in enumerate(PLAIN)]
    rows += [_trial("se", s, test=None, val=v + 0.01 * s) for s, v in enumerate(PLAIN)]
    stats = study_stats(_run(rows))
    assert stats.primary == "best_val_acc"
    (c,) = stats.comparisons
    assert (c.metric, c.mean_diff) == ("best_val_acc", pytest.approx(0.015))
    assert metric_label(stats.primary) == "best val acc"


def test_the_metric_follows_the_baseline_not_the_other_arms():
    # Only the baseline decides: an arm with test accuracies does not make them the metric
    # while the baseline has none.
    rows = [_trial("plain", s, test=None, val=v) for s, v in enumerate(PLAIN)]
    rows += [_trial("se", s, test=0.5, val=v + 0.01) for s, v in enumerate(PLAIN)]
    assert study_stats(_run(rows)).primary == "best_val_acc"
    # Without a baseline, any arm's test accuracy counts.
    assert study_stats(_run(rows, {"baseline_variant": None})).primary == "test_acc"


def test_one_result_per_arm_and_seed():
    rows = [_trial("plain", 0, test=0.9), _trial("se", 1, test=0.9),
            _trial("se", 1, test=0.91, trial_id="se-1-again"),
            _trial("se", 2, "running"), _trial("se", 2, test=0.9, trial_id="se-2-again")]
    with pytest.raises(DuplicateSeedError) as info:
        compared_trials(_run(rows))
    assert str(info.value) == (
        "trials.parquet has 2 ended trials for arm 'se' seed 1 (se-1, se-1-again); a run holds "
        "one result per arm and seed, so remove the stray rows (or report the runs separately)")
    # A running trial beside a finished one of the same seed is not a second result.
    ended = compared_trials(_run(rows[:2] + rows[3:]))
    assert sorted(ended["trial_id"].to_list()) == ["plain-0", "se-1", "se-2-again"]


def test_the_first_duplicate_in_arm_and_seed_order_is_named():
    # zz seed 1 comes first by seed, aa seed 3 by arm: arm decides
    rows = [_trial(v, s, test=0.9, trial_id=f"{v}{s}{k}") for v, s in (("zz", 1), ("aa", 3))
            for k in "yx"]
    with pytest.raises(DuplicateSeedError, match=r"for arm 'aa' seed 3 \(aa3x, aa3y\)"):
        compared_trials(_run(rows))
    # Within an arm, the lowest seed (rows written from seed 60 down to 1; group_by returns
    # groups in no set order, so an arm-only sort would name seed 1 one time in 60).
    rows = [_trial("aa", s, test=0.9, trial_id=f"aa{s}{k}") for s in range(60, 0, -1)
            for k in "yx"]
    with pytest.raises(DuplicateSeedError, match=r"for arm 'aa' seed 1 \(aa1x, aa1y\)"):
        compared_trials(_run(rows))


@pytest.mark.parametrize(("meta", "running", "closed"), [
    ({"state": "finished"}, False, True),
    ({"state": "ok"}, False, True),
    ({"state": "finished"}, True, False),
    ({"state": "running"}, False, False),
    ({"state": "interrupted", "ended_at": "2025-01-01"}, False, False),
    ({"ended_at": "2025-01-01", "seed_schedule": {}}, False, True),
    ({"seed_schedule": {"initial": 3}}, False, False),
    ({}, False, True),                        # a run from before the record: it ended
    ({"ended_at": ""}, False, True),
])
def test_is_closed(meta, running, closed):
    rows = [_trial("plain", 0, test=0.9), _trial("se", 0, "running" if running else "ok")]
    assert is_closed(Run(meta=meta, trials=_frame(rows, TRIAL_DTYPES),
                         epochs=_frame([], EPOCH_DTYPES))) is closed


# --------------------------------------------------------------------------- comparisons


def test_comparisons_are_paired_t_tests_holm_corrected():
    stats = study_stats(_three_arms())
    se, cbam = stats.comparisons
    assert (se.variant, cbam.variant) == ("se", "cbam")
    p_se = st.ttest_rel(_plus(SE_GAIN), PLAIN).pvalue
    p_cbam = st.ttest_rel(_plus(CBAM_GAIN), PLAIN).pvalue
    assert p_se < p_cbam
    assert (se.p_value, cbam.p_value) == pytest.approx((p_se, p_cbam))
    # Holm over two tests: the smaller p doubled, the larger one kept (it exceeds the first).
    assert (se.p_adjusted, cbam.p_adjusted) == pytest.approx((2 * p_se, p_cbam))
    assert (se.verdict, cbam.verdict) == ("better", "inconclusive")
    assert (se.correction, se.alpha, se.margin, se.confidence) == ("holm", 0.05, 0.005, 0.95)
    assert (se.metric, cbam.metric) == ("test_acc", "test_acc")
    assert stats.comparison_of("cbam") is cbam and stats.comparison_of("plain") is None
    assert stats.judgement is not None and stats.judgement.comparisons == stats.comparisons
    bh = study_stats(_three_arms(), correction="none").comparisons[0]
    assert bh.p_adjusted == pytest.approx(p_se) and bh.correction == "none"


def test_comparison_frame_in_points_for_accuracies():
    stats = study_stats(_three_arms())
    frame = stats.comparison_frame()
    se = frame.row(0, named=True)
    c = stats.comparisons[0]
    assert se["variant"] == "se" and se["n_pairs"] == 4
    assert se["mean_diff"] == pytest.approx(3.0)                        # 0.030 as points
    low, high = _t_interval(SE_GAIN)
    assert (se["ci_low"], se["ci_high"]) == pytest.approx((100 * low, 100 * high))
    assert se["detectable"] == pytest.approx(100 * c.detectable)
    assert (se["p_value"], se["p_adjusted"], se["p_sign_flip"], se["p_tost"]) == (
        c.p_value, c.p_adjusted, c.p_sign_flip, c.p_tost)                # p's are not scaled
    assert (se["verdict"], se["look"], se["runs"], se["failed"]) == ("better", 1, 4, 0)
    assert se["seeds_for_margin"] == c.seeds_for_margin and se["p_failures"] == c.p_failures
    assert se["aso_epsilon"] is None
    raw = stats.comparison_frame(points=False).row(0, named=True)
    assert raw["mean_diff"] == pytest.approx(0.030) and raw["ci_low"] == pytest.approx(low)
    assert raw["detectable"] == pytest.approx(c.detectable)
    assert frame.columns == [
        "variant", "n_pairs", "mean_diff", "ci_low", "ci_high", "p_value", "p_adjusted",
        "p_sign_flip", "p_tost", "verdict", "look", "detectable", "seeds_for_margin", "runs",
        "failed", "p_failures", "aso_epsilon"]
    empty = study_stats(_run([_trial("plain", 0, test=0.9)])).comparison_frame()
    assert empty.height == 0 and empty.schema == frame.schema == COMPARISON_SCHEMA


def test_an_undetectable_effect_has_no_detectable_size_in_the_frame():
    rows = [_trial("plain", 0, test=0.9), _trial("se", 0, test=0.95)]
    frame = study_stats(_run(rows)).comparison_frame()
    assert frame["detectable"].to_list() == [None] and frame["n_pairs"].to_list() == [1]
    assert frame["seeds_for_margin"].to_list() == [None]
    assert frame.schema == COMPARISON_SCHEMA     # typed even where every value is missing


def test_alpha_and_margin_come_from_the_call_then_the_run_then_the_defaults():
    default = study_stats(_three_arms())
    assert (default.alpha, default.margin) == (0.05, 0.005)
    own = study_stats(_three_arms(alpha=0.1, margin=0.02))
    assert (own.alpha, own.margin) == (0.1, 0.02)
    assert (own.comparisons[1].alpha, own.comparisons[1].margin) == (0.1, 0.02)
    # TOST at ±2 points: cbam's +0.2 with sd 0.37 is equivalent, at ±0.5 it was not
    assert own.comparisons[1].verdict == "equivalent"
    asked = study_stats(_three_arms(alpha=0.1, margin=0.02), alpha=0.01, margin=0.001)
    assert (asked.alpha, asked.margin) == (0.01, 0.001)
    assert asked.comparisons[0].alpha == 0.01 and asked.comparisons[0].margin == 0.001
    zero = study_stats(_three_arms(alpha=None, margin=0))
    assert (zero.alpha, zero.margin) == (0.05, 0.005)


def test_an_adaptive_run_is_judged_look_by_look():
    schedule = SeedSchedule(3, 7, 2)
    stats = study_stats(_three_arms(seed_schedule=schedule.to_meta(), state="finished"))
    assert stats.schedule == schedule
    assert stats.judgement.look == 1          # 4 seeds: look 1 (3) reached, look 2 (5) not
    assert all(c.alpha_look == pytest.approx(0.05 / 3) for c in stats.comparisons)
    assert stats.judgement.more == {"plain": 1, "cbam": 1}   # se was decided at look 1
    # Nothing running and the run finished: the seeds it has are its last look.
    closed = study_stats(_three_arms(seed_schedule=schedule.to_meta(), running=False))
    assert closed.judgement.more == {} and closed.judgement.look == 2


def test_no_baseline_or_one_arm_compares_nothing():
    stats = study_stats(_three_arms(baseline_variant="resnet"))
    assert stats.baseline is None and stats.comparisons == [] and stats.judgement is None
    assert stats.notes == ["No baseline variant in this run, so no variant is compared with one."]
    assert stats.time_ratios.height == 0
    run = _three_arms(baseline_variant=None)
    assert answer(study_stats(run), run) == stats.notes
    alone = _run([_trial("plain", s, test=v) for s, v in enumerate(PLAIN)])
    lone = study_stats(alone)
    assert lone.order == ["plain"] and lone.comparisons == [] and lone.notes == []
    assert lone.judgement is None and lone.time_ratios.rows() == []
    assert answer(lone, alone) == ["Only one variant: nothing to compare."]


def test_aso_only_on_request_and_over_finished_seeds():
    rows = [_trial("plain", s, test=v) for s, v in enumerate(PLAIN)]
    rows += [_trial("se", s, test=v + 0.1) for s, v in enumerate(PLAIN)]
    rows += [_trial("low", s, test=v - 0.1) for s, v in enumerate(PLAIN)]
    rows += [_trial("low", 4, "diverged"), _trial("plain", 5, "error")]
    assert study_stats(_run(rows)).aso == {}
    stats = study_stats(_run(rows), with_aso=True)
    # se's every quantile is above plain's: A dominates B, epsilon 0 with no bootstrap
    # spread; low is dominated, 1.
    assert stats.aso == {"se": 0.0, "low": 1.0}
    frame = stats.comparison_frame()
    assert dict(zip(frame["variant"], frame["aso_epsilon"], strict=True)) == stats.aso


def test_aso_is_an_upper_bound_at_the_asked_confidence():
    # Overlapping arms: epsilon plus z(confidence) times its bootstrap spread, so a lower
    # confidence gives a lower bound (z 0.84 at 80% against 1.64 at 95%).
    rows = [_trial("plain", s, test=v) for s, v in enumerate(PLAIN)]
    rows += [_trial("se", s, test=v) for s, v in enumerate([0.915, 0.905, 0.935, 0.92])]
    high = study_stats(_run(rows), with_aso=True).aso["se"]
    low = study_stats(_run(rows), with_aso=True, confidence=0.8).aso["se"]
    assert 0.0 < low < high < 1.0


# --------------------------------------------------------------------------- source's numbers


def test_reproduction_table_puts_the_source_beside_our_interval():
    stats = study_stats(_three_arms())
    rows = {(r["variant"], r["key"]): r for r in stats.reproduction.iter_rows(named=True)}
    # train_time_s is not compared in seconds, "note" has no column, "flag" is a bool and
    # cbam's "n/a" no number.
    assert list(rows) == [("plain", "test_acc"), ("se", "test_acc"), ("se", "params")]
    plain = rows["plain", "test_acc"]
    low, high = _t_interval(PLAIN)
    assert (plain["reported"], plain["n"], plain["ours"]) == (0.915, 4, pytest.approx(0.915))
    assert (plain["ci_low"], plain["ci_high"]) == pytest.approx((low, high))
    assert plain["inside"] is True and plain["difference"] == pytest.approx(0.0)
    se = rows["se", "test_acc"]
    assert se["inside"] is False and se["difference"] == pytest.approx(0.945 - 0.90)
    params = rows["se", "params"]
    assert (params["ours"], params["reported"], params["difference"]) == (120.0, 120.0, 0.0)
    assert params["inside"] is None and math.isnan(params["ci_low"])
    assert math.isnan(params["ci_high"])


def test_reproduction_needs_two_seeds_for_an_interval_and_one_for_a_number():
    rows = [_trial("plain", 0, test=0.9), _trial("se", 0, test=0.95), _trial("se", 1, test=0.97),
            _trial("cbam", 0, "diverged")]
    reported = {"plain": {"test_acc": 0.9}, "se": {"test_acc": 0.96}, "cbam": {"test_acc": 0.9}}
    stats = study_stats(_run(rows, {"reported": reported}))
    table = {r["variant"]: r for r in stats.reproduction.iter_rows(named=True)}
    assert table["plain"]["n"] == 1 and table["plain"]["inside"] is None
    assert table["plain"]["difference"] == pytest.approx(0.0)
    assert table["se"]["inside"] is True      # 0.96 inside 0.96 +- 12.7 * 0.01
    assert table["cbam"]["n"] == 0 and math.isnan(table["cbam"]["difference"])
    assert math.isnan(table["cbam"]["ours"]) and table["cbam"]["inside"] is None
    assert reproduction_sentences(stats) == [
        "Reproduction: the source's test acc falls inside our 95% t-interval for 1 of 2 "
        "arm(s); plain need at least 2 seeds for an interval."]


def test_reproduction_table_at_another_confidence():
    from analysis.study import reproduction_table, trial_metrics

    run = _three_arms()
    table = reproduction_table(run, trial_metrics(run), ["plain"], confidence=0.8)
    ((low, high),) = table.select("ci_low", "ci_high").rows()
    assert (low, high) == pytest.approx(_t_interval(PLAIN, 0.8))


def test_the_source_at_the_edge_of_our_interval_is_inside():
    rows = [_trial("plain", s, test=v) for s, v in enumerate([0.90, 0.92])]
    low, high = _t_interval([0.90, 0.92])
    for edge in (low, high):
        stats = study_stats(_run(rows, {"reported": {"plain": {"test_acc": edge}}}))
        assert stats.reproduction["inside"].to_list() == [True]
    outside = study_stats(_run(rows, {"reported": {"plain": {"test_acc": high + 1e-6}}}))
    assert outside.reproduction["inside"].to_list() == [False]


def test_time_ratios_to_each_sides_own_baseline():
    stats = study_stats(_three_arms())
    assert stats.time_ratios.rows() == [("se", pytest.approx(12.5 / 10.5), pytest.approx(1.5)),
                                        ("cbam", pytest.approx(15.5 / 10.5), None)]


@pytest.mark.parametrize(("plain", "reported", "expected"), [
    # the baseline's seconds unknown or zero: no ratio of ours at all
    ([0.0, 0.0], {}, []),
    ([float("nan"), float("nan")], {}, []),
    # the source's baseline time missing, zero, negative or a bool: ours only
    ([10.0, 10.0], {"se": {"train_time_s": 20.0}}, [("se", 1.5, None)]),
    ([10.0, 10.0], {"plain": {"train_time_s": 0}, "se": {"train_time_s": 20.0}},
     [("se", 1.5, None)]),
    ([10.0, 10.0], {"plain": {"train_time_s": -5.0}, "se": {"train_time_s": 20.0}},
     [("se", 1.5, None)]),
    ([10.0, 10.0], {"plain": {"train_time_s": True}, "se": {"train_time_s": 20.0}},
     [("se", 1.5, None)]),
    ([10.0, 10.0], {"plain": {"train_time_s": 8}, "se": {"train_time_s": 20}},
     [("se", 1.5, 2.5)]),
    ([10.0, 10.0], {"plain": {"train_time_s": 8}, "se": {"train_time_s": "20"}},
     [("se", 1.5, None)]),
    # times under a second are times too, ours and the source's
    ([0.5, 0.5], {"plain": {"train_time_s": 0.25}, "se": {"train_time_s": 0.5}},
     [("se", 30.0, 2.0)]),
])
def test_time_ratios_need_positive_times(plain, reported, expected):
    rows = [_trial("plain", s, test=0.9, seconds=t) for s, t in enumerate(plain)]
    rows += [_trial("se", s, test=0.9, seconds=15.0) for s in range(2)]
    rows += [_trial("slow", s, test=0.9, seconds=0.0) for s in range(2)]   # not measured
    ratios = study_stats(_run(rows, {"reported": reported})).time_ratios.rows()
    assert ratios == [(v, pytest.approx(o), s if s is None else pytest.approx(s))
                      for v, o, s in expected]


# --------------------------------------------------------------------------- the answer


def test_answer_word_for_word():
    run = _three_arms()
    stats = study_stats(run)
    out = answer(stats, run)
    assert out[0] == (
        "Does attention help here? Each arm against the baseline 'plain' on test acc, paired "
        "by seed, 4 seed(s) per arm; equivalence margin ±0.50 points, α = 0.05 with Holm "
        "across arms.")
    assert out[1:3] == [c.sentence(points=True, label="test acc") for c in stats.comparisons]
    assert out[1].startswith("se vs plain on test acc: +3.00 points (95% t-interval")
    assert out[3] == (
        "Reproduction: the source's test acc falls inside our 95% t-interval for 1 of 2 arm(s); "
        "outside for se +4.50 points (ours 0.9450 vs 0.9000).")
    assert out[4] == (
        "Training time relative to the baseline on the same hardware, ours (and the source's): "
        "se 1.19× (source 1.50×), cbam 1.48×.")
    assert len(out) == 5


def test_answer_with_uneven_seeds_and_an_adaptive_schedule():
    schedule = SeedSchedule(3, 7, 2)
    rows = [_trial("plain", s, test=v, seconds=0.0) for s, v in enumerate(PLAIN)]
    rows += [_trial("se", s, test=v + 0.03 + 0.001 * s, seconds=0.0)
             for s, v in enumerate(PLAIN[:3])]
    run = _run(rows, {"seed_schedule": schedule.to_meta(), "alpha": 0.1, "margin": 0.01})
    stats = study_stats(run)
    out = answer(stats, run)
    assert out[0] == (
        "Does attention help here? Each arm against the baseline 'plain' on test acc, paired "
        "by seed, 3–4 seed(s) per arm (adaptive: 3 to 7 seeds, looks at 3, 5, 7, 1 reached; "
        "every test at α 0.1 / 3 looks); equivalence margin ±1.00 points, α = 0.1 with Holm "
        "across arms.")
    assert len(out) == 2      # no source numbers, no training times


def test_answer_with_three_seed_counts_names_the_fewest_and_the_most():
    rows = [_trial("plain", s, test=v) for s, v in enumerate(PLAIN)]
    rows += [_trial("se", s, test=v + 0.01) for s, v in enumerate(PLAIN[:2])]
    rows += [_trial("cbam", s, test=v + 0.01) for s, v in enumerate(PLAIN[:3])]
    run = _run(rows)
    assert ", 2–4 seed(s) per arm;" in answer(study_stats(run), run)[0]


def test_answer_on_a_metric_that_is_not_an_accuracy_is_in_its_own_units():
    from dataclasses import replace

    run = _three_arms(margin=0.02)
    stats = replace(study_stats(run), primary="best_val_loss")
    assert not stats.points
    out = answer(stats, run)
    assert out[0].endswith(
        "on best_val_loss, paired by seed, 4 seed(s) per arm; equivalence margin ±0.02, "
        "α = 0.05 with Holm across arms.")
    assert out[1].startswith("se vs plain on best_val_loss: +0.03 (95% t-interval")
    assert stats.comparison_frame()["mean_diff"][0] == pytest.approx(0.03)


def test_answer_on_validation_accuracy_in_points_with_the_margin_in_points():
    rows = [_trial("plain", s, val=v) for s, v in enumerate(PLAIN)]
    rows += [_trial("se", s, val=v + 0.01) for s, v in enumerate(PLAIN)]
    run = _run(rows, {"reported": {"se": {"val_acc": 0.925, "val_loss": 0.3}}})
    stats = study_stats(run)
    # the source's val_acc is our best_val_acc; a val_loss we did not record is no number
    (val, loss) = stats.reproduction.iter_rows(named=True)
    assert (val["key"], val["n"], val["ours"]) == ("val_acc", 4, pytest.approx(0.925))
    assert (loss["key"], loss["n"], loss["inside"]) == ("val_loss", 0, None)
    out = answer(stats, run)
    assert "on best val acc, paired by seed, 4 seed(s) per arm" in out[0]
    assert "margin ±0.50 points" in out[0]
    assert out[1].startswith("se vs plain on best val acc: +1.00 points")
    assert out[2] == ("Reproduction: the source's best val acc falls inside our 95% t-interval "
                      "for 1 of 1 arm(s).")


def test_answer_before_any_trial_and_for_a_tuned_run_without_replicates():
    empty = _run([])
    assert answer(study_stats(empty), empty) == ["This run has no trials yet."]
    nothing = study_stats(empty)
    assert nothing.seeds == 0 and nothing.order == [] and nothing.failures.rows() == []
    assert nothing.estimates.schema == ESTIMATE_SCHEMA
    assert nothing.time_ratios.schema == pl.Schema(
        {"variant": pl.String, "ours": pl.Float64, "source": pl.Float64})
    tuning = [_trial("plain", 0, test=0.9), _trial("plain", 1, "diverged"),
              _trial("se", 0, "diverged"), _trial("se", 1, "error"),
              _trial("eca", 0, "early_stopped", test=0.8)]
    tuned = _run([], tuning=tuning)
    assert answer(study_stats(tuned), tuned) == [
        "No arm has replicate trials yet, so nothing is compared.",
        "se: every tuning candidate diverged or failed, so nothing was replicated; see the "
        "Tuning section and widen or move its domains."]
    arms = ["se", "zz", "cbam", "aa", "eca", "mm", "bb"]   # named in the order they were tuned
    failed = _run([], tuning=[_trial(a, 0, "diverged") for a in arms])
    assert [s.split(":")[0] for s in answer(study_stats(failed), failed)[1:]] == arms


def test_reproduction_sentence_lists_every_arm_outside_and_every_arm_short_of_seeds():
    rows = [_trial("plain", s, test=v) for s, v in enumerate(PLAIN)]
    rows += [_trial("se", s, test=v + 0.03) for s, v in enumerate(PLAIN)]
    rows += [_trial("eca", 0, test=0.9), _trial("aa", 0, test=0.91)]
    reported = {v: {"test_acc": 0.8} for v in ("plain", "se", "eca", "aa")}
    stats = study_stats(_run(rows, {"reported": reported}))
    assert reproduction_sentences(stats) == [
        "Reproduction: the source's test acc falls inside our 95% t-interval for 0 of 4 "
        "arm(s); outside for plain +11.50 points (ours 0.9150 vs 0.8000), se +14.50 points "
        "(ours 0.9450 vs 0.8000); eca, aa need at least 2 seeds for an interval."]


def test_reproduction_sentence_only_for_accuracies_we_measured():
    stats = study_stats(_run([_trial("plain", s, test=v) for s, v in enumerate(PLAIN)],
                             {"reported": {"plain": {"params": 1}}}))
    assert stats.reproduction.height == 1 and reproduction_sentences(stats) == []


# --------------------------------------------------------------------------- formatting


@pytest.mark.parametrize(("row", "kwargs", "text"), [
    ({"n": 3, "mean": 0.91234, "ci_low": 0.9, "ci_high": 0.92}, {}, "0.9123 [0.9000, 0.9200]"),
    ({"n": 3, "mean": 0.91234, "ci_low": 0.9, "ci_high": 0.92}, {"with_n": True},
     "0.9123 [0.9000, 0.9200] (n=3)"),
    ({"n": 2, "mean": 1234.0, "ci_low": 1000.0, "ci_high": 1500.0}, {"fmt": ",.0f"},
     "1,234 [1,000, 1,500]"),
    ({"n": 1, "mean": 0.5, "ci_low": math.nan, "ci_high": math.nan}, {"with_n": True},
     "0.5000 (n=1)"),
    ({"n": 2, "mean": 0.5, "ci_low": None, "ci_high": None}, {}, "0.5000"),
    ({"n": 3, "mean": 0.5, "ci_low": 0.5, "ci_high": 0.5}, {}, "0.5000"),   # a constant
    ({"n": 0, "mean": math.nan, "ci_low": math.nan, "ci_high": math.nan}, {}, "—"),
    ({"n": 2, "mean": None, "ci_low": None, "ci_high": None}, {}, "—"),
    ({"n": 2, "mean": math.inf, "ci_low": 0.0, "ci_high": 1.0}, {}, "—"),
    (None, {}, "—"),
    ({}, {}, "—"),
])
def test_format_interval(row, kwargs, text):
    assert format_interval(row, **kwargs) == text


def test_metric_labels():
    assert [metric_label(c) for c in ("best_val_acc", "final_val_acc", "test_acc",
                                       "train_time_s", "params", "samples_per_s")] == [
        "best val acc", "final val acc", "test acc", "train time (s)", "parameters",
        "throughput (samples/s)"]
    assert metric_label("val_loss") == "val_loss"


# --------------------------------------------------------------------------- tables of the report


def _table_cells(html: str, heading: str) -> tuple[list[str], list[list[str]]]:
    import re

    table = html.split(heading)[1].split("</table>")[0]
    headers = re.findall(r"<th>(.*?)</th>", table)
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", row)
            for row in re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>")[1])]
    return headers, rows


def test_the_verdict_tables_show_holm_adjusted_p_under_holm(monkeypatch):
    from analysis.compare import run_markdown
    from analysis.report import _comparisons_html

    monkeypatch.setitem(sys.modules, "vl_convert", None)
    run = _three_arms()
    stats = study_stats(run)
    p_se = st.ttest_rel(_plus(SE_GAIN), PLAIN).pvalue         # 3.5e-4
    p_cbam = st.ttest_rel(_plus(CBAM_GAIN), PLAIN).pvalue     # 0.35
    holm_se = 2 * p_se                                        # by hand: the smaller p x 2
    assert f"{p_se:.3g}" != f"{holm_se:.3g}"

    headers, rows = _table_cells(_comparisons_html(stats), "Against the baseline</h2>")
    column = {h: i for i, h in enumerate(headers)}
    se = next(r for r in rows if r[0] == "se")
    cbam = next(r for r in rows if r[0] == "cbam")
    assert se[column["p (t)"]] == f"{p_se:.3g}"
    assert se[column["p (t, Holm)"]] == f"{holm_se:.3g}"
    assert cbam[column["p (t, Holm)"]] == f"{p_cbam:.3g}"
    assert se[column["Δ test acc (points)"]] == "+3.00"

    markdown = run_markdown(run, stats, "t").split("## Against plain (test acc, points)")[1]
    lines = [line.split(" | ") for line in markdown.strip().splitlines()[:4]]
    holm = lines[0].index("p (t, Holm)")
    assert lines[2][0] == "| se" and lines[2][holm] == f"{holm_se:.3g}"
    assert lines[3][0] == "| cbam" and lines[3][holm] == f"{p_cbam:.3g}"
