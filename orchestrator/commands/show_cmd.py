"""`show NAME`: the resolved sweep, before spending any compute on it."""

from __future__ import annotations

import argparse
import json
from typing import Any

from orchestrator.commands.common import add_sweep_arguments, load_preset, sweep_options
from search_spaces.sources import cite


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "show", help="show a preset's resolved search space, trial count and reported numbers",
        description="Show what `run` would do with the same options, without running it.")
    parser.add_argument("preset", help="preset name or path to a preset .py file")
    add_sweep_arguments(parser)
    parser.set_defaults(func=run)


def _describe(value: Any) -> Any:
    from ray.tune.search.sample import Domain, Function

    if isinstance(value, Function):
        return repr(value.func)
    if isinstance(value, dict):
        if set(value) == {"grid_search"}:
            return f"grid{value['grid_search']}"
        return {k: _describe(v) for k, v in value.items()}
    if isinstance(value, Domain):
        return f"{type(value).__name__}({value.domain_str})" if hasattr(value, "domain_str") else str(value)
    return value


def _tuning_budget(exp, plan) -> str:
    from orchestrator.halving import halving_budget, halving_rungs

    full = plan.protocol.samples * plan.max_t
    if plan.scheduler == "halving-per-variant":
        rungs = halving_rungs(plan.max_t, plan.grace_period, exp.reduction_factor)
        spent = halving_budget(plan.protocol.samples, rungs, plan.max_t, exp.reduction_factor)
        return (f"{spent} trial-epochs tuning (halving at epochs {', '.join(map(str, rungs))}, "
                f"keeping the best 1/{exp.reduction_factor:g}; every candidate to the end: "
                f"{full})")
    if plan.scheduler == "fifo":
        return f"{full} trial-epochs tuning ({plan.protocol.samples} x {plan.max_t})"
    return f"at most {full} trial-epochs tuning ({plan.scheduler} stops some early)"


def _print_tuned(exp, plan) -> None:
    """The domains `--samples` would tune, per arm where they differ."""
    from orchestrator.domains import describe

    space = plan.tuned or exp.search_space
    if not space:
        print("tuned:      nothing (add a domain: --set 'train.lr=loguniform(1e-4,3e-3)')")
        return
    state = "tuned:     " if plan.protocol else "tunable:   "
    for key, spec in space.items():
        print(f"{state} {key} {describe(spec) if not hasattr(spec, 'for_arm') else repr(spec)}")
        state = "           "
    if exp.search_space_note:
        print(f"            ({exp.search_space_note})")


def run(args: argparse.Namespace) -> int:
    from orchestrator.plan import describe_protocol, make_plan

    exp = load_preset(args.preset)
    plan = make_plan(exp, sweep_options(args), check_files=False)
    print(f"{exp.name}  ({exp.modality}, trainable: {exp.trainable})")
    label = "source:    "
    for line in cite(exp.source, sep="\n").splitlines():
        print(f"{label} {line}")
        label = "           "
    print(f"variants:   axes {', '.join(plan.variant_keys)}; baseline {exp.baseline_variant}")
    if plan.adaptive:
        print(f"trials:     {plan.n_trials} to {plan.max_trials} (seeds until decided)")
    else:
        print(f"trials:     {plan.n_trials}")
    print(f"scheduler:  {plan.scheduler} (metric {exp.metric}, mode {exp.mode}, max_t {plan.max_t} epochs)")
    protocol = plan.protocol
    if protocol is None:
        print("protocol:   one stage: every arm's recipe on every seed, no tuning "
              "(--samples N > 1 tunes each arm first)")
    else:
        print(f"protocol:   {describe_protocol(protocol)}")
        print(f"budget:     per arm {_tuning_budget(exp, plan)}, then "
              f"{len(protocol.seeds)} x {plan.max_t} replicating; {len(protocol.arms)} arms, "
              f"{plan.n_trials} trials")
    if plan.seed_rule is not None:
        print(f"seeds:      {plan.seed_rule.describe()}")
    _print_tuned(exp, plan)
    if plan.data_missing:
        print(f"data:       not on this machine, `run` needs it: {plan.data_missing}")
    gpus = "auto (measured before the sweep)" if plan.gpus_auto else f"{plan.gpus:g}"
    print(f"resources:  {plan.cpus:g} CPU, {gpus} GPU per trial"
          + (f", at most {plan.max_concurrent} at once" if plan.max_concurrent else ""))
    for note in plan.notes:
        print(f"note:       {note}")
    for name, settings in exp.profiles.items():
        shown = " ".join(f"{k}={v}" for k, v in settings.items())
        print(f"profile:    --profile {name}: {shown}")
    print("space:")
    for line in json.dumps(_describe(plan.space), indent=2, default=str).splitlines():
        print(f"  {line}")
    if exp.description:
        print("about:")
        for line in exp.description.strip().splitlines():
            print(f"  {line}".rstrip())
    print(f"reported by the source ({plan.reported_note or 'as published'}):")
    for variant, numbers in plan.reported.items():
        print(f"  {variant:<12} " + "  ".join(f"{k} {v:g}" for k, v in numbers.items()))
    return 0
