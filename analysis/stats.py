"""Seed-noise statistics: does an attention variant beat the baseline by more than seed noise?

An ablation run trains every variant with a handful of seeds (often 3-10). With so few
numbers per variant the usual large-sample tools mislead, so this module picks methods that
stay honest at small n:

* Confidence intervals come from the bootstrap (BCa where it is defined, percentile where BCa
  degenerates), which assumes no normality of the per-seed metric.
* Variants are compared with the baseline *paired by seed* (same seed = same data order and
  initialisation stream), which removes the shared part of the seed noise.
* The paired test is a sign-flip permutation test (exact up to 16 pairs) or Wilcoxon's
  signed-rank test: both are exact at small n and say plainly when n is too small to ever
  reach significance (`min_attainable_p`: 3 seeds can never give p < 0.25).
* p-values are corrected across the variants of a run (Holm by default), since a run that
  compares eight attention blocks with one baseline makes eight tests.
* A verdict needs both a corrected p below alpha and a CI that excludes 0; a CI that lies
  inside +-min_effect is reported as "no detectable difference" (an equivalence statement),
  and everything else as "needs more seeds", with a power estimate of how many.
* Almost Stochastic Order (`aso_epsilon`) is offered as the distribution-level comparison
  recommended for deep-learning scores (Dror, Shlomov & Reichart 2019).

Numbers only (numpy/scipy): callers pass arrays or {variant: {seed: value}} mappings.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CORRECTIONS",
    "TESTS",
    "VERDICTS",
    "Comparison",
    "Estimate",
    "aso_epsilon",
    "benjamini_hochberg",
    "bootstrap_ci",
    "compare_to_baseline",
    "estimate",
    "holm",
    "min_attainable_p",
    "seeds_needed",
    "sign_flip_test",
    "wilcoxon_test",
]

TESTS = ("sign_flip", "wilcoxon")
CORRECTIONS = ("holm", "bh", "none")
VERDICTS = ("better", "worse", "no detectable difference", "needs more seeds")

# Largest n whose 2**n sign flips are enumerated exactly (65,536 rows x 16 columns).
_EXACT_MAX_N = 16
# Flip statistics within this relative distance of the observed one count as ties: the same
# sum of floats added in another order can differ in the last bits.
_TIE_RTOL = 1e-9
# Quantile levels at which ASO compares the two empirical quantile functions.
_ASO_GRID = 1000
_CORRECTION_LABEL = {"holm": "Holm-adjusted", "bh": "BH-adjusted", "none": "unadjusted"}


# --------------------------------------------------------------------------- helpers


def _scipy():
    """scipy.stats, imported on first use: `import analysis` stays fast for the CLI."""
    from scipy import stats

    return stats


def _clean(values: Iterable[float | None] | np.ndarray) -> np.ndarray:
    """1-D float array with None and NaN (failed or missing seeds) dropped."""
    arr = np.asarray([np.nan if v is None else v for v in np.ravel(np.asarray(values, object))],
                     dtype=float)
    return arr[np.isfinite(arr)]


def _fmt_signed(x: float, scale: float) -> str:
    return f"{x * scale:+.2f}" if scale != 1 else f"{x:+.4g}"


# --------------------------------------------------------------------------- estimates


@dataclass(frozen=True)
class Estimate:
    """One variant's metric over seeds: n, mean, sample std (ddof=1) and a bootstrap CI.

    std and the CI are nan when n < 2 (one seed says nothing about seed noise); mean is nan
    when n == 0.
    """

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float


def bootstrap_ci(
    values: Iterable[float | None] | np.ndarray,
    *,
    statistic: Callable[..., float] = np.mean,
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
    """Two-sided bootstrap confidence interval of `statistic` over `values` (NaN/None dropped).

    BCa (bias-corrected and accelerated) is used because it corrects the percentile interval
    for skew and bias of the statistic, which matters for bounded metrics such as accuracy near
    1. BCa is undefined when the bootstrap or jackknife distribution is degenerate (e.g. a
    few distinct values); the percentile interval is then returned instead. n < 2 gives
    (nan, nan): there is no spread to resample. All-equal values give (v, v). The result is
    deterministic for a given `seed`.
    """
    x = _clean(values)
    if x.size < 2:
        return (math.nan, math.nan)
    if np.all(x == x[0]):
        # no spread to resample; a location statistic of equal values is the value itself
        # (np.mean would add rounding error), anything else (e.g. np.std) is what it computes
        v = float(statistic(x))
        v = float(x[0]) if math.isclose(v, x[0], rel_tol=1e-12) else v
        return (v, v)
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", _scipy().DegenerateDataWarning)
            res = _scipy().bootstrap((x,), statistic, n_resamples=resamples, confidence_level=confidence,
                               method=method, rng=np.random.default_rng(seed))
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(low) and math.isfinite(high):
            return (low, high)
    return (math.nan, math.nan)


def estimate(values: Iterable[float | None] | np.ndarray, *, confidence: float = 0.95,
             seed: int = 0) -> Estimate:
    """Mean, std and bootstrap CI of one variant's metric over seeds (NaN/None dropped first).

    Dropping rather than imputing: a seed that failed has no metric, and a placeholder value
    would bias both mean and spread.
    """
    x = _clean(values)
    n = int(x.size)
    mean = float(x.mean()) if n else math.nan
    std = float(x.std(ddof=1)) if n >= 2 else math.nan
    low, high = bootstrap_ci(x, confidence=confidence, seed=seed)
    return Estimate(n=n, mean=mean, std=std, ci_low=low, ci_high=high)


# --------------------------------------------------------------------------- paired tests


def _flip_signs_exact(n: int) -> np.ndarray:
    """All 2**n sign vectors as rows of +-1 (row k = the bits of k)."""
    bits = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
    return 1 - 2 * bits


def sign_flip_test(differences: Iterable[float | None] | np.ndarray, *, resamples: int = 100_000,
                   seed: int = 0) -> float:
    """Two-sided paired permutation (sign-flip) test of "mean difference = 0".

    Under the null the sign of each paired difference is exchangeable, so the null
    distribution of the mean is that of the mean with random sign flips. This assumes only
    symmetry of the differences, not normality, which a t-test on 3-10 seeds cannot check.

    p = share of sign flips whose |mean| >= the observed |mean| (with a relative tolerance
    for float ties). All 2**n flips are enumerated exactly when n <= 16, so p is a multiple
    of 1/2**n (smallest 2/2**n); above that, `resamples` random flips are drawn and the
    Monte Carlo estimate (count + 1) / (resamples + 1) is returned, which counts the observed
    flip and so never gives p = 0. n = 0 gives nan; all differences 0 give 1.0.
    """
    d = _clean(differences)
    n = d.size
    if n == 0:
        return math.nan
    if np.all(d == 0):
        return 1.0
    observed = abs(d.sum())
    threshold = observed - _TIE_RTOL * np.abs(d).sum()
    if n <= _EXACT_MAX_N:
        sums = np.abs(_flip_signs_exact(n) @ d)
        return float(np.mean(sums >= threshold))
    rng = np.random.default_rng(seed)
    count, chunk = 0, max(1, 2_000_000 // n)
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        signs = rng.integers(0, 2, size=(size, n)) * 2 - 1
        count += int(np.sum(np.abs(signs @ d) >= threshold))
    return (count + 1) / (resamples + 1)


def wilcoxon_test(differences: Iterable[float | None] | np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p of paired differences (NaN/None dropped).

    A rank test is robust to one seed with a wild difference, where the sign-flip test on
    means is not. scipy's `method="auto"` is used: exact null distribution for n <= 50
    without ties or zeros, exhaustive permutations when ties/zeros occur at n <= 13, the
    normal approximation above. Zero differences are dropped (Wilcoxon's convention).
    n = 0 gives nan; all differences 0 give 1.0 (scipy would return nan there).
    """
    d = _clean(differences)
    if d.size == 0:
        return math.nan
    if np.all(d == 0):
        return 1.0
    return float(_scipy().wilcoxon(d, alternative="two-sided").pvalue)


