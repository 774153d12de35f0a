"""Adaptive seeds: error rates and seeds saved by `analysis.sequential.judge`, by simulation.

A run has a baseline and three arms. Every arm starts with K seeds; the script then drives
`judge` exactly as the orchestrator's driver would: while `judgement.more` is non-empty it
adds the seeds asked for (seeds are numbered 1, 2, 3, ... per arm) and judges again. The
schedules are K=3, M=12, b=2 (looks after 3, 5, 7, 9, 11, 12 seeds) and K=5, M=10, b=2
(looks after 5, 7, 9, 10). alpha 0.05, margin 0.005.

Data model, per seed s and arm a: metric = 0.97 + effect_a + seed_s + noise_{a,s}. The seed
effect (sd 0.01) is shared by every arm on seed s (the same seed number), so it cancels in
a paired difference; the arm noise has sd sd_diff / sqrt(2), so a paired difference has sd
sd_diff = 0.005 (half an accuracy point, the size of the margin). Heavy-tailed noise draws
the seed effect and the arm noise from Student t(3) / sqrt(3) (same sd). Scenarios give the
three arms' true effects in units of the margin. A sweep puts all three arms exactly at the
margin for sds of a paired difference from 0.5x to 2x the margin (normal noise), under both
schedules and a fixed 10 seeds (one look at the full alpha), where a false "equivalent" for
some arm of the run is as likely as the design allows.

Rules: "Bonferroni" is `judge` as shipped (every test at every look at alpha / L, Holm
across the arms within a look). "naive" is the same loop testing at the full alpha at every
look (judge called with alpha x L, so alpha / L = alpha; Holm across arms kept): it shows
what ignoring the repeated looks would cost. Both rules see the same draws.

Reported per configuration, each with its Monte Carlo standard error:
- FWER: share of runs where any arm with true difference 0 was called better or worse;
- false eq: share of runs where any arm at or beyond the margin was called equivalent;
- decided: share of arms with a verdict other than inconclusive at the end;
- seeds/arm: mean seeds run per arm (the baseline is reported on its own);
- saved: 1 - (all seeds run, baseline included) / (4 x M), the saving against running M
  seeds for every arm.
A second table splits the verdicts by the arm's true effect.

Speed, exact by construction: `judge` replays every earlier look on each call, so the
script memoises `compare_to_baseline` per run (same inputs, same output), and stubs the
planning fields `detectable`/`seeds_for_margin` (root finding that no verdict reads). The
first runs of a few configurations are replayed without either shortcut and must give the
same verdicts and seed counts; `--exact` turns both shortcuts off for everything.

    .venv/bin/python benchmarks/adaptive_seeds.py [--reps 1000] [--seed 0] [--exact]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special
from scipy import stats as scipy_stats

import analysis.sequential as sequential
import analysis.stats as stats
import analysis.verdicts as verdicts
from analysis.sequential import SeedSchedule, judge

ALPHA = 0.05
MARGIN = verdicts.DEFAULT_MARGIN      # 0.005
SD_DIFF = 0.005
SD_SEED = 0.01
BASE = 0.97
BASELINE = "base"
ARMS = ("a1", "a2", "a3")
SCHEDULES = (SeedSchedule(3, 12, 2), SeedSchedule(5, 10, 2))
NOISES = ("normal", "t3")
RULES = ("Bonferroni", "naive")
# name: true effects of the three arms, in margins (sd of a paired difference SD_DIFF)
SCENARIOS: dict[str, tuple[float, float, float]] = {
    "null 0/0/0": (0, 0, 0),
    "one at margin 0/0/1": (0, 0, 1),
    "one at 2×margin 0/0/2": (0, 0, 2),
    "mix 0/1/2": (0, 1, 2),
    "mix 0/−1/2": (0, -1, 2),
    "all at margin 1/1/1": (1, 1, 1),
}
# The sweep: all three arms exactly at the margin, for several sds of a paired difference,
# under both schedules and a fixed 10 seeds (one look at the full alpha) for reference.
SWEEP_EFFECTS = (1.0, 1.0, 1.0)
SWEEP_SDS = (0.0025, 0.0035, 0.005, 0.0075, 0.01)
SWEEP_SCHEDULES = (*SCHEDULES, SeedSchedule.fixed(10))
CHECK_RUNS = 15       # runs per checked configuration replayed without the shortcuts


def draw(rng: np.random.Generator, noise: str, size: Any, sd: float) -> np.ndarray:
    if noise == "normal":
        return rng.normal(0.0, sd, size)
    return rng.standard_t(3, size) * (sd / math.sqrt(3.0))


def draws(key: list[int], effects: tuple[float, ...], sd_diff: float, noise: str, m: int,
          reps: int) -> list[dict[str, np.ndarray]]:
    """Per run: each arm's metric on seeds 1..M (the same draws for both rules)."""
    rng = np.random.default_rng(key)
    seed_eff = draw(rng, noise, (reps, m), SD_SEED)
    noise_all = draw(rng, noise, (reps, 1 + len(ARMS), m), sd_diff / math.sqrt(2))
    out = []
    for r in range(reps):
        values = {BASELINE: BASE + seed_eff[r] + noise_all[r, 0]}
        for i, (arm, e) in enumerate(zip(ARMS, effects, strict=True)):
            values[arm] = BASE + e * MARGIN + seed_eff[r] + noise_all[r, i + 1]
        out.append(values)
    return out


