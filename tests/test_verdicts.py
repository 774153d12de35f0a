"""The verdict rules of analysis.verdicts and the looks of analysis.sequential, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from analysis.sequential import SeedSchedule, judge
from analysis.verdicts import compare_to_baseline

BASE8 = [0.900, 0.905, 0.895, 0.910, 0.898, 0.902, 0.907, 0.893]
NOISE8 = [0.0004, -0.0003, 0.0002, -0.0005, 0.0001, 0.0003, -0.0002, -0.0001]


def _runs(base: list[float | None], **arms: list[float | None]) -> dict:
    out = {"baseline": {i + 1: v for i, v in enumerate(base)}}
    out.update({k: {i + 1: v for i, v in enumerate(vals)} for k, vals in arms.items()})
    return out


def _shift(base: list[float], by: float, noise: list[float] = NOISE8) -> list[float]:
    return [b + by + e for b, e in zip(base, noise, strict=False)]


def test_consistent_gain_is_better_with_the_paired_t_test():
    arm = _shift(BASE8, 0.02, [0.003, -0.004, 0.002, -0.001, 0.004, -0.003, 0.001, -0.002])
    (c,) = compare_to_baseline(_runs(BASE8, se=arm), "baseline")
    d = np.subtract(arm, BASE8)
    assert c.verdict == "better" and c.n_pairs == 8
    assert c.p_value == pytest.approx(st.ttest_rel(arm, BASE8).pvalue)
    assert c.p_adjusted == c.p_value                     # one arm: Holm changes nothing
    assert c.p_sign_flip == pytest.approx(2 / 256)
    assert (c.ci_low, c.ci_high) == tuple(pytest.approx(x) for x in st.t.interval(
        0.95, 7, loc=d.mean(), scale=st.sem(d)))
    assert not c.tests_disagree


def test_consistent_loss_is_worse_and_lower_is_better_flips_it():
    arm = _shift(BASE8, -0.02)
    (c,) = compare_to_baseline(_runs(BASE8, bad=arm), "baseline")
    assert c.verdict == "worse" and c.ci_high < 0
    (c,) = compare_to_baseline(_runs(BASE8, bad=arm), "baseline", higher_is_better=False)
    assert c.verdict == "better"  # a lower loss


def test_equivalent_needs_the_tost_to_reject_both_sides():
    (c,) = compare_to_baseline(_runs(BASE8, eca=_shift(BASE8, 0.0)), "baseline")
    assert c.verdict == "equivalent" and c.p_tost < 0.05
    assert "equivalent within ±0.50 points (TOST p < 0.001, α = 0.05)" in c.sentence()
    # The same arm against a margin smaller than its noise: not equivalent, inconclusive.
    (c,) = compare_to_baseline(_runs(BASE8, eca=_shift(BASE8, 0.0)), "baseline",
                               margin=0.0002)
    assert c.verdict == "inconclusive" and c.p_tost >= 0.05


def test_inconclusive_says_what_the_seeds_could_detect_and_how_many_would_do():
    noisy = [0.01, -0.012, 0.008, -0.006, 0.011]
    (c,) = compare_to_baseline(_runs(BASE8[:5], x=_shift(BASE8[:5], 0.0, noisy)), "baseline")
    assert c.verdict == "inconclusive"
    assert c.detectable is not None and c.detectable > c.margin
    assert c.seeds_for_margin is not None and c.seeds_for_margin > 5
    text = c.sentence()
    assert "inconclusive at α = 0.05: neither a difference nor equivalence within ±0.50" in text
    assert f"5 seeds detect only a difference of {c.detectable * 100:.2f} points" in text
    assert f"about {c.seeds_for_margin} seeds would detect one of 0.50 points" in text


def test_holm_across_arms_changes_a_borderline_verdict():
    # paired t p = 0.016 alone; Holm over 5 arms multiplies the smallest p by 5.
    edge = _shift(BASE8, 0.003, [0.004, -0.003, 0.005, -0.004, 0.002, 0.001, -0.002, 0.003])
    nulls = {f"null{k}": _shift(BASE8, 0.0, np.roll(NOISE8, k) * 20) for k in range(4)}
    raw = {c.variant: c for c in compare_to_baseline(_runs(BASE8, edge=edge, **nulls),
                                                      "baseline", correction="none")}
    adj = {c.variant: c for c in compare_to_baseline(_runs(BASE8, edge=edge, **nulls),
                                                      "baseline")}
    assert raw["edge"].verdict == "better" and raw["edge"].p_value < 0.05
    assert raw["edge"].p_value == pytest.approx(0.01621, abs=1e-4)
    assert adj["edge"].p_adjusted == pytest.approx(5 * raw["edge"].p_value)
    assert adj["edge"].verdict == "inconclusive"


def test_failures_are_outcomes_and_better_never_hides_them():
    # 4 of 10 seeds diverged; +1 point on the 6 that finished.
    base = [0.90 + 0.001 * (i % 3) for i in range(10)]
    arm = [None if i in (1, 4, 6, 9) else b + 0.01 + 0.0005 * (i % 2) for i, b in enumerate(base)]
    (c,) = compare_to_baseline(_runs(base, fragile=arm), "baseline")
    assert c.n_pairs == 6 and (c.failed, c.runs) == (4, 10)
    assert (c.baseline_failed, c.baseline_runs) == (0, 10)
    assert c.p_failures == pytest.approx(st.fisher_exact([[4, 6], [0, 10]]).pvalue)
    assert c.verdict == "better"
    text = c.sentence()
    assert "fragile failed on 4 of 10 seeds, baseline on 0 of 10 (Fisher p = 0.087)" in text
    assert "Note it failed on 4 of 10 seeds against the baseline's 0 of 10" in text


def test_a_baseline_that_lost_a_seed_pairs_only_common_seeds():
    base = [0.90, None, 0.91, 0.905]
    arm = [0.91, 0.92, 0.915, 0.912]
    (c,) = compare_to_baseline(_runs(base, se=arm), "baseline")
    assert c.n_pairs == 3
    assert c.mean_diff == pytest.approx(np.mean([0.01, 0.005, 0.007]))
    assert (c.baseline_failed, c.baseline_runs) == (1, 4)


def test_fewer_than_two_pairs_is_inconclusive_with_no_test():
    (c,) = compare_to_baseline(_runs([0.9, 0.91], x=[0.95, None]), "baseline")
    assert c.n_pairs == 1 and c.verdict == "inconclusive" and math.isnan(c.p_value)
    assert "1 seed finished by both" in c.sentence()


def test_bad_options_are_errors():
    runs = _runs(BASE8, x=BASE8)
    with pytest.raises(KeyError):
        compare_to_baseline(runs, "nope")
    with pytest.raises(ValueError, match="correction"):
        compare_to_baseline(runs, "baseline", correction="bonferroni")
    with pytest.raises(ValueError, match="margin"):
        compare_to_baseline(runs, "baseline", margin=0)
    with pytest.raises(ValueError, match="alpha"):
        compare_to_baseline(runs, "baseline", alpha=1.5)


# --------------------------------------------------------------------------- sequential


def test_schedule_looks_and_validation():
    assert SeedSchedule(3, 12, 2).looks == (3, 5, 7, 9, 11, 12)
    assert SeedSchedule(5, 10, 5).looks == (5, 10)
    assert SeedSchedule.fixed(4).looks == (4,) and not SeedSchedule.fixed(4).adaptive
    assert SeedSchedule(3, 12, 2).alpha_per_look(0.05) == pytest.approx(0.05 / 6)
    assert SeedSchedule.from_meta(SeedSchedule(3, 12, 2).to_meta()) == SeedSchedule(3, 12, 2)
    for bad in ((0, 3, 1), (4, 3, 1), (3, 5, 0)):
        with pytest.raises(ValueError):
            SeedSchedule(*bad)


def _seeded(values: dict[str, list[float | None]]) -> dict:
    return {arm: {i + 1: v for i, v in enumerate(vals)} for arm, vals in values.items()}


def test_judge_stops_decided_arms_and_feeds_the_rest_and_the_baseline():
    rng = np.random.default_rng(3)
    base = list(0.9 + rng.normal(0, 0.003, 3))
    data = _seeded({"none": base,
                    "bad": [b - 0.05 + e for b, e in zip(base, rng.normal(0, 0.001, 3), strict=True)],
                    "same": [b + e for b, e in zip(base, rng.normal(0, 0.002, 3), strict=True)]})
    j = judge(data, "none", SeedSchedule(3, 7, 2))
    verdicts = {c.variant: c.verdict for c in j.comparisons}
    assert verdicts == {"bad": "worse", "same": "inconclusive"}
    assert j.look == 1 and j.more == {"none": 2, "same": 2}
    assert all(c.alpha_look == pytest.approx(0.05 / 3) for c in j.comparisons)


def test_judge_runs_to_the_cap_and_then_asks_for_nothing():
    noisy = [0.01, -0.012, 0.008, -0.006, 0.011, -0.009, 0.004]
    base = [0.9] * 7
    data = _seeded({"none": base, "x": [b + e for b, e in zip(base, noisy, strict=True)]})
    j = judge(data, "none", SeedSchedule(3, 7, 2))
    assert j.look == 3 and j.more == {}
    (c,) = j.comparisons
    assert c.verdict == "inconclusive" and c.n_pairs == 7 and (c.look, c.looks) == (3, 3)


def test_judge_keeps_the_verdict_of_the_first_deciding_look():
    # Worse at look 1 on seeds 1-3; later seeds (run for another arm) do not reopen it.
    base = [0.90, 0.91, 0.905, 0.9, 0.9]
    data = _seeded({"none": base, "bad": [0.85, 0.861, 0.854],
                    "slow": [0.9, 0.92, 0.895, 0.91, 0.89]})
    j = judge(data, "none", SeedSchedule(3, 5, 2))
    bad = next(c for c in j.comparisons if c.variant == "bad")
    assert bad.verdict == "worse" and bad.look == 1 and bad.n_pairs == 3


def test_an_incomplete_look_is_not_acted_on():
    # The first look needs 3 seeds of every arm; 2 are in: provisional, ask for the rest.
    data = _seeded({"none": [0.9, 0.91], "bad": [0.5, 0.51]})
    j = judge(data, "none", SeedSchedule(3, 7, 2))
    assert j.look == 0 and j.more == {"none": 1, "bad": 1}
    (c,) = j.comparisons
    assert c.provisional and not c.decided and c.verdict == "worse"
    assert "Provisional: the seeds of this look are still running" in c.sentence()


def test_a_closed_run_judges_the_seeds_it_has():
    # Finished with an arm short of the look (its last seed crashed before it was recorded):
    # nothing more will come, so the seeds there are the last look and decide.
    data = _seeded({"none": [0.9, 0.91, 0.905], "bad": [0.5, 0.51]})
    j = judge(data, "none", SeedSchedule(3, 7, 2), closed=True)
    (c,) = j.comparisons
    assert not c.provisional and c.verdict == "worse" and j.more == {}
