"""The image presets: named variants with their own recipes, profiles, and what Ray resolves."""

from __future__ import annotations

import pytest
from ray.tune.search.variant_generator import generate_variants

from orchestrator.errors import UserError
from orchestrator.plan import SweepOptions, make_plan
from orchestrator.space import concrete_configs, variant_label
from search_spaces import load_experiment
from search_spaces.variants import ByVariant, named_variants
from trainables.config import ConfigError
from trainables.data.cifar import write_cifar


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar(root, classes=10, n_train=200, n_test=50)
    write_cifar(root, classes=100, n_train=300, n_test=100)
    return str(root)


@pytest.fixture(scope="module")
def cnntention():
    return load_experiment("cifar10_cnntention")


def _ray_configs(space):
    """The trial configs Ray itself generates from a space (no cluster needed)."""
    return [config for _, config in generate_variants(space)]


def test_named_variants_resolve_per_variant_values_like_ray():
    base = {"model": {"attention": "none"}, "train": {"lr": 0.1, "optimizer": "sgd"}}
    space = named_variants(base, {
        "base": {},
        "se": {"model.attention": "se", "train.lr": 5e-3, "train.optimizer": "adam"},
    })
    configs = {c["variant"]: c for c in _ray_configs(space)}
    assert configs["base"]["train"] == {"lr": 0.1, "optimizer": "sgd"}
    assert configs["base"]["model"]["attention"] == "none"
    assert configs["se"]["train"] == {"lr": 5e-3, "optimizer": "adam"}
    # Our validator resolves the same values Ray does.
    ours = {c["variant"]: c for c in concrete_configs(space)}
    assert ours == configs


def test_named_variants_refuse_a_key_without_base_value_left_out_by_some():
    with pytest.raises(ValueError, match=r"model\.reduction"):
        named_variants({"model": {}}, {"a": {"model.reduction": 8}, "b": {}})


def test_by_variant_without_default_names_the_variant():
    with pytest.raises(ConfigError, match=r"variant='x'"):
        ByVariant({"a": 1})({"variant": "x"})


def test_cnntention_plan_has_each_variants_own_recipe(cnntention, cifar_root):
    plan = make_plan(cnntention, SweepOptions(data_root=cifar_root, seeds=1))
    assert plan.n_trials == 8 and plan.variant_keys == ("variant",)
    configs = {c["variant"]: c for c in concrete_configs(plan.space)}
    assert configs["baseline"]["train"]["optimizer"] == "sgd"
    assert configs["baseline"]["train"]["lr"] == 0.1
    assert configs["selfatt_weighted"]["train"]["optimizer"] == "adam"
    assert configs["selfatt_weighted"]["train"]["lr"] == 5e-4
    assert configs["selfatt_weighted"]["model"]["residual"] == "weighted"
    assert configs["cbam_r32"]["model"]["reduction"] == 32
    assert configs["cbam_r32"]["train"]["lr"] == 5e-3
    assert variant_label(configs["mha"], plan.variant_keys) == "mha"


def test_shared_recipe_profile_gives_every_variant_the_baseline_recipe(cnntention, cifar_root):
    plan = make_plan(cnntention, SweepOptions(data_root=cifar_root, seeds=1,
                                              profiles=("shared-recipe",)))
    for config in concrete_configs(plan.space):
        assert (config["train"]["optimizer"], config["train"]["lr"]) == ("sgd", 0.1)
    # Architecture still differs per variant.
    attention = {c["variant"]: c["model"]["attention"] for c in concrete_configs(plan.space)}
    assert attention["cbam_r8"] == "cbam" and attention["baseline"] == "none"


def test_set_variant_list_runs_a_subset(cnntention, cifar_root):
    plan = make_plan(cnntention, SweepOptions(data_root=cifar_root, seeds=2,
                                              overrides=("variant=[baseline,cbam_r16]",)))
    assert plan.n_trials == 4
    assert {c["variant"] for c in concrete_configs(plan.space)} == {"baseline", "cbam_r16"}


