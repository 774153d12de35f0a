"""The tuning protocol: distinct seeded draws shared by all arms, fresh replicate seeds,
and every way to ask for tuning that cannot be fair refused on the driver."""

from __future__ import annotations

import math

import pytest

from orchestrator.domains import from_unit
from orchestrator.errors import UserError
from orchestrator.plan import SweepOptions, make_plan
from orchestrator.protocol import TUNING_SEED, unit_points
from search_spaces.registry import load_experiment

MNIST = load_experiment("mnist_attention")
CIFAR = load_experiment("cifar10_cnntention")


def _plan(experiment=MNIST, **options):
    options.setdefault("samples", 6)
    overrides = tuple(options.pop("overrides", ()))
    return make_plan(experiment, SweepOptions(overrides=overrides, **options),
                     check_files=False)


def _lrs(plan) -> list[list[float]]:
    return [[c["train.lr"] for c in arm] for arm in plan.protocol.candidates()]


def test_same_search_seed_same_draws_other_seed_other_draws():
    first, again = _plan(search_seed=7), _plan(search_seed=7)
    assert first.protocol.candidates() == again.protocol.candidates()
    other = _plan(search_seed=8)
    assert set(_lrs(other)[0]).isdisjoint(_lrs(first)[0])


def test_every_arm_gets_the_same_candidates_on_shared_keys():
    plan = _plan(samples=8)
    lrs = _lrs(plan)
    assert [arm.label for arm in plan.protocol.arms] == ["none", "spatial", "self", "cbam", "se"]
    assert all(arm == lrs[0] for arm in lrs)
    assert len(set(lrs[0])) == 8  # distinct
    # The arm-specific knobs are tuned on their arm only.
    by_arm = {arm.label: set(arm.domains) for arm in plan.protocol.arms}
    assert by_arm["se"] == {"train.lr", "model.reduction"}
    assert by_arm["self"] == {"train.lr", "model.heads"} and by_arm["none"] == {"train.lr"}


def test_arms_with_different_ranges_get_matched_quantiles():
    # CNNtention's SGD baseline and Adam arms tune lr over different ranges: draw i of
    # every arm sits at the same quantile of its own range.
    plan = _plan(CIFAR, samples=5)
    arms = {arm.label: arm for arm in plan.protocol.arms}
    candidates = dict(zip(arms, plan.protocol.candidates(), strict=True))

    def quantile(label: str, draw: int) -> float:
        domain = arms[label].domains["train.lr"]
        lr = candidates[label][draw]["train.lr"]
        return math.log(lr / domain.lower) / math.log(domain.upper / domain.lower)

    for draw in range(5):
        assert quantile("baseline", draw) == pytest.approx(quantile("cbam_r16", draw))
    assert candidates["baseline"][0]["train.lr"] != candidates["cbam_r16"][0]["train.lr"]
    assert all(0.03 <= c["train.lr"] <= 0.3 for c in candidates["baseline"])
    assert all(1e-4 <= c["train.lr"] <= 1e-2 for c in candidates["mha"])


def test_latin_hypercube_puts_one_draw_in_each_slice_of_each_range():
    plan = _plan(samples=8)
    points = unit_points(plan.protocol)
    for dim in range(len(plan.protocol.keys)):
        slices = sorted(int(p[dim] * 8) for p in points)
        assert slices == list(range(8))


def test_replicate_seeds_are_fresh():
    plan = _plan(seeds=5)
    assert plan.protocol.tuning_seed == TUNING_SEED
    assert TUNING_SEED not in plan.protocol.seeds and len(set(plan.protocol.seeds)) == 5
    assert plan.n_trials == 5 * (6 + 5)


def test_one_sample_keeps_the_recipe_without_tuning():
    plan = _plan(samples=1)
    assert plan.protocol is None and plan.n_trials == 15
    assert plan.space["train"]["lr"] == 1e-3 and plan.space["data"]["val_fraction"] == 0.0


def test_tuning_holds_validation_out_of_training_when_the_preset_validates_on_test():
    plan = _plan()
    assert all(arm.config["data"]["val_fraction"] == 0.1 for arm in plan.protocol.arms)
    assert any("validation, not test" in note for note in plan.notes)


def test_domain_from_command_line_replaces_the_presets_and_a_value_fixes_it():
    plan = _plan(overrides=["train.lr=loguniform(1e-3,3e-2)", "model.heads=2",
                            "model.reduction=16"])
    assert {k for arm in plan.protocol.arms for k in arm.domains} == {"train.lr"}
    assert all(1e-3 <= lr <= 3e-2 for lr in _lrs(plan)[0])
    assert plan.protocol.arms[2].config["model"]["heads"] == 2


def test_discrete_domains_with_too_few_settings_are_refused():
    with pytest.raises(UserError, match="arm none has only 2 distinct settings"):
        _plan(samples=3, overrides=["train.lr=choice([0.001,0.002])"])
    plan = _plan(samples=2, overrides=["train.lr=choice([0.001,0.002])", "model.heads=4",
                                       "model.reduction=8"])
    assert all(sorted(arm) == [0.001, 0.002] for arm in _lrs(plan))


