"""AblationSearcher without Ray: tune every arm, choose on validation, replicate, finish.

Tune drives a Searcher through suggest / on_trial_result / on_trial_complete / save /
restore; these tests drive it the same way with results written by hand, so each rule of
the protocol is checked on known numbers.
"""

from __future__ import annotations

import itertools

import pytest
from ray.tune.search import Searcher

from orchestrator.plan import SweepOptions, make_plan
from orchestrator.searcher import AblationSearcher
from search_spaces.registry import load_experiment

MNIST = load_experiment("mnist_attention")
_ids = itertools.count()


def _searcher(samples=3, seeds=2, arms="[none,se]", **options) -> AblationSearcher:
    plan = make_plan(MNIST, SweepOptions(samples=samples, seeds=seeds, overrides=(
        f"model.attention={arms}", "model.reduction=8"), **options), check_files=False)
    return AblationSearcher(plan.protocol, verbosity=0)


def _drain(searcher) -> list[tuple[str, dict]]:
    """Every config the searcher offers now, with fresh trial ids."""
    out = []
    while True:
        trial_id = f"t{next(_ids)}"
        config = searcher.suggest(trial_id)
        if config is None or config == Searcher.FINISHED:
            return out
        out.append((trial_id, config))


def _finish(searcher, trial_id, *, val, test=None, epochs=2, status="ok", error=False):
    for epoch in range(1, epochs + 1):
        result = {"epoch": epoch, "val_acc": val * epoch / epochs, "status": "running"}
        searcher.on_trial_result(trial_id, result)
    last = {"epoch": epochs, "val_acc": val, "best_val_acc": val, "test_acc": test,
            "status": status}
    searcher.on_trial_complete(trial_id, None if error else last, error=error)


def test_tune_then_replicate_the_best_on_validation_not_test():
    searcher = _searcher()
    tune = _drain(searcher)
    assert [(c["model"]["attention"], c["draw"], c["stage"], c["seed"]) for _, c in tune] == [
        ("none", 0, "tune", 0), ("se", 0, "tune", 0), ("none", 1, "tune", 0),
        ("se", 1, "tune", 0), ("none", 2, "tune", 0), ("se", 2, "tune", 0)]
    assert searcher.suggest("waiting") is None  # nothing to replicate before a choice
    # Validation and test disagree on purpose: draw 1 is best on validation, draw 2 on test.
    scores = {0: (0.80, 0.80), 1: (0.90, 0.70), 2: (0.85, 0.99)}
    for trial_id, config in tune:
        if config["model"]["attention"] == "none":
            val, test = scores[config["draw"]]
            _finish(searcher, trial_id, val=val, test=test)
    replicates = _drain(searcher)
    assert [(c["stage"], c["draw"], c["seed"]) for _, c in replicates] == [
        ("replicate", 1, 1), ("replicate", 1, 2)]
    chosen = next(c for _, c in tune if c["model"]["attention"] == "none" and c["draw"] == 1)
    assert all(c["train"]["lr"] == chosen["train"]["lr"] for _, c in replicates)
    assert searcher.selections()["none"]["draw"] == 1
    # se is still tuning: no FINISHED until every arm has its replicates out.
    for trial_id, config in tune:
        if config["model"]["attention"] == "se":
            _finish(searcher, trial_id, val=0.5 + 0.1 * config["draw"])
    assert [c["draw"] for _, c in _drain(searcher)] == [2, 2]
    assert searcher.suggest("last") == Searcher.FINISHED


def test_diverged_and_failed_candidates_are_never_chosen():
    searcher = _searcher(arms="[none]")
    tune = _drain(searcher)
    _finish(searcher, tune[0][0], val=0.99, status="diverged")
    _finish(searcher, tune[1][0], val=0.98, error=True)
    _finish(searcher, tune[2][0], val=0.40)
    assert [c["draw"] for _, c in _drain(searcher)] == [2, 2]


def test_a_candidate_stopped_early_loses_to_one_trained_in_full():
    searcher = _searcher(arms="[none]")
    tune = _drain(searcher)
    _finish(searcher, tune[0][0], val=0.95, epochs=1, status="running")  # ASHA stopped it
    _finish(searcher, tune[1][0], val=0.90, epochs=2)
    _finish(searcher, tune[2][0], val=0.85, epochs=2)
    assert searcher.selections()["none"]["draw"] == 1


def test_an_arm_with_no_usable_candidate_replicates_nothing_and_the_run_ends():
    searcher = _searcher(arms="[none]")
    for trial_id, _ in _drain(searcher):
        _finish(searcher, trial_id, val=0.1, status="diverged")
    assert searcher.suggest("x") == Searcher.FINISHED
    assert searcher.selections() == {}


def test_save_and_restore_in_either_stage_continue_identically(tmp_path):
    searcher = _searcher()
    tune = _drain(searcher)
    for trial_id, config in tune[:3]:
        _finish(searcher, trial_id, val=0.6 + 0.1 * config["draw"])
    searcher.save(str(tmp_path / "stage1.pkl"))
    restored = _searcher()
    restored.restore(str(tmp_path / "stage1.pkl"))
    for s in (searcher, restored):
        for trial_id, config in tune[3:]:
            _finish(s, trial_id, val=0.6 + 0.1 * config["draw"])
    assert searcher.selections() == restored.selections()
    a, b = _drain(searcher), _drain(restored)
    assert [c for _, c in a] == [c for _, c in b] and len(a) == 4
    searcher.save(str(tmp_path / "stage2.pkl"))
    again = _searcher()
    again.restore(str(tmp_path / "stage2.pkl"))
    for trial_id, _ in a:
        _finish(again, trial_id, val=0.9)
    assert again.suggest("end") == Searcher.FINISHED


