"""ASHA acts on tuning candidates only, and per arm: one arm's draws never stop another's."""

from __future__ import annotations

from types import SimpleNamespace

from ray.tune.schedulers import TrialScheduler

from orchestrator.schedulers import build_scheduler


def _trial(trial_id: str, arm: str, *, stage: str = "tune", seed: int = 0, draw: int = 0):
    config = {"seed": seed, "stage": stage, "draw": draw, "model": {"attention": arm}}
    return SimpleNamespace(trial_id=trial_id, config=config, status="RUNNING")


def _simulate(name: str, arms: dict[str, list[float]], *, extra=(), max_t: int = 9):
    """Trials of ``arms`` (arm -> per-draw scores) step through epochs in turn.

    Returns the ids of trials that reached the full budget. ``extra`` adds (trial, score)
    pairs, e.g. replicate trials, that step alongside.
    """
    scheduler = build_scheduler(name, variant_keys=("model.attention",), max_t=max_t,
                                grace_period=1, reduction_factor=3)
    scheduler.set_search_properties("val_acc", "max")
    trials = [(_trial(f"{arm}{draw}", arm, draw=draw), score)
              for arm, scores in arms.items() for draw, score in enumerate(scores)]
    trials += list(extra)
    for trial, _ in trials:
        scheduler.on_trial_add(None, trial)
    alive, finished = {t.trial_id for t, _ in trials}, set()
    for epoch in range(1, max_t + 1):
        for trial, score in trials:
            if trial.trial_id not in alive:
                continue
            decision = scheduler.on_trial_result(None, trial, {"epoch": epoch, "val_acc": score,
                                                               "status": "running"})
            if epoch == max_t:
                finished.add(trial.trial_id)
            if decision == TrialScheduler.STOP or epoch == max_t:
                alive.discard(trial.trial_id)
                scheduler.on_trial_complete(None, trial, {"epoch": epoch, "val_acc": score})
    return finished


# Best draw first, so ASHA's asynchronous cut-offs have something to prune against.
STRONG = [0.9 - 0.01 * d for d in range(6)]
WEAK = [0.3 - 0.01 * d for d in range(6)]


def test_plain_asha_starves_the_weak_arm():
    finished = _simulate("asha", {"strong": STRONG, "weak": WEAK})
    assert not any(t.startswith("weak") for t in finished)
    assert any(t.startswith("strong") for t in finished)


def test_per_variant_asha_keeps_both_arms_and_prunes_within_each():
    finished = _simulate("asha-per-variant", {"strong": STRONG, "weak": WEAK})
    weak = {t for t in finished if t.startswith("weak")}
    strong = {t for t in finished if t.startswith("strong")}
    assert 1 <= len(weak) < 6 and len(weak) == len(strong)
    assert "weak0" in weak and "strong0" in strong  # each arm's best draw survives


def test_a_draw_that_cannot_learn_is_stopped_only_by_its_own_arm():
    # Arm "se" has a learning rate that cannot learn (draw 1: chance level); arm "none" is
    # uniformly worse than se's good draws but is never compared with them.
    finished = _simulate("asha-per-variant",
                         {"se": [0.95, 0.10, 0.94], "none": [0.50, 0.49, 0.48]}, max_t=3)
    assert "se1" not in finished and {"se0", "none0"} <= finished
    # Alone in its arm, a lone candidate is never stopped, however poor.
    finished = _simulate("asha-per-variant", {"se": [0.95, 0.94], "none": [0.05]}, max_t=3)
    assert "none0" in finished


def test_replicate_and_single_trials_are_never_stopped():
    poor = [(_trial("rep", "se", stage="replicate", seed=1), 0.01),
            (_trial("single", "se", stage="single", seed=2), 0.02)]
    for name in ("asha-per-variant", "asha"):
        finished = _simulate(name, {"se": STRONG}, extra=poor)
        assert {"rep", "single"} <= finished, name


def test_seeds_of_one_arm_never_compete():
    # The same arm on six seeds (single stage): a seed's bad luck is data, not a draw to prune.
    seeds = [(_trial(f"s{seed}", "se", stage="single", seed=seed), 0.9 - 0.1 * seed)
             for seed in range(6)]
    finished = _simulate("asha-per-variant", {}, extra=seeds)
    assert finished == {f"s{seed}" for seed in range(6)}


def test_diverged_result_stops_without_entering_a_rung():
    scheduler = build_scheduler("asha-per-variant", variant_keys=("model.attention",), max_t=5,
                                grace_period=1, reduction_factor=2)
    scheduler.set_search_properties("val_acc", "max")
    trial = _trial("x", "se")
    scheduler.on_trial_add(None, trial)
    decision = scheduler.on_trial_result(None, trial, {"epoch": 1, "val_acc": float("nan"),
                                                       "status": "diverged"})
    assert decision == TrialScheduler.STOP
    scheduler.on_trial_complete(None, trial, {"epoch": 1, "val_acc": float("nan"),
                                              "status": "diverged"})
    # The NaN entered no rung: a later poor trial is judged against nothing, so it goes on.
    later = _trial("y", "se")
    scheduler.on_trial_add(None, later)
    assert scheduler.on_trial_result(None, later, {"epoch": 1, "val_acc": 0.1,
                                                   "status": "running"}) == TrialScheduler.CONTINUE
