"""`show NAME`: the resolved sweep, before spending any compute on it."""

from __future__ import annotations

import argparse
import json
from typing import Any

from orchestrator.commands.common import add_sweep_arguments, load_preset, sweep_options


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


def run(args: argparse.Namespace) -> int:
    from orchestrator.plan import make_plan

    exp = load_preset(args.preset)
    plan = make_plan(exp, sweep_options(args))
    print(f"{exp.name}  ({exp.modality}, trainable: {exp.trainable})")
    print(f"source:     {exp.source}")
    print(f"variants:   axes {', '.join(plan.variant_keys)}; baseline {exp.baseline_variant}")
    print(f"trials:     {plan.n_trials}")
    print(f"scheduler:  {plan.scheduler} (metric {exp.metric}, mode {exp.mode}, max_t {plan.max_t} epochs)")
    print(f"search:     {plan.search}, {plan.num_samples} sample(s)")
    print(f"resources:  {plan.cpus:g} CPU, {plan.gpus:g} GPU per trial"
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
