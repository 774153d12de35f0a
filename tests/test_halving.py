"""Synchronous successive halving per arm, driven the way Tune drives a scheduler.

A small event loop stands in for Tune: a few slots, ``choose_trial_to_run`` fills them, a
running trial reports its next epoch, and PAUSE / STOP / CONTINUE are carried out.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from orchestrator.halving import PerArmHalving, halving_budget, halving_rungs
from orchestrator.schedulers import build_scheduler


class FakeTune:
    """Just enough of TuneController: trials, stop_trial, and the scheduler callbacks."""

    def __init__(self, scheduler, slots: int = 2) -> None:
        self.scheduler, self.slots, self.trials = scheduler, slots, []
        self.epochs: dict[str, int] = {}

    def add(self, trial_id, arm, curve, *, stage="tune", draw=0, seed=0, diverge_at=None,
            status=Trial.PENDING):
        trial = SimpleNamespace(trial_id=trial_id, status=status, curve=curve,
                                diverge_at=diverge_at,
                                config={"stage": stage, "draw": draw, "seed": seed,
                                        "model": {"attention": arm}})
        trial.set_status = lambda new, t=trial: setattr(t, "status", new)
        self.trials.append(trial)
        self.epochs[trial_id] = 0
        self.scheduler.on_trial_add(self, trial)
        return trial

    def get_trials(self):
        return self.trials

    def stop_trial(self, trial):
        if trial.status in (Trial.PAUSED, Trial.PENDING):
            self.scheduler.on_trial_remove(self, trial)
        trial.status = Trial.TERMINATED

    def _free(self) -> bool:
        return sum(t.status == Trial.RUNNING for t in self.trials) < self.slots

    def run(self, max_t: int, stop_after_steps: int | None = None) -> None:
        """As Tune: start the scheduler's choice, then any PENDING trial, while slots last."""
        steps = 0
        while True:
            while self._free():
                chosen = self.scheduler.choose_trial_to_run(self)
                if chosen is None:
                    break
                chosen.status = Trial.RUNNING
            for trial in self.trials:
                if trial.status == Trial.PENDING and self._free():
                    trial.status = Trial.RUNNING
            running = [t for t in self.trials if t.status == Trial.RUNNING]
            if not running:
                return
            for trial in running:
                steps += 1
                if stop_after_steps is not None and steps > stop_after_steps:
                    return
                self._step(trial, max_t)

    def _step(self, trial, max_t: int) -> None:
        epoch = self.epochs[trial.trial_id] = self.epochs[trial.trial_id] + 1
        if trial.diverge_at == epoch:
            result = {"epoch": epoch, "val_acc": float("nan"), "status": "diverged"}
        else:
            final = epoch == max_t
            result = {"epoch": epoch, "val_acc": trial.curve(epoch),
                      "status": "ok" if final else "running"}
        decision = self.scheduler.on_trial_result(self, trial, result)
        if result["status"] != "running" or decision == TrialScheduler.STOP:
            trial.status = Trial.TERMINATED
            self.scheduler.on_trial_complete(self, trial, result)
        elif decision == TrialScheduler.PAUSE:
            trial.status = Trial.PAUSED


def _scheduler(candidates=9, max_t=10) -> PerArmHalving:
    scheduler = build_scheduler("halving-per-variant", variant_keys=("model.attention",),
                                max_t=max_t, grace_period=1, reduction_factor=3,
                                candidates=candidates)
    scheduler.set_search_properties("val_acc", "max")
    return scheduler


def _flat(level):
    return lambda epoch: level


def test_rungs_and_budget():
    assert halving_rungs(10, 1, 3) == (1, 3, 9)
    assert halving_rungs(2, 1, 3) == (1,)
    assert halving_budget(9, (1, 3, 9), 10, 3) == 9 + 3 * 2 + 1 * 6 + 1
    assert halving_budget(3, (1,), 2, 3) == 4


def test_every_arm_spends_the_same_budget_and_keeps_its_best():
    tune = FakeTune(_scheduler())
    # "weak" is far below "strong" everywhere, and its best draw comes last.
    for draw in range(9):
        tune.add(f"strong{draw}", "strong", _flat(0.90 - 0.01 * draw), draw=draw)
        tune.add(f"weak{draw}", "weak", _flat(0.10 + 0.01 * draw), draw=draw)
    tune.run(max_t=10)
    spent = {arm: sum(e for t, e in tune.epochs.items() if t.startswith(arm))
             for arm in ("strong", "weak")}
    assert spent == {"strong": 22, "weak": 22}
    full = {t for t, e in tune.epochs.items() if e == 10}
    assert full == {"strong0", "weak8"}
    # Losers waiting at a rung are stopped, not left paused for ever.
    assert {t.status for t in tune.trials} == {Trial.TERMINATED}


