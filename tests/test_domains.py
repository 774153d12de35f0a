"""Domains from the command line: parsed, checked, described, mapped from the unit interval."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ray import tune

from orchestrator.domains import (
    cardinality,
    describe,
    from_unit,
    looks_like_domain,
    parse_domain,
    to_optuna,
)
from orchestrator.errors import UserError


@pytest.mark.parametrize(("text", "shown"), [
    ("loguniform(1e-4,3e-3)", "loguniform(0.0001, 0.003)"),
    ("uniform(0.3, 0.7)", "uniform(0.3, 0.7)"),
    ("quniform(0, 1, 0.25)", "quniform(0, 1, 0.25)"),
    ("randint(2, 9)", "randint(2, 9)"),
    ("choice([8,16])", "choice([8, 16])"),
    ("choice(['adam', 'adamw'])", "choice(['adam', 'adamw'])"),
])
def test_each_form_parses_and_describes_as_typed(text, shown):
    assert describe(parse_domain("train.lr", text)) == shown


@pytest.mark.parametrize(("text", "problem"), [
    ("loguniform(0, 1e-3)", "positive lower bound"),
    ("loguniform(-1e-3, 1e-3)", "positive lower bound"),
    ("loguniform(1e-3, 1e-4)", "must be below upper bound"),
    ("uniform(0.5, 0.5)", "must be below upper bound"),
    ("quniform(0, 1, 2)", "step q=2"),
    ("quniform(0, 1, 0)", "step q=0"),
    ("randint(3, 3)", "must be below upper bound 3"),
    ("randint(1.5, 3)", "two integers"),
    ("choice([8])", "at least two different values"),
    ("choice(8, 16)", "one list"),
    ("logunifrm(1e-4, 1e-3)", "unknown domain 'logunifrm'"),
    ("uniform(a, b)", "not literals"),
    ("uniform(1)", "needs 2 numbers"),
    ("uniform(0, inf)", "not literals"),
])
def test_malformed_domain_is_one_line_naming_key_and_forms(text, problem):
    with pytest.raises(UserError) as err:
        parse_domain("train.lr", text)
    message = str(err.value)
    assert message.startswith(f"--set train.lr={text}: ") and problem in message
    assert "loguniform(a,b) uniform(a,b) quniform(a,b,q) randint(a,b) choice([x,y,...])" in message
    assert "\n" not in message


def test_only_call_syntax_is_taken_for_a_domain():
    assert looks_like_domain("loguniform(1e-4,1e-3)") and looks_like_domain("typo(1)")
    for plain in ("0.01", "[none,se]", "adam", "{'name': 'mnist'}", "none"):
        assert not looks_like_domain(plain)


def test_from_unit_is_each_domains_quantile_function():
    log = tune.loguniform(1e-4, 1e-2)
    assert from_unit(log, 0.0) == pytest.approx(1e-4)
    assert from_unit(log, 0.5) == pytest.approx(1e-3)  # the geometric midpoint
    assert from_unit(log, 1.0) == pytest.approx(1e-2)
    assert from_unit(tune.uniform(0.3, 0.7), 0.25) == pytest.approx(0.4)
    choice = tune.choice(["a", "b", "c"])
    assert [from_unit(choice, u) for u in (0.0, 0.34, 0.67, 0.999)] == ["a", "b", "c", "c"]
    ints = tune.randint(2, 5)  # 2, 3, 4 as Ray's exclusive upper bound
    assert [from_unit(ints, u) for u in (0.0, 0.4, 0.99)] == [2, 3, 4]
    assert from_unit(0.123, 0.9) == 0.123  # a fixed value maps to itself


def test_from_unit_gives_each_value_equal_mass():
    u = (np.arange(6000) + 0.5) / 6000
    q = tune.quniform(0.0, 1.0, 0.25)
    values = [from_unit(q, x) for x in u]
    counts = {v: values.count(v) for v in set(values)}
    assert sorted(counts) == [0.0, 0.25, 0.5, 0.75, 1.0] and set(counts.values()) == {1200}
    logs = np.log10([from_unit(tune.loguniform(1e-4, 1e-2), x) for x in u])
    assert np.histogram(logs, bins=4, range=(-4, -2))[0].tolist() == [1500] * 4


def test_cardinality_counts_distinct_values():
    assert cardinality(tune.choice([1, 2, 3])) == 3
    assert cardinality(tune.randint(0, 4)) == 4
    assert cardinality(tune.quniform(0, 1, 0.25)) == 5
    assert math.isinf(cardinality(tune.uniform(0, 1)))


def test_optuna_distributions_match_the_domains():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    assert to_optuna(tune.loguniform(1e-4, 1e-2)) == FloatDistribution(1e-4, 1e-2, log=True)
    assert to_optuna(tune.uniform(0.3, 0.7)) == FloatDistribution(0.3, 0.7)
    assert to_optuna(tune.randint(2, 9)) == IntDistribution(2, 8)
    assert to_optuna(tune.quniform(0, 1, 0.25)) == FloatDistribution(0, 1, step=0.25)
    assert to_optuna(tune.choice([8, 16])) == CategoricalDistribution([8, 16])
