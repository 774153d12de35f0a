"""Fixed-n properties of the seed statistics at 2-10 seeds, by simulation.

For n = 2, 3, 4, 5, 8 and 10 seeds, with normal or heavy-tailed seed noise (Student t with
3 degrees of freedom, scaled to the same standard deviation), this measures what
`analysis.stats` and `analysis.verdicts` promise at a fixed number of seeds:

1. coverage of the 95% t-interval (`t_interval`) and of the BCa bootstrap (`bootstrap_ci`,
   its defaults: 10,000 resamples) for the mean of one arm and for the mean paired
   difference of two arms;
2. type I error at alpha 0.05 of the paired t-test (`paired_t_test`) and of the exact
   sign-flip test (`sign_flip_test`) when the true difference is 0;
3. the verdicts of `compare_to_baseline` (one arm against the baseline, alpha 0.05,
   margin 0.005): the false "equivalent" rate when the true difference sits exactly at the
   margin (the TOST promises <= alpha), the rate of "equivalent" at a true difference of 0,
   and the rate of "better" at true differences of 1x and 2x the margin, beside the
   noncentral-t power `paired_t_power` predicts.

Data model, per seed s and arm a: metric = 0.97 + effect_a + seed_s + noise_{a,s}. The seed
effect (sd 0.01) is shared by the arms on the same seed and cancels in a paired difference;
the arm noise has sd 0.005 / sqrt(2), so a paired difference has sd 0.005 (half an accuracy
point), the size of the margin. The heavy-tailed case draws both the seed effect and the
noise from t(3) / sqrt(3). The three effects of part 3 reuse the same noise draws.

Every rate is printed with its Monte Carlo standard error sqrt(p (1 - p) / reps); a rate of
0 has a one-sided 95% upper bound of about 3 / reps.

Speed: the planning fields of a comparison (`detectable`, `seeds_for_margin`, root finding
on the noncentral t) take about 85% of `compare_to_baseline`'s time and do not enter the
verdict, so they are stubbed out here unless `--exact` is given; the script checks on the
first draws that the verdicts are the same either way.

    .venv/bin/python benchmarks/seed_statistics.py [--reps 4000] [--seed 0] [--exact]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

import analysis.verdicts as verdicts
from analysis.stats import (
    bootstrap_ci,
    paired_t_power,
    paired_t_test,
    sign_flip_test,
    t_interval,
)

NS = (2, 3, 4, 5, 8, 10)
DISTS = ("normal", "t3")
ALPHA = 0.05
MARGIN = verdicts.DEFAULT_MARGIN      # 0.005
SD_DIFF = 0.005                       # sd of a paired difference
SD_ARM = SD_DIFF / math.sqrt(2)       # per-arm noise around the shared seed effect
SD_SEED = 0.01                        # shared seed effect
BASE = 0.97
CHECK_DRAWS = 100                     # draws compared with and without the stub


def draw(rng: np.random.Generator, dist: str, size: tuple[int, ...], sd: float) -> np.ndarray:
    """Noise of standard deviation `sd`: normal, or Student t(3) rescaled (its var is 3)."""
    if dist == "normal":
        return rng.normal(0.0, sd, size)
    return rng.standard_t(3, size) * (sd / math.sqrt(3.0))


def rate(hits: int, reps: int) -> str:
    p = hits / reps
    return f"{p:.3f} ± {math.sqrt(p * (1 - p) / reps):.3f}"


def covers(interval: tuple[float, float], truth: float) -> bool:
    low, high = interval
    return low <= truth <= high


def verdict(base: np.ndarray, arm: np.ndarray) -> str:
    per_seed = {"base": dict(enumerate(base.tolist(), 1)), "arm": dict(enumerate(arm.tolist(), 1))}
    (c,) = verdicts.compare_to_baseline(per_seed, "base", alpha=ALPHA, margin=MARGIN)
    return c.verdict


def stub_planning() -> None:
    """Replace the planning fields' root finding (not used by any verdict) with None."""
    verdicts.detectable_effect = lambda *a, **k: None
    verdicts.seeds_needed = lambda *a, **k: None


