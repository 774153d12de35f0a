"""From a preset plus command-line options to the exact sweep to run (also shown by `show`)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ray import tune

from orchestrator.errors import UserError
from orchestrator.schedulers import SCHEDULERS, SEARCHES
from orchestrator.space import (
    apply_overrides,
    count_trials,
    get_path,
    grid_axes,
    has_path,
    set_path,
    validate_space,
)
from search_spaces.experiment import Experiment
from trainables.data.registry import dataset_spec


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
    gpus_per_trial: float | None = None
    data_root: str | None = None
    smoke: bool = False


@dataclass(frozen=True)
class Plan:
    experiment: Experiment
    space: dict[str, Any]
    variant_keys: tuple[str, ...]
    num_samples: int          # what Tune gets: per grid point (grid) or in total (optuna)
    n_trials: int
    scheduler: str
    search: str
    cpus: float
    gpus: float
    max_concurrent: int | None
    max_t: int
    notes: tuple[str, ...] = field(default_factory=tuple)
    reported: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    reported_note: str = ""


def make_plan(experiment: Experiment, options: SweepOptions) -> Plan:
    space = copy.deepcopy(dict(experiment.param_space))
    seeds = options.seeds if options.seeds is not None else experiment.seeds
    if seeds < 1:
        raise UserError(f"--seeds {seeds}: need at least 1")
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
    space, variant_keys = apply_overrides(experiment, space, list(options.overrides))
    validate_space(space, list(options.overrides))
    _check_data(space)
    _check_weights(space)

    scheduler = options.scheduler or experiment.scheduler
    search = options.search or experiment.search
    if scheduler not in SCHEDULERS:
        raise UserError(f"unknown scheduler {scheduler!r}; choose from {', '.join(SCHEDULERS)}")
    if search not in SEARCHES:
        raise UserError(f"unknown search {search!r}; choose from {', '.join(SEARCHES)}")
    samples = options.samples if options.samples is not None else experiment.num_samples
    if samples < 1:
        raise UserError(f"--samples {samples}: need at least 1")
    n_trials = count_trials(space, samples)
    notes = []
    num_samples = samples
    if search == "optuna" and _has_functions(space):
        raise UserError(f"preset {experiment.name} has named variants with per-variant settings, "
                        "which optuna cannot sample; use --search grid (and --samples)")
    if search == "optuna":
        # Optuna cannot take grid axes: they become categorical choices it may favour.
        for key, values in grid_axes(space).items():
            set_path(space, key, tune.choice(values))
        num_samples = n_trials
        notes.append("optuna search: ablation axes and seeds become categorical choices, so "
                     "variants no longer get equal budgets; use --search grid for a fair table")
    epochs = get_path(space, "train.epochs") if has_path(space, "train.epochs") else 1
    if not isinstance(epochs, int):
        raise UserError("train.epochs must be a single integer (ASHA needs it as max_t)")
    reported, reported_note = experiment.reported, experiment.reported_note
    for name in options.profiles:
        if name in experiment.profile_reported:
            reported, reported_note = experiment.profile_reported[name]
    resources = experiment.resources
    return Plan(
        experiment=experiment, space=space, variant_keys=variant_keys, num_samples=num_samples,
        n_trials=n_trials, scheduler=scheduler, search=search,
        cpus=options.cpus_per_trial if options.cpus_per_trial is not None else resources.cpu,
        gpus=options.gpus_per_trial if options.gpus_per_trial is not None else resources.gpu,
        max_concurrent=options.max_concurrent, max_t=epochs, notes=tuple(notes),
        reported=reported, reported_note=reported_note,
    )


def _has_functions(node: Any) -> bool:
    from ray.tune.search.sample import Function

    if isinstance(node, Function):
        return True
    return isinstance(node, dict) and any(_has_functions(v) for v in node.values())


def _check_data(space: dict[str, Any]) -> None:
    """Refuse to start a sweep whose data is missing: one line, naming the expected layout."""
    names = grid_axes(space).get("data.name") or [get_path(space, "data.name")]
    roots = grid_axes(space).get("data.root") or [space["data"].get("root")]
    for name in names:
        for root in roots:
            ok, detail = dataset_spec(name).available(root)
            if not ok:
                where = f" under {root}" if root else ""
                raise UserError(f"dataset {name}{where} not found; {detail}")


def _check_weights(space: dict[str, Any]) -> None:
    """Refuse to start a sweep whose pretrained weights are not on this machine."""
    if not has_path(space, "model.pretrained"):
        return
    from trainables.models.video.weights import required_weight_files

    names = grid_axes(space).get("model.name") or [get_path(space, "model.name")]
    flags = grid_axes(space).get("model.pretrained") or [get_path(space, "model.pretrained")]
    for name in names:
        for pretrained in flags:
            if pretrained is not True:
                continue
            for path in required_weight_files({"name": name, "pretrained": True}):
                if not path.exists():
                    raise UserError(
                        f"model {name} with pretrained=true needs the weights file {path} "
                        "(torchvision's, in the torch hub cache; this machine does not "
                        "download): copy it there, or --set model.pretrained=false")
