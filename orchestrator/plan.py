"""From a preset plus command-line options to the exact sweep to run (also shown by `show`)."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ray import tune

from analysis.sequential import SeedSchedule
from analysis.verdicts import DEFAULT_ALPHA, DEFAULT_MARGIN
from orchestrator.domains import from_unit
from orchestrator.errors import UserError
from orchestrator.protocol import (
    DEFAULT_SEARCH_SEED,
    SeedRule,
    TuningProtocol,
    build_protocol,
    untuned_protocol,
)
from orchestrator.schedulers import SCHEDULERS, SEARCHES
from orchestrator.space import (
    apply_overrides,
    concrete_configs,
    count_trials,
    get_path,
    grid_axes,
    has_path,
    set_path,
    validate_config,
    validate_space,
)
from search_spaces.experiment import Experiment
from trainables.data.registry import dataset_spec
from trainables.data.remote_view import sparse_view
from trainables.data.stores import StoreError, is_uri
from trainables.loop import epoch_choosing_settings
from trainables.trial_setup import parse_trial


@dataclass(frozen=True)
class SweepOptions:
    """The command-line choices that shape a sweep; None means 'the preset's default'."""

    overrides: tuple[str, ...] = ()
    profiles: tuple[str, ...] = ()
    seeds: int | None = None
    scheduler: str | None = None
    search: str | None = None
    samples: int | None = None
    max_concurrent: int | None = None
    cpus_per_trial: float | None = None
    gpus_per_trial: float | str | None = None   # a number, or "auto" (measured; gpu_packing)
    data_root: str | None = None     # a path or a bucket URI (copied once per node)
    weights_root: str | None = None  # bucket URI or folder of pretrained .pth files
    smoke: bool = False
    search_seed: int | None = None
    max_seeds: int | None = None     # None: --seeds (a fixed number, no adaptation)
    seed_batch: int | None = None    # None: DEFAULT_SEED_BATCH
    alpha: float | None = None       # None: DEFAULT_ALPHA
    margin: float | None = None      # None: the preset's, else DEFAULT_MARGIN


DEFAULT_SEED_BATCH = 2


@dataclass(frozen=True)
class Plan:
    experiment: Experiment
    space: dict[str, Any]
    variant_keys: tuple[str, ...]
    num_samples: int          # what Tune gets: per grid point (single stage), or in total
    n_trials: int
    scheduler: str
    search: str
    cpus: float
    gpus: float
    max_concurrent: int | None
    max_t: int
    grace_period: int = 1     # epochs before a tuning candidate may be stopped
    notes: tuple[str, ...] = field(default_factory=tuple)
    reported: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    reported_note: str = ""
    # Tuned keys (dotted key -> domain or PerArm) and, with --samples > 1, the two-stage
    # protocol built from them; None means one stage: every arm's recipe on every seed.
    tuned: Mapping[str, Any] = field(default_factory=dict)
    protocol: TuningProtocol | None = None
    data_missing: str = ""    # why `run` would stop on the data (only `show` gets this far)
    # Seeds per arm: fixed, or (--max-seeds) more for the arms still undecided. Its alpha and
    # margin are the run's, recorded in meta.json for the report.
    seed_rule: SeedRule | None = None
    # An adaptive run with nothing tuned: every arm's recipe, for the searcher to add seeds
    # to (the grid cannot); None otherwise.
    untuned: TuningProtocol | None = None
    max_trials: int = 0       # the most trials the run can have (n_trials unless adaptive)
    # --gpus-per-trial auto: `gpus` (1 until then) is chosen by a memory probe before the
    # sweep (orchestrator.gpu_packing).
    gpus_auto: bool = False

    @property
    def searched(self) -> TuningProtocol | None:
        """What the AblationSearcher runs; None: a plain grid of arms x seeds."""
        return self.protocol or self.untuned

    @property
    def adaptive(self) -> bool:
        return self.seed_rule is not None and self.seed_rule.adaptive


