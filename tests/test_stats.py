"""Known answers for analysis.stats: textbook values, hand counts and independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from analysis.stats import (
    Comparison,
    Estimate,
    aso_epsilon,
    benjamini_hochberg,
    bootstrap_ci,
    compare_to_baseline,
    estimate,
    holm,
    min_attainable_p,
    seeds_needed,
    sign_flip_test,
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


def test_bootstrap_ci_deterministic_and_brackets_the_mean():
    x = [0.81, 0.84, 0.80, 0.86, 0.83, 0.79]
    a, b = bootstrap_ci(x, seed=7), bootstrap_ci(x, seed=7)
    assert a == b
    assert a[0] < np.mean(x) < a[1]
    assert min(x) <= a[0] and a[1] <= max(x)
    low, high = bootstrap_ci(x, statistic=np.median, resamples=2000)
    assert low <= np.median(x) <= high


def test_estimate_drops_missing_values():
    e = estimate([0.90, None, 0.92, float("nan"), 0.94])
    assert isinstance(e, Estimate)
    assert e.n == 3
    assert e.mean == pytest.approx(0.92)
    assert e.std == pytest.approx(0.02)
    assert e.ci_low <= e.mean <= e.ci_high
    single = estimate([0.5])
    assert single.n == 1 and single.mean == 0.5
    assert math.isnan(single.std) and math.isnan(single.ci_low) and math.isnan(single.ci_high)
    assert estimate([]).n == 0 and math.isnan(estimate([]).mean)


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


def test_wilcoxon_matches_scipy():
    d = [0.5, -0.2, 1.1, 0.7, 0.9, -0.1, 0.4]
    assert wilcoxon_test(d) == pytest.approx(st.wilcoxon(d).pvalue)
    assert wilcoxon_test([1.0, 2.0, 3.0]) == pytest.approx(0.25)  # exact: 2 / 2**3
    assert wilcoxon_test([0.0, 0.0]) == 1.0
    assert math.isnan(wilcoxon_test([]))


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


# --------------------------------------------------------------------------- power


def _t_power(n: int, d: float, alpha: float = 0.05) -> float:
    df = n - 1
    crit = st.t.isf(alpha / 2, df)
    ncp = d * math.sqrt(n)
    return 1 - st.nct.cdf(crit, df, ncp) + st.nct.cdf(-crit, df, ncp)


def test_seeds_needed_paired_t_table_values():
    assert _t_power(9, 1.0) < 0.8 <= _t_power(10, 1.0)
    assert seeds_needed(1.0, 1.0) == 10  # d = 1, alpha 0.05 two-sided, power 0.8: n = 10
    assert seeds_needed(0.01, 0.01) == 10  # only the ratio matters
    assert seeds_needed(1.0, 0.5, test="wilcoxon") == 34  # d = 0.5: n = 34 (G*Power table)
    assert seeds_needed(1.0, -1.0) == 10  # sign of the effect is irrelevant


def test_seeds_needed_min_attainable_p_floor():
    # the t-test alone would be happy with 2-3 seeds for d = 10; exact tests need 6 at 0.05
    assert seeds_needed(0.001, 0.01) == 6
    assert seeds_needed(0.0, 0.01) == 6
    assert seeds_needed(0.001, 0.01, test="wilcoxon") == 6
    assert seeds_needed(0.001, 0.01, alpha=0.01) == 8  # 2/2**7 = 0.0156, 2/2**8 = 0.0078


def test_seeds_needed_none_cases():
    assert seeds_needed(0.0, 0.0) is None
    assert seeds_needed(float("nan"), 0.0) is None
    assert seeds_needed(float("nan"), 0.01) is None
    assert seeds_needed(1.0, 0.01, max_seeds=100) is None


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


# --------------------------------------------------------------------------- comparisons


def _runs(base: list[float], **variants: list[float]) -> dict[str, dict[int, float]]:
    out = {"baseline": dict(enumerate(base))}
    out.update({k: dict(enumerate(v)) for k, v in variants.items()})
    return out


BASE8 = [0.900, 0.905, 0.895, 0.910, 0.898, 0.902, 0.907, 0.893]


def test_compare_big_consistent_gain_is_better():
    gains = [0.020, 0.025, 0.018, 0.030, 0.022, 0.027, 0.019, 0.024]
    (c,) = compare_to_baseline(_runs(BASE8, cbam=[b + g for b, g in zip(BASE8, gains, strict=True)]),
                               "baseline")
    assert isinstance(c, Comparison)
    assert c.verdict == "better"
    assert c.n_pairs == 8 and c.test == "sign_flip"
    assert c.mean_diff == pytest.approx(np.mean(gains))
    assert 0 < c.ci_low < c.mean_diff < c.ci_high
    assert c.p_value == pytest.approx(2 / 256) and c.p_adjusted == c.p_value  # one comparison
    assert c.seeds_suggested is None and c.aso_epsilon is None


def test_compare_three_seeds_needs_more_seeds():
    base = [0.90, 0.91, 0.89]
    (c,) = compare_to_baseline(_runs(base, se=[0.93, 0.95, 0.925]), "baseline")
    assert c.p_value == 0.25  # the floor with 3 seeds
    assert c.verdict == "needs more seeds"
    assert c.seeds_suggested is not None and c.seeds_suggested >= 6
    text = c.sentence()
    assert text.startswith("se vs baseline: +3.50 points (95% CI ")
    assert "p = 0.25, Holm-adjusted, 3 seeds" in text
    assert f"about {c.seeds_suggested} seeds would detect a 3.50-point difference" in text
    assert "80% power" in text


def test_compare_tiny_noise_is_no_detectable_difference():
    noise = [0.0004, -0.0003, 0.0002, -0.0005, 0.0001, 0.0003, -0.0002, -0.0001, 0.0004, -0.0003]
    base = [0.90 + 0.003 * i for i in range(10)]
    (c,) = compare_to_baseline(_runs(base, eca=[b + e for b, e in zip(base, noise, strict=True)]),
                               "baseline")
    assert c.verdict == "no detectable difference"
    assert -0.005 < c.ci_low <= c.ci_high < 0.005
    assert "no detectable difference (any true difference is within +-0.50 points)" in c.sentence()


def test_compare_consistent_loss_is_worse_and_lower_is_better_flips():
    losses = [b - 0.02 - 0.001 * i for i, b in enumerate(BASE8)]
    (c,) = compare_to_baseline(_runs(BASE8, bad=losses), "baseline")
    assert c.verdict == "worse" and c.ci_high < 0
    (c,) = compare_to_baseline(_runs(BASE8, bad=losses), "baseline", metric="val_loss",
                               higher_is_better=False, with_aso=True)
    assert c.verdict == "better"  # a lower loss
    assert c.aso_epsilon == pytest.approx(0.0, abs=0.05)  # oriented: variant is better


def test_compare_holm_changes_a_borderline_verdict():
    edge = [0.020, 0.025, 0.030, 0.015, 0.020, 0.035, 0.010, -0.005]  # 7 of 8 positive
    noise = [0.003, -0.004, 0.002, -0.001, 0.004, -0.003, 0.001, -0.002]
    others = {f"null{k}": [b + noise[(i + k) % 8] for i, b in enumerate(BASE8)] for k in range(4)}
    runs = _runs(BASE8, edge=[b + e for b, e in zip(BASE8, edge, strict=True)], **others)
    raw = {c.variant: c for c in compare_to_baseline(runs, "baseline", correction="none")}
    adj = {c.variant: c for c in compare_to_baseline(runs, "baseline", correction="holm")}
    assert raw["edge"].p_value == pytest.approx(4 / 256)  # hand count: 4 flips as extreme
    assert raw["edge"].verdict == "better"
    assert adj["edge"].p_adjusted == pytest.approx(5 * 4 / 256)  # smallest of 5 p-values
    assert adj["edge"].verdict == "needs more seeds"
    assert adj["edge"].seeds_suggested is not None
    assert "Holm-adjusted" in adj["edge"].sentence()


def test_compare_pairs_only_common_seeds():
    runs = {
        "baseline": {s: 0.90 + 0.001 * s for s in range(8)},
        "cbam": {0: 0.93, 1: 0.931, 2: 0.932, 3: float("nan"), 5: 0.935, 6: None, 9: 0.99},
        "gc": {0: 0.95},
    }
    out = {c.variant: c for c in compare_to_baseline(runs, "baseline", test="wilcoxon")}
    assert out["cbam"].n_pairs == 4  # seeds 0, 1, 2, 5
    assert out["cbam"].mean_diff == pytest.approx(0.03)
    assert out["cbam"].test == "wilcoxon"
    assert out["gc"].n_pairs == 1 and out["gc"].verdict == "needs more seeds"
    assert math.isnan(out["gc"].p_value) and math.isnan(out["gc"].p_adjusted)
    assert "1 seed)" in out["gc"].sentence()


def test_compare_rejects_bad_options():
    runs = _runs(BASE8, x=BASE8)
    with pytest.raises(KeyError):
        compare_to_baseline(runs, "nope")
    with pytest.raises(ValueError):
        compare_to_baseline(runs, "baseline", test="t")
    with pytest.raises(ValueError):
        compare_to_baseline(runs, "baseline", correction="bonferroni")


def test_sentence_without_points_uses_metric_units():
    c = Comparison(variant="cbam", baseline="baseline", metric="best_val_acc", n_pairs=3,
                   mean_diff=0.0042, ci_low=-0.001, ci_high=0.0094, p_value=0.25,
                   p_adjusted=0.25, test="sign_flip", aso_epsilon=0.3,
                   verdict="needs more seeds", seeds_suggested=9, target_effect=0.005)
    assert c.sentence() == (
        "cbam vs baseline: +0.42 points (95% CI -0.10 to +0.94; p = 0.25, Holm-adjusted, "
        "3 seeds; ASO eps = 0.30): needs more seeds; about 9 seeds would detect a 0.50-point "
        "difference with 80% power.")
    assert c.sentence(points=False).startswith("cbam vs baseline: +0.0042 (95% CI -0.001 to")
    assert "a difference of 0.005 with 80% power" in c.sentence(points=False)