def scenario_draws(seed: int, scenario: str, noise: str, schedule: SeedSchedule, reps: int
                   ) -> list[dict[str, np.ndarray]]:
    key = [seed, list(SCENARIOS).index(scenario), NOISES.index(noise),
           SCHEDULES.index(schedule)]
    return draws(key, SCENARIOS[scenario], SD_DIFF, noise, schedule.maximum, reps)


def sweep_draws(seed: int, sd_diff: float, schedule: SeedSchedule, reps: int
                ) -> list[dict[str, np.ndarray]]:
    key = [seed, 100 + SWEEP_SDS.index(sd_diff), 0, 10 + SWEEP_SCHEDULES.index(schedule)]
    return draws(key, SWEEP_EFFECTS, sd_diff, "normal", schedule.maximum, reps)


# --------------------------------------------------------------------------- shortcuts


class _StudentT:
    """scipy.stats.t's sf/cdf/ppf without its argument checking: the same special functions
    (`t._sf(x, df) = stdtr(df, -x)`, `_cdf = stdtr`, `_ppf = stdtrit` in scipy 1.17)."""

    @staticmethod
    def sf(x: Any, df: Any) -> Any:
        return special.stdtr(df, -np.asarray(x, dtype=float))

    @staticmethod
    def cdf(x: Any, df: Any) -> Any:
        return special.stdtr(df, x)

    @staticmethod
    def ppf(q: Any, df: Any) -> Any:
        return special.stdtrit(df, q)


class _FastStats:
    """scipy.stats with the Student t calls above; everything else passed through."""

    t = _StudentT

    def __getattr__(self, name: str) -> Any:
        return getattr(scipy_stats, name)


FAST_STATS = _FastStats()


class Shortcuts:
    """Memoised compare_to_baseline, stubbed planning fields, lean t calls; switchable."""

    def __init__(self) -> None:
        self.original: Callable[..., Any] = sequential.compare_to_baseline
        self.planning = (verdicts.detectable_effect, verdicts.seeds_needed)
        self.scipy = stats._scipy
        self.cache: dict[Any, Any] = {}

    def _memo(self, data: Any, baseline: str, **kwargs: Any) -> Any:
        key = (baseline, tuple((a, tuple(d.items())) for a, d in data.items()),
               tuple(sorted(kwargs.items())))
        hit = self.cache.get(key)
        if hit is None:
            hit = self.cache[key] = self.original(data, baseline, **kwargs)
        return hit

    def on(self) -> None:
        sequential.compare_to_baseline = self._memo
        verdicts.detectable_effect = lambda *a, **k: None
        verdicts.seeds_needed = lambda *a, **k: None
        stats._scipy = lambda: FAST_STATS

    def off(self) -> None:
        sequential.compare_to_baseline = self.original
        verdicts.detectable_effect, verdicts.seeds_needed = self.planning
        stats._scipy = self.scipy


SHORTCUTS = Shortcuts()


# --------------------------------------------------------------------------- the driver


@dataclass(frozen=True)
class Outcome:
    verdicts: dict[str, str]
    seeds: dict[str, int]     # seeds run per arm and baseline
    detail: tuple[tuple[float, ...], ...] = ()  # p-values and intervals, for the check


