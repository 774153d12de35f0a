"""Seed-noise statistics for 3-10 seeds: intervals, paired tests, equivalence, power.

Numbers only (numpy/scipy): callers pass arrays. The verdict rules that combine these live
in `analysis.verdicts`; the looks of an adaptive seed schedule in `analysis.sequential`.

Why these methods, measured by simulation on normal data at n = 2-10 (see
`benchmarks/seed_statistics.py` and tests/test_stats.py):

* Intervals of a mean or of a mean paired difference are Student t-intervals. They hold
  their nominal coverage at every n >= 2 for normal seed noise; the bootstrap (BCa or
  percentile) resamples only the few values it has and covered the truth 50% of the time
  at n = 2, 72% at n = 3 and 89% at n = 8. BCa stays available (`interval="bca"`) for
  large samples.
* The primary paired test is the paired t-test, whose p can go below 0.05 with 3 seeds;
  the exact sign-flip permutation test is reported beside it as the distribution-free
  check. It assumes only symmetric differences, but it cannot go below 2 / 2**n (0.25
  with 3 seeds), so the two can disagree and the report says so.
* Equivalence is a TOST (two one-sided t-tests) against a margin: "equivalent" only when
  both one-sided nulls are rejected, which is a valid level-alpha test at any n, where
  "the interval lies inside the margin" on a bootstrap interval was not.
* Power, the smallest detectable effect and the seeds needed come from the noncentral t.
* Failure rates are compared with Fisher's exact test: a failed seed is an outcome.
* Almost Stochastic Order (`aso_epsilon`) is kept as a descriptive distribution-level
  figure (Dror, Shlomov & Reichart 2019); no verdict uses it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CORRECTIONS",
    "INTERVALS",
    "Estimate",
    "adjust",
    "aso_epsilon",
    "benjamini_hochberg",
    "bootstrap_ci",
    "detectable_effect",
    "estimate",
    "failure_rate_test",
    "holm",
    "interval_label",
    "min_attainable_p",
    "paired_t_power",
    "paired_t_test",
    "seeds_needed",
    "sign_flip_test",
    "t_interval",
    "tost",
    "wilcoxon_test",
]

CORRECTIONS = ("holm", "bh", "none")
INTERVALS = ("t", "bca")

# Largest n whose 2**n sign flips are enumerated exactly (65,536 rows x 16 columns).
_EXACT_MAX_N = 16
# Flip statistics within this relative distance of the observed one count as ties: the same
# sum of floats added in another order can differ in the last bits.
_TIE_RTOL = 1e-9
# Quantile levels at which ASO compares the two empirical quantile functions.
_ASO_GRID = 1000


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


def _spread_is_zero(x: np.ndarray) -> bool:
    """All values equal up to float rounding (a t statistic would divide by ~0)."""
    scale = max(float(np.abs(x).max()), 1e-300)
    return float(x.std(ddof=1)) <= 1e-12 * scale


def interval_label(interval: str, confidence: float = 0.95) -> str:
    """The name a table or chart caption gives its intervals, e.g. "95% t-interval"."""
    kind = {"t": "t-interval", "bca": "bootstrap interval (BCa)"}[interval]
    return f"{confidence * 100:g}% {kind}"


# --------------------------------------------------------------------------- estimates


@dataclass(frozen=True)
class Estimate:
    """One variant's metric over seeds: n, mean, sample std (ddof=1) and an interval.

    std and the interval are nan when n < 2 (one seed says nothing about seed noise); mean
    is nan when n == 0.
    """

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float


def t_interval(values: Iterable[float | None] | np.ndarray, *,
               confidence: float = 0.95) -> tuple[float, float]:
    """Student t-interval of the mean (NaN/None dropped): mean +- t(n-1) * sd / sqrt(n).

    Exact for normal values at every n >= 2, which is why it is the default: seed noise of
    a trained network's accuracy is close to normal, and at 3-10 seeds there is nothing to
    resample. n < 2 gives (nan, nan); equal values give (v, v).
    """
    x = _clean(values)
    if x.size < 2:
        return (math.nan, math.nan)
    mean = float(x.mean())
    if _spread_is_zero(x):
        return (mean, mean)
    half = float(_scipy().t.ppf(0.5 + confidence / 2, x.size - 1)) * float(
        x.std(ddof=1)) / math.sqrt(x.size)
    return (mean - half, mean + half)


def bootstrap_ci(
    values: Iterable[float | None] | np.ndarray,
    *,
    statistic: Callable[..., float] = np.mean,
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
    """Two-sided bootstrap confidence interval of `statistic` over `values` (NaN/None dropped).

    BCa where it is defined, the percentile interval where BCa degenerates (a few distinct
    values). Only for large samples (n >= 20) or on request: at 3-10 seeds it undercovers
    badly (see the module docstring). n < 2 gives (nan, nan); all-equal values (v, v).
    Deterministic for a given `seed`.
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
            res = _scipy().bootstrap((x,), statistic, n_resamples=resamples,
                                     confidence_level=confidence, method=method,
                                     rng=np.random.default_rng(seed))
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(low) and math.isfinite(high):
            return (low, high)
    return (math.nan, math.nan)


