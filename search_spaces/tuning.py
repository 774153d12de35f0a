"""Per-arm tuned domains: a hyperparameter whose range depends on the ablation arm.

CNNtention (arXiv:2412.11657) tuned its SGD baseline and its Adam attention networks over
different learning rate ranges, and only the SE arm of the Reduced-MNIST study ("Impact of
Attention Mechanisms in Deep Learning", Part A) has a reduction ratio to tune. ``PerArm``
says that in a preset's ``search_space``: the domain is looked up by the arm's value of
one config key; arms it does not list keep their own (recipe) value, untuned.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any


class _Keep:
    """The arm keeps its own value of the key: nothing to tune there."""

    def __repr__(self) -> str:
        return "its recipe value"

    def __reduce__(self):
        return (_keep, ())


def _keep() -> _Keep:
    return KEEP


KEEP = _Keep()


class PerArm:
    """A tuned key's domain by the arm's value of ``key`` (e.g. ``variant``)."""

    def __init__(self, key: str, values: Mapping[Any, Any], default: Any = KEEP) -> None:
        self.key = key
        self.values = dict(values)
        self.default = default

    def for_arm(self, arm_config: Mapping[str, Any]) -> Any:
        """This arm's domain, or ``KEEP`` when the arm is not tuned on this key."""
        node: Any = arm_config
        for part in self.key.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        return copy.deepcopy(self.values.get(node, self.default))

    def __repr__(self) -> str:
        from orchestrator.domains import describe

        shown = ", ".join(f"{name}: {describe(d)}" for name, d in self.values.items())
        other = "" if self.default is KEEP else f", others: {describe(self.default)}"
        return f"by {self.key} {{{shown}{other}}}"