def drive(values: dict[str, np.ndarray], schedule: SeedSchedule, alpha: float) -> Outcome:
    """Start every arm with K seeds; add what `judge` asks for until it asks for nothing."""
    SHORTCUTS.cache.clear()
    k, m = schedule.initial, schedule.maximum
    per_seed = {a: {s: float(v[s - 1]) for s in range(1, k + 1)} for a, v in values.items()}
    for _ in range(len(schedule.looks) + 1):
        judgement = judge(per_seed, BASELINE, schedule, alpha=alpha, margin=MARGIN)
        if not judgement.more:
            return Outcome({c.variant: c.verdict for c in judgement.comparisons},
                           {a: len(s) for a, s in per_seed.items()},
                           tuple((c.look, c.p_value, c.p_adjusted, c.p_sign_flip, c.p_tost,
                                  c.ci_low, c.ci_high) for c in judgement.comparisons))
        for arm, extra in judgement.more.items():
            have = len(per_seed[arm])
            if have + extra > m:
                raise RuntimeError(f"judge asked for {have + extra} seeds of {arm}, max {m}")
            for s in range(have + 1, have + extra + 1):
                per_seed[arm][s] = float(values[arm][s - 1])
    raise RuntimeError("judge still asked for seeds after every look")


def rule_alpha(rule: str, schedule: SeedSchedule) -> float:
    return ALPHA if rule == "Bonferroni" else ALPHA * len(schedule.looks)


# --------------------------------------------------------------------------- tallies


def mean_se(x: list[float]) -> tuple[float, float]:
    a = np.asarray(x, dtype=float)
    if a.size == 0:
        return (math.nan, math.nan)
    return float(a.mean()), (float(a.std(ddof=1) / math.sqrt(a.size)) if a.size > 1 else 0.0)


def fmt(x: list[float], digits: int = 3) -> str:
    if not x:
        return "n/a"
    mean, se = mean_se(x)
    return f"{mean:.{digits}f} ± {se:.{digits}f}"


def tally(outcomes: list[Outcome], effects: tuple[float, ...], m: int) -> dict[str, list[float]]:
    t: dict[str, list[float]] = {"fwer": [], "false_eq": [], "decided": [], "seeds": [],
                                 "base_seeds": [], "saved": [], "wrong_sign": [],
                                 "eq_arm": [], "better_arm": []}
    nulls = [a for a, e in zip(ARMS, effects, strict=True) if e == 0]
    far = [a for a, e in zip(ARMS, effects, strict=True) if abs(e) >= 1]
    for o in outcomes:
        if nulls:
            t["fwer"].append(float(any(o.verdicts[a] in ("better", "worse") for a in nulls)))
        if far:
            t["false_eq"].append(float(any(o.verdicts[a] == "equivalent" for a in far)))
            t["eq_arm"].append(float(np.mean([o.verdicts[a] == "equivalent" for a in far])))
        t["better_arm"].append(float(np.mean([o.verdicts[a] == "better" for a in ARMS])))
        t["wrong_sign"].append(float(any(
            (e > 0 and o.verdicts[a] == "worse") or (e < 0 and o.verdicts[a] == "better")
            for a, e in zip(ARMS, effects, strict=True))))
        t["decided"].append(float(np.mean([o.verdicts[a] != "inconclusive" for a in ARMS])))
        t["seeds"].append(float(np.mean([o.seeds[a] for a in ARMS])))
        t["base_seeds"].append(float(o.seeds[BASELINE]))
        t["saved"].append(1.0 - sum(o.seeds.values()) / ((1 + len(ARMS)) * m))
    return t


