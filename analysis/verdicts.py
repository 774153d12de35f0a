"""Each arm against the baseline at one look: effect, interval, tests, failures, verdict.

The verdict rules, in order, at a look whose level is `alpha_look` (alpha itself for a run
with a fixed number of seeds, alpha / looks for an adaptive one, see `analysis.sequential`):

1. fewer than 2 seeds where both the arm and the baseline finished -> "inconclusive";
2. the paired t-test's p, Holm-corrected across the arms, below alpha_look -> "better" or
   "worse" by the sign of the difference;
3. else the TOST against +-margin, Holm-corrected across the arms too, rejects both
   one-sided nulls at alpha_look -> "equivalent" (the arm is within the margin of the
   baseline);
4. else "inconclusive", with the smallest difference these seeds could detect and the
   seeds that would detect a difference of the margin (both at 80% power).

A failed seed (diverged or error) is an outcome, not a hole: accuracies are compared on
the seeds both arms finished, and every comparison carries both arms' failure counts and
Fisher's exact p for the difference in failure rate, so an arm that fails more often never
reads "better" without saying so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from analysis.stats import (
    adjust,
    detectable_effect,
    failure_rate_test,
    min_attainable_p,
    paired_t_test,
    seeds_needed,
    sign_flip_test,
    t_interval,
    tost,
)

VERDICTS = ("better", "worse", "equivalent", "inconclusive")
DEFAULT_ALPHA = 0.05
DEFAULT_MARGIN = 0.005   # half an accuracy point: the size the source studies call a gain
POWER = 0.8
MAX_SEEDS_PLANNED = 1000  # beyond this, "more seeds" is not an answer

# {arm: {seed: metric or None}}: None (or nan) is a seed that ran and failed.
PerSeed = Mapping[str, Mapping[int, float | None]]


@dataclass(frozen=True)
class Comparison:
    """One arm against the baseline, paired by seed; differences are arm - baseline."""

    variant: str
    baseline: str
    metric: str
    n_pairs: int                 # seeds both finished
    mean_diff: float
    sd_diff: float
    ci_low: float                # t-interval at `confidence`
    ci_high: float
    p_value: float               # paired t-test, two-sided
    p_adjusted: float            # ... corrected across arms (`correction`)
    p_sign_flip: float           # exact sign-flip permutation test, same correction
    p_tost: float                # TOST against +-margin, same correction
    verdict: str
    alpha: float                 # the run's alpha
    alpha_look: float            # the level each test used at this look
    margin: float
    detectable: float | None     # smallest difference detectable at n_pairs (power POWER)
    seeds_for_margin: int | None  # paired seeds that detect a difference of the margin
    runs: int                    # seeds the arm ran (finished or failed)
    failed: int
    baseline_runs: int
    baseline_failed: int
    p_failures: float            # Fisher exact, arm vs baseline failure rate
    look: int = 1
    looks: int = 1
    provisional: bool = False    # its look is not complete: seeds are still running
    confidence: float = 0.95
    correction: str = "holm"
    higher_is_better: bool = True

    @property
    def decided(self) -> bool:
        return self.verdict != "inconclusive" and not self.provisional

    @property
    def tests_disagree(self) -> bool:
        """The t-test and the sign-flip check land on opposite sides of alpha_look."""
        if not (math.isfinite(self.p_adjusted) and math.isfinite(self.p_sign_flip)):
            return False
        return (self.p_adjusted < self.alpha_look) != (self.p_sign_flip < self.alpha_look)

    def sentence(self, *, points: bool = True, label: str = "") -> str:
        """One plain sentence: effect, interval, tests, failures and the verdict.

        points=True writes differences x100 as percentage points (accuracies in [0, 1]).
        """
        scale, unit = (100.0, " points") if points else (1.0, "")

        def amount(x: float, signed: bool = True) -> str:
            return (f"{x * scale:+.2f}" if signed else f"{x * scale:.2f}") if points \
                else (f"{x:+.4g}" if signed else f"{x:.4g}")

        on = f" on {label}" if label else ""
        head = f"{self.variant} vs {self.baseline}{on}"
        failures = self._failure_text()
        if self.n_pairs < 2:
            have = ("no seed" if self.n_pairs == 0 else "1 seed")
            return (f"{head}: {have} finished by both{failures}, so nothing can be said yet: "
                    "inconclusive.")
        level = f"{self.confidence * 100:g}% t-interval"
        detail = (f"{amount(self.mean_diff)}{unit} ({level} {amount(self.ci_low)} to "
                  f"{amount(self.ci_high)}, {self.n_pairs} paired seeds{failures}; "
                  f"paired t {_p(self.p_value)}")
        if self.correction != "none" and self.p_adjusted != self.p_value:
            detail += f", {_CORRECTED[self.correction]} {_p(self.p_adjusted)}"
        detail += f"; sign-flip check {_p(self.p_sign_flip)})"
        margin = f"±{amount(self.margin, signed=False)}{unit}"
        if self.verdict in ("better", "worse"):
            verdict = f"{self.verdict} at α = {self._level()}"
        elif self.verdict == "equivalent":
            corrected = f", {_CORRECTED[self.correction]}" if self.correction != "none" else ""
            verdict = (f"equivalent within {margin} (TOST {_p(self.p_tost)}{corrected}, "
                       f"α = {self._level()})")
        else:
            verdict = (f"inconclusive at α = {self._level()}: neither a difference nor "
                       f"equivalence within {margin}")
            if self.detectable is not None:
                verdict += (f"; {self.n_pairs} seeds detect only a difference of "
                            f"{amount(self.detectable, signed=False)}{unit} with "
                            f"{POWER * 100:.0f}% power")
            if self.seeds_for_margin is not None:
                verdict += (f"; about {self.seeds_for_margin} seeds would detect one of "
                            f"{amount(self.margin, signed=False)}{unit}")
            elif self.detectable is not None:
                verdict += (f"; detecting one of {amount(self.margin, signed=False)}{unit} "
                            f"would take more than {MAX_SEEDS_PLANNED} seeds")
        text = f"{head}: {detail}: {verdict}"
        if self.tests_disagree and self.p_adjusted < self.alpha_look:
            floor = min_attainable_p(self.n_pairs, "sign_flip")
            why = (f" (with {self.n_pairs} seeds it cannot go below {floor:.3g})"
                   if floor >= self.alpha_look else "")
            text += (f". The sign-flip check disagrees{why}, so this rests on the t-test's "
                     "assumption of roughly normal seed differences")
        elif self.tests_disagree:
            text += (". The sign-flip check disagrees: it rejects where the t-test does not, "
                     "a sign of seed differences far from normal (one seed dominating the "
                     "mean); more seeds would settle it")
        if self.failed > self.baseline_failed and self.verdict == "better":
            text += (f". Note it failed on {self.failed} of {self.runs} seeds against the "
                     f"baseline's {self.baseline_failed} of {self.baseline_runs}")
        if self.provisional:
            text += (". Provisional: the seeds of this look are still running, and the verdict "
                     "counts only once they have finished")
        return text + "."

    def _level(self) -> str:
        if self.looks > 1:
            return f"{self.alpha_look:.3g} (α {self.alpha:g} over {self.looks} looks)"
        return f"{self.alpha_look:g}"

    def _failure_text(self) -> str:
        if not (self.failed or self.baseline_failed):
            return ""
        text = (f"; {self.variant} failed on {self.failed} of {self.runs} seeds, "
                f"{self.baseline} on {self.baseline_failed} of {self.baseline_runs}")
        if math.isfinite(self.p_failures):
            text += f" (Fisher {_p(self.p_failures)})"
        return text


_CORRECTED = {"holm": "Holm", "bh": "BH", "none": "unadjusted"}


def _p(p: float) -> str:
    if not math.isfinite(p):
        return "p n/a"
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.2f}" if p >= 0.1 else f"p = {p:.2g}"


def _finished(per_seed: Mapping[int, float | None]) -> dict[int, float]:
    out = {}
    for seed, value in per_seed.items():
        if value is not None and math.isfinite(float(value)):
            out[int(seed)] = float(value)
    return out


def compare_to_baseline(per_seed: PerSeed, baseline: str, *, metric: str = "best_val_acc",
                        higher_is_better: bool = True, alpha: float = DEFAULT_ALPHA,
                        alpha_look: float | None = None, margin: float = DEFAULT_MARGIN,
                        correction: str = "holm", confidence: float = 0.95, look: int = 1,
                        looks: int = 1) -> list[Comparison]:
    """Every arm of `per_seed` against `baseline` at one look (see the module docstring)."""
    if baseline not in per_seed:
        raise KeyError(f"baseline {baseline!r} not in the arms ({', '.join(sorted(per_seed))})")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if margin <= 0:
        raise ValueError(f"margin must be positive, got {margin}")
    level = alpha if alpha_look is None else alpha_look
    base_all, base = per_seed[baseline], _finished(per_seed[baseline])
    arms = [arm for arm in per_seed if arm != baseline]
    sign = 1.0 if higher_is_better else -1.0
    rows = []
    for arm in arms:
        mine = _finished(per_seed[arm])
        common = sorted(set(mine) & set(base))
        d = np.asarray([mine[s] - base[s] for s in common], dtype=float)
        rows.append((arm, d, paired_t_test(d), sign_flip_test(d) if d.size >= 2 else math.nan,
                     tost(d, margin) if d.size >= 2 else math.nan))
    p_adj = adjust([r[2] for r in rows], correction)
    sf_adj = adjust([r[3] for r in rows], correction)
    # "Equivalent" is a claim too: corrected across arms like "better", or three arms at
    # the margin would be called equivalent by one of them up to 3 alpha of the time.
    eq_adj = adjust([r[4] for r in rows], correction)
    # Worst case of Holm/BH over k arms is Bonferroni: plan power at level / k.
    plan_level = level / max(1, len(arms)) if correction != "none" else level
    out = []
    for (arm, d, p, _, _), p_a, p_sf_a, p_eq in zip(rows, p_adj, sf_adj, eq_adj, strict=True):
        n = int(d.size)
        mean = float(d.mean()) if n else math.nan
        sd = float(d.std(ddof=1)) if n >= 2 else math.nan
        low, high = t_interval(d, confidence=confidence)
        if n < 2:
            verdict = "inconclusive"
        elif p_a < level:
            verdict = "better" if sign * mean > 0 else "worse"
        elif p_eq < level:
            verdict = "equivalent"
        else:
            verdict = "inconclusive"
        runs, failed = len(per_seed[arm]), len(per_seed[arm]) - len(_finished(per_seed[arm]))
        base_runs, base_failed = len(base_all), len(base_all) - len(base)
        out.append(Comparison(
            variant=arm, baseline=baseline, metric=metric, n_pairs=n, mean_diff=mean,
            sd_diff=sd, ci_low=low, ci_high=high, p_value=p, p_adjusted=float(p_a),
            p_sign_flip=float(p_sf_a), p_tost=float(p_eq), verdict=verdict, alpha=alpha,
            alpha_look=level, margin=margin,
            detectable=detectable_effect(sd, n, alpha=plan_level, power=POWER),
            seeds_for_margin=seeds_needed(sd, margin, alpha=plan_level, power=POWER,
                                          max_seeds=MAX_SEEDS_PLANNED),
            runs=runs, failed=failed, baseline_runs=base_runs, baseline_failed=base_failed,
            p_failures=failure_rate_test(failed, runs, base_failed, base_runs),
            look=look, looks=looks, confidence=confidence, correction=correction,
            higher_is_better=higher_is_better))
    return out
