"""Seeds until the question is answered: the looks of an adaptive seed schedule.

`--seeds K --max-seeds M --seed-batch b` runs K seeds per arm, then looks at the data after
K, K+b, K+2b, ... and M seeds. At each look every arm still undecided is judged; decided
arms (better, worse, equivalent) get no more seeds, the rest get b more, the baseline as
long as any arm still needs it.

Why this is valid: the design is Bonferroni over the planned looks. Every test at every
look runs at alpha / L for L planned looks (Holm across arms within a look), so the chance
of any false "better"/"worse" over the whole run is at most the sum over looks, alpha; the
same holds for the TOST that declares "equivalent" (Holm-corrected across arms as well, so
the bound is for any arm of the run, not for each). It is conservative (an alpha-spending
function or an anytime-valid confidence sequence would spend less), but it needs no
assumption about how the looks are correlated and no interim bookkeeping, and the
simulation in `benchmarks/adaptive_seeds.py` shows what it costs and saves.

The report replays the same looks from the trials, so the verdicts it prints are the ones
the driver acted on: an arm's verdict is the one from the first look that decided it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from analysis.summary import FAILED_STATUSES, OK_STATUSES
from analysis.verdicts import (
    DEFAULT_ALPHA,
    DEFAULT_MARGIN,
    Comparison,
    PerSeed,
    compare_to_baseline,
)


@dataclass(frozen=True)
class SeedSchedule:
    """K initial seeds per arm, looks every `batch` seeds, at most `maximum`."""

    initial: int
    maximum: int
    batch: int = 2

    def __post_init__(self) -> None:
        if self.initial < 1:
            raise ValueError(f"initial seeds must be at least 1, got {self.initial}")
        if self.maximum < self.initial:
            raise ValueError(f"max seeds ({self.maximum}) must be at least the initial seeds "
                             f"({self.initial})")
        if self.batch < 1:
            raise ValueError(f"seed batch must be at least 1, got {self.batch}")

    @classmethod
    def fixed(cls, seeds: int) -> SeedSchedule:
        """A run with a fixed number of seeds: one look."""
        return cls(initial=max(1, seeds), maximum=max(1, seeds), batch=1)

    @property
    def adaptive(self) -> bool:
        return self.maximum > self.initial

    @property
    def looks(self) -> tuple[int, ...]:
        """Seeds per arm at each look: K, K+b, ..., M (the last batch may be smaller)."""
        out = list(range(self.initial, self.maximum, self.batch))
        return (*out, self.maximum)

    def alpha_per_look(self, alpha: float) -> float:
        return alpha / len(self.looks)

    def to_meta(self) -> dict[str, Any]:
        return {"initial": self.initial, "maximum": self.maximum, "batch": self.batch,
                "looks": list(self.looks), "design": "Bonferroni over the planned looks"}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any] | None) -> SeedSchedule | None:
        if not meta:
            return None
        return cls(initial=int(meta["initial"]), maximum=int(meta["maximum"]),
                   batch=int(meta["batch"]))


def outcomes(rows: Iterable[Mapping[str, Any]], arms: Iterable[str], baseline: str | None
             ) -> tuple[str, dict[str, dict[int, float | None]]]:
    """The metric the verdicts compare and ``{arm: {seed: value, None if failed}}``.

    One definition for the report and the driver that adds seeds, so both judge the same
    numbers. ``rows`` are compared trials that ended, with trials.parquet's fields (variant,
    seed, status, test_acc, best_val_acc). The metric is test_acc when the baseline's ok
    trials have one (every arm's when there is no baseline), else best_val_acc; a diverged
    or errored seed is None; an ok trial without the metric measured nothing and is left
    out. Arms not in ``arms`` are ignored.
    """
    arms = list(arms)
    rows = [r for r in rows if r.get("variant") in set(arms) and r.get("seed") is not None]
    tests = [r.get("test_acc") for r in rows if r.get("status") in OK_STATUSES
             and (baseline is None or r["variant"] == baseline)]
    metric = "test_acc" if any(_finite(v) for v in tests) else "best_val_acc"
    per_seed: dict[str, dict[int, float | None]] = {arm: {} for arm in arms}
    for row in sorted(rows, key=lambda r: int(r["seed"])):
        value, status = row.get(metric), row.get("status")
        if status in FAILED_STATUSES:
            per_seed[row["variant"]][int(row["seed"])] = None
        elif status in OK_STATUSES and _finite(value):
            per_seed[row["variant"]][int(row["seed"])] = float(value)
    return metric, per_seed


def _finite(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _first(per_seed: Mapping[int, float | None], n: int) -> dict[int, float | None]:
    """The arm's first n seeds that ran (finished or failed), in seed order."""
    return {s: per_seed[s] for s in sorted(per_seed)[:n]}


@dataclass(frozen=True)
class Judgement:
    """The verdict of every arm and what the driver should run next."""

    comparisons: list[Comparison]
    look: int                 # looks completed (0: the first look is not complete yet)
    ran: dict[str, int]       # seeds each arm has run (finished or failed)
    targets: dict[str, int]   # seeds each arm (and the baseline) should have in total

    @property
    def more(self) -> dict[str, int]:
        """Arms that need more seeds, with how many more."""
        return {a: self.targets[a] - self.ran[a] for a in self.targets
                if self.targets[a] > self.ran[a]}


def judge(per_seed: PerSeed, baseline: str, schedule: SeedSchedule, *,
          metric: str = "best_val_acc", higher_is_better: bool = True,
          alpha: float = DEFAULT_ALPHA, margin: float = DEFAULT_MARGIN,
          correction: str = "holm", confidence: float = 0.95, closed: bool = False
          ) -> Judgement:
    """Replay the looks the data has reached and say which arms need more seeds.

    `per_seed` holds the trials that ended (a running trial is not there yet); a seed whose
    trial failed is present with None. A look is reached when the baseline and every arm
    still undecided have run that many seeds. Comparisons at a look not reached are
    provisional and decide nothing, unless the run is `closed` (finished: no seed will be
    added), when the seeds it has are its last look.
    """
    looks = schedule.looks
    level = schedule.alpha_per_look(alpha)
    arms = [a for a in per_seed if a != baseline]
    decided: dict[str, tuple[Comparison, int]] = {}
    latest: dict[str, Comparison] = {}
    reached = 0
    for index, n in enumerate(looks, start=1):
        undecided = [a for a in arms if a not in decided]
        if not undecided:
            break
        full = all(len(per_seed[a]) >= n for a in [baseline, *undecided])
        if not full and index > 1 and not closed:
            break
        complete = full or closed
        data = {a: _first(per_seed[a], decided[a][1] if a in decided else n)
                for a in [baseline, *arms]}
        for c in compare_to_baseline(data, baseline, metric=metric,
                                     higher_is_better=higher_is_better, alpha=alpha,
                                     alpha_look=level, margin=margin, correction=correction,
                                     confidence=confidence, look=index, looks=len(looks)):
            if c.variant in decided:
                continue
            latest[c.variant] = c if complete else replace(c, provisional=True)
            if c.decided and complete:
                decided[c.variant] = (c, n)
        if not complete:
            break
        reached = index
        if not full:
            break
    comparisons = [decided[a][0] if a in decided else latest[a] for a in arms if a in latest]
    ran = {a: len(per_seed[a]) for a in per_seed}
    targets = dict(ran)
    if closed:  # finished: nothing more will run
        return Judgement(comparisons=comparisons, look=reached, ran=ran, targets=targets)
    if reached and reached < len(looks):
        following = looks[reached]
        needing = [a for a in arms if a not in decided]
        for a in needing:
            targets[a] = max(ran[a], following)
        if needing:
            targets[baseline] = max(ran[baseline], following)
    elif not reached:
        for a in per_seed:
            targets[a] = max(ran[a], looks[0])
    return Judgement(comparisons=comparisons, look=reached, ran=ran, targets=targets)