def estimate(values: Iterable[float | None] | np.ndarray, *, confidence: float = 0.95,
             interval: str = "t", seed: int = 0) -> Estimate:
    """Mean, std and interval of one variant's metric over seeds (NaN/None dropped first).

    Dropping rather than imputing: a seed that failed has no metric, and a placeholder value
    would bias both mean and spread. The failures themselves are counted elsewhere.
    """
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {INTERVALS}, got {interval!r}")
    x = _clean(values)
    n = int(x.size)
    mean = float(x.mean()) if n else math.nan
    std = float(x.std(ddof=1)) if n >= 2 else math.nan
    low, high = (t_interval(x, confidence=confidence) if interval == "t"
                 else bootstrap_ci(x, confidence=confidence, seed=seed))
    return Estimate(n=n, mean=mean, std=std, ci_low=low, ci_high=high)


# --------------------------------------------------------------------------- t tests


def paired_t_test(differences: Iterable[float | None] | np.ndarray) -> float:
    """Two-sided paired t-test p of "mean difference = 0" (NaN/None dropped).

    n < 2 gives nan; all-zero differences give 1.0. Equal nonzero differences (every seed
    moved by the same amount) make the t statistic infinite, yet they are what a test set
    of 1000 images gives by chance (accuracy moves in steps of 0.001): p = 0 would call two
    seeds that both gained 0.002 "better". The exact sign-flip p is returned instead
    (2 / 2**n), which needs 6 such seeds before it goes below 0.05.
    """
    d = _clean(differences)
    if d.size < 2:
        return math.nan
    if _spread_is_zero(d):
        return 1.0 if abs(float(d.mean())) <= 1e-15 else sign_flip_test(d)
    t = float(d.mean()) / (float(d.std(ddof=1)) / math.sqrt(d.size))
    return float(2 * _scipy().t.sf(abs(t), d.size - 1))


def tost(differences: Iterable[float | None] | np.ndarray, margin: float) -> float:
    """p of the two one-sided t-tests (TOST) of "|mean difference| >= margin".

    The nulls are mean <= -margin and mean >= +margin; p is the larger one-sided p, so
    p < alpha rejects both, which is the same as the (1 - 2 alpha) t-interval lying inside
    (-margin, +margin) (Schuirmann 1987). n < 2 gives nan. With no spread, p is 0 when the
    common difference is inside the margin and 1 otherwise.
    """
    if margin <= 0:
        raise ValueError(f"margin must be positive, got {margin}")
    d = _clean(differences)
    if d.size < 2:
        return math.nan
    mean = float(d.mean())
    if _spread_is_zero(d):
        return 0.0 if abs(mean) < margin else 1.0
    se = float(d.std(ddof=1)) / math.sqrt(d.size)
    df = d.size - 1
    p_lower = _scipy().t.sf((mean + margin) / se, df)   # H0: mean <= -margin
    p_upper = _scipy().t.cdf((mean - margin) / se, df)  # H0: mean >= +margin
    return float(max(p_lower, p_upper))