def check(seed: int) -> int:
    """Replay the first runs of some configurations without the shortcuts: same results."""
    checked = 0
    for scenario in ("mix 0/1/2", "all at margin 1/1/1"):
        for noise in NOISES:
            for schedule in SCHEDULES:
                runs = scenario_draws(seed, scenario, noise, schedule, CHECK_RUNS)
                for rule in RULES:
                    a = rule_alpha(rule, schedule)
                    SHORTCUTS.on()
                    fast = [drive(v, schedule, a) for v in runs]
                    SHORTCUTS.off()
                    exact = [drive(v, schedule, a) for v in runs]
                    if fast != exact:
                        raise SystemExit(f"shortcuts changed an outcome ({scenario}, {noise}, "
                                         f"{schedule}, {rule}); rerun with --exact")
                    checked += len(runs)
    return checked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=1000, help="runs per configuration")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--exact", action="store_true",
                        help="no memoising, no planning stub (slower, same outcomes)")
    args = parser.parse_args()
    t0 = time.perf_counter()
    checked = 0 if args.exact else check(args.seed)
    if not args.exact:
        SHORTCUTS.on()

    rows = []
    by_effect: dict[tuple[str, str, str, float], list[Outcome]] = {}
    for schedule in SCHEDULES:
        for noise in NOISES:
            for scenario, effects in SCENARIOS.items():
                runs = scenario_draws(args.seed, scenario, noise, schedule, args.reps)
                for rule in RULES:
                    outcomes = [drive(v, schedule, rule_alpha(rule, schedule)) for v in runs]
                    rows.append((schedule, noise, scenario, rule,
                                 tally(outcomes, effects, schedule.maximum)))
                    for i, e in enumerate(effects):
                        key = (str(schedule.looks), noise, rule, e)
                        by_effect.setdefault(key, []).extend(
                            Outcome({"x": o.verdicts[ARMS[i]]}, {"x": o.seeds[ARMS[i]]})
                            for o in outcomes)
    sweep = []
    for sd_diff in SWEEP_SDS:
        for schedule in SWEEP_SCHEDULES:
            runs = sweep_draws(args.seed, sd_diff, schedule, args.reps)
            outcomes = [drive(v, schedule, ALPHA) for v in runs]
            sweep.append((sd_diff, schedule,
                          tally(outcomes, SWEEP_EFFECTS, schedule.maximum)))

    print(f"\nadaptive_seeds: {args.reps} runs per configuration, seed {args.seed}, alpha "
          f"{ALPHA}, margin {MARGIN}, sd of a paired difference {SD_DIFF} unless stated; "
          f"1 baseline + 3 arms"
          + ("" if args.exact else f"; shortcuts checked on {checked} runs"))
    wrong = {rule: [(f"K={sc.initial} {noise} {name}", int(sum(t["wrong_sign"])))
                    for sc, noise, name, r, t in rows if r == rule and sum(t["wrong_sign"])]
             for rule in RULES}
    for schedule in SCHEDULES:
        looks = ", ".join(map(str, schedule.looks))
        print(f"\nK={schedule.initial}, M={schedule.maximum}, b={schedule.batch} (looks after "
              f"{looks} seeds; Bonferroni level per look {ALPHA / len(schedule.looks):.4g})\n")
        print("| noise | scenario (effects in margins) | rule | FWER better/worse (≤ 0.05) | "
              "false equivalent, any arm (≤ 0.05?) | arms decided | seeds/arm | "
              "baseline seeds | seeds saved vs M |")
        print("|---|---|---|---|---|---|---|---|---|")
        for sched, noise, scenario, rule, t in rows:
            if sched != schedule:
                continue
            print(f"| {noise} | {scenario} | {rule} | {fmt(t['fwer'])} | {fmt(t['false_eq'])} | "
                  f"{fmt(t['decided'], 2)} | {fmt(t['seeds'], 2)} | {fmt(t['base_seeds'], 2)} | "
                  f"{fmt(t['saved'], 3)} |")

    print("\nVerdicts by the arm's true effect (arms pooled over the scenarios above that "
          f"have them, sd {SD_DIFF}), share of arms ± MC SE\n")
    print("| looks | noise | rule | effect | better | worse | equivalent | inconclusive | "
          "seeds/arm |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (looks, noise, rule, e), outs in sorted(by_effect.items(),
                                                 key=lambda kv: (kv[0][0], kv[0][1],
                                                                 RULES.index(kv[0][2]),
                                                                 kv[0][3])):
        share = {v: [float(o.verdicts["x"] == v) for o in outs]
                 for v in ("better", "worse", "equivalent", "inconclusive")}
        print(f"| {looks} | {noise} | {rule} | {e:+g}×margin | {fmt(share['better'])} | "
              f"{fmt(share['worse'])} | {fmt(share['equivalent'])} | "
              f"{fmt(share['inconclusive'])} | {fmt([o.seeds['x'] for o in outs], 2)} |")
    print("\nruns with an arm called in the wrong direction (effect ≠ 0): "
          + "; ".join(f"{rule}: " + (", ".join(f"{n} in {where}" for where, n in wrong[rule])
                                     or "none") for rule in RULES))
    print("(arms of one run share the baseline, so the SEs of this pooled table are a little "
          "optimistic)")

    print("\nFalse equivalence when all three arms sit exactly at the margin (normal noise, "
          "judge as shipped): per arm and for any arm of the run\n")
    print("| sd of a paired difference | schedule | false equivalent, per arm | "
          "false equivalent, any arm | better, per arm | seeds/arm |")
    print("|---|---|---|---|---|---|")
    for sd_diff, schedule, t in sweep:
        name = (f"fixed {schedule.maximum} seeds (1 look)" if not schedule.adaptive else
                f"K={schedule.initial}, M={schedule.maximum}, b={schedule.batch}")
        print(f"| {sd_diff:g} ({sd_diff / MARGIN:g}×margin) | {name} | {fmt(t['eq_arm'])} | "
              f"{fmt(t['false_eq'])} | {fmt(t['better_arm'])} | {fmt(t['seeds'], 2)} |")
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
