"""Named ablation variants whose settings differ in more than one key.

Why not one grid axis per key: CNNtention (arXiv:2412.11657) trains its baseline with SGD
and its attention networks with Adam at other learning rates, and CBAM comes in three
reductions while the baseline has none. A cross product of `model.attention` x
`train.optimizer` x `model.reduction` would run pairs the source never ran. Instead the grid
runs over variant *names*, and every key a variant sets becomes a value Ray resolves from
the trial's own variant after the grid is expanded. The resolved values, not the names, land
in each trial's config and in `trials.parquet`, so a reader sees what actually trained.

`--set variant=[baseline,cbam_r16]` runs a subset; `--set train.lr=0.01` replaces the
per-variant values of that key with one shared value for every variant.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ray import tune

from trainables.config import ConfigError

VARIANT_KEY = "variant"
_UNSET = object()


class ByVariant:
    """``config -> value`` looked up by the trial's variant name (picklable, for Ray)."""

    def __init__(self, values: Mapping[str, Any], default: Any = _UNSET) -> None:
        self.values = dict(values)
        self.default = default

    def __call__(self, config: Mapping[str, Any]) -> Any:
        name = config[VARIANT_KEY]  # a KeyError tells Ray "not resolved yet, try later"
        if name in self.values:
            return copy.deepcopy(self.values[name])
        if self.default is not _UNSET:
            return copy.deepcopy(self.default)
        raise ConfigError(f"variant={name!r} sets no value here and there is no default")

    def __repr__(self) -> str:
        shown = dict(self.values)
        if self.default is not _UNSET:
            shown["<others>"] = self.default
        return f"by variant {shown}"


def check_variant(name: Any, known: list[str]) -> None:
    """A clear error for a variant name the preset does not define."""
    if name not in known:
        raise ConfigError(f"unknown variant={name!r}; choose from {', '.join(known)}")


def named_variants(base: Mapping[str, Any],
                   variants: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``base`` with a ``variant`` grid over ``variants`` and per-variant values resolved by Ray.

    ``variants`` maps a name to ``{"dotted.key": value}``. A key some variant leaves out takes
    the base space's value; a key with no base value must be set by every variant.
    """
    if not variants:
        raise ValueError("named_variants needs at least one variant")
    space = copy.deepcopy(dict(base))
    keys = sorted({key for settings in variants.values() for key in settings})
    for key in keys:
        *parents, leaf = key.split(".")
        node = space
        for part in parents:
            node = node.setdefault(part, {})
        values = {name: settings[key] for name, settings in variants.items() if key in settings}
        if leaf in node:
            by_variant = ByVariant(values, default=node[leaf])
        elif len(values) == len(variants):
            by_variant = ByVariant(values)
        else:
            missing = sorted(set(variants) - set(values))
            raise ValueError(f"{key} has no base value and variants {missing} do not set it")
        node[leaf] = tune.sample_from(by_variant)
    space[VARIANT_KEY] = tune.grid_search(list(variants))
    return space