@pytest.mark.parametrize(("options", "message"), [
    ({"overrides": ["model.attention=choice([none,se])"]}, "grid (variant) axis"),
    ({"overrides": ["train.lr=loguniform(0,1e-3)"]}, "positive lower bound"),
    ({"overrides": ["train.lr=loguniform(1e-3,1e-4)"]}, "must be below upper bound"),
    ({"samples": 1, "overrides": ["train.lr=loguniform(1e-4,1e-3)"]}, "needs --samples N > 1"),
    ({"samples": 1, "search": "optuna"}, "--search optuna needs --samples N > 1"),
    ({"overrides": ["data.val_fraction=0"]}, "validates on the test split"),
    ({"samples": 0}, "--samples 0"),
    ({"overrides": ["train.lr=loguniform(1e-4,1e-3)", "train.lr=0.01", "model.heads=4",
                    "model.reduction=8"]}, "nothing is tuned"),
    ({"overrides": ["train.epochs=-3"]}, "train.epochs=-3"),
    ({"overrides": ["model.dropout=uniform(0.5,1.5)"]}, "dropout must be in [0, 1)"),
])
def test_bad_tuning_requests_are_one_line_errors(options, message):
    with pytest.raises(UserError) as err:
        _plan(**options)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_optuna_on_named_variants_needs_samples_then_tunes_each_arm():
    with pytest.raises(UserError, match="needs --samples"):
        make_plan(CIFAR, SweepOptions(search="optuna"), check_files=False)
    plan = make_plan(CIFAR, SweepOptions(search="optuna", samples=20), check_files=False)
    assert plan.protocol.search == "optuna" and plan.n_trials == 8 * (20 + 3)


def test_hmdb51_tunes_on_training_videos_held_out_never_on_its_test_list():
    hmdb = load_experiment("hmdb51_ablation")
    plan = make_plan(hmdb, SweepOptions(samples=4, smoke=True), check_files=False)
    assert all(arm.config["data"]["val_fraction"] == 0.1 for arm in plan.protocol.arms)
    with pytest.raises(UserError, match="validates on the test split"):
        make_plan(hmdb, SweepOptions(samples=4, smoke=True,
                                     overrides=("data.val_fraction=0",)), check_files=False)


def test_no_run_chooses_an_epoch_on_a_test_split_used_for_validation():
    from search_spaces.registry import preset_names

    for experiment in map(load_experiment, preset_names()):   # every preset as shipped
        make_plan(experiment, SweepOptions(), check_files=False)
        make_plan(experiment, SweepOptions(smoke=True), check_files=False)
    hmdb = load_experiment("hmdb51_ablation")
    with pytest.raises(UserError, match=r"^train\.restore_best=true and train\.patience=15 "
                                        r"would choose an epoch on the test split: dataset "
                                        r"hmdb51 validates on test here \(with --set "
                                        r"data\.val_fraction=0\); set train\.restore_best=false "
                                        r"and train\.patience=none, or hold validation out "
                                        r"with --set data\.val_fraction=0\.1$"):
        make_plan(hmdb, SweepOptions(overrides=("data.val_fraction=0",)), check_files=False)
    make_plan(hmdb, SweepOptions(overrides=("data.val_fraction=0", "train.restore_best=false",
                                            "train.patience=none")), check_files=False)
    mnist = load_experiment("mnist_attention")   # validates on test, tests the last epoch
    with pytest.raises(UserError, match=r"^train\.restore_best=true would choose"):
        make_plan(mnist, SweepOptions(overrides=("train.restore_best=true",)), check_files=False)


def test_every_preset_declares_domains_that_parse_at_both_ends():
    from search_spaces.registry import preset_names

    for experiment in map(load_experiment, preset_names()):
        assert experiment.search_space, experiment.name
        plan = make_plan(experiment, SweepOptions(samples=4, smoke=True), check_files=False)
        for arm in plan.protocol.arms:
            assert arm.domains, (experiment.name, arm.label)
            for key, domain in arm.domains.items():
                low, high = from_unit(domain, 0.0), from_unit(domain, 1.0)
                assert low != high, (experiment.name, key)


def test_discrete_draws_are_redrawn_until_every_candidate_is_distinct():
    # 2 x 3 settings and 6 candidates: every combination exactly once, for any search seed.
    for search_seed in range(5):
        plan = _plan(samples=6, search_seed=search_seed, overrides=[
            "model.attention=[none]", "train.lr=choice([0.001,0.002])",
            "model.dropout=choice([0.2,0.3,0.4])"])
        combos = {(c["train.lr"], c["model.dropout"]) for c in plan.protocol.candidates()[0]}
        assert len(combos) == 6


def test_fsdd_clips_each_variable_like_keras_clipnorm():
    train = load_experiment("fsdd_attention").param_space["train"]
    assert (train["grad_clip"], train["grad_clip_mode"]) == (1.0, "per_tensor")
