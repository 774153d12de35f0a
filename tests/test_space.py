"""Overrides are parsed, validated against the preset and the typed config, and labelled."""

from __future__ import annotations

import copy
import pickle
from dataclasses import replace

import pytest
from ray import tune

from orchestrator.domains import describe
from orchestrator.errors import UserError
from orchestrator.plan import SweepOptions, make_plan
from orchestrator.space import (
    VariantLabeler,
    apply_overrides,
    concrete_configs,
    flatten,
    parse_value,
    resolve_config,
    set_path,
    validate_config,
    variant_label,
)
from search_spaces import load_experiment
from search_spaces.registry import UnknownPresetError
from trainables.config import ConfigError
from trainables.trial_setup import parse_trial


@pytest.fixture(scope="module")
def mnist():
    return load_experiment("mnist_attention")


@pytest.mark.parametrize(("text", "value"), [
    ("3", 3), ("1e-3", 1e-3), ("true", True), ("None", None), ("null", None), ("none", "none"), ("adam", "adam"),
    ("[none, se]", ["none", "se"]), ("[0.1,1]", [0.1, 1]), ("'7'", "7"),
    ("false", False), ("FALSE", False), ("True", True), ("[]", []), ("[ ]", []),
    ("[x", "[x"), ("x]", "x]"), ("[true, null]", [True, None]),
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


def test_device_is_a_key_a_run_can_set(mnist):
    plan = make_plan(mnist, SweepOptions(overrides=("device=cpu",)))
    assert plan.space["device"] == "cpu"


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


@pytest.fixture(scope="module")
def named():
    """A preset whose variants differ in several keys (per-variant values resolved by Ray)."""
    return load_experiment("cifar10_cnntention")


def _apply(experiment, *overrides, tuned=None):
    space = copy.deepcopy(dict(experiment.param_space))
    if tuned is None:
        return apply_overrides(experiment, space, list(overrides))
    return apply_overrides(experiment, space, list(overrides), tuned)


def test_set_path_makes_missing_sections_and_refuses_to_descend_into_a_value():
    space = {"train": {"lr": 0.1}}
    set_path(space, "augment.noise.std", 0.2)
    assert space == {"train": {"lr": 0.1}, "augment": {"noise": {"std": 0.2}}}
    with pytest.raises(UserError, match=r"^--set train\.lr\.warmup: lr is not a section$"):
        set_path(space, "train.lr.warmup", 5)


def test_concrete_configs_sample_domains_and_resolve_config_dependent_values():
    space = {"model": {"attention": tune.grid_search(["se", "cbam"]), "heads": 4},
             "train": {"lr": tune.loguniform(1e-4, 1e-3), "milestones": [3, 6],
                       "epochs": tune.sample_from(lambda: 7),
                       "optimizer": tune.sample_from(
                           lambda spec: "sgd" if spec["model"]["attention"] == "se" else "adam")}}
    configs = list(concrete_configs(space))
    assert [c["model"]["attention"] for c in configs] == ["se", "cbam"]
    assert [c["train"]["optimizer"] for c in configs] == ["sgd", "adam"]
    assert all(c["train"]["epochs"] == 7 and c["model"]["heads"] == 4 for c in configs)
    assert all(1e-4 <= c["train"]["lr"] <= 1e-3 for c in configs)
    configs[0]["train"]["milestones"].append(9)  # each config is its own copy of the space
    assert space["train"]["milestones"] == [3, 6] and configs[1]["train"]["milestones"] == [3, 6]


def test_resolve_config_fills_one_variants_values_and_leaves_the_point_alone(named):
    point = copy.deepcopy(dict(named.param_space))
    point["variant"] = "cbam_r16"
    config = resolve_config(point)
    assert (config["model"]["attention"], config["model"]["reduction"]) == ("cbam", 16)
    assert (config["train"]["optimizer"], config["train"]["lr"]) == ("adam", 0.005)
    config["train"]["milestones"].append(170)
    assert point["train"]["milestones"] == [91, 136]
    assert not isinstance(point["model"]["attention"], str)  # still the per-variant recipe
    baseline = resolve_config({**point, "variant": "baseline"})
    assert (baseline["model"]["attention"], baseline["train"]["optimizer"]) == ("none", "sgd")


def test_apply_overrides_without_a_tuned_dict_and_values_holding_equals_signs(mnist):
    space, keys = _apply(mnist, "data.root=/mnt/runs/split=4/mnist", "train.lr=0.01")
    assert space["data"]["root"] == "/mnt/runs/split=4/mnist" and space["train"]["lr"] == 0.01
    assert keys == ("model.attention",)


def test_a_domain_override_is_tuned_and_a_plain_value_fixes_a_tuned_key(mnist):
    tuned = {"model.dropout": tune.uniform(0.1, 0.5)}
    space, keys = _apply(mnist, "train.lr=loguniform(1e-4,1e-3)", "model.dropout=0.2",
                         "train.grad_clip=uniform(0.5, 2)", tuned=tuned)
    assert {k: describe(v) for k, v in tuned.items()} == {
        "train.lr": "loguniform(0.0001, 0.001)", "train.grad_clip": "uniform(0.5, 2)"}
    # The recipe value stays the default point; the fixed key is fixed in the space.
    assert space["train"]["lr"] == 1e-3 and space["model"]["dropout"] == 0.2
    assert "grad_clip" not in space["train"] and keys == ("model.attention",)


def test_a_malformed_domain_names_its_key(mnist):
    with pytest.raises(UserError, match=r"^--set train\.lr=loguniform\(0, 1e-3\): .*positive"):
        _apply(mnist, "train.lr=loguniform(0, 1e-3)", tuned={})


@pytest.mark.parametrize("override", ["model.attention=choice(['se', 'cbam'])",
                                      "variant=choice(['baseline', 'mha'])"])
def test_a_grid_axis_cannot_be_tuned(mnist, named, override):
    experiment = named if override.startswith("variant") else mnist
    key, _, text = override.partition("=")
    message = (f"--set {key}={text}: {key} is a grid (variant) axis and cannot be tuned; "
               "give it a list of values, or tune another key")
    with pytest.raises(UserError) as err:
        _apply(experiment, override, tuned={})
    assert str(err.value) == message


def test_a_list_replaces_a_list_valued_key_instead_of_making_a_grid():
    video = load_experiment("hmdb51_ablation")
    space, keys = _apply(video, "data.mean=[0.5,0.5,0.5]", "train.milestones=[10]")
    assert space["data"]["mean"] == [0.5, 0.5, 0.5] and space["train"]["milestones"] == [10]
    assert keys == ("variant",)


@pytest.mark.parametrize(("override", "message"), [
    ("seed=3", "--set seed=... is not allowed; use --seeds N"),
    ("optimizer.lr=1", "unknown override key 'optimizer.lr'; keys start with data., model., "
                       "train., augment. or are device (see `python -m orchestrator show "
                       "mnist_attention`)"),
    ("device=gpu", "--set device=gpu: must be one of auto, cpu, cuda (auto: the GPU Ray gives "
                   "the trial, if any)"),
    ("model.attention=[]", "--set model.attention=[] gives an empty grid"),
])
def test_override_errors_say_what_to_do(mnist, override, message):
    with pytest.raises(UserError) as err:
        _apply(mnist, override, tuned={})
    assert str(err.value) == message


def test_variant_names_need_a_preset_with_named_variants(named):
    # A user preset that pins one of the named variants has no variants left to choose.
    pinned = replace(named, name="cnntention_mha", param_space={**named.param_space,
                                                                 "variant": "mha"})
    with pytest.raises(UserError) as err:
        _apply(pinned, "variant=baseline", tuned={})
    assert str(err.value) == ("preset cnntention_mha has no named variants; --set variant=... "
                              "does not apply")


def test_named_variants_are_chosen_by_name(named):
    space, keys = _apply(named, "variant=[baseline,cbam_r16]")
    assert space["variant"] == {"grid_search": ["baseline", "cbam_r16"]} and keys == ("variant",)
    space, _ = _apply(named, "variant=mha")
    assert space["variant"] == "mha"
    with pytest.raises(UserError) as err:
        _apply(named, "variant=[baseline,cbam_r64]")
    assert str(err.value) == ("unknown variant='cbam_r64'; choose from baseline, selfatt, "
                              "selfatt_weighted, mha, mha_weighted, cbam_r8, cbam_r16, cbam_r32")


def test_validation_errors_name_every_override_given(mnist):
    with pytest.raises(UserError) as err:
        make_plan(mnist, SweepOptions(overrides=("train.lr=0.01", "train.epochs=ten")))
    assert str(err.value).endswith(" (from --set train.lr=0.01 --set train.epochs=ten)")
    config = next(iter(concrete_configs(mnist.param_space)))
    config["train"]["epochs"] = "ten"
    with pytest.raises(ConfigError) as parsed:
        parse_trial(config)
    with pytest.raises(UserError) as err:  # a preset's own mistake: no --set to blame
        validate_config(config, [])
    assert str(err.value) == str(parsed.value)
    assert str(err.value).startswith("train.epochs='ten' has the wrong type")


@pytest.mark.parametrize(("section", "message"), [("data", "data.name is missing"),
                                                  ("model", "model.name is missing")])
def test_a_config_without_a_section_is_a_user_error(mnist, section, message):
    config = next(iter(concrete_configs(mnist.param_space)))
    del config[section]
    with pytest.raises(UserError, match=message):
        validate_config(config, [])


def test_validation_never_loads_pretrained_weights(monkeypatch, tmp_path):
    # No weight file exists under this cache: loading one would fail.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    config = {"data": {"name": "hmdb51", "root": None},
              "model": {"name": "r2plus1d_perceiver", "cnn_blocks": 4, "cross_blocks": 0,
                        "pretrained": True}}
    validate_config(config, [])
    assert config["model"]["pretrained"] is True  # the trial's own config is left as it was


def test_variant_labels():
    config = {"variant": "mha", "model": {"attention": "se", "reduction": None},
              "train": {"lr": 0.1, "nesterov": True}}
    assert variant_label(config, ()) == "default"
    assert variant_label(config, ("model.attention",)) == "se"
    assert variant_label(config, ("train.lr",)) == "0.1"
    assert variant_label(config, ("variant", "train.lr")) == "variant=mha,lr=0.1"
    assert (variant_label(config, ("model.reduction", "train.nesterov", "model.heads"))
            == "reduction=null,nesterov=true,heads=null")
    labeler = pickle.loads(pickle.dumps(VariantLabeler(["model.attention", "train.lr"])))
    assert labeler.variant_keys == ("model.attention", "train.lr")
    assert labeler(config) == "attention=se,lr=0.1"
