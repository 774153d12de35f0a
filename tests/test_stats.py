"""Known answers for analysis.stats: textbook values, hand counts and independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from analysis.stats import (
    Estimate,
    aso_epsilon,
    benjamini_hochberg,
    bootstrap_ci,
    detectable_effect,
    estimate,
    failure_rate_test,
    holm,
    min_attainable_p,
    paired_t_power,
    paired_t_test,
    seeds_needed,
    sign_flip_test,
    t_interval,
    tost,
    wilcoxon_test,
)

# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_ci_covers_true_mean_about_95_percent():
    rng = np.random.default_rng(123)
    hits = 0
    for rep in range(200):
        low, high = bootstrap_ci(rng.normal(5.0, 2.0, 30), resamples=2000, seed=rep)
        hits += low <= 5.0 <= high
    assert 0.90 <= hits / 200 <= 0.99


def test_bootstrap_ci_degenerate_cases():
    assert all(math.isnan(x) for x in bootstrap_ci([0.9]))
    assert all(math.isnan(x) for x in bootstrap_ci([]))
    assert bootstrap_ci([0.7, 0.7, 0.7]) == (0.7, 0.7)
    assert bootstrap_ci([0.7, 0.7], statistic=np.std) == (0.0, 0.0)
    # NaN / None are dropped before counting: one real value left.
    assert all(math.isnan(x) for x in bootstrap_ci([0.9, None, float("nan")]))


def test_bootstrap_ci_deterministic_nested_by_level_and_per_statistic():
    x = [0.81, 0.84, 0.80, 0.86, 0.83, 0.79]
    a, b = bootstrap_ci(x, seed=7), bootstrap_ci(x, seed=7)
    assert a == b
    assert a[0] < np.mean(x) < a[1]
    narrow, wide = bootstrap_ci(x, confidence=0.8, seed=7), bootstrap_ci(x, confidence=0.99, seed=7)
    assert wide[0] < narrow[0] < narrow[1] < wide[1]
    low, high = bootstrap_ci(x, statistic=np.median, resamples=2000)
    assert low <= np.median(x) <= high and (low, high) != bootstrap_ci(x, resamples=2000)


def test_bootstrap_ci_of_a_large_sample_is_the_normal_interval():
    """At n = 400 the bootstrap distribution of a normal mean is the t one: mean +- 1.97 se."""
    y = np.random.default_rng(5).normal(10.0, 2.0, 400)
    se = np.std(y, ddof=1) / math.sqrt(400)
    low, high = bootstrap_ci(y)
    assert (high - low) / (2 * st.t.ppf(0.975, 399) * se) == pytest.approx(1.0, abs=0.05)
    assert (low + high) / 2 == pytest.approx(np.mean(y), abs=0.1 * se)


def test_estimate_drops_missing_values_and_uses_the_t_interval():
    e = estimate([0.90, None, 0.92, float("nan"), 0.94])
    assert isinstance(e, Estimate)
    assert e.n == 3
    assert e.mean == pytest.approx(0.92)
    assert e.std == pytest.approx(0.02)
    low, high = st.t.interval(0.95, 2, loc=0.92, scale=0.02 / math.sqrt(3))
    assert (e.ci_low, e.ci_high) == (pytest.approx(low), pytest.approx(high))
    bca = estimate([0.90, 0.92, 0.94, 0.91], interval="bca")
    assert (bca.ci_low, bca.ci_high) == bootstrap_ci([0.90, 0.92, 0.94, 0.91])
    single = estimate([0.5])
    assert single.n == 1 and single.mean == 0.5
    assert math.isnan(single.std) and math.isnan(single.ci_low) and math.isnan(single.ci_high)
    assert estimate([]).n == 0 and math.isnan(estimate([]).mean)
    with pytest.raises(ValueError, match="interval"):
        estimate([1.0, 2.0], interval="percentile")


# --------------------------------------------------------------------------- t-intervals


def test_t_interval_matches_scipy_and_statsmodels():
    x = [0.912, 0.905, 0.921, 0.899, 0.915]
    ours = t_interval(x)
    mean, sem = np.mean(x), st.sem(x)
    np.testing.assert_allclose(ours, st.t.interval(0.95, 4, loc=mean, scale=sem))
    from statsmodels.stats.weightstats import DescrStatsW

    np.testing.assert_allclose(t_interval(x, confidence=0.9),
                               DescrStatsW(np.array(x)).tconfint_mean(alpha=0.1))
    assert all(math.isnan(v) for v in t_interval([0.9]))
    assert t_interval([0.9, 0.9, 0.9]) == (pytest.approx(0.9), pytest.approx(0.9))


@pytest.mark.parametrize("n", [2, 3, 5, 10])
def test_t_interval_holds_its_coverage_at_small_n(n):
    """95% nominal: 3000 normal samples per n cover the true mean 95% +- 1.2 (3 SE)."""
    rng = np.random.default_rng(2026 + n)
    samples = rng.normal(0.9, 0.004, size=(3000, n))
    hits = sum(low <= 0.9 <= high for low, high in map(t_interval, samples))
    assert abs(hits / 3000 - 0.95) <= 3 * math.sqrt(0.95 * 0.05 / 3000)


def test_bootstrap_undercovers_at_three_seeds_which_is_why_t_is_the_default():
    rng = np.random.default_rng(7)
    samples = rng.normal(0.0, 1.0, size=(300, 3))
    hits = sum(low <= 0.0 <= high
               for low, high in (bootstrap_ci(x, resamples=999, seed=i)
                                 for i, x in enumerate(samples)))
    assert hits / 300 < 0.85  # measured 72% over 400 repetitions in the issue


# --------------------------------------------------------------------------- t tests


def test_paired_t_test_matches_scipy():
    a = [0.912, 0.905, 0.921, 0.899, 0.915, 0.908]
    b = [0.905, 0.907, 0.910, 0.896, 0.909, 0.900]
    d = np.subtract(a, b)
    assert paired_t_test(d) == pytest.approx(st.ttest_rel(a, b).pvalue)
    assert paired_t_test([*d, None, float("nan")]) == pytest.approx(st.ttest_1samp(d, 0).pvalue)
    assert math.isnan(paired_t_test([0.01]))
    assert paired_t_test([0.0, 0.0, 0.0]) == 1.0
    # Equal shifts have no spread: a discrete accuracy gives them by chance, so the exact
    # sign-flip p stands in for the infinite t (not p = 0).
    assert paired_t_test([0.002, 0.002]) == 0.5
    assert paired_t_test([0.01] * 6) == pytest.approx(2 / 2**6)


def test_paired_t_test_type_one_error_at_three_seeds():
    rng = np.random.default_rng(11)
    p = np.array([paired_t_test(x) for x in rng.normal(0, 1, size=(4000, 3))])
    assert abs((p < 0.05).mean() - 0.05) <= 3 * math.sqrt(0.05 * 0.95 / 4000)


def test_tost_matches_statsmodels():
    from statsmodels.stats.weightstats import ttost_paired

    a = np.array([0.912, 0.905, 0.921, 0.899, 0.915, 0.908])
    b = np.array([0.910, 0.906, 0.917, 0.899, 0.913, 0.905])
    for margin in (0.002, 0.005, 0.01):
        expected = ttost_paired(a, b, -margin, margin)[0]
        assert tost(a - b, margin) == pytest.approx(expected)
    assert math.isnan(tost([0.001], 0.005))
    assert tost([0.001, 0.001], 0.005) == 0.0 and tost([0.01, 0.01], 0.005) == 1.0
    with pytest.raises(ValueError):
        tost([0.1, 0.2], 0.0)


@pytest.mark.parametrize("n", [3, 5])
def test_tost_false_equivalence_at_the_margin_stays_below_alpha(n):
    """True difference exactly at the margin: "equivalent" is a false claim, rate <= 5%."""
    rng = np.random.default_rng(n)
    d = rng.normal(0.005, 0.004, size=(4000, n))
    rate = np.mean([tost(x, 0.005) < 0.05 for x in d])
    assert rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 4000)


def test_power_and_detectable_effect_match_statsmodels():
    from statsmodels.stats.power import TTestPower

    reference = TTestPower()
    for n, effect, sd, alpha in ((5, 0.01, 0.008, 0.05), (10, 0.004, 0.005, 0.0125),
                                 (3, 0.02, 0.004, 0.05)):
        assert paired_t_power(n, effect, sd, alpha) == pytest.approx(
            reference.power(effect_size=effect / sd, nobs=n, alpha=alpha), abs=1e-6)
    d = reference.solve_power(nobs=6, alpha=0.05, power=0.8)
    assert detectable_effect(0.004, 6) == pytest.approx(d * 0.004, rel=1e-4)
    assert detectable_effect(0.004, 1) is None and detectable_effect(0.0, 5) == 0.0
    # a large ncp, where scipy's noncentral t returns nan, is near-certain power
    assert paired_t_power(5, 0.01, 0.0003, 0.0125) == pytest.approx(1.0)


def test_seeds_needed_paired_t_table_values():
    assert seeds_needed(1.0, 1.0) == 10  # d = 1, alpha 0.05 two-sided, power 0.8: n = 10
    assert seeds_needed(0.01, 0.01) == 10  # only the ratio matters
    assert seeds_needed(1.0, 0.5) == 34  # d = 0.5: n = 34 (G*Power table)
    assert seeds_needed(1.0, -1.0) == 10  # sign of the effect is irrelevant
    assert seeds_needed(0.0, 0.01) == 2
    assert seeds_needed(0.0, 0.0) is None and seeds_needed(float("nan"), 0.01) is None
    assert seeds_needed(1.0, 0.01, max_seeds=100) is None


def test_fisher_failure_rate_matches_scipy():
    # Fisher's tea-tasting table: 3 of 4 right each way, two-sided p = 34/70.
    assert failure_rate_test(3, 4, 1, 4) == pytest.approx(34 / 70)
    assert failure_rate_test(4, 10, 0, 10) == pytest.approx(
        st.fisher_exact([[4, 6], [0, 10]]).pvalue)
    assert math.isnan(failure_rate_test(0, 0, 1, 3))


# --------------------------------------------------------------------------- paired tests


def _exact_sign_flip_p_integer(d: list[int]) -> float:
    """Exact two-sided sign-flip p for integer differences by counting subset sums (DP)."""
    mags = [abs(x) for x in d]
    total = sum(mags)
    counts = np.zeros(total + 1, dtype=object)
    counts[0] = 1
    for m in mags:  # counts[s] = number of subsets of magnitudes with sum s
        counts[m:] = counts[m:] + counts[: total + 1 - m].copy()
    observed = abs(sum(d))
    # flipping the subset S to negative gives sum total - 2 * s
    extreme = sum(c for s, c in enumerate(counts) if abs(total - 2 * s) >= observed)
    return extreme / 2 ** len(d)


def test_sign_flip_exact_known_answers():
    # only all-positive and all-negative flips are as extreme as [1, 2, 3]: 2 / 8
    assert sign_flip_test([1.0, 2.0, 3.0]) == 0.25
    assert sign_flip_test([1.0, -1.0]) == 1.0
    # [1, 2, 3, 4, -5]: |sum| = 5; flipping a subset of magnitudes with sum s gives 15 - 2s,
    # as extreme iff s <= 5 or s >= 10. Subsets of {1..5} with s <= 5: {}, 1, 2, 3, 12, 4, 13,
    # 5, 14, 23 = 10, and by symmetry 10 with s >= 10: p = 20 / 32.
    assert sign_flip_test([1.0, 2.0, 3.0, 4.0, -5.0]) == pytest.approx(20 / 32)
    assert sign_flip_test([1, 2, 3, 4, -5]) == _exact_sign_flip_p_integer([1, 2, 3, 4, -5])


def test_sign_flip_edge_cases_and_float_ties():
    assert math.isnan(sign_flip_test([]))
    assert sign_flip_test([0.0, 0.0, 0.0]) == 1.0
    assert sign_flip_test([None, 1.0, 2.0, 3.0, float("nan")]) == 0.25
    # 0.1 + 0.2 != 0.3 in floats: the flip (+0.1, +0.2, -0.3) ties with 0 despite rounding
    assert sign_flip_test([0.1, 0.2, -0.3]) == 1.0
    assert sign_flip_test([0.3, -0.1, -0.2]) == 1.0


def test_sign_flip_monte_carlo_matches_exact_theory():
    d = [3, -1, 4, 1, -5, 9, 2, 6, -5, 3, 5, 8, -9, 7, 9, 3, 2, -3, 8, 4]  # n = 20 > 16
    exact = _exact_sign_flip_p_integer(d)
    assert 0.01 < exact < 0.5
    p = sign_flip_test([float(x) for x in d], resamples=100_000, seed=1)
    assert p == pytest.approx(exact, abs=0.005)
    # a large effect: no random flip is as extreme, so p is the +1-corrected floor
    big = sign_flip_test(np.random.default_rng(0).normal(2.0, 0.5, 20), resamples=10_000)
    assert big == pytest.approx(1 / 10_001)


def test_wilcoxon_exact_known_answers():
    # Hollander & Wolfe's depression scores (R's ?wilcox.test): V = 40 of 45, so the
    # negative ranks sum to 5; subsets of 1..9 with sum <= 5: {}, 1, 2, 3, 4, 5, 12, 13, 14,
    # 23 = 10 of 2**9, one-sided p = 10/512 = 0.01953 (R's value), two-sided 20/512.
    x = [1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30]
    y = [0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29]
    assert wilcoxon_test(np.subtract(x, y)) == pytest.approx(20 / 512)
    # Ranks of |d|: 0.1 -> 1 and 0.2 -> 2 negative, so W- = 3; subsets of 1..7 with sum <= 3
    # are {}, 1, 2, 3, 12: p = 2 * 5 / 2**7.
    assert wilcoxon_test([0.5, -0.2, 1.1, 0.7, 0.9, -0.1, 0.4]) == pytest.approx(10 / 128)
    assert wilcoxon_test([1.0, 2.0, 3.0]) == pytest.approx(0.25)  # exact: 2 / 2**3
    # Ties: |d| ranks (2, 2, 2, 5, 5, 5), W- = 2; of the 64 sign patterns, W- <= 2 for the
    # all-positive one and the three with one 1 negative: p = 2 * 4 / 64.
    assert wilcoxon_test([1.0, 1.0, -1.0, 2.0, 2.0, 2.0]) == pytest.approx(8 / 64)
    # Zeros are dropped (Wilcoxon's convention), not ranked: [1, 2, 3, -4] has W- = 4, and
    # subsets of 1..4 with sum <= 4 are {}, 1, 2, 3, 4, 12, 13: p = 2 * 7 / 16 (ranking the
    # zero, as Pratt does, gives 0.75).
    assert wilcoxon_test([0.0, 1.0, 2.0, 3.0, -4.0]) == pytest.approx(14 / 16)
    assert wilcoxon_test([None, 1.0, float("nan"), 2.0, 3.0]) == pytest.approx(0.25)
    # All differences zero: nothing to rank, p = 1 (scipy raises for one such pair and
    # returns nan for 60).
    assert wilcoxon_test([0.0, 0.0]) == 1.0
    assert wilcoxon_test([0.0]) == 1.0 and wilcoxon_test([0.0] * 60) == 1.0
    assert math.isnan(wilcoxon_test([]))


def test_wilcoxon_normal_approximation_above_fifty_pairs():
    # n = 60, every third of 1..60 negative: W- = 3 + 6 + ... + 60 = 630, and under the null
    # W has mean n(n+1)/4 = 915 and variance n(n+1)(2n+1)/24 = 18452.5.
    d = np.arange(1.0, 61.0) * np.where(np.arange(1, 61) % 3 == 0, -1, 1)
    z = (630 - 915) / math.sqrt(18452.5)
    assert wilcoxon_test(d) == pytest.approx(2 * st.norm.cdf(z), rel=1e-6)


def test_min_attainable_p():
    assert min_attainable_p(3, "sign_flip") == 0.25
    assert min_attainable_p(3, "wilcoxon") == 0.25
    assert min_attainable_p(6, "sign_flip") == pytest.approx(0.03125)
    assert min_attainable_p(1, "sign_flip") == 1.0
    assert min_attainable_p(0, "sign_flip") == 1.0
    # attained: all differences of one sign
    for n in (2, 4, 7):
        assert sign_flip_test(np.arange(1.0, n + 1)) == pytest.approx(min_attainable_p(n, "sign_flip"))
    with pytest.raises(ValueError):
        min_attainable_p(3, "t")


# --------------------------------------------------------------------------- corrections


def test_holm_textbook():
    adj = holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adj, [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])  # capped at 1
    out = holm([0.01, np.nan, 0.02])  # NaN kept, not counted: m = 2
    assert math.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2]], [0.02, 0.02])


def test_benjamini_hochberg_textbook():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x 4/1, 4/2, 4/3, 4/4 = 0.02, 0.02, 0.04, 0.04
    np.testing.assert_allclose(benjamini_hochberg([0.01, 0.04, 0.03, 0.005]),
                               [0.02, 0.04, 0.04, 0.02])
    # Benjamini & Hochberg (1995), the 15 p-values of their example
    p = [0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344, 0.0459, 0.3240,
         0.4262, 0.5719, 0.6528, 0.7590, 1.0000]
    adj = benjamini_hochberg(p)
    np.testing.assert_allclose(adj, st.false_discovery_control(p, method="bh"))
    assert (adj <= 0.05).sum() == 4  # BH rejects the four smallest at q = 0.05
    out = benjamini_hochberg([np.nan, 0.01])
    assert math.isnan(out[0]) and out[1] == pytest.approx(0.01)


# --------------------------------------------------------------------------- ASO


def test_aso_clear_dominance_both_ways():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.9, 0.01, 10), rng.normal(0.8, 0.01, 10)
    assert aso_epsilon(a, b) == pytest.approx(0.0, abs=0.05)
    assert aso_epsilon(b, a) == pytest.approx(1.0, abs=0.05)


def test_aso_same_distribution_is_not_dominance():
    # Found: identical samples -> 1.0 (eps 0.5 plus bootstrap spread); two samples of one
    # distribution average about 0.7, single draws can dip lower (see the docstring).
    x = [0.81, 0.84, 0.80, 0.86, 0.83]
    assert aso_epsilon(x, x) >= 0.5
    rng = np.random.default_rng(1)
    eps = [aso_epsilon(rng.normal(0, 1, 10), rng.normal(0, 1, 10), resamples=300, seed=s)
           for s in range(10)]
    assert np.mean(eps) >= 0.5
    assert all(0.0 <= e <= 1.0 for e in eps)


def test_aso_edge_cases():
    assert math.isnan(aso_epsilon([], [1.0, 2.0]))
    assert aso_epsilon([0.9, None], [0.8, float("nan")]) == 0.0  # single scores, A above B




# --------------------------------------------------------------------------- small contracts


def test_interval_labels_name_the_method_and_level():
    from analysis.stats import interval_label

    assert interval_label("t") == "95% t-interval"
    assert interval_label("bca", 0.9) == "90% bootstrap interval (BCa)"


def test_estimate_passes_its_level_and_seed_on():
    x = [0.91, 0.93, 0.90, 0.95]
    e = estimate(x, confidence=0.8)
    assert (e.ci_low, e.ci_high) == t_interval(x, confidence=0.8)
    b = estimate(x, interval="bca", confidence=0.8, seed=3)
    assert (b.ci_low, b.ci_high) == bootstrap_ci(x, confidence=0.8, seed=3)
    assert estimate([1.0, 2.0]).std == pytest.approx(math.sqrt(0.5))  # n = 2 has a spread


def test_tiny_differences_are_not_mistaken_for_no_spread():
    d = [2e-9, 1e-9, 3e-9, 2.5e-9]
    assert paired_t_test(d) == pytest.approx(st.ttest_1samp(d, 0).pvalue)
    assert t_interval(d)[0] < t_interval(d)[1]


def test_power_is_a_float_for_one_n_and_an_array_for_many():
    assert isinstance(paired_t_power(5, 0.01, 0.01, 0.05), float)
    assert paired_t_power(np.array([3, 5]), 0.01, 0.01, 0.05).shape == (2,)


def test_detectable_effect_at_two_seeds_and_seeds_needed_at_its_bounds():
    from statsmodels.stats.power import TTestPower

    d2 = TTestPower().solve_power(nobs=2, alpha=0.05, power=0.8)
    assert detectable_effect(0.004, 2) == pytest.approx(d2 * 0.004, rel=1e-4)
    assert seeds_needed(1.0, 100.0) == 2            # a huge effect: the fewest pairs a test has
    assert seeds_needed(1.0, 1.0, max_seeds=10) == 10   # exactly at the cap still counts
    assert seeds_needed(1.0, 1.0, max_seeds=9) is None


def test_fisher_with_one_run_each_and_holm_caps_at_one():
    assert failure_rate_test(1, 1, 0, 1) == pytest.approx(1.0)
    np.testing.assert_allclose(holm([0.6, 0.7]), [1.0, 1.0])


def test_adjust_dispatches_by_name():
    from analysis.stats import adjust

    p = [0.01, 0.04, 0.03]
    np.testing.assert_allclose(adjust(p, "bh"), benjamini_hochberg(p))
    np.testing.assert_allclose(adjust(p, "holm"), holm(p))
    np.testing.assert_allclose(adjust(p, "none"), p)
    with pytest.raises(ValueError, match="correction must be one of"):
        adjust(p, "bonferroni")


def test_tost_error_names_the_margin():
    with pytest.raises(ValueError, match=r"margin must be positive, got -0\.1"):
        tost([0.1, 0.2], -0.1)


def test_power_survives_scipys_nan_in_one_tail():
    # scipy's nct.cdf returns nan for this lower tail (about 1e-16); the power is the upper
    # tail's 0.7746, not the normal approximation of both tails (0.997, as it once was).
    assert paired_t_power(2, 0.0437, 0.004, 0.05) == pytest.approx(
        st.nct.sf(st.t.ppf(0.975, 1), 1, 0.0437 / 0.004 * math.sqrt(2)), abs=1e-9)


def test_sign_flip_is_exact_up_to_sixteen_pairs_and_seeded_beyond():
    assert sign_flip_test(np.arange(1.0, 17.0)) == 2 / 2**16  # exact: no Monte Carlo floor
    d = [3, -1, 4, 1, -5, 9, 2, 6, -5, 3, 5, 8, -9, 7, 9, 3, 2, -3, 8, 4]
    exact = _exact_sign_flip_p_integer(d)
    # several chunks of random flips (100,000 per chunk at n = 20) add up
    assert sign_flip_test(d, resamples=250_000, seed=3) == pytest.approx(exact, abs=0.003)
    assert sign_flip_test(d, resamples=2000) == sign_flip_test(d, resamples=2000)


# --------------------------------------------------------------------------- edges found by mutation


def test_float32_metrics_are_computed_in_float64():
    # A tensor's .numpy() is float32; its mean in float32 is 3.6e-8 off the float64 one.
    x32 = np.float32([0.912, 0.905, 0.921, 0.899, 0.915])
    x64 = x32.astype(np.float64)
    e = estimate(x32)
    assert e.mean == pytest.approx(math.fsum(x64) / 5, abs=1e-15)
    assert e.std == pytest.approx(st.tstd(x64), rel=1e-12)


def test_no_numbers_warn_nothing():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert estimate([]).n == 0 and math.isnan(estimate([0.9]).std)
        assert math.isnan(estimate([None]).mean)


def test_estimate_passes_its_seed_to_the_bootstrap():
    x = [0.81, 0.84, 0.80, 0.86, 0.83, 0.79, 0.85, 0.82, 0.88, 0.78, 0.87, 0.805]
    intervals = {seed: estimate(x, interval="bca", seed=seed) for seed in (0, 1, 2)}
    assert len({(e.ci_low, e.ci_high) for e in intervals.values()}) == 3
    for seed, e in intervals.items():
        assert (e.ci_low, e.ci_high) == bootstrap_ci(x, seed=seed)


def test_bootstrap_falls_back_to_the_percentile_interval_where_bca_is_undefined():
    # The max of [0, 1, 1] has the same value on every jackknife sample, so BCa's
    # acceleration is 0/0. Percentile, by hand: the bootstrap max is 0 only when all three
    # draws are the 0 (1/27 = 3.7% > 2.5%), so the 95% interval is (0, 1); for [0, 1, 1, 1]
    # that chance is 1/256 = 0.4% < 2.5%, so both ends are 1.
    assert bootstrap_ci([0.0, 1.0, 1.0], statistic=np.max) == (0.0, 1.0)
    assert bootstrap_ci([0.0, 1.0, 1.0, 1.0], statistic=np.max) == (1.0, 1.0)


def test_paired_t_test_does_not_depend_on_the_units():
    d = np.array([1.0, 2.0, 3.0])
    expected = st.ttest_1samp(d, 0).pvalue
    for scale in (1e-13, 1.0, 1e13):   # spread below 1e-12 in absolute terms is still spread
        assert paired_t_test(d * scale) == pytest.approx(expected)


def test_float_noise_is_not_a_shift():
    # (0.1 + 0.2) - 0.3 = 5.6e-17: eight such "gains" are rounding, not eight wins (the
    # sign-flip p for them would be 2 / 2**8).
    noise = (0.1 + 0.2) - 0.3
    assert noise != 0 and paired_t_test([noise] * 8) == 1.0


def test_tost_at_exactly_the_margin_is_not_equivalent():
    # The nulls are mean <= -margin and mean >= +margin: a difference of exactly the margin
    # belongs to them.
    assert tost([0.005, 0.005], 0.005) == 1.0 and tost([-0.005, -0.005], 0.005) == 1.0
    assert tost([0.0049, 0.0049], 0.005) == 0.0


def test_detectable_effect_in_any_units():
    from statsmodels.stats.power import TTestPower

    d = TTestPower().solve_power(nobs=6, alpha=0.05, power=0.8)
    for sd in (10.0, 250.0):            # seconds of training time, not accuracy
        assert detectable_effect(sd, 6) == pytest.approx(d * sd, rel=1e-4)


def test_seeds_needed_stops_at_a_thousand_by_default():
    from statsmodels.stats.power import TTestPower

    # d = 0.08865 needs 1000.65 pairs, i.e. 1001.
    assert math.ceil(TTestPower().solve_power(effect_size=0.08865, alpha=0.05,
                                              power=0.8)) == 1001
    assert seeds_needed(1.0, 0.08865, max_seeds=2000) == 1001
    assert seeds_needed(1.0, 0.08865) is None
    assert seeds_needed(1.0, math.inf) is None and seeds_needed(1.0, math.nan) is None


def test_fisher_is_nan_when_either_arm_has_no_runs():
    assert math.isnan(failure_rate_test(1, 3, 0, 0))
    assert math.isnan(failure_rate_test(0, 0, 0, 0))


def test_sign_flip_equal_differences_and_units():
    assert sign_flip_test([1.0, 1.0, 1.0]) == 0.25        # all one sign: 2 / 2**3
    assert sign_flip_test([2.0] * 6) == pytest.approx(2 / 2**6)
    # The tie tolerance is relative: tiny differences are not all ties.
    assert sign_flip_test([1e-6, 2e-6, 3e-6]) == 0.25
    assert sign_flip_test([1e-6, 2e-6, -3e-6]) == 1.0


def test_sign_flip_monte_carlo_edges():
    # Mean zero: every random flip is as extreme as the data, so p = (R + 1) / (R + 1).
    assert sign_flip_test([1.0, -1.0] * 10, resamples=1000) == 1.0
    # The default is 100,000 random flips: no flip reaches a huge effect, p = 1 / 100,001.
    assert sign_flip_test(np.arange(1.0, 21.0)) == pytest.approx(1 / 100_001)


def test_wilcoxon_equal_differences_are_ranked_not_called_zero():
    # Three tied ranks, all positive: the permutation null has 2 of 8 as extreme.
    assert wilcoxon_test([1.0, 1.0, 1.0]) == pytest.approx(0.25)


def test_min_attainable_p_names_the_tests():
    with pytest.raises(ValueError, match="test must be sign_flip or wilcoxon, got 't'"):
        min_attainable_p(3, "t")


def test_aso_epsilon_by_hand_at_confidence_one_half():
    # At confidence 0.5 the bound adds z = 0 bootstrap spreads: the violation ratio itself.
    # a = (0, 3) against b = (1, 1): A's quantile is 0 up to t = 1/2 (below B by 1, squared
    # 1) and 3 above (above by 2, squared 4): eps = 500 * 1 / (500 * 1 + 500 * 4) = 0.2.
    assert aso_epsilon([0.0, 3.0], [1.0, 1.0], confidence=0.5) == pytest.approx(0.2)
    # The same on an accuracy scale, where the squared distances sum to far less than 1.
    assert aso_epsilon([0.0, 0.003], [0.001, 0.001], confidence=0.5) == pytest.approx(0.2)
    # n = 3: the quantile function steps at t = 1/3 and 2/3; 0.5 until 2/3 (667 of the 1000
    # midpoints), 0.9 above; every squared gap is 0.04: eps = 667 / 1000.
    assert aso_epsilon([0.5, 0.5, 0.9], [0.7, 0.7, 0.7], confidence=0.5) == pytest.approx(0.667)
    # Identical distributions: 0.5 by convention (W2 = 0), with no spread to add.
    assert aso_epsilon([1.0, 1.0], [1.0, 1.0]) == 0.5
    x = [0.81, 0.84, 0.80, 0.86, 0.83]
    assert aso_epsilon(x, x, confidence=0.5) == 0.5
    # A bound below 0 (confidence < 0.5, z < 0) is clipped to 0.
    assert aso_epsilon([0.0, 3.0], [1.0, 1.0], confidence=0.05) == 0.0


def test_aso_bootstrap_spread_by_enumeration():
    # Resampling a = (0, 3) gives (0, 0) with probability 1/4 (eps 1), a mixed pair with 1/2
    # (eps 0.2) and (3, 3) with 1/4 (eps 0): sd sqrt(0.27 - 0.35**2) = 0.384, and the bound
    # is 0.2 + 1.645 * 0.384 = 0.832 (1000 resamples estimate the sd to about 0.012).
    sd = math.sqrt(0.27 - 0.35**2)
    assert aso_epsilon([0.0, 3.0], [1.0, 1.0]) == pytest.approx(
        0.2 + st.norm.ppf(0.95) * sd, abs=0.05)
    # B resampled the same way: eps 0.8 for the data, 0 / 0.8 / 1 for (0,0) / mixed / (3,3).
    assert aso_epsilon([1.0, 1.0], [0.0, 3.0], confidence=0.6) == pytest.approx(
        0.8 + st.norm.ppf(0.6) * sd, abs=0.01)


def test_aso_is_seeded_and_reads_near_dominance():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.9, 0.01, 20), rng.normal(0.885, 0.01, 20)
    assert aso_epsilon(a, b) == aso_epsilon(a, b)
    assert aso_epsilon(a, b) != aso_epsilon(a, b, seed=1)
    assert 0.0 < aso_epsilon(a, b) < 0.5 < aso_epsilon(b, a)
