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
    assert "equivalent within ±0.50 points (TOST p < 0.001, Holm, α = 0.05)" in c.sentence()
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
    data = _seeded({"none": [0.9, 0.91], "bad": [0.5, 0.52]})
    j = judge(data, "none", SeedSchedule(3, 7, 2))
    assert j.look == 0 and j.more == {"none": 1, "bad": 1}
    (c,) = j.comparisons
    assert c.provisional and not c.decided and c.verdict == "worse"
    assert "Provisional: the seeds of this look are still running" in c.sentence()


def test_a_closed_run_judges_the_seeds_it_has():
    # Finished with an arm short of the look (its last seed crashed before it was recorded):
    # nothing more will come, so the seeds there are the last look and decide.
    data = _seeded({"none": [0.9, 0.91, 0.905], "bad": [0.5, 0.52]})
    j = judge(data, "none", SeedSchedule(3, 7, 2), closed=True)
    (c,) = j.comparisons
    assert not c.provisional and c.verdict == "worse" and j.more == {}


# --------------------------------------------------------------------------- exact contracts


def test_every_field_carries_what_was_asked_for():
    from analysis.stats import detectable_effect, seeds_needed

    noisy = [0.01, -0.012, 0.008, -0.006, 0.011]
    runs = _runs(BASE8[:5], a=_shift(BASE8[:5], 0.0, noisy), b=_shift(BASE8[:5], 0.001, noisy))
    a, _ = compare_to_baseline(runs, "baseline", metric="test_acc", confidence=0.9,
                               higher_is_better=False, margin=0.01)
    d = np.asarray(noisy)
    assert (a.metric, a.correction, a.confidence, a.higher_is_better) == (
        "test_acc", "holm", 0.9, False)
    assert (a.look, a.looks, a.margin, a.alpha, a.alpha_look) == (1, 1, 0.01, 0.05, 0.05)
    assert a.sd_diff == pytest.approx(d.std(ddof=1))
    assert (a.ci_low, a.ci_high) == tuple(pytest.approx(x) for x in st.t.interval(
        0.9, 4, loc=d.mean(), scale=st.sem(d)))
    # Power is planned at the worst case of Holm over the 2 arms: alpha / 2.
    assert a.detectable == pytest.approx(detectable_effect(a.sd_diff, 5, alpha=0.025))
    assert a.seeds_for_margin == seeds_needed(a.sd_diff, 0.01, alpha=0.025)
    (alone,) = compare_to_baseline({"baseline": runs["baseline"], "a": runs["a"]}, "baseline",
                                   correction="none", margin=0.01)
    assert alone.detectable == pytest.approx(detectable_effect(a.sd_diff, 5, alpha=0.05))
    assert alone.correction == "none" and alone.p_adjusted == alone.p_value


def test_bad_alpha_bounds_and_baseline_are_named():
    runs = _runs(BASE8, x=BASE8)
    for alpha in (0.0, 1.0):
        with pytest.raises(ValueError, match=f"alpha must be in \\(0, 1\\), got {alpha}"):
            compare_to_baseline(runs, "baseline", alpha=alpha)
    with pytest.raises(KeyError, match="baseline 'nope' not in the arms \\(baseline, x\\)"):
        compare_to_baseline(runs, "nope")


def test_sentences_word_for_word():
    # Checked by hand: differences 0.021, 0.019, 0.0205; sd 0.00104, t(0.975, 2) = 4.303.
    arm = _shift(BASE8[:3], 0.02, [0.001, -0.001, 0.0005])
    (better,) = compare_to_baseline(_runs(BASE8[:3], se=arm), "baseline")
    assert better.sentence(label="test acc") == (
        "se vs baseline on test acc: +2.02 points (95% t-interval +1.76 to +2.28, 3 paired "
        "seeds; paired t p < 0.001; sign-flip check p = 0.25): better at α = 0.05. The "
        "sign-flip check disagrees (with 3 seeds it cannot go below 0.25), so this rests on "
        "the t-test's assumption of roughly normal seed differences.")
    assert better.sentence(points=False).startswith(
        "se vs baseline: +0.02017 (95% t-interval +0.01758 to +0.02275, 3 paired seeds;")
    (same,) = compare_to_baseline(_runs(BASE8, eca=_shift(BASE8, 0.0)), "baseline")
    assert same.sentence() == (
        "eca vs baseline: -0.00 points (95% t-interval -0.03 to +0.02, 8 paired seeds; paired t "
        "p = 0.91; sign-flip check p = 1.00): equivalent within ±0.50 points (TOST p < 0.001, "
        "Holm, α = 0.05).")
    noisy = [0.01, -0.012, 0.008]
    j = judge(_seeded({"none": [0.9] * 3, "x": [0.9 + e for e in noisy]}), "none",
              SeedSchedule(3, 7, 2))
    (c,) = j.comparisons
    assert c.sentence() == (
        "x vs none: +0.20 points (95% t-interval -2.82 to +3.22, 3 paired seeds; paired t "
        "p = 0.80; sign-flip check p = 1.00): inconclusive at α = 0.0167 (α 0.05 over 3 "
        "looks): neither a difference nor equivalence within ±0.50 points; 3 seeds detect "
        "only a difference of 6.89 points with 80% power; about 65 seeds would detect one of "
        "0.50 points.")
    (lonely,) = compare_to_baseline(_runs([0.9, None], x=[0.95, 0.96]), "baseline")
    assert lonely.sentence() == (
        "x vs baseline: 1 seed finished by both; x failed on 0 of 2 seeds, baseline on 1 of 2 "
        "(Fisher p = 1.00), so nothing can be said yet: inconclusive.")


