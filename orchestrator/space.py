"""Operations on a preset's param space: overrides, seeds, smoke settings, labels, counts.

The space is a nested dict whose leaves are plain values or Ray Tune domains. Overrides are
validated by building one concrete trial config per grid value and parsing it with the
very parser a trial uses, so the driver rejects a bad ``--set`` before any trial starts.
"""

from __future__ import annotations

import ast
import copy
import itertools
import json
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from ray import tune
from ray.tune.search.sample import Domain, Function

from orchestrator.domains import looks_like_domain, parse_domain
from orchestrator.errors import UserError
from search_spaces.experiment import Experiment
from search_spaces.variants import VARIANT_KEY, check_variant
from trainables.config import ConfigError
from trainables.data.registry import parse_data_config
from trainables.trial_setup import build_model, parse_trial

# Top-level config sections a `--set` key may start with.
# device=cpu runs trials on CPU whatever Ray gives them (a cluster test's fake GPU node);
# device=cuda fails a trial that sees no CUDA device instead of running it on CPU.
DEVICE_KEY, DEVICES = "device", ("auto", "cpu", "cuda")
SECTIONS = ("data", "model", "train", "augment")


def parse_value(text: str) -> Any:
    """Parse a ``--set`` value: numbers, booleans, null, quoted strings, ``[a, b]`` lists."""
    stripped = text.strip()
    if stripped.startswith("[") and stripped.endswith("]"):
        inner = stripped[1:-1].strip()
        return [parse_value(part) for part in inner.split(",")] if inner else []
    lowered = stripped.lower()
    # "none" stays text (it names the no-attention variant); typed None fields accept it.
    if stripped in ("None", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return ast.literal_eval(stripped)
    except (ValueError, SyntaxError):
        return stripped


def is_grid(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"grid_search"}


def get_path(space: Mapping[str, Any], dotted: str) -> Any:
    node: Any = space
    for part in dotted.split("."):
        node = node[part]
    return node


def set_path(space: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = space
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UserError(f"--set {dotted}: {part} is not a section")
    node[leaf] = value


def has_path(space: Mapping[str, Any], dotted: str) -> bool:
    try:
        get_path(space, dotted)
    except (KeyError, TypeError):
        return False
    return True


def grid_axes(space: Mapping[str, Any], prefix: str = "") -> dict[str, list[Any]]:
    """Every ``grid_search`` leaf by dotted key, in the space's order."""
    axes: dict[str, list[Any]] = {}
    for key, value in space.items():
        dotted = f"{prefix}{key}"
        if is_grid(value):
            axes[dotted] = list(value["grid_search"])
        elif isinstance(value, dict):
            axes.update(grid_axes(value, dotted + "."))
    return axes


def concrete_configs(space: Mapping[str, Any]) -> Iterable[dict[str, Any]]:
    """One config per grid point, random domains replaced by a sample: for validation.

    Values that depend on the config (``tune.sample_from``, e.g. per-variant recipes) are
    resolved last, from the grid point they belong to, as Ray does.
    """
    axes = grid_axes(space)
    for values in itertools.product(*axes.values()):
        config = _resolve_domains(copy.deepcopy(dict(space)))
        for key, value in zip(axes, values, strict=True):
            set_path(config, key, value)
        yield _resolve_functions(config, config)


def resolve_config(point: Mapping[str, Any]) -> dict[str, Any]:
    """One grid point with its config-dependent values (per-variant recipes) filled in."""
    config = copy.deepcopy(dict(point))
    return _resolve_functions(config, config)


def _resolve_domains(node: Any) -> Any:
    if isinstance(node, Function):
        return node  # needs the finished config; see _resolve_functions
    if isinstance(node, Domain):
        return node.sample()
    if isinstance(node, dict) and not is_grid(node):
        return {k: _resolve_domains(v) for k, v in node.items()}
    return node


def _resolve_functions(node: Any, config: dict[str, Any]) -> Any:
    if isinstance(node, Function):
        return node.func(config) if node.pass_config else node.func()
    if isinstance(node, dict):
        return {k: _resolve_functions(v, config) for k, v in node.items()}
    return node


def apply_overrides(experiment: Experiment, space: dict[str, Any], overrides: list[str],
                    tuned: dict[str, Any] | None = None
                    ) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Apply ``key.path=value`` overrides; a list becomes a grid axis (and a variant key).

    A domain (``loguniform(a,b)`` ...) makes the key tuned: it goes into ``tuned``, and the
    space keeps its recipe value as the default point. A plain value fixes a key the preset
    tuned: it leaves ``tuned``.
    """
    variant_keys = list(experiment.variant_keys)
    tuned = {} if tuned is None else tuned
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set {item!r} is not key.path=value (e.g. --set train.lr=0.01)")
        if key == "seed":
            raise UserError("--set seed=... is not allowed; use --seeds N")
        section = key.split(".")[0]
        if section not in SECTIONS and key != DEVICE_KEY and not has_path(space, key):
            raise UserError(f"unknown override key {key!r}; keys start with "
                            f"{', '.join(s + '.' for s in SECTIONS)} or are device "
                            f"(see `python -m orchestrator show {experiment.name}`)")
        if key == DEVICE_KEY and parse_value(text) not in DEVICES:
            raise UserError(f"--set device={text.strip()}: must be one of "
                            f"{', '.join(DEVICES)} (auto: the GPU Ray gives the trial, if any)")
        if looks_like_domain(text):
            if key == VARIANT_KEY or is_grid(get_path(space, key) if has_path(space, key)
                                             else None):
                raise UserError(f"--set {key}={text.strip()}: {key} is a grid (variant) axis and "
                                "cannot be tuned; give it a list of values, or tune another key")
            tuned[key] = parse_domain(key, text)
            continue
        tuned.pop(key, None)
        value = parse_value(text)
        if key == VARIANT_KEY:
            _check_variants(experiment, value)
        current = get_path(space, key) if has_path(space, key) else None
        keeps_list = isinstance(current, list | tuple) or key == "train.milestones"
        if isinstance(value, list) and not keeps_list:
            if not value:
                raise UserError(f"--set {key}=[] gives an empty grid")
            value = tune.grid_search(value)
            if key not in variant_keys:
                variant_keys.append(key)
        set_path(space, key, value)
    return space, tuple(variant_keys)


def _check_variants(experiment: Experiment, value: Any) -> None:
    known = experiment.param_space.get(VARIANT_KEY)
    if not is_grid(known):
        raise UserError(f"preset {experiment.name} has no named variants; --set variant=... "
                        "does not apply")
    for name in value if isinstance(value, list) else [value]:
        try:
            check_variant(name, list(known["grid_search"]))
        except ConfigError as err:
            raise UserError(str(err)) from None


def validate_space(space: Mapping[str, Any], overrides: list[str]) -> None:
    """Parse every grid point like a trial would; name the offending key on failure."""
    for config in concrete_configs(space):
        validate_config(config, overrides)


def validate_config(config: Mapping[str, Any], overrides: list[str]) -> None:
    """Parse one concrete trial config like a trial would, and build its model on meta."""
    try:
        parse_trial(dict(config))
        parse_data_config(config.get("data", {}))
        # Build on the meta device: checks every model argument, allocates nothing.
        # Pretrained weights are checked as files by the plan, not loaded here.
        model = dict(config.get("model", {}))
        if model.get("pretrained") is True:
            model["pretrained"] = False
        with torch.device("meta"):
            build_model(model)
    except ConfigError as err:
        hint = f" (from --set {' --set '.join(overrides)})" if overrides else ""
        raise UserError(f"{err}{hint}") from None


def variant_label(config: Mapping[str, Any], variant_keys: tuple[str, ...]) -> str:
    """The ablation label of a trial: its values on the variant axes."""
    if not variant_keys:
        return "default"
    values = [get_path(config, key) if has_path(config, key) else None for key in variant_keys]
    if len(values) == 1:
        return _fmt(values[0])
    return ",".join(f"{key.split('.')[-1]}={_fmt(v)}" for key, v in zip(variant_keys, values, strict=True))


def _fmt(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def count_trials(space: Mapping[str, Any], num_samples: int) -> int:
    total = num_samples
    for values in grid_axes(space).values():
        total *= len(values)
    return total


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists become JSON text (one Parquet type)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, dotted + "."))
        elif isinstance(value, list | tuple):
            flat[dotted] = json.dumps(list(value))
        else:
            flat[dotted] = value
    return flat


class VariantLabeler:
    """Picklable ``config -> label`` (Tune pickles schedulers and callbacks with the run)."""

    def __init__(self, variant_keys: tuple[str, ...]) -> None:
        self.variant_keys = tuple(variant_keys)

    def __call__(self, config: Mapping[str, Any]) -> str:
        return variant_label(config, self.variant_keys)