def test_unknown_variant_and_profile_are_clear_errors(cnntention, cifar_root):
    with pytest.raises(UserError, match="unknown variant='cbam_r4'; choose from baseline"):
        make_plan(cnntention, SweepOptions(data_root=cifar_root,
                                           overrides=("variant=[baseline,cbam_r4]",)))
    with pytest.raises(UserError, match=r"unknown profile 'imagenet'.*shared-recipe"):
        make_plan(cnntention, SweepOptions(data_root=cifar_root, profiles=("imagenet",)))


def test_optuna_tunes_each_named_variant_around_its_own_recipe(cnntention, cifar_root):
    with pytest.raises(UserError, match="--search optuna needs --samples N > 1"):
        make_plan(cnntention, SweepOptions(data_root=cifar_root, search="optuna"))
    plan = make_plan(cnntention, SweepOptions(data_root=cifar_root, search="optuna", samples=4))
    arms = {arm.label: arm for arm in plan.protocol.arms}
    assert len(arms) == 8 and plan.protocol.search == "optuna"
    # Variant recipes that are not tuned stay per variant: SGD baseline, Adam attention.
    assert arms["baseline"].config["train"]["optimizer"] == "sgd"
    assert arms["cbam_r8"].config["train"]["optimizer"] == "adam"
    assert arms["baseline"].domains["train.lr"].lower == 0.03
    assert arms["cbam_r8"].domains["train.lr"].lower == 1e-4


def test_missing_cifar_names_the_files(cnntention, tmp_path):
    with pytest.raises(UserError, match="data_batch_1"):
        make_plan(cnntention, SweepOptions(data_root=str(tmp_path)))


def test_default_plan_carries_the_cifar_numbers(cnntention, cifar_root):
    plan = make_plan(cnntention, SweepOptions(data_root=cifar_root, seeds=1,
                                              profiles=("shared-recipe",)))
    assert plan.reported == cnntention.reported and plan.reported["baseline"]["test_acc"] == 0.9096


def test_mnist_bundled_profile_needs_no_download(cnntention):
    plan = make_plan(cnntention, SweepOptions(profiles=("mnist-bundled",), seeds=1))
    config = next(iter(concrete_configs(plan.space)))
    assert config["data"]["name"] == "reduced_mnist"
    assert config["augment"]["flip"] is False
    # The source's MNIST numbers replace its CIFAR ones for this run's report.
    assert plan.reported["baseline"] == {"test_acc": 0.9852}
    assert "MNIST" in plan.reported_note


@pytest.mark.parametrize(("preset", "trials"), [
    ("vgg16_attention", 8), ("spatial_attention_cosine", 4),
])
def test_other_image_presets_plan(preset, trials, cifar_root):
    plan = make_plan(load_experiment(preset), SweepOptions(data_root=cifar_root, seeds=1))
    assert plan.n_trials == trials
    labels = {variant_label(c, plan.variant_keys) for c in concrete_configs(plan.space)}
    exp = load_experiment(preset)
    # Every reported number is attached to a variant the sweep actually runs.
    assert set(exp.reported) <= labels
    assert exp.baseline_variant in labels


def test_cnntention_reported_and_baseline_match_its_variants(cnntention, cifar_root):
    plan = make_plan(cnntention, SweepOptions(data_root=cifar_root, seeds=1))
    labels = {variant_label(c, plan.variant_keys) for c in concrete_configs(plan.space)}
    assert set(cnntention.reported) <= labels and cnntention.baseline_variant in labels


def test_any_image_folder_swaps_in_with_one_set(cnntention, tmp_path):
    from trainables.data.image_folder import write_image_folder
    from trainables.image import run_image_trial

    write_image_folder(tmp_path, classes=3, per_class=12, image_size=40,
                       splits=("train", "test"), corrupt=1)
    data = f"data={{'name': 'image_folder', 'root': '{tmp_path}', 'image_size': 32}}"
    plan = make_plan(cnntention, SweepOptions(seeds=1, smoke=True,
                                              overrides=(data, "variant=cbam_r16")))
    config = next(iter(concrete_configs(plan.space)))
    assert config["data"]["name"] == "image_folder" and config["model"]["attention"] == "cbam"
    config["device"] = "cpu"
    rows: list[dict] = []
    files: dict[str, bytes] = {}
    run_image_trial(config, report=lambda metrics, state: rows.append(metrics),
                    artifacts=files.__setitem__)
    assert rows[-1]["status"] == "ok" and "maps.npz" in files