def test_judge_freezes_a_decided_arm_and_judges_the_others_after_it():
    # bad is decided at look 1 (3 seeds); its seeds 4-5 (say, run before a resume) would
    # reverse it, but the verdict and its data stay those of look 1. slow, listed after it,
    # is judged at look 2.
    base = [0.90, 0.91, 0.905, 0.90, 0.90]
    data = _seeded({"none": base, "bad": [0.85, 0.861, 0.854, 0.99, 0.99],
                    "slow": [0.9, 0.92, 0.895, 0.91, 0.89]})
    j = judge(data, "none", SeedSchedule(3, 5, 2), metric="test_acc", margin=0.02,
              confidence=0.9, correction="bh", higher_is_better=True)
    bad, slow = j.comparisons
    assert (bad.verdict, bad.look, bad.n_pairs, bad.provisional) == ("worse", 1, 3, False)
    assert (slow.look, slow.n_pairs, slow.provisional) == (2, 5, False)
    assert (slow.metric, slow.margin, slow.confidence, slow.correction) == (
        "test_acc", 0.02, 0.9, "bh")
    assert j.look == 2 and j.more == {}


def test_a_look_in_progress_does_not_replace_the_last_complete_one():
    # Look 1 complete at 3 seeds; look 2 (5 seeds) has only seed 4 so far.
    noisy = [0.01, -0.012, 0.008, 0.02]
    data = _seeded({"none": [0.9] * 4, "x": [0.9 + e for e in noisy]})
    j = judge(data, "none", SeedSchedule(3, 7, 2))
    (c,) = j.comparisons
    assert (c.look, c.n_pairs, c.provisional) == (1, 3, False)
    assert j.look == 1 and j.more == {"none": 1, "x": 1}


def test_all_arms_decided_at_the_first_look_ends_the_run():
    base = [0.90, 0.91, 0.905]
    data = _seeded({"none": base, "bad": [0.85, 0.861, 0.854]})
    j = judge(data, "none", SeedSchedule(3, 9, 2))
    assert j.look == 1 and j.more == {} and j.comparisons[0].verdict == "worse"


def test_schedule_edges_and_record():
    assert SeedSchedule.fixed(1).looks == (1,)
    assert SeedSchedule(1, 2, 1).looks == (1, 2)
    assert SeedSchedule(3, 12, 2).to_meta() == {
        "initial": 3, "maximum": 12, "batch": 2, "looks": [3, 5, 7, 9, 11, 12],
        "design": "Bonferroni over the planned looks"}
    with pytest.raises(ValueError, match="initial seeds must be at least 1, got 0"):
        SeedSchedule(0, 3)
    with pytest.raises(ValueError, match=r"max seeds \(2\) must be at least the initial seeds \(3\)"):
        SeedSchedule(3, 2)
    with pytest.raises(ValueError, match="seed batch must be at least 1, got 0"):
        SeedSchedule(3, 5, 0)


def test_judge_passes_direction_and_alpha_through():
    base = [0.90, 0.91, 0.905]
    data = _seeded({"none": base, "low": [0.85, 0.861, 0.854]})
    (c,) = judge(data, "none", SeedSchedule(3, 5, 2), higher_is_better=False,
                 alpha=0.1).comparisons
    assert c.verdict == "better" and c.alpha == 0.1 and c.alpha_look == pytest.approx(0.05)
    assert "better at α = 0.05 (α 0.1 over 2 looks)" in c.sentence()


def test_sentence_without_correction_and_with_a_check_that_can_reach_alpha():
    # One wild seed: the t-test cannot tell, the sign-flip check (all 8 positive) can, and
    # at 8 seeds it is not its floor that makes them disagree.
    d = [0.001] * 7 + [0.05]
    (c,) = compare_to_baseline(_runs([0.9] * 8, x=[0.9 + e for e in d]), "baseline",
                               correction="none")
    assert c.p_sign_flip == pytest.approx(2 / 256) and c.p_value > 0.05
    text = c.sentence()
    assert "paired t p = 0.28; sign-flip check p = 0.0078)" in text
    assert ("The sign-flip check disagrees: it rejects where the t-test does not, a sign of "
            "seed differences far from normal") in text
    assert "rests on the t-test" not in text


def test_an_effect_out_of_reach_says_so():
    wild = [0.2, -0.25, 0.15]
    (c,) = compare_to_baseline(_runs([0.5] * 3, x=[0.5 + e for e in wild]), "baseline")
    assert c.seeds_for_margin is None and c.detectable is not None
    assert "detecting one of 0.50 points would take more than 1000 seeds." in c.sentence()


def test_equivalence_is_corrected_across_arms_like_a_difference():
    # Three arms near the margin, each equivalent on its own at 0.05: Holm over the three
    # TOSTs is what keeps "some arm falsely equivalent" at alpha for the run.
    from analysis.stats import holm, tost

    # Raw TOST p 0.022, 0.025, 0.028 (paired t p 0.07-0.10): Holm makes them 0.066.
    wobble = np.array([0.004, -0.003, 0.002, -0.004, 0.003, 0.001, -0.002, -0.001]) * 1.1
    arms = {f"a{k}": _shift(BASE8, 0.0022 + 0.0001 * k, np.roll(wobble, k)) for k in range(3)}
    raw = {c.variant: c for c in compare_to_baseline(_runs(BASE8, **arms), "baseline",
                                                      correction="none")}
    adj = {c.variant: c for c in compare_to_baseline(_runs(BASE8, **arms), "baseline")}
    tosts = [tost(np.subtract(arms[a], BASE8), 0.005) for a in sorted(arms)]
    assert [adj[a].p_tost for a in sorted(arms)] == pytest.approx(list(holm(tosts)))
    assert all(raw[a].verdict == "equivalent" for a in arms)
    assert all(adj[a].verdict == "inconclusive" for a in arms)