def make_plan(experiment: Experiment, options: SweepOptions, *, check_files: bool = True) -> Plan:
    """The sweep `run` would start. ``check_files=False`` (for `show`) previews a sweep whose
    data or weights are not on this machine, and says what is missing instead of stopping."""
    space = copy.deepcopy(dict(experiment.param_space))
    seeds = options.seeds if options.seeds is not None else experiment.seeds
    if seeds < 1:
        raise UserError(f"--seeds {seeds}: need at least 1")
    samples = options.samples if options.samples is not None else experiment.num_samples
    if samples < 1:
        raise UserError(f"--samples {samples}: need at least 1")
    rule = _seed_rule(experiment, options, seeds)
    space["seed"] = tune.grid_search(list(range(seeds)))
    if options.smoke:
        for key, value in experiment.smoke.items():
            set_path(space, key, value)
    # Profiles after the smoke settings: they act like --set bundles and may replace a whole
    # section (e.g. data), which must not then receive the preset's smoke keys for it.
    for name in options.profiles:
        if name not in experiment.profiles:
            valid = ", ".join(experiment.profiles) or "none defined"
            raise UserError(f"unknown profile {name!r} for preset {experiment.name}; "
                            f"choose from: {valid}")
        for key, value in experiment.profiles[name].items():
            set_path(space, key, copy.deepcopy(value))
    if options.data_root is not None:
        if not has_path(space, "data.root"):
            raise UserError(f"preset {experiment.name} has no data.root to set from --data-root")
        set_path(space, "data.root", options.data_root)
    if options.weights_root is not None:
        if not has_path(space, "model.pretrained"):
            raise UserError(f"preset {experiment.name} has no pretrained model "
                            "(model.pretrained) to fetch weights for with --weights-root")
        set_path(space, "model.weights_root", options.weights_root)
    tuned: dict[str, Any] = dict(experiment.search_space) if samples > 1 else {}
    cli_tuned: dict[str, Any] = {}
    space, variant_keys = apply_overrides(experiment, space, list(options.overrides), cli_tuned)
    for key in [k for k in tuned if _fixed_by(k, options.overrides)]:
        del tuned[key]  # `--set train.lr=0.01` fixes a key the preset would tune
    tuned.update(cli_tuned)
    if samples == 1 and cli_tuned:
        key = next(iter(cli_tuned))
        raise UserError(f"--set {key}=... is a domain to tune, which needs --samples N > 1 "
                        "(the candidates each arm gets)")
    validate_space(space, list(options.overrides))
    notes: list[str] = []

    scheduler = options.scheduler or experiment.scheduler
    search = options.search or experiment.search
    search = "random" if search == "grid" else search  # "grid" named it before --samples tuned
    if scheduler not in SCHEDULERS:
        raise UserError(f"unknown scheduler {scheduler!r}; choose from {', '.join(SCHEDULERS)}")
    if search not in SEARCHES:
        raise UserError(f"unknown search {search!r}; choose from {', '.join(SEARCHES)}")
    if search == "optuna" and scheduler == "halving-per-variant":
        # TPE learns from finished trials one or two at a time; halving pauses candidates
        # until all of an arm's have arrived, which TPE's sequential asks never deliver.
        if options.scheduler:
            raise UserError("--scheduler halving-per-variant needs every candidate of an arm "
                            "up front, which --search optuna proposes one at a time; use "
                            "--scheduler asha-per-variant with optuna")
        scheduler = "asha-per-variant"
    if search == "optuna" and samples == 1:
        raise UserError("--search optuna needs --samples N > 1: one Optuna study per arm, N "
                        "trials each (the ablation's arms stay a grid)")
    epochs = get_path(space, "train.epochs") if has_path(space, "train.epochs") else 1
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise UserError(f"train.epochs={epochs!r}: must be one integer >= 1 (ASHA's max_t)")
    protocol = None
    grace_period = experiment.grace_period or max(1, math.ceil(epochs / 5))
    if samples > 1:
        if scheduler == "halving-per-variant" and not has_path(space, "train.checkpoint_at"):
            # A candidate waits at each rung paused, and a paused trial restarts from its
            # last checkpoint: one at every rung, whatever the checkpoint cadence.
            from orchestrator.halving import halving_rungs

            set_path(space, "train.checkpoint_at", list(halving_rungs(
                epochs, min(grace_period, epochs), experiment.reduction_factor)))
        space, holdout_note = _validation_apart_from_test(space, experiment, options.overrides)
        if holdout_note:
            notes.append(holdout_note)
        protocol = build_protocol(
            space, variant_keys, tuned, samples=samples, seeds=seeds, search=search,
            search_seed=(options.search_seed if options.search_seed is not None
                         else DEFAULT_SEARCH_SEED),
            metric=experiment.metric, mode=experiment.mode, max_t=epochs)
        _validate_candidates(protocol, list(options.overrides))
        if scheduler == "fifo":
            notes.append("fifo: every tuning candidate trains its full budget; "
                         "--scheduler asha-per-variant stops poor ones early")
    _no_epoch_chosen_on_test(space, options.overrides)
    untuned = None
    if rule.adaptive and protocol is None:
        untuned = untuned_protocol(space, variant_keys, seeds=seeds, metric=experiment.metric,
                                   mode=experiment.mode, max_t=epochs)
    searched = protocol or untuned
    if rule.adaptive:
        labels = [arm.label for arm in searched.arms]
        if rule.baseline not in labels:
            raise UserError(f"--max-seeds {rule.schedule.maximum} adds seeds to the arms still "
                            f"undecided against the baseline {rule.baseline!r}, which this run "
                            f"lacks (arms: {', '.join(labels)}); add it to the grid or drop "
                            "--max-seeds")
    # Files last: a sweep that cannot be fair is refused before its data is looked for.
    data_missing = ""
    if check_files:
        _check_data(space)
        _check_weights(space)
    else:
        data_missing = _missing_files(space)
    n_trials = searched.n_trials if searched else count_trials(space, samples)
    extra = rule.schedule.maximum - rule.schedule.initial
    max_trials = n_trials + (len(searched.arms) * extra if searched else 0)
    num_samples = max_trials if searched else samples
    reported, reported_note = experiment.reported, experiment.reported_note
    for name in options.profiles:
        if name in experiment.profile_reported:
            reported, reported_note = experiment.profile_reported[name]
    resources = experiment.resources
    return Plan(
        experiment=experiment, space=space, variant_keys=variant_keys, num_samples=num_samples,
        n_trials=n_trials, scheduler=scheduler, search=search,
        cpus=options.cpus_per_trial if options.cpus_per_trial is not None else resources.cpu,
        gpus=(1.0 if options.gpus_per_trial == "auto" else options.gpus_per_trial
              if options.gpus_per_trial is not None else resources.gpu),
        gpus_auto=options.gpus_per_trial == "auto",
        max_concurrent=options.max_concurrent, max_t=epochs,
        grace_period=grace_period, notes=tuple(notes),
        reported=reported, reported_note=reported_note, tuned=tuned, protocol=protocol,
        data_missing=data_missing, seed_rule=rule, untuned=untuned, max_trials=max_trials,
    )