def test_a_rung_waits_for_candidates_not_yet_proposed():
    tune = FakeTune(_scheduler(candidates=3, max_t=4))
    tune.add("first", "se", _flat(0.2), draw=0)
    tune.run(max_t=4)  # alone, it reaches epoch 1 and waits for its arm
    assert tune.epochs["first"] == 1 and tune.trials[0].status == Trial.PAUSED
    tune.add("second", "se", _flat(0.9), draw=1)
    tune.add("third", "se", _flat(0.5), draw=2)
    tune.run(max_t=4)
    assert tune.epochs == {"first": 1, "second": 4, "third": 1}


def test_a_final_report_at_a_rung_is_never_paused():
    scheduler = _scheduler(candidates=2, max_t=4)
    tune = FakeTune(scheduler)
    trial = tune.add("a", "se", _flat(0.5))
    trial.status = Trial.RUNNING
    decision = scheduler.on_trial_result(tune, trial, {"epoch": 1, "val_acc": 0.5,
                                                       "status": "early_stopped"})
    assert decision == TrialScheduler.CONTINUE


def test_a_slow_starter_is_judged_against_its_own_arm_at_each_rung():
    # Draw 2 starts last at epoch 1 but would win; halving keeps the top third, so it
    # survives epoch 1 (3rd of 9) and then overtakes by epoch 3.
    tune = FakeTune(_scheduler())
    curves = [_flat(0.5), _flat(0.4), lambda e: 0.45 + 0.1 * e] + [_flat(0.1)] * 6
    for draw, curve in enumerate(curves):
        tune.add(f"c{draw}", "se", curve, draw=draw)
    tune.run(max_t=10)
    assert tune.epochs["c2"] == 10 and tune.epochs["c0"] == 3 and tune.epochs["c3"] == 1


def test_a_diverged_candidate_leaves_the_race_without_blocking_it():
    tune = FakeTune(_scheduler(candidates=3, max_t=4))
    tune.add("a", "se", _flat(0.9), draw=0)
    tune.add("b", "se", _flat(0.8), draw=1, diverge_at=1)
    tune.add("c", "se", _flat(0.7), draw=2)
    tune.run(max_t=4)
    assert tune.epochs == {"a": 4, "b": 1, "c": 1}


def test_replicates_are_never_paused_or_stopped():
    tune = FakeTune(_scheduler(candidates=3, max_t=4))
    for draw in range(3):
        tune.add(f"t{draw}", "se", _flat(0.5 + 0.1 * draw), draw=draw)
    tune.add("rep", "se", _flat(0.01), stage="replicate")
    tune.add("single", "none", _flat(0.01), stage="single")
    tune.run(max_t=4)
    assert tune.epochs["rep"] == 4 and tune.epochs["single"] == 4 and tune.epochs["t2"] == 4


def test_candidates_waiting_at_a_rung_are_reported_as_waiting():
    tune = FakeTune(_scheduler(candidates=3, max_t=4))
    first = tune.add("first", "se", _flat(0.2), draw=0)
    tune.run(max_t=4)
    assert tune.scheduler.is_waiting("first") and first.status == Trial.PAUSED
    tune.add("second", "se", _flat(0.9), draw=1)
    tune.add("third", "se", _flat(0.5), draw=2)
    tune.run(max_t=4)
    assert not any(tune.scheduler.is_waiting(t) for t in ("first", "second", "third"))


