"""Overrides are parsed, validated against the preset and the typed config, and labelled."""

from __future__ import annotations

import pytest

from orchestrator.errors import UserError
from orchestrator.plan import SweepOptions, make_plan
from orchestrator.space import flatten, parse_value, variant_label
from search_spaces import load_experiment
from search_spaces.registry import UnknownPresetError


@pytest.fixture(scope="module")
def mnist():
    return load_experiment("mnist_attention")


@pytest.mark.parametrize(("text", "value"), [
    ("3", 3), ("1e-3", 1e-3), ("true", True), ("None", None), ("null", None), ("none", "none"), ("adam", "adam"),
    ("[none, se]", ["none", "se"]), ("[0.1,1]", [0.1, 1]), ("'7'", "7"),
])
def test_parse_value(text, value):
    assert parse_value(text) == value


def test_default_plan_counts_variants_times_seeds(mnist):
    plan = make_plan(mnist, SweepOptions())
    assert plan.n_trials == 15 and plan.scheduler == "halving-per-variant" and plan.max_t == 10
    smoke = make_plan(mnist, SweepOptions(smoke=True, seeds=2))
    assert smoke.n_trials == 10 and smoke.max_t == 2
    assert smoke.space["train"]["max_batches"] == 4


def test_list_override_makes_a_grid_axis_and_a_variant_key(mnist):
    plan = make_plan(mnist, SweepOptions(overrides=("model.attention=[none,se]", "train.lr=[0.1,0.01]"),
                                         seeds=1))
    assert plan.n_trials == 4
    assert plan.variant_keys == ("model.attention", "train.lr")
    config = {"model": {"attention": "se"}, "train": {"lr": 0.1}}
    assert variant_label(config, plan.variant_keys) == "attention=se,lr=0.1"


def test_typed_config_keys_outside_the_preset_are_accepted(mnist):
    plan = make_plan(mnist, SweepOptions(overrides=("train.grad_clip=1.0", "train.milestones=[3,6]")))
    assert plan.space["train"]["grad_clip"] == 1.0 and plan.space["train"]["milestones"] == [3, 6]


@pytest.mark.parametrize(("override", "message"), [
    ("train.lrr=0.1", "unknown config key train.lrr"),
    ("model.head_dim=4", "head_dim"),
    ("data.rooot=/x", "unknown config key data.rooot"),
    ("optimizer.lr=1", "unknown override key 'optimizer.lr'"),
    ("train.epochs=ten", "train.epochs='ten' has the wrong type"),
    ("train.precision=fp8", "train.precision='fp8' is not allowed"),
    ("model.attention=[none,transformer]", "transformer"),
    ("train.lr", "is not key.path=value"),
])
def test_bad_overrides_name_the_key(mnist, override, message):
    with pytest.raises(UserError, match=message):
        make_plan(mnist, SweepOptions(overrides=(override,)))


def test_missing_data_root_names_layout(mnist, tmp_path):
    with pytest.raises(UserError, match="train-images-idx3-ubyte"):
        make_plan(mnist, SweepOptions(data_root=str(tmp_path)))


def test_unknown_preset_suggests_closest():
    with pytest.raises(UnknownPresetError, match="did you mean 'mnist_attention'"):
        load_experiment("mnist_atention")


def test_user_preset_file(tmp_path):
    path = tmp_path / "my_study.py"
    path.write_text(
        "from dataclasses import replace\n"
        "from search_spaces.mnist_attention import EXPERIMENT as BASE\n"
        "EXPERIMENT = replace(BASE, name='my_study', seeds=2)\n")
    assert load_experiment(str(path)).name == "my_study"


def test_flatten_makes_parquet_friendly_columns():
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": None}) == {"a.b": 1, "a.c": "[1, 2]", "d": None}