def _seed_rule(experiment: Experiment, options: SweepOptions, seeds: int) -> SeedRule:
    """--seeds K --max-seeds M --seed-batch b --alpha --margin, checked; M = K is fixed."""
    maximum = options.max_seeds if options.max_seeds is not None else seeds
    if maximum < seeds:
        raise UserError(f"--max-seeds {maximum} is below --seeds {seeds}: the maximum must be "
                        "at least the seeds every arm starts with")
    batch = options.seed_batch if options.seed_batch is not None else DEFAULT_SEED_BATCH
    if batch < 1:
        raise UserError(f"--seed-batch {batch}: must be at least 1")
    alpha = options.alpha if options.alpha is not None else DEFAULT_ALPHA
    if not 0 < alpha < 1:
        raise UserError(f"--alpha {alpha:g}: must be between 0 and 1, e.g. 0.05")
    margin = options.margin
    where = "--margin"
    if margin is None:
        margin, where = experiment.margin, f"preset {experiment.name}'s margin"
    if margin is None:
        margin = DEFAULT_MARGIN
    if not (math.isfinite(margin) and margin > 0):
        raise UserError(f"{where} {margin:g}: must be a positive difference in the metric's "
                        "units (e.g. 0.005, half an accuracy point)")
    schedule = (SeedSchedule(initial=seeds, maximum=maximum, batch=batch) if maximum > seeds
                else SeedSchedule.fixed(seeds))
    return SeedRule(schedule=schedule, baseline=experiment.baseline_variant, alpha=alpha,
                    margin=margin)