def min_attainable_p(n: int, test: str) -> float:
    """Smallest two-sided p the test can ever give with n pairs: 2 / 2**n (capped at 1).

    For the exact sign-flip test the most extreme outcome (all differences of one sign)
    has probability 2 / 2**n. The exact Wilcoxon test's most extreme rank sum (all ranks on
    one side) has the same probability. With 3 seeds that is 0.25: no 3-seed comparison can
    be significant at 0.05, however large the effect.
    """
    if test not in TESTS:
        raise ValueError(f"test must be one of {TESTS}, got {test!r}")
    if n < 1:
        return 1.0
    return min(1.0, 2.0 / 2.0**n)


# --------------------------------------------------------------------------- ASO


def _quantile_grid(sorted_samples: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Empirical quantile function F^-1(t) = inf{x : F_n(x) >= t} along the last axis."""
    n = sorted_samples.shape[-1]
    idx = np.clip(np.ceil(n * levels).astype(int) - 1, 0, n - 1)
    return sorted_samples[..., idx]


def _violation_ratio(qa: np.ndarray, qb: np.ndarray) -> np.ndarray:
    """Share of the squared quantile distance (W2^2) where A's quantile is below B's.

    0.5 where the two quantile functions coincide (W2 = 0): no direction is preferred.
    """
    gap2 = (qa - qb) ** 2
    total = gap2.sum(axis=-1)
    violated = np.where(qa < qb, gap2, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, violated / np.where(total > 0, total, 1.0), 0.5)


def aso_epsilon(scores_a: Iterable[float | None] | np.ndarray,
                scores_b: Iterable[float | None] | np.ndarray, *, confidence: float = 0.95,
                resamples: int = 1000, seed: int = 0) -> float:
    """Almost Stochastic Order: epsilon_min, how far "A is stochastically larger than B" fails.

    Definition (del Barrio, Cuesta-Albertos & Matran 2018; Dror, Shlomov & Reichart 2019,
    "Deep Dominance"). With F, G the CDFs of A and B and F^-1, G^-1 their quantile functions,
    A stochastically dominates B iff F^-1(t) >= G^-1(t) for all t in (0, 1). The violation
    set is V = {t : F^-1(t) < G^-1(t)} and the violation ratio is

        eps(F, G) = int_V (F^-1(t) - G^-1(t))^2 dt / int_0^1 (F^-1(t) - G^-1(t))^2 dt,

    the share of the squared Wasserstein-2 distance spent where A is below B: 0 when A
    dominates B, 1 when B dominates A. Here F, G are the empirical CDFs of the n and m scores
    and the integrals are midpoint sums over 1000 quantile levels. Because eps is estimated
    from few scores, Dror et al. report the upper confidence bound

        eps_min = eps(F_n, G_m) + z_confidence * sigma / sqrt(n m / (n + m)),

    with sigma the bootstrap std of sqrt(n m / (n + m)) * (eps(F*_n, G*_m) - eps(F_n, G_m))
    (A and B resampled independently), i.e. eps + z * std(bootstrap eps), clipped to [0, 1].
    eps_min < 0.5 reads "A is almost stochastically larger than B"; the smaller, the
    stronger. Identical empirical distributions give eps = 0.5 by convention (W2 = 0) and an
    upper bound of 1 once the bootstrap spread is added. Two samples of one normal
    distribution gave eps_min of 0.7 on average (n = 5-30 each, 20 draws; 0.9 at n = 200),
    but single draws went as low as 0.1-0.25: with a handful of seeds ASO is a descriptive
    figure, not a test, and the verdicts of `compare_to_baseline` never use it. nan when
    either side is empty.
    """
    a, b = np.sort(_clean(scores_a)), np.sort(_clean(scores_b))
    n, m = a.size, b.size
    if n == 0 or m == 0:
        return math.nan
    levels = (np.arange(_ASO_GRID) + 0.5) / _ASO_GRID
    eps = float(_violation_ratio(_quantile_grid(a, levels), _quantile_grid(b, levels)))
    rng = np.random.default_rng(seed)
    boot_a = np.sort(rng.choice(a, size=(resamples, n), replace=True), axis=1)
    boot_b = np.sort(rng.choice(b, size=(resamples, m), replace=True), axis=1)
    boot = _violation_ratio(_quantile_grid(boot_a, levels), _quantile_grid(boot_b, levels))
    upper = eps + _scipy().norm.ppf(confidence) * float(np.std(boot))
    return float(np.clip(upper, 0.0, 1.0))


# --------------------------------------------------------------------------- corrections


def _finite_view(p_values: Iterable[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(p_values, dtype=float).ravel()
    return p, np.isfinite(p)


def holm(p_values: Iterable[float] | np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1).

    Holm controls the family-wise error rate (the chance of *any* false "better" in a run)
    under any dependence between the tests, which variants sharing one baseline have, and is
    uniformly more powerful than Bonferroni. NaN entries (comparisons without a test) stay
    NaN and do not count towards the number of tests.
    """
    p, ok = _finite_view(p_values)
    out = np.full(p.shape, np.nan)
    m = int(ok.sum())
    if m:
        order = np.argsort(p[ok], kind="stable")
        scaled = (m - np.arange(m)) * p[ok][order]
        adjusted = np.empty(m)
        adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
        out[ok] = adjusted
    return out


def benjamini_hochberg(p_values: Iterable[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (step-up, monotone, capped at 1).

    Controls the false discovery rate (the expected share of false "better"s among the
    claimed ones) for independent or positively dependent tests; less strict than Holm when
    a run screens many variants. NaN entries stay NaN and are not counted.
    """
    p, ok = _finite_view(p_values)
    out = np.full(p.shape, np.nan)
    m = int(ok.sum())
    if m:
        order = np.argsort(p[ok], kind="stable")
        scaled = p[ok][order] * m / np.arange(1, m + 1)
        adjusted = np.empty(m)
        adjusted[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
        out[ok] = adjusted
    return out


def _adjust(p_values: list[float], correction: str) -> np.ndarray:
    if correction == "holm":
        return holm(p_values)
    if correction == "bh":
        return benjamini_hochberg(p_values)
    return np.asarray(p_values, dtype=float)


# --------------------------------------------------------------------------- power


def _paired_t_power(n: np.ndarray, d: float, alpha: float) -> np.ndarray:
    """Power of the two-sided one-sample t-test on n differences with standardized effect d."""
    df = n - 1
    crit = _scipy().t.ppf(1 - alpha / 2, df)
    ncp = d * np.sqrt(n)
    return _scipy().nct.sf(crit, df, ncp) + _scipy().nct.cdf(-crit, df, ncp)


def seeds_needed(diff_std: float, effect: float, *, alpha: float = 0.05, power: float = 0.8,
                 test: str = "sign_flip", max_seeds: int = 1000) -> int | None:
    """Smallest number of paired seeds that can detect a mean difference `effect`.

    Power comes from the paired t-test (noncentral t): a closed-form, well-understood
    planning figure whose power the sign-flip and Wilcoxon tests nearly match for roughly
    normal differences. The t-test alone would be too optimistic at tiny n, because the
    exact tests have a floor on p, so the answer is also at least the smallest n with
    min_attainable_p(n, test) < alpha (6 for alpha 0.05: 2/2**5 = 0.0625, 2/2**6 = 0.031).

    diff_std = 0 with effect != 0 leaves only that floor. None when effect is 0 (nothing to
    detect), when diff_std is nan (spread unknown, e.g. fewer than 2 pairs), or when more
    than `max_seeds` would be needed.
    """
    effect, diff_std = abs(float(effect)), float(diff_std)
    if effect == 0 or not math.isfinite(effect) or math.isnan(diff_std):
        return None
    floor = next((k for k in range(1, max_seeds + 1) if min_attainable_p(k, test) < alpha), None)
    if floor is None:
        return None
    if diff_std == 0:
        return max(floor, 2)
    ns = np.arange(2, max_seeds + 1)
    reached = np.nonzero(_paired_t_power(ns, effect / diff_std, alpha) >= power)[0]
    if reached.size == 0:
        return None
    return max(int(ns[reached[0]]), floor)


# --------------------------------------------------------------------------- comparisons


@dataclass(frozen=True)
class Comparison:
    """One variant against the baseline on one metric, paired by seed.

    mean_diff, ci_low and ci_high are variant - baseline (raw metric units). p_value is nan
    when fewer than 2 pairs exist (no test run); p_adjusted is corrected across the run's
    comparisons. The fields after `seeds_suggested` carry the settings `sentence` needs.
    """

    variant: str
    baseline: str
    metric: str
    n_pairs: int
    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    p_adjusted: float
    test: str
    aso_epsilon: float | None
    verdict: str
    seeds_suggested: int | None
    min_effect: float = 0.005
    target_effect: float | None = None
    power: float = 0.8
    confidence: float = 0.95
    correction: str = "holm"

    def sentence(self, *, points: bool = True) -> str:
        """Plain-language summary, e.g.

        "cbam vs baseline: +0.42 points (95% CI -0.10 to +0.94; p = 0.25, Holm-adjusted,
        3 seeds): needs more seeds; about 9 seeds would detect a 0.50-point difference with
        80% power."

        points=True writes differences x100 as percentage points (for accuracies in [0, 1]);
        points=False writes them in the metric's own units.
        """
        scale, unit = (100.0, " points") if points else (1.0, "")
        head = f"{self.variant} vs {self.baseline}"
        if self.n_pairs == 0:
            return f"{head}: no seeds in common: needs more seeds."
        diff = f"{_fmt_signed(self.mean_diff, scale)}{unit}"
        seeds = f"{self.n_pairs} seed{'s' if self.n_pairs != 1 else ''}"
        if self.n_pairs < 2:
            return f"{head}: {diff} ({seeds}): needs more seeds (at least 2 paired seeds)."
        detail = (f"{self.confidence * 100:g}% CI {_fmt_signed(self.ci_low, scale)} to "
                  f"{_fmt_signed(self.ci_high, scale)}; {self._p_text()}, "
                  f"{_CORRECTION_LABEL.get(self.correction, self.correction)}, {seeds}")
        if self.aso_epsilon is not None:
            detail += f"; ASO eps = {self.aso_epsilon:.2f}"
        return f"{head}: {diff} ({detail}): {self._verdict_text(scale, points)}."

    def _p_text(self) -> str:
        p = self.p_adjusted
        if not math.isfinite(p):
            return "no test"
        if p < 0.001:
            return "p < 0.001"
        return f"p = {p:.2f}" if p >= 0.1 else f"p = {p:.2g}"

    def _verdict_text(self, scale: float, points: bool) -> str:
        def size(x: float) -> str:
            return f"{x * scale:.2f}-point" if points else f"{x:.4g}"

        if self.verdict == "no detectable difference":
            bound = f"{self.min_effect * scale:.2f}" + (" points" if points else "")
            return f"{self.verdict} (any true difference is within +-{bound})"
        if self.verdict == "needs more seeds" and self.seeds_suggested and self.target_effect:
            what = (f"a {size(self.target_effect)} difference" if points
                    else f"a difference of {size(self.target_effect)}")
            return (f"{self.verdict}; about {self.seeds_suggested} seeds would detect {what} "
                    f"with {self.power * 100:.0f}% power")
        return self.verdict


def _pairs(variant: Mapping[int, float], baseline: Mapping[int, float]) -> np.ndarray:
    """variant - baseline for every seed with a finite value in both, in seed order."""
    common = sorted(set(variant) & set(baseline))
    return np.asarray([variant[s] - baseline[s] for s in common], dtype=float)


def _clean_seeds(per_seed: Mapping[int, float | None]) -> dict[int, float]:
    return {int(s): float(v) for s, v in per_seed.items()
            if v is not None and math.isfinite(float(v))}


def _verdict(p_adj: float, low: float, high: float, n: int, *, alpha: float,
             min_effect: float, higher_is_better: bool) -> str:
    """The verdict rules of `compare_to_baseline` (see there)."""
    if n < 2:
        return "needs more seeds"
    if p_adj < alpha and (low > 0 or high < 0):
        return "better" if (low > 0) == higher_is_better else "worse"
    if -min_effect < low and high < min_effect:
        return "no detectable difference"
    return "needs more seeds"


def _check_options(test: str, correction: str) -> None:
    if test not in TESTS:
        raise ValueError(f"test must be one of {TESTS}, got {test!r}")
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {CORRECTIONS}, got {correction!r}")


def compare_to_baseline(
    per_seed: Mapping[str, Mapping[int, float]],
    baseline: str,
    *,
    metric: str = "best_val_acc",
    higher_is_better: bool = True,
    test: str = "sign_flip",
    correction: str = "holm",
    alpha: float = 0.05,
    min_effect: float = 0.005,
    with_aso: bool = False,
    confidence: float = 0.95,
    seed: int = 0,
    power: float = 0.8,
) -> list[Comparison]:
    """Compare every variant with the baseline, paired by seed, and give each a verdict.

    per_seed maps variant -> {seed: value} over ok trials; None/NaN values are dropped and
    only seeds present in both the variant and the baseline are paired (n_pairs). For each
    variant: mean paired difference (variant - baseline), its bootstrap CI, a paired test
    (`test`: "sign_flip" or "wilcoxon"), p corrected across all compared variants
    (`correction`: "holm", "bh" or "none"), and optionally ASO's epsilon_min of the variant's
    scores against the baseline's (all of their ok seeds; oriented so that < 0.5 means the
    variant is better, also when lower is better).

    Verdict rules (the report's contract), in order:

    1. fewer than 2 pairs -> "needs more seeds" (no test is run, p is nan);
    2. p_adjusted < alpha and the CI excludes 0 -> "better" or "worse", by the sign of the
       difference and `higher_is_better`;
    3. else, if the whole CI lies inside (-min_effect, +min_effect) -> "no detectable
       difference": an equivalence statement, any true difference is smaller than the
       minimal effect of interest (default 0.005 = half an accuracy point, the size that
       seed studies already call a gain);
    4. else -> "needs more seeds": the data cannot tell. seeds_suggested is then
       seeds_needed(std of the paired differences, max(min_effect, |mean_diff|)) at the
       per-comparison level alpha / k when a correction is applied to k comparisons
       (Bonferroni, the worst case of Holm and BH), so that the suggested number can reach a
       significant corrected p. It is None for the other verdicts.
    """
    _check_options(test, correction)
    if baseline not in per_seed:
        raise KeyError(f"baseline {baseline!r} not in per_seed (has {sorted(per_seed)})")
    base = _clean_seeds(per_seed[baseline])
    variants = [v for v in per_seed if v != baseline]
    sign = 1.0 if higher_is_better else -1.0
    rows = []
    for i, name in enumerate(variants):
        values = _clean_seeds(per_seed[name])
        d = _pairs(values, base)
        low, high = bootstrap_ci(d, confidence=confidence, seed=seed + i)
        p = (sign_flip_test(d, seed=seed + i) if test == "sign_flip" else wilcoxon_test(d))
        aso = (aso_epsilon(sign * np.fromiter(values.values(), float),
                           sign * np.fromiter(base.values(), float),
                           confidence=confidence, seed=seed + i) if with_aso else None)
        rows.append((name, d, low, high, p if d.size >= 2 else math.nan, aso))
    adjusted = _adjust([r[4] for r in rows], correction)
    plan_alpha = alpha / max(1, len(variants)) if correction != "none" else alpha
    out = []
    for (name, d, low, high, p, aso), p_adj in zip(rows, adjusted, strict=True):
        n = int(d.size)
        mean = float(d.mean()) if n else math.nan
        verdict = _verdict(float(p_adj), low, high, n, alpha=alpha, min_effect=min_effect,
                           higher_is_better=higher_is_better)
        target = max(min_effect, abs(mean)) if n else min_effect
        suggested = None
        if verdict == "needs more seeds":
            spread = float(d.std(ddof=1)) if n >= 2 else math.nan
            suggested = seeds_needed(spread, target, alpha=plan_alpha, power=power, test=test)
        out.append(Comparison(
            variant=name, baseline=baseline, metric=metric, n_pairs=n, mean_diff=mean,
            ci_low=low, ci_high=high, p_value=p, p_adjusted=float(p_adj), test=test,
            aso_epsilon=aso, verdict=verdict, seeds_suggested=suggested, min_effect=min_effect,
            target_effect=target, power=power, confidence=confidence, correction=correction))
    return out