def test_a_rerun_of_a_finished_candidate_does_not_change_the_choice():
    searcher = _searcher(arms="[none]")
    tune = _drain(searcher)
    for trial_id, config in tune:
        _finish(searcher, trial_id, val=0.5 + 0.1 * config["draw"])
    _finish(searcher, tune[0][0], val=0.99)  # e.g. an errored trial resumed with --resume
    assert searcher.selections()["none"]["draw"] == 2


def test_max_concurrent_is_enforced_by_the_searcher():
    plan = make_plan(MNIST, SweepOptions(samples=3, seeds=1, max_concurrent=2,
                                         overrides=("model.attention=[none,se]",
                                                    "model.reduction=8")),
                     check_files=False)
    searcher = AblationSearcher(plan.protocol, max_concurrent=2, verbosity=0)
    first = _drain(searcher)
    assert len(first) == 2
    _finish(searcher, first[0][0], val=0.5)
    assert len(_drain(searcher)) == 1


def test_optuna_runs_one_seeded_study_per_arm_with_the_same_budget():
    def run(search_seed: int) -> dict[str, list[float]]:
        searcher = _searcher(samples=6, seeds=1, search="optuna", search_seed=search_seed)
        seen: dict[str, list[float]] = {"none": [], "se": []}
        while True:
            offered = _drain(searcher)
            if not offered:
                break
            for trial_id, config in offered:
                arm = config["model"]["attention"]
                if config["stage"] == "tune":
                    seen[arm].append(config["train"]["lr"])
                # Validation accuracy peaks at lr 3e-4: TPE should home in on it.
                _finish(searcher, trial_id, val=1 - abs(config["train"]["lr"] - 3e-4) * 100)
        assert searcher.suggest("end") == Searcher.FINISHED
        assert len(searcher._studies) == 2
        assert [len(s.trials) for s in searcher._studies] == [6, 6]
        return seen

    first = run(3)
    assert all(len(lrs) == 6 and len(set(lrs)) == 6 for lrs in first.values())
    assert all(1e-4 <= lr <= 1e-3 for lrs in first.values() for lr in lrs)
    assert run(3) == first  # seeded
    assert run(4) != first


def test_optuna_prunes_what_asha_stopped_and_fails_what_diverged():
    from optuna.trial import TrialState

    searcher = _searcher(samples=3, seeds=1, arms="[none]", search="optuna")
    offered = _drain(searcher)
    _finish(searcher, offered[0][0], val=0.9, epochs=1, status="running")
    _finish(searcher, offered[1][0], val=0.2, status="diverged")
    more = _drain(searcher)
    _finish(searcher, more[0][0], val=0.7)
    states = [t.state for t in searcher._studies[0].trials]
    assert states == [TrialState.PRUNED, TrialState.FAIL, TrialState.COMPLETE]
    assert searcher._studies[0].trials[0].intermediate_values == {1: pytest.approx(0.9)}


def test_a_rerun_of_a_finished_optuna_candidate_is_not_told_twice():
    searcher = _searcher(samples=3, seeds=1, arms="[none]", search="optuna")
    done = []
    while offered := [t for t in _drain(searcher) if t[1]["stage"] == "tune"]:
        for trial_id, _ in offered:
            _finish(searcher, trial_id, val=0.5)
            done.append(trial_id)
    assert len(done) == 3
    _finish(searcher, done[0], val=0.9)  # resumed after an error: Optuna already knows it
    assert [t.value for t in searcher._studies[0].trials] == [0.5, 0.5, 0.5]


def test_optuna_state_survives_save_and_restore(tmp_path):
    def score(config):
        return 1 - abs(config["train"]["lr"] - 3e-4) * 100

    def drive(searcher, pending=(), stop_after=None):
        """Finish what is pending, then everything offered; stop (leaving some pending)."""
        queue, told = list(pending), 0
        while queue or (queue := _drain(searcher)):
            trial_id, config = queue.pop(0)
            _finish(searcher, trial_id, val=score(config))
            told += 1
            if told == stop_after:
                return queue  # offered but unfinished: Tune reruns these after --resume
        return []

    reference = _searcher(samples=5, seeds=1, arms="[none]", search="optuna")
    drive(reference)
    half = _searcher(samples=5, seeds=1, arms="[none]", search="optuna")
    pending = drive(half, stop_after=3)
    half.save(str(tmp_path / "optuna.pkl"))
    restored = _searcher(samples=5, seeds=1, arms="[none]", search="optuna")
    restored.restore(str(tmp_path / "optuna.pkl"))
    drive(restored, pending)
    lrs = [[t.params["train.lr"] for t in s._studies[0].trials] for s in (reference, restored)]
    assert lrs[0] == lrs[1] and len(lrs[0]) == 5
    assert restored.selections() == reference.selections() != {}
    assert restored.suggest("end") == Searcher.FINISHED


def test_candidates_waiting_at_a_rung_do_not_hold_concurrency_slots():
    plan = make_plan(MNIST, SweepOptions(samples=3, seeds=1, max_concurrent=2,
                                         overrides=("model.attention=[none]",)),
                     check_files=False)
    waiting: set[str] = set()
    searcher = AblationSearcher(plan.protocol, max_concurrent=2, verbosity=0,
                                waiting=waiting.__contains__)
    first = _drain(searcher)
    assert len(first) == 2
    waiting.update(trial_id for trial_id, _ in first)  # both paused at rung 1
    assert len(_drain(searcher)) == 1  # the third candidate they wait for