def _fixed_by(key: str, overrides: tuple[str, ...]) -> bool:
    return any(item.partition("=")[0].strip() == key for item in overrides)


def _validation_apart_from_test(space: dict[str, Any], experiment: Experiment,
                                overrides: tuple[str, ...]) -> tuple[dict[str, Any], str]:
    """Tuning selects on validation, so validation must not be the test split.

    A preset that validates on test (as its source did) gets a stratified 10% of training
    held out for every trial of the run, tuning and replicates alike, and the run says so;
    a dataset with no way to hold one out, or a user who asked for validation on test, is
    an error: a choice made on test would make its test accuracy optimistic.
    """
    from trainables.data.registry import dataset_spec, parse_data_config

    fixes: dict[str, Any] = {}
    for config in concrete_configs(space):
        data = parse_data_config(config.get("data", {}))
        is_test, holdout = dataset_spec(data.name).validation(data)
        if not is_test:
            continue
        if holdout is None:
            raise UserError(f"dataset {data.name} validates on its test split, so tuning "
                            "(--samples > 1) would choose configs on test; run the recipe "
                            "with --samples 1, or use a dataset with a validation split")
        key, value = holdout
        if _fixed_by(key, overrides):
            raise UserError(f"--set {key}={get_path(config, key)} validates on the test "
                            f"split, so tuning would choose configs on test; drop it (tuning "
                            f"holds out {value} of training) or use --samples 1")
        fixes[key] = value
    for key, value in fixes.items():
        set_path(space, key, value)
    if not fixes:
        return space, ""
    shown = ", ".join(f"{key}={value}" for key, value in fixes.items())
    return space, (f"tuning chooses on validation, not test: {shown} holds a stratified "
                   "validation set out of training for every trial of this run (the "
                   "preset's source validated on its test split)")


def _no_epoch_chosen_on_test(space: dict[str, Any], overrides: tuple[str, ...]) -> None:
    """A trial that validates on its test split must not pick an epoch by validation.

    Restoring the best epoch or stopping early would then choose by the test accuracy it
    reports. The loop refuses too, but only once a trial runs; here the whole sweep is
    refused before anything starts, with the keys to change.
    """
    from trainables.data.registry import dataset_spec, parse_data_config

    for config in concrete_configs(space):
        data = parse_data_config(config.get("data", {}))
        is_test, holdout = dataset_spec(data.name).validation(data)
        chosen = epoch_choosing_settings(parse_trial(dict(config)).train)
        if not (is_test and chosen):
            continue
        fix = "set train.restore_best=false and train.patience=none"
        if holdout is not None:
            fix += f", or hold validation out with --set {holdout[0]}={holdout[1]}"
        hint = f" (with --set {' --set '.join(overrides)})" if overrides else ""
        raise UserError(f"{' and '.join(chosen)} would choose an epoch on the test split: "
                        f"dataset {data.name} validates on test here{hint}; {fix}")


