"""The fair-ablation protocol: tune every arm on the same candidates, then replicate.

An ablation compares arms (the grid points over the preset's variant keys). Comparing
tuned arms fairly needs three things this module fixes before any trial starts:

- every arm gets the same number of candidates, and for random search the *same*
  candidates: one Latin-hypercube sample of the unit cube (one dimension per tuned key),
  drawn from the recorded search seed and mapped through each arm's own domains
  (``domains.from_unit``), so arm A's draw i and arm B's draw i sit at the same quantiles;
- tuning runs on one seed and never on the seeds that are compared afterwards: the
  replicate seeds are fresh (``TUNING_SEED`` is not among them);
- a trial's stage (``tune`` | ``replicate`` | ``single``) and draw travel in its config, so
  the scheduler, the sink and the report all read them from the same place.

Then the decide stage (``SeedRule``, with ``--max-seeds`` above ``--seeds``): after every arm
has its K seeds, each arm is judged against the baseline (``analysis.sequential.judge``, the
very replay the report makes); arms still inconclusive get more seeds in batches until
decided or at the maximum. ``look`` turns the compared trials' rows into that decision, for
the searcher during the run and for the runner afterwards (was the run finished?).

The trials themselves are proposed by ``orchestrator.searcher.AblationSearcher``.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from analysis.sequential import Judgement, SeedSchedule, judge, outcomes
from analysis.verdicts import DEFAULT_ALPHA, DEFAULT_MARGIN
from orchestrator.domains import cardinality, describe, from_unit, is_domain
from orchestrator.errors import UserError
from orchestrator.space import grid_axes, resolve_config, set_path, variant_label
from search_spaces.tuning import KEEP, PerArm

TUNING_SEED = 0
DEFAULT_SEARCH_SEED = 2026
STAGES = ("single", "tune", "replicate")
Stage = Literal["single", "tune", "replicate"]


@dataclass(frozen=True)
class Arm:
    """One row of the ablation: its label, its recipe config and its tuned domains."""

    label: str
    config: dict[str, Any]             # resolved recipe config, without seed/stage/draw
    domains: dict[str, Any]            # tuned key -> this arm's Ray Tune domain

    def with_values(self, values: Mapping[str, Any], *, seed: int, stage: Stage,
                    draw: int) -> dict[str, Any]:
        config = copy.deepcopy(self.config)
        for key, value in values.items():
            set_path(config, key, value)
        config.update(seed=seed, stage=stage, draw=draw)
        return config


@dataclass(frozen=True)
class TuningProtocol:
    arms: tuple[Arm, ...]
    keys: tuple[str, ...]              # every tuned key, in unit-cube dimension order
    samples: int                       # candidates per arm
    seeds: tuple[int, ...]             # replicate seeds (fresh: never TUNING_SEED)
    search: Literal["random", "optuna"]
    search_seed: int
    metric: str
    mode: Literal["max", "min"]
    max_t: int
    tuning_seed: int = TUNING_SEED

    @property
    def n_trials(self) -> int:
        return len(self.arms) * (self.samples + len(self.seeds))

    @property
    def compare_stage(self) -> Stage:
        """The stage of the trials that are compared: replicates of a tuned choice, or the
        recipe itself when nothing is tuned (``samples`` 0, see ``untuned_protocol``)."""
        return "replicate" if self.samples else "single"

    def candidates(self) -> list[list[dict[str, Any]]]:
        """Per arm, its ``samples`` candidate values (random search), matched across arms."""
        if not self.samples:
            return [[] for _ in self.arms]
        points = unit_points(self)
        return [[{key: from_unit(arm.domains[key], u) for key, u in zip(self.keys, point,
                                                                         strict=True)
                  if key in arm.domains} for point in points] for arm in self.arms]

    def record(self) -> dict[str, Any]:
        """What meta.json keeps of the protocol: enough to see, and redo, the tuning."""
        return {
            "stages": ["tune", "replicate"], "samples_per_arm": self.samples,
            "search": self.search, "search_seed": self.search_seed,
            "tuning_seed": self.tuning_seed, "replicate_seeds": list(self.seeds),
            "metric": self.metric, "mode": self.mode, "max_epochs": self.max_t,
            "selection": f"best {self.metric} over epochs on the validation split, among "
                         "the candidates that reached the most epochs",
            "domains": {arm.label: {k: describe(d) for k, d in arm.domains.items()}
                        for arm in self.arms},
        }


def unit_points(protocol: TuningProtocol) -> list[tuple[float, ...]]:
    """``samples`` points of the unit cube that give every arm distinct configs.

    A Latin hypercube puts exactly one point in each of ``samples`` equal slices of every
    dimension: with the 4-10 draws people can afford, it covers each range far more evenly
    than independent uniform draws. Discrete domains can map two points to one config; such
    points are redrawn (deterministically) until every arm has ``samples`` distinct ones.
    """
    import numpy as np
    from scipy.stats import qmc

    dims = max(len(protocol.keys), 1)
    rng = np.random.default_rng(protocol.search_seed)
    points: list[tuple[float, ...]] = []
    seen: list[set[str]] = [set() for _ in protocol.arms]
    for _ in range(200):
        batch = qmc.LatinHypercube(d=dims, rng=rng).random(protocol.samples)
        for row in batch:
            configs = [json.dumps([from_unit(arm.domains.get(k), u) for k, u
                                   in zip(protocol.keys, row, strict=False)], default=str)
                       for arm in protocol.arms]
            if any(c in s for c, s in zip(configs, seen, strict=True)):
                continue
            for c, s in zip(configs, seen, strict=True):
                s.add(c)
            points.append(tuple(float(u) for u in row))
            if len(points) == protocol.samples:
                return points
    raise UserError(f"could not draw {protocol.samples} distinct candidates per arm; "
                    "lower --samples or widen the discrete domains")


def build_protocol(space: Mapping[str, Any], variant_keys: tuple[str, ...],
                   tuned: Mapping[str, Any], *, samples: int, seeds: int, search: str,
                   search_seed: int, metric: str, mode: str, max_t: int) -> TuningProtocol:
    """Arms from the space's grid (seeds excluded), each with its domains; checked."""
    arms = _arms(space, variant_keys, tuned)
    if not any(arm.domains for arm in arms):
        raise UserError(f"--samples {samples} but nothing is tuned; add a domain, e.g. "
                        "--set 'train.lr=loguniform(1e-4,3e-3)'")
    for arm in arms:
        distinct = math.prod(cardinality(d) for d in arm.domains.values()) if arm.domains else 1
        if distinct < samples:
            raise UserError(f"--samples {samples} but arm {arm.label} has only {distinct:g} "
                            f"distinct settings of {', '.join(arm.domains) or 'its tuned keys'}; "
                            f"use --samples {int(distinct)} or add a continuous domain")
    keys = tuple(sorted({key for arm in arms for key in arm.domains}))
    replicate = tuple(s for s in range(TUNING_SEED + 1, TUNING_SEED + 1 + seeds))
    return TuningProtocol(arms=tuple(arms), keys=keys, samples=samples, seeds=replicate,
                          search="optuna" if search == "optuna" else "random",
                          search_seed=search_seed, metric=metric, mode=mode,  # type: ignore[arg-type]
                          max_t=max_t)


