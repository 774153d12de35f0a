"""Per-variant ASHA never lets one variant's draws kill another's; plain ASHA does."""

from __future__ import annotations

from types import SimpleNamespace

from ray.tune.schedulers import TrialScheduler

from orchestrator.schedulers import build_scheduler


def _simulate(name: str) -> dict[str, int]:
    """2 variants x 6 lr draws, 9 epochs; variant 'weak' is far worse. Trials step in turn.

    Returns how many trials of each variant reached the full budget.
    """
    scheduler = build_scheduler(name, variant_keys=("model.attention",), max_t=9, grace_period=1,
                                reduction_factor=3)
    scheduler.set_search_properties("val_acc", "max")
    trials = []
    for variant, base in (("strong", 0.9), ("weak", 0.3)):
        for draw in range(6):
            config = {"seed": 0, "model": {"attention": variant}}
            trial = SimpleNamespace(trial_id=f"{variant}{draw}", config=config, status="RUNNING")
            trials.append((trial, base - 0.01 * draw))  # best draw first: ASHA prunes
            scheduler.on_trial_add(None, trial)
    alive, finished = {t.trial_id for t, _ in trials}, set()
    for epoch in range(1, 10):
        for trial, score in trials:
            if trial.trial_id not in alive:
                continue
            decision = scheduler.on_trial_result(None, trial, {"epoch": epoch, "val_acc": score,
                                                               "status": "running"})
            if epoch == 9:
                finished.add(trial.trial_id)
            if decision == TrialScheduler.STOP or epoch == 9:
                alive.discard(trial.trial_id)
                scheduler.on_trial_complete(None, trial, {"epoch": epoch, "val_acc": score})
    return {v: sum(1 for t in finished if t.startswith(v)) for v in ("strong", "weak")}


def test_plain_asha_starves_the_weak_variant():
    finished = _simulate("asha")
    assert finished["weak"] == 0 and finished["strong"] >= 1


def test_per_variant_asha_keeps_both_variants():
    finished = _simulate("asha-per-variant")
    # Poor draws are still pruned, but within their own variant: both rows of the table fill.
    assert 1 <= finished["weak"] < 6 and 1 <= finished["strong"] < 6
    assert finished["weak"] == finished["strong"]


def test_diverged_result_stops_without_entering_a_rung():
    scheduler = build_scheduler("asha-per-variant", variant_keys=("model.attention",), max_t=5,
                                grace_period=1, reduction_factor=2)
    scheduler.set_search_properties("val_acc", "max")
    trial = SimpleNamespace(trial_id="x", config={"seed": 0, "model": {"attention": "se"}},
                            status="RUNNING")
    scheduler.on_trial_add(None, trial)
    decision = scheduler.on_trial_result(None, trial, {"epoch": 1, "val_acc": float("nan"),
                                                       "status": "diverged"})
    assert decision == TrialScheduler.STOP
    scheduler.on_trial_complete(None, trial, {"epoch": 1, "val_acc": float("nan"), "status": "diverged"})