def simulate(dist: str, n: int, reps: int, seed: int) -> dict[str, int]:
    rng = np.random.default_rng([seed, DISTS.index(dist), n])
    seed_eff = draw(rng, dist, (reps, n), SD_SEED)
    base = BASE + seed_eff + draw(rng, dist, (reps, n), SD_ARM)
    noise_arm = draw(rng, dist, (reps, n), SD_ARM)
    arms = {k: BASE + k * MARGIN + seed_eff + noise_arm for k in (0, 1, 2)}
    diff_m = arms[1] - base            # true mean difference: MARGIN
    diff_0 = arms[0] - base            # true mean difference: 0
    c: dict[str, int] = dict.fromkeys(
        ("t_mean", "bca_mean", "t_diff", "bca_diff", "err_t", "err_sf", "eq_m", "eq_0",
         "better_m", "better_2m", "sig_0"), 0)
    width_t = width_b = 0.0
    for r in range(reps):
        ti, bi = t_interval(base[r]), bootstrap_ci(base[r], seed=r)
        c["t_mean"] += covers(ti, BASE)
        c["bca_mean"] += covers(bi, BASE)
        width_t += ti[1] - ti[0]
        width_b += bi[1] - bi[0]
        c["t_diff"] += covers(t_interval(diff_m[r]), MARGIN)
        c["bca_diff"] += covers(bootstrap_ci(diff_m[r], seed=r), MARGIN)
        c["err_t"] += paired_t_test(diff_0[r]) < ALPHA
        c["err_sf"] += sign_flip_test(diff_0[r]) < ALPHA
        v0, v1, v2 = (verdict(base[r], arms[k][r]) for k in (0, 1, 2))
        c["eq_0"] += v0 == "equivalent"
        c["sig_0"] += v0 in ("better", "worse")
        c["eq_m"] += v1 == "equivalent"
        c["better_m"] += v1 == "better"
        c["better_2m"] += v2 == "better"
    c["width_ratio"] = width_b / width_t  # type: ignore[assignment]
    return c


def check_stub(seed: int) -> None:
    """The stubbed planning fields leave every verdict unchanged (first draws, all n)."""
    saved = verdicts.detectable_effect, verdicts.seeds_needed
    rng = np.random.default_rng([seed, 99])
    cases = []
    for n in NS:
        for k in (0, 1, 2):
            for _ in range(CHECK_DRAWS // 10):
                s = rng.normal(0, SD_SEED, n)
                cases.append((BASE + s + rng.normal(0, SD_ARM, n),
                               BASE + k * MARGIN + s + rng.normal(0, SD_ARM, n)))
    exact = [verdict(b, a) for b, a in cases]
    stub_planning()
    fast = [verdict(b, a) for b, a in cases]
    if exact != fast:
        verdicts.detectable_effect, verdicts.seeds_needed = saved
        raise SystemExit("stubbing the planning fields changed a verdict; rerun with --exact")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=4000, help="draws per (noise, n) cell")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--exact", action="store_true",
                        help="keep the planning fields' root finding (slower, same verdicts)")
    args = parser.parse_args()
    t0 = time.perf_counter()
    if not args.exact:
        check_stub(args.seed)
    results = {(d, n): simulate(d, n, args.reps, args.seed) for d in DISTS for n in NS}
    reps = args.reps

    print(f"\nseed_statistics: {reps} draws per cell, seed {args.seed}; sd of a paired "
          f"difference {SD_DIFF}, margin {MARGIN}, alpha {ALPHA}\n")
    print("Coverage of 95% intervals (nominal 0.950), ± Monte Carlo SE\n")
    print("| noise | n | mean: t | mean: BCa | BCa/t width | paired diff: t | "
          "paired diff: BCa |")
    print("|---|---|---|---|---|---|---|")
    for (d, n), c in results.items():
        print(f"| {d} | {n} | {rate(c['t_mean'], reps)} | {rate(c['bca_mean'], reps)} | "
              f"{c['width_ratio']:.2f} | {rate(c['t_diff'], reps)} | "
              f"{rate(c['bca_diff'], reps)} |")

    print("\nType I error at alpha 0.05, true difference 0 (nominal <= 0.050)\n")
    print("| noise | n | paired t | sign-flip (exact) | sign-flip floor 2/2^n |")
    print("|---|---|---|---|---|")
    for (d, n), c in results.items():
        print(f"| {d} | {n} | {rate(c['err_t'], reps)} | {rate(c['err_sf'], reps)} | "
              f"{2 / 2**n:.3g} |")

    print(f"\ncompare_to_baseline, one arm, alpha {ALPHA}, margin {MARGIN} (= sd of the "
          "differences)\n")
    print("| noise | n | equivalent at Δ=margin (≤ 0.05) | equivalent at Δ=0 | "
          "better/worse at Δ=0 | better at Δ=margin | (t power) | better at Δ=2×margin | "
          "(t power) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (d, n), c in results.items():
        p1 = paired_t_power(n, MARGIN, SD_DIFF, ALPHA)
        p2 = paired_t_power(n, 2 * MARGIN, SD_DIFF, ALPHA)
        print(f"| {d} | {n} | {rate(c['eq_m'], reps)} | {rate(c['eq_0'], reps)} | "
              f"{rate(c['sig_0'], reps)} | {rate(c['better_m'], reps)} | {p1:.3f} | "
              f"{rate(c['better_2m'], reps)} | {p2:.3f} |")
    print("\n(t power: two-sided noncentral-t power for normal differences, the chance of "
          "a significant result in either direction; 'better' alone is a hair below it.)")
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