def untuned_protocol(space: Mapping[str, Any], variant_keys: tuple[str, ...], *, seeds: int,
                     metric: str, mode: str, max_t: int) -> TuningProtocol:
    """Nothing to tune: every arm's recipe on seeds 0..seeds-1 (the seeds a grid run uses),
    proposed by the searcher so that it can add seeds to the arms that need them."""
    return TuningProtocol(arms=tuple(_arms(space, variant_keys, {})), keys=(), samples=0,
                          seeds=tuple(range(seeds)), search="random", search_seed=0,
                          metric=metric, mode=mode, max_t=max_t)  # type: ignore[arg-type]


def _arms(space: Mapping[str, Any], variant_keys: tuple[str, ...],
          tuned: Mapping[str, Any]) -> list[Arm]:
    axes = {k: v for k, v in grid_axes(space).items() if k != "seed"}
    for key in tuned:
        if key in axes:
            raise UserError(f"{key} is a grid (variant) axis and cannot also be tuned; "
                            f"drop its domain or its list")
    base = {k: v for k, v in space.items() if k != "seed"}
    arms = []
    for values in itertools.product(*axes.values()):
        point = copy.deepcopy(base)
        for key, value in zip(axes, values, strict=True):
            set_path(point, key, value)
        config = resolve_config(point)
        domains = {}
        for key, spec in tuned.items():
            domain = spec.for_arm(config) if isinstance(spec, PerArm) else spec
            if domain is KEEP:
                continue
            if not is_domain(domain):
                raise UserError(f"tuned key {key} has no domain for arm "
                                f"{variant_label(config, variant_keys)}: {domain!r}")
            domains[key] = domain
        arms.append(Arm(variant_label(config, variant_keys), config, domains))
    return arms