def _validate_candidates(protocol: TuningProtocol, overrides: list[str]) -> None:
    """Each arm at the low and high ends of its domains parses like a trial would."""
    for arm in protocol.arms:
        for u in (0.0, 1.0):
            values = {key: from_unit(domain, u) for key, domain in arm.domains.items()}
            validate_config(arm.with_values(values, seed=0, stage="tune", draw=0), overrides)


def _missing_files(space: dict[str, Any]) -> str:
    try:
        _check_data(space)
        _check_weights(space)
    except UserError as err:
        return str(err)
    return ""


def _check_data(space: dict[str, Any]) -> None:
    """Refuse to start a sweep whose data is missing: one line, naming the expected layout.

    A bucket root is checked from its listing (nothing downloaded): a store that cannot be
    reached or read is its own one-line error, then the same layout check as a local path.
    """
    names = grid_axes(space).get("data.name") or [get_path(space, "data.name")]
    roots = grid_axes(space).get("data.root") or [space["data"].get("root")]
    for root in roots:
        if is_uri(root):
            try:
                sparse_view(root)
            except StoreError as err:
                raise UserError(f"cannot use the data root {err}") from None
    for name in names:
        for root in roots:
            ok, detail = dataset_spec(name).available(root)
            if not ok:
                where = f" under {root}" if root else ""
                raise UserError(f"dataset {name}{where} not found; {detail}")


def _check_weights(space: dict[str, Any]) -> None:
    """Refuse to start a sweep whose pretrained weights are neither on this machine nor
    under its --weights-root (listed, not downloaded: each node copies them itself)."""
    if not has_path(space, "model.pretrained"):
        return
    from trainables.models.video.weights import required_weight_files

    names = grid_axes(space).get("model.name") or [get_path(space, "model.name")]
    flags = grid_axes(space).get("model.pretrained") or [get_path(space, "model.pretrained")]
    root = get_path(space, "model.weights_root") if has_path(space, "model.weights_root") else None
    held = _weight_files(root) if root else None
    for name in names:
        for pretrained in flags:
            if pretrained is not True:
                continue
            for path in required_weight_files({"name": name, "pretrained": True}):
                if held is not None and path.name not in held:
                    shown = ", ".join(sorted(held)[:5]) or "no .pth files"
                    raise UserError(
                        f"model {name} with pretrained=true needs {path.name}, which "
                        f"--weights-root {root} does not hold (it holds: {shown}); upload "
                        "torchvision's file there, or --set model.pretrained=false")
                if held is None and not path.exists():
                    raise UserError(
                        f"model {name} with pretrained=true needs the weights file {path} "
                        "(torchvision's, in the torch hub cache; this machine does not "
                        "download): copy it there, or pass --weights-root with a bucket or "
                        "folder holding it, or --set model.pretrained=false")


def _weight_files(root: str) -> set[str]:
    """The .pth file names under a --weights-root, from its listing; one line if unreadable."""
    from trainables.models.video.weight_copy import weight_files

    try:
        return set(weight_files(root, check=True)[1])
    except StoreError as err:
        raise UserError(f"cannot use the weights root {err}") from None


def describe_protocol(protocol: TuningProtocol) -> str:
    """One line: what each arm gets, so a reader sees the arms were tuned alike."""
    seeds = protocol.seeds
    search = ("one Optuna TPE study per arm" if protocol.search == "optuna"
              else "the same Latin-hypercube draws for every arm")
    return (f"tune each of {len(protocol.arms)} arm(s) with {protocol.samples} candidates "
            f"({search}, search seed {protocol.search_seed}) on seed {protocol.tuning_seed}, "
            f"choose each arm's best on validation {protocol.metric}, then replicate it on "
            f"{len(seeds)} fresh seed(s) {_span(seeds)} at the full "
            f"{protocol.max_t} epochs")


def _span(seeds: tuple[int, ...]) -> str:
    return str(seeds[0]) if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