def paired_t_power(n: int | np.ndarray, effect: float, sd: float, alpha: float
                   ) -> np.ndarray | float:
    """Power of the two-sided paired t-test at level alpha with n pairs (noncentral t)."""
    n = np.asarray(n, dtype=float)
    df = n - 1
    crit = _scipy().t.ppf(1 - alpha / 2, df)
    ncp = abs(effect) / sd * np.sqrt(n)
    with np.errstate(all="ignore"):
        upper = _scipy().nct.sf(crit, df, ncp)
        lower = _scipy().nct.cdf(-crit, df, ncp)
    # scipy's noncentral t returns nan now and then far in a tail (large ncp: the upper tail
    # near 1, the lower near 0); the normal approximation of that tail alone is accurate
    # exactly there.
    upper = np.where(np.isfinite(upper), upper, _scipy().norm.sf(crit - ncp))
    lower = np.where(np.isfinite(lower), lower, _scipy().norm.cdf(-crit - ncp))
    power = np.clip(upper + lower, 0.0, 1.0)
    return float(power) if power.ndim == 0 else power


def detectable_effect(sd: float, n: int, *, alpha: float = 0.05, power: float = 0.8
                      ) -> float | None:
    """Smallest true mean difference the paired t-test detects with `power` at n pairs.

    None when n < 2 or the spread is unknown (nan); 0.0 when sd is 0.
    """
    sd = float(sd)
    if n < 2 or not math.isfinite(sd):
        return None
    if sd == 0:
        return 0.0
    from scipy.optimize import brentq

    high = sd
    while paired_t_power(n, high, sd, alpha) < power:
        high *= 2
        if high > sd * 1e6:
            return None
    return float(brentq(lambda e: paired_t_power(n, e, sd, alpha) - power, 0.0, high,
                        xtol=sd * 1e-6))


def seeds_needed(sd: float, effect: float, *, alpha: float = 0.05, power: float = 0.8,
                 max_seeds: int = 1000) -> int | None:
    """Smallest number of paired seeds at which the paired t-test detects `effect`.

    None when effect is 0 (nothing to detect), sd is nan (spread unknown, fewer than 2
    pairs) or more than `max_seeds` would be needed; 2 when sd is 0.
    """
    effect, sd = abs(float(effect)), float(sd)
    if effect == 0 or not math.isfinite(effect) or not math.isfinite(sd):
        return None
    if sd == 0:
        return 2
    ns = np.arange(2, max_seeds + 1)
    reached = np.nonzero(paired_t_power(ns, effect, sd, alpha) >= power)[0]
    return int(ns[reached[0]]) if reached.size else None


def failure_rate_test(failed_a: int, runs_a: int, failed_b: int, runs_b: int) -> float:
    """Two-sided Fisher exact p for "arm A fails as often as arm B" (failed of runs each).

    nan when either arm has no finished runs.
    """
    if runs_a <= 0 or runs_b <= 0:
        return math.nan
    table = [[failed_a, runs_a - failed_a], [failed_b, runs_b - failed_b]]
    return float(_scipy().fisher_exact(table, alternative="two-sided").pvalue)


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
    if test not in ("sign_flip", "wilcoxon"):
        raise ValueError(f"test must be sign_flip or wilcoxon, got {test!r}")
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


def adjust(p_values: list[float], correction: str) -> np.ndarray:
    """p-values corrected across comparisons: "holm", "bh" (Benjamini-Hochberg) or "none"."""
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {CORRECTIONS}, got {correction!r}")
    if correction == "holm":
        return holm(p_values)
    if correction == "bh":
        return benjamini_hochberg(p_values)
    return np.asarray(p_values, dtype=float)


