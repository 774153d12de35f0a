"""ASHA acts on tuning candidates only, and per arm: one arm's draws never stop another's."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from ray.tune.schedulers import TrialScheduler

from orchestrator.errors import UserError
from orchestrator.schedulers import PerVariantASHA, build_scheduler
from orchestrator.space import VariantLabeler


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


# ------------------------------------------------- rungs, buckets, seeds: one report at a time

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


class Driver:
    """Feeds single reports to a scheduler, adding each trial the first time it reports."""

    def __init__(self, name: str = "asha-per-variant", *, max_t: int = 8, grace_period: int = 2,
                 reduction_factor: float = 2, variant_keys=("model.attention",),
                 metric: str = "val_acc", mode: str = "max") -> None:
        self.scheduler = build_scheduler(name, variant_keys=variant_keys, max_t=max_t,
                                         grace_period=grace_period,
                                         reduction_factor=reduction_factor)
        assert self.scheduler.set_search_properties(metric, mode)
        self.metric = metric
        self.trials: dict[str, SimpleNamespace] = {}

    def trial(self, trial_id: str, arm: str = "se", *, seed: int = 7, stage: str = "tune",
              draw: int = 0, **config):
        if trial_id not in self.trials:
            self.trials[trial_id] = _trial(trial_id, arm, stage=stage, seed=seed, draw=draw)
            self.trials[trial_id].config.update(config)
            self.scheduler.on_trial_add(None, self.trials[trial_id])
        return self.trials[trial_id]

    def report(self, trial_id: str, epoch: int, value: float | None, arm: str = "se",
               **trial_args) -> str:
        result = {"epoch": epoch, "status": "running"}
        if value is not None:
            result[self.metric] = value
        return self.scheduler.on_trial_result(None, self.trial(trial_id, arm, **trial_args),
                                              result)


def test_rungs_sit_at_the_grace_period_times_powers_of_the_reduction_factor():
    # grace 2, reduction 2, max_t 8: rungs at epochs 2 and 4 (and 8, the budget).
    run = Driver(max_t=8, grace_period=2, reduction_factor=2)
    leader = [run.report("lead", epoch, 0.9) for epoch in range(1, 9)]
    assert leader == [CONTINUE] * 7 + [STOP]  # the budget ends at max_t, not later
    # A follower below the leader is let through where there is no rung (1: grace; 3) and
    # stopped at the first rung it reaches below the leader's record.
    assert run.report("late", 1, 0.1) == CONTINUE       # inside the grace period
    assert run.report("late", 2, 0.95) == CONTINUE      # rung 2: above the leader
    assert run.report("late", 3, 0.1) == CONTINUE       # no rung at 3
    assert run.report("late", 4, 0.1) == STOP           # rung 4: below the leader


def test_the_grace_period_is_capped_at_the_budget():
    # A grace period longer than the whole budget means "no early stopping", not an error.
    run = Driver(max_t=3, grace_period=10, reduction_factor=3)
    run.report("lead", 1, 0.9)
    assert [run.report("poor", epoch, 0.1) for epoch in (1, 2)] == [CONTINUE, CONTINUE]
    assert run.report("poor", 3, 0.1) == STOP  # the budget, reached at max_t


def test_the_cut_off_is_the_reduction_factor_quantile_and_ties_go_on():
    def rung_of(values, reduction_factor):
        run = Driver(max_t=8, grace_period=2, reduction_factor=reduction_factor)
        for i, value in enumerate(values):
            assert run.report(f"t{i}", 2, value) == CONTINUE, (values, i)
        return run

    # Halving keeps the top half: the median of (0.3, 0.5, 0.9) is 0.5.
    run = rung_of([0.3, 0.5, 0.9], reduction_factor=2)
    assert run.report("above", 2, 0.6) == CONTINUE
    run = rung_of([0.3, 0.5, 0.9], reduction_factor=2)
    assert run.report("tied", 2, 0.5) == CONTINUE   # a tie with the cut-off is not stopped
    run = rung_of([0.3, 0.5, 0.9], reduction_factor=2)
    assert run.report("below", 2, 0.49) == STOP
    # Keeping the top quarter puts the cut-off at the 75th percentile, 0.7.
    run = rung_of([0.3, 0.5, 0.9], reduction_factor=4)
    assert run.report("above", 2, 0.6) == STOP


def test_mode_min_stops_the_high_losses():
    run = Driver(metric="val_loss", mode="min")
    assert run.report("good", 2, 0.2) == CONTINUE
    assert run.report("worse", 2, 0.8) == STOP
    assert run.report("better", 2, 0.1) == CONTINUE


def test_buckets_are_arms_not_seeds_over_several_arms_and_seeds():
    # Tuning draws of three arms on three seeds, reported round-robin at rung 2. Each arm
    # is a level well apart from the others; within an arm, draw 0 is the best.
    level = {"se": 0.9, "cbam": 0.6, "none": 0.3}
    run = Driver(max_t=8, grace_period=2, reduction_factor=2)
    decisions = {}
    for draw in range(3):
        for seed in (0, 1, 2):
            for arm, base in level.items():
                trial_id = f"{arm}-d{draw}-s{seed}"
                decisions[trial_id] = run.report(trial_id, 2, base - 0.01 * draw - 0.001 * seed,
                                                 arm, seed=seed, draw=draw)
    stopped = {t for t, d in decisions.items() if d == STOP}
    # Per arm the same draws are stopped whatever the arm's level: the arms never compete.
    per_arm = {arm: {t.split("-", 1)[1] for t in stopped if t.startswith(arm + "-")}
               for arm in level}
    assert per_arm["se"] == per_arm["cbam"] == per_arm["none"]
    # And seeds are not buckets: every later draw, whatever its seed, is judged against
    # the arm's first (a bucket per seed would let d0-s1 and d0-s2 through as firsts).
    assert per_arm["se"] == {f"d{d}-s{s}" for d in range(3) for s in range(3)} - {"d0-s0"}
    # One bucket for every tuning draw ("asha"): the weak arms are stopped against "se".
    run = Driver("asha", max_t=8, grace_period=2, reduction_factor=2)
    run.report("se", 2, 0.9, "se", seed=0)
    assert run.report("cbam", 2, 0.6, "cbam", seed=1) == STOP
    assert run.report("none", 2, 0.3, "none", seed=2) == STOP


def test_every_variant_axis_makes_the_arm():
    run = Driver(variant_keys=("model.attention", "optimizer"))
    assert run.report("se-sgd", 2, 0.9, "se", optimizer="sgd") == CONTINUE
    # Same attention, other optimizer: another arm, alone at its rung.
    assert run.report("se-adam", 2, 0.2, "se", optimizer="adam") == CONTINUE
    assert run.report("se-adam-2", 2, 0.1, "se", optimizer="adam") == STOP


def test_a_trial_keeps_the_bucket_it_was_added_to():
    # Tune may hand a trial back with a different config object (restore, resolved
    # values); its callbacks must keep reaching the ASHA that knows it.
    run = Driver()
    run.report("se0", 2, 0.9, "se")
    moved = run.trial("se1", "se")
    moved.config = {**moved.config, "model": {"attention": "none"}}
    assert run.report("se1", 2, 0.1) == STOP  # still judged against se0
    run.scheduler.on_trial_remove(None, moved)  # and removed from that same ASHA


def test_replicates_of_many_seeds_never_enter_a_rung():
    run = Driver()
    for seed in range(4):
        for epoch in range(1, 8):
            assert run.report(f"rep{seed}", epoch, 0.01 * seed, "se", stage="replicate",
                              seed=seed) == CONTINUE
    # No replicate score sits in the tuning rung: the first tuning draw there goes on.
    assert run.report("tune0", 2, 0.001) == CONTINUE
    for seed in range(4):  # Tune's other callbacks for them are no-ops, not KeyErrors
        run.scheduler.on_trial_error(None, run.trials[f"rep{seed}"])
        run.scheduler.on_trial_remove(None, run.trials[f"rep{seed}"])
        run.scheduler.on_trial_complete(None, run.trials[f"rep{seed}"],
                                        {"epoch": 7, "val_acc": 0.0})


def test_a_report_without_the_metric_or_the_epoch_decides_nothing():
    run = Driver()
    run.report("lead", 2, 0.9)
    assert run.report("blank", 2, None) == CONTINUE       # no val_acc at a rung: goes on
    assert run.report("next", 2, 0.1) == STOP             # ... and left no record there
    run = Driver()
    assert run.report("blank", 2, None) == CONTINUE
    assert run.report("first", 2, 0.1) == CONTINUE        # the rung is still empty
    no_epoch = run.scheduler.on_trial_result(None, run.trial("x"), {"val_acc": 0.0})
    assert no_epoch == CONTINUE


def test_a_final_report_sent_only_to_complete_enters_its_rung():
    # Tune sends a trial's last result (done, e.g. it ran fewer epochs than max_t) to
    # on_trial_complete only; that score still belongs in the rung.
    run = Driver()
    run.report("short", 1, 0.9)
    run.scheduler.on_trial_complete(None, run.trial("short"),
                                    {"epoch": 2, "val_acc": 0.9, "status": "ok"})
    assert run.report("later", 2, 0.5) == STOP


def test_a_diverged_completion_enters_no_rung_even_with_a_finite_metric():
    # With metric best_val_acc, a diverged report still carries the best value before the
    # NaN; the trial is dropped from its ASHA rather than recorded.
    run = Driver(metric="best_val_acc")
    run.trial("boom")
    diverged = {"epoch": 2, "best_val_acc": 0.99, "val_acc": float("nan"), "status": "diverged"}
    assert run.scheduler.on_trial_result(None, run.trial("boom"), diverged) == STOP
    run.scheduler.on_trial_complete(None, run.trial("boom"), diverged)
    assert run.report("next", 2, 0.5) == CONTINUE
    # A trial stopped while pending or paused, or one that errored, leaves quietly too.
    run.trial("pending")
    run.scheduler.on_trial_remove(None, run.trial("pending"))
    run.report("errs", 1, 0.4)
    run.scheduler.on_trial_error(None, run.trial("errs"))


def test_search_properties_conflicts_are_refused():
    def build(**kwargs):
        return PerVariantASHA(VariantLabeler(("model.attention",)), time_attr="epoch", max_t=8,
                              grace_period=2, reduction_factor=2, **kwargs)

    assert build(metric="val_acc").set_search_properties("val_acc", "max")  # the same: fine
    assert not build(metric="val_acc").set_search_properties("val_loss", "min")
    assert not build(metric="val_acc", mode="max").set_search_properties(None, "min")
    assert build(metric="val_acc", mode="max").set_search_properties(None, None)
    # Once trials are bucketed, their ASHAs hold the metric and mode: Ray's ASHA refuses to
    # be given either again, and the answer is theirs.
    scheduler = build(metric="val_acc", mode="max")
    scheduler.on_trial_add(None, _trial("a", "se"))
    assert scheduler.set_search_properties(None, None)
    assert not scheduler.set_search_properties("val_acc", None)
    assert not scheduler.set_search_properties(None, "max")


def test_halving_by_default_expects_one_candidate_per_arm():
    scheduler = build_scheduler("halving-per-variant", variant_keys=("model.attention",),
                                max_t=4, grace_period=1, reduction_factor=2)
    scheduler.set_search_properties("val_acc", "max")
    lone = _trial("lone", "se", seed=3)
    lone.status = "RUNNING"
    scheduler.on_trial_add(None, lone)
    # Alone in its arm and expected alone: nobody to wait for at rung 1.
    assert scheduler.on_trial_result(None, lone, {"epoch": 1, "val_acc": 0.1,
                                                  "status": "running"}) == CONTINUE


def test_an_unknown_scheduler_names_the_choices():
    with pytest.raises(UserError) as caught:
        build_scheduler("hyperband", variant_keys=(), max_t=5, grace_period=1,
                        reduction_factor=3)
    assert str(caught.value) == ("unknown scheduler 'hyperband'; choose from "
                                 "halving-per-variant, asha-per-variant, asha, fifo")