def test_decisions_survive_a_snapshot_and_restore():
    def build():
        tune = FakeTune(_scheduler())
        for draw in range(9):
            tune.add(f"c{draw}", "se", _flat(0.1 * draw), draw=draw)
        return tune

    reference = build()
    reference.run(max_t=10)

    interrupted = build()
    stopped_paused = set()
    real_stop = interrupted.stop_trial
    interrupted.stop_trial = lambda t: (stopped_paused.add(t.trial_id), real_stop(t))
    interrupted.run(max_t=10, stop_after_steps=14)  # mid rung 3
    state = interrupted.scheduler.memory.get_state()
    # A new scheduler (as Tuner.restore builds), its memory restored, trials re-added with
    # the statuses Tune gives them: unfinished ones PENDING, resumed from their checkpoint.
    # Tune hands unfinished trials back PENDING, and (a Ray quirk) a paused trial that was
    # stopped comes back PENDING too: only trials that ended running stay TERMINATED.
    resumed = FakeTune(_scheduler())
    resumed.scheduler.memory.set_state(state)
    for old in interrupted.trials:
        ended_running = old.status == Trial.TERMINATED and old.trial_id not in stopped_paused
        resumed.add(old.trial_id, "se", old.curve, draw=old.config["draw"],
                    status=Trial.TERMINATED if ended_running else Trial.PENDING)
        resumed.epochs[old.trial_id] = interrupted.epochs[old.trial_id]
    resumed.run(max_t=10)
    # Candidates that were waiting at a rung wait again; nobody trains an extra epoch.
    assert resumed.epochs == reference.epochs
    assert {t.status for t in resumed.trials} == {Trial.TERMINATED}  # no loser left pending
    assert {t: e for t, e in resumed.epochs.items() if e == 10} == {"c8": 10}


def test_three_arms_on_several_seeds_halve_apart():
    # Three arms of 3 candidates each, on seeds 7, 8, 9 (the bucket is the arm, whatever the
    # seed), plus replicates of each arm on seeds 0..3, far worse than any candidate. Each
    # arm halves on its own: its best candidate goes the distance however poor the arm.
    tune = FakeTune(_scheduler(candidates=3, max_t=4), slots=3)
    level = {"se": 0.9, "cbam": 0.6, "none": 0.2}
    for draw in range(3):
        for arm, base in level.items():
            # Each arm's best draw is a different one, so a shared ranking would show.
            best = {"se": 0, "cbam": 1, "none": 2}[arm]
            score = base + (0.05 if draw == best else 0.01 * draw)
            tune.add(f"{arm}{draw}", arm, _flat(score), draw=draw, seed=7 + draw)
    for arm in level:
        for seed in range(4):
            tune.add(f"{arm}-rep{seed}", arm, _flat(0.01 * seed), stage="replicate", seed=seed)
    tune.run(max_t=4)
    full = {t for t, e in tune.epochs.items() if e == 4}
    assert full == {"se0", "cbam1", "none2"} | {f"{a}-rep{s}" for a in level for s in range(4)}
    # Losers stop at the first rung (epoch 1): every arm spent 4 + 1 + 1 epochs tuning.
    spent = {arm: sum(e for t, e in tune.epochs.items()
                      if t[:-1] == arm and "rep" not in t) for arm in level}
    assert spent == {"se": 6, "cbam": 6, "none": 6}


@pytest.mark.parametrize("scheduler", ["asha", "asha-per-variant", "fifo"])
def test_other_schedulers_still_build(scheduler):
    assert build_scheduler(scheduler, variant_keys=(), max_t=5, grace_period=1,
                           reduction_factor=3) is not None


def test_a_conflicting_metric_or_mode_from_tune_is_refused():
    scheduler = _scheduler()                      # val_acc, max
    assert scheduler.set_search_properties("val_acc", "max")
    assert scheduler.set_search_properties(None, None)
    assert not scheduler.set_search_properties("val_acc", "min")
    assert not scheduler.set_search_properties("val_loss", "max")
    fresh = build_scheduler("halving-per-variant", variant_keys=("model.attention",), max_t=10,
                            grace_period=1, reduction_factor=3, candidates=3)
    assert fresh.set_search_properties("val_loss", "min")   # none given: Tune's are taken
    assert not fresh.set_search_properties("val_loss", "max")


def test_a_tuned_halving_run_checkpoints_its_candidates_at_every_rung():
    """A candidate paused at a rung restarts from its last checkpoint: one must be there."""
    from orchestrator.plan import SweepOptions, make_plan
    from search_spaces.registry import load_experiment

    exp = load_experiment("mnist_attention")
    plan = make_plan(exp, SweepOptions(samples=4))
    rungs = halving_rungs(plan.max_t, plan.grace_period, exp.reduction_factor)
    assert rungs and plan.space["train"]["checkpoint_at"] == list(rungs)
    config = plan.protocol.arms[0].with_values({}, seed=0, stage="tune", draw=0)
    assert config["train"]["checkpoint_at"] == list(rungs)
    # Untuned runs pause nothing: their cadence is the automatic one.
    assert "checkpoint_at" not in make_plan(exp, SweepOptions()).space["train"]
