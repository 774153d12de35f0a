"""Tuned hyperparameter domains: parsed from `--set`, checked, described, and drawn.

A domain is a Ray Tune ``Domain`` (``tune.loguniform`` and friends), so presets write them
the way Ray users do. Two things Ray does not offer are done here:

- ``from_unit`` maps a point of the unit interval through a domain (its quantile function).
  Every arm of an ablation maps the *same* unit point through its *own* domain, so arm A's
  draw i and arm B's draw i are matched even when their ranges differ (common random
  numbers): no arm is luckier in its candidates than another.
- ``to_optuna`` gives the Optuna distribution of a domain, for one Optuna study per arm.
"""

from __future__ import annotations

import ast
import math
import re
from typing import Any

from ray import tune
from ray.tune.search.sample import Categorical, Domain, Float, Integer, Quantized

from orchestrator.errors import UserError

FORMS = ("loguniform(a,b) uniform(a,b) quniform(a,b,q) randint(a,b) "
         "choice([x,y,...])")
_CALL = re.compile(r"^\s*([A-Za-z_]\w*)\s*\((.*)\)\s*$", re.DOTALL)


def looks_like_domain(text: str) -> bool:
    """``name(...)``: a value the user meant as a domain (a typo in the name included)."""
    return bool(_CALL.match(text))


def parse_domain(key: str, text: str) -> Domain:
    """``loguniform(1e-4,3e-3)`` -> ``tune.loguniform(1e-4, 3e-3)``, checked; else one-line error."""
    match = _CALL.match(text)
    if not match:
        raise _bad(key, text, "not a domain")
    name, inner = match.group(1), match.group(2)
    try:
        args = ast.literal_eval(f"({inner},)") if inner.strip() else ()
    except (ValueError, SyntaxError):
        raise _bad(key, text, "its arguments are not literals") from None
    builders = {"loguniform": _loguniform, "uniform": _uniform, "quniform": _quniform,
                "randint": _randint, "choice": _choice}
    if name not in builders:
        raise _bad(key, text, f"unknown domain {name!r}")
    return builders[name](key, text, args)


def _bad(key: str, text: str, problem: str) -> UserError:
    return UserError(f"--set {key}={text}: {problem}; accepted domains: {FORMS}")


def _numbers(key: str, text: str, args: tuple, count: int) -> list[float]:
    if len(args) != count or not all(_is_number(a) for a in args):
        raise _bad(key, text, f"needs {count} numbers")
    return [float(a) for a in args]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _loguniform(key: str, text: str, args: tuple) -> Domain:
    low, high = _numbers(key, text, args, 2)
    if low <= 0:
        raise _bad(key, text, f"loguniform needs a positive lower bound, got {low:g}")
    if low >= high:
        raise _bad(key, text, f"lower bound {low:g} must be below upper bound {high:g}")
    return tune.loguniform(low, high)


def _uniform(key: str, text: str, args: tuple) -> Domain:
    low, high = _numbers(key, text, args, 2)
    if low >= high:
        raise _bad(key, text, f"lower bound {low:g} must be below upper bound {high:g}")
    return tune.uniform(low, high)


def _quniform(key: str, text: str, args: tuple) -> Domain:
    low, high, q = _numbers(key, text, args, 3)
    if low >= high:
        raise _bad(key, text, f"lower bound {low:g} must be below upper bound {high:g}")
    if q <= 0 or q > high - low:
        raise _bad(key, text, f"step q={q:g} must be positive and at most high - low")
    return tune.quniform(low, high, q)


def _randint(key: str, text: str, args: tuple) -> Domain:
    if len(args) != 2 or not all(isinstance(a, int) and not isinstance(a, bool) for a in args):
        raise _bad(key, text, "randint needs two integers")
    low, high = args
    if low >= high:
        raise _bad(key, text, f"lower bound {low} must be below upper bound {high} (exclusive)")
    return tune.randint(low, high)


def _choice(key: str, text: str, args: tuple) -> Domain:
    if len(args) != 1 or not isinstance(args[0], list | tuple):
        raise _bad(key, text, "choice takes one list, e.g. choice([8,16])")
    values = list(args[0])
    if len({repr(v) for v in values}) < 2:
        raise _bad(key, text, "choice needs at least two different values")
    return tune.choice(values)


def is_domain(value: Any) -> bool:
    return isinstance(value, Domain) and isinstance(value, Float | Integer | Categorical)


def describe(domain: Any) -> str:
    """``loguniform(0.0001, 0.003)``: the form a user would type to get this domain."""
    if not is_domain(domain):
        return repr(domain)
    if isinstance(domain, Categorical):
        return f"choice({list(domain.categories)!r})"
    q, log = _shape(domain)
    if isinstance(domain, Integer):
        name = "lograndint" if log else "randint"
        return f"{name}({domain.lower}, {domain.upper})"
    name = ("qloguniform" if log else "quniform") if q else ("loguniform" if log else "uniform")
    bounds = f"{domain.lower:g}, {domain.upper:g}"
    return f"{name}({bounds}, {q:g})" if q else f"{name}({bounds})"


def _shape(domain: Float | Integer) -> tuple[float | None, bool]:
    """(quantisation step or None, log scale?) of a numeric domain's sampler."""
    sampler = domain.get_sampler()
    q = sampler.q if isinstance(sampler, Quantized) else None
    inner = sampler.get_sampler() if isinstance(sampler, Quantized) else sampler
    return q, type(inner).__name__ == "_LogUniform"


def cardinality(domain: Any) -> float:
    """How many distinct values a domain can give (inf for continuous ones)."""
    if isinstance(domain, Categorical):
        return len(domain.categories)
    if isinstance(domain, Integer):
        return domain.upper - domain.lower
    if isinstance(domain, Float):
        sampler = domain.get_sampler()
        if isinstance(sampler, Quantized):
            return math.floor((domain.upper - domain.lower) / sampler.q + 1e-9) + 1
        return math.inf
    return 1


def from_unit(domain: Any, u: float) -> Any:
    """The value at quantile ``u`` in [0, 1) of ``domain``; a plain value maps to itself."""
    if not is_domain(domain):
        return domain
    u = min(max(float(u), 0.0), math.nextafter(1.0, 0.0))
    if isinstance(domain, Categorical):
        categories = list(domain.categories)
        return categories[int(u * len(categories))]
    q, log = _shape(domain)
    if isinstance(domain, Integer):
        if log:
            low, high = math.log(domain.lower), math.log(domain.upper)
            return min(int(math.exp(low + u * (high - low))), domain.upper - 1)
        return domain.lower + int(u * (domain.upper - domain.lower))
    if q:
        # Equal mass per grid value: the quantised uniform, as Ray rounds it.
        steps = cardinality(domain)
        return float(min(domain.lower + int(u * steps) * q, domain.upper))
    if log:
        low, high = math.log(domain.lower), math.log(domain.upper)
        return float(math.exp(low + u * (high - low)))
    return float(domain.lower + u * (domain.upper - domain.lower))


def to_optuna(domain: Any):
    """The Optuna distribution of a Ray Tune domain (for one Optuna study per arm)."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if isinstance(domain, Categorical):
        return CategoricalDistribution(list(domain.categories))
    q, log = _shape(domain)
    if isinstance(domain, Integer):
        return IntDistribution(domain.lower, domain.upper - 1, log=log)
    if q:
        upper = domain.lower + (cardinality(domain) - 1) * q
        return FloatDistribution(domain.lower, upper, step=q)
    return FloatDistribution(domain.lower, domain.upper, log=log)