# ---- decide: seeds until each arm's verdict is in ------------------------------------------


@dataclass(frozen=True)
class SeedRule:
    """How many seeds each arm gets, and the verdicts that stop it getting more."""

    schedule: SeedSchedule
    baseline: str
    alpha: float = DEFAULT_ALPHA
    margin: float = DEFAULT_MARGIN

    @property
    def adaptive(self) -> bool:
        return self.schedule.adaptive

    def record(self) -> dict[str, Any]:
        """meta.json's keys for it (the report replays the looks from these)."""
        return {"seed_schedule": self.schedule.to_meta(), "alpha": self.alpha,
                "margin": self.margin}

    def describe(self) -> str:
        schedule = self.schedule
        if not self.adaptive:
            return (f"{schedule.initial} per arm (fixed; verdicts at alpha {self.alpha:g}, "
                    f"equivalence margin {self.margin:g})")
        looks = schedule.looks
        return (f"{schedule.initial} per arm, then {schedule.batch} more at a time for the "
                f"arms still inconclusive against {self.baseline} (and for {self.baseline}), "
                f"at most {schedule.maximum}: looks at {', '.join(map(str, looks))} seeds; "
                f"{schedule.to_meta()['design']}: each test at alpha {self.alpha:g}/{len(looks)} = "
                f"{schedule.alpha_per_look(self.alpha):.3g}; equivalence margin "
                f"{self.margin:g}")


@dataclass(frozen=True)
class Look:
    """One look at the compared trials: the verdicts, and the seeds each arm gets next."""

    metric: str
    judgement: Judgement | None       # None: no baseline seed to compare with
    more: dict[str, int]              # arm label -> seeds to add (within the maximum)
    seeds: int                        # seeds per arm this look is at

    @property
    def done(self) -> bool:
        return not self.more

    def line(self, rule: SeedRule) -> str:
        """E.g. "look 2/6 at 5 seeds: se better (look 1), cbam inconclusive -> 2 more seeds
        for cbam and none"."""
        total = len(rule.schedule.looks)
        if self.judgement is None:
            return (f"look: no seed of the baseline {rule.baseline} to compare with -> no "
                    "more seeds")
        j = self.judgement
        head = (f"look {j.look}/{total} at {self.seeds} seeds" if j.look else
                f"before look 1/{total} ({self.seeds} seeds with a {self.metric})")
        verdicts = ", ".join(
            f"{c.variant} {c.verdict}" + (f" (look {c.look})" if c.decided and c.look < j.look
                                          else "")
            for c in j.comparisons) or "no arm to compare"
        if self.more:
            counts = sorted(set(self.more.values()))
            if len(counts) == 1:
                n = counts[0]
                tail = f"{n} more seed{'s' if n != 1 else ''} for {_names(list(self.more))}"
            else:
                tail = ", ".join(f"{n} more for {arm}" for arm, n in self.more.items())
        elif all(c.decided for c in j.comparisons):
            tail = "every arm decided, no more seeds"
        else:
            tail = f"at the maximum of {rule.schedule.maximum} seeds, no more seeds"
        return f"{head}: {verdicts} -> {tail}"


def _names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def look(rows: Iterable[Mapping[str, Any]], arms: list[str], rule: SeedRule,
         queued: Mapping[str, int]) -> Look:
    """Judge the compared trials (all ended) and say how many more seeds each arm gets.

    ``arms`` are the arms that have compared trials (an arm whose every tuning candidate
    failed has none); ``queued`` is how many seeds each arm has been given so far, so that
    no arm goes past the schedule's maximum even when a seed measured nothing.
    """
    metric, per_seed = outcomes(rows, arms, rule.baseline)
    seeds = max((len(v) for v in per_seed.values()), default=0)
    if rule.baseline not in per_seed:
        return Look(metric, None, {}, seeds)
    ordered = {rule.baseline: per_seed[rule.baseline],
               **{a: v for a, v in per_seed.items() if a != rule.baseline}}
    judgement = judge(ordered, rule.baseline, rule.schedule, metric=metric, alpha=rule.alpha,
                      margin=rule.margin)
    more = {}
    wanted = judgement.more
    for arm, n in sorted(wanted.items(), key=lambda item: item[0] == rule.baseline):
        room = rule.schedule.maximum - queued.get(arm, len(per_seed[arm]))
        if min(n, room) > 0:
            more[arm] = min(n, room)
    if judgement.look:
        seeds = rule.schedule.looks[judgement.look - 1]
    return Look(metric, judgement, more, seeds)
