"""Synchronous successive halving per arm: every arm spends the same tuning budget.

Asynchronous ASHA promotes a candidate as soon as it beats the candidates that happened to
reach a rung before it. When an arm's candidates arrive one or two at a time (a laptop, a
small GPU box), the first ones are always promoted, and an arm whose early draws are poor
spends several times the epochs of another: measured on mnist_attention, per-arm budgets
ranged from 38 to 81 trial-epochs out of 90 (benchmarks/RESULTS.md). Here a candidate
that reaches a rung is paused until every candidate of its arm has reached it (or left the
race by diverging, failing or stopping on patience); then the best 1/reduction_factor go
on and the rest stop. With N candidates every arm spends the same trial-epochs, and the
candidate that reaches the full budget is the arm's winner on validation.

The rung records live in ``RungMemory``, a Tune callback, so they are saved in the same
experiment snapshot as the trials and come back with ``--resume``: a trial paused at an
undecided rung is paused again when it resumes, and decisions already made stand.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from ray.tune import Callback
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler


def halving_budget(candidates: int, rungs: tuple[int, ...], max_t: int,
                   reduction_factor: float) -> int:
    """Trial-epochs one arm spends tuning under halving when no candidate drops out."""
    alive, spent, at = candidates, 0, 0
    for milestone in rungs:
        spent += alive * (milestone - at)
        at, alive = milestone, max(1, int(alive / reduction_factor))
    return spent + alive * (max_t - at)


def halving_rungs(max_t: int, grace_period: int, reduction_factor: float) -> tuple[int, ...]:
    """Epochs at which candidates are compared: grace, grace*rf, ... below max_t."""
    rungs, at = [], max(1, grace_period)
    while at < max_t:
        rungs.append(at)
        at = math.ceil(at * reduction_factor)
    return tuple(rungs)


class RungMemory(Callback):
    """The halving scheduler's decisions, checkpointed by Tune with the experiment."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {"members": {}, "scores": {}, "decided": {},
                                      "promoted": {}, "out": []}

    def get_state(self) -> dict[str, Any] | None:
        return {"halving": self.state} if self.state["members"] else None

    def set_state(self, state: dict[str, Any]) -> None:
        self.state = state["halving"]


class PerArmHalving(FIFOScheduler):
    """Successive halving within each arm's tuning candidates; everything else runs on."""

    def __init__(self, bucket_of: Callable[[Mapping[str, Any]], str], *, candidates: int,
                 max_t: int, grace_period: int, reduction_factor: float,
                 metric: str | None = None, mode: str | None = None,
                 time_attr: str = "epoch") -> None:
        super().__init__()
        self._bucket_of = bucket_of
        self._candidates = candidates
        self._rf = reduction_factor
        self._time_attr = time_attr
        self._metric, self._mode = metric, mode
        self.rungs = halving_rungs(max_t, grace_period, reduction_factor)
        self.memory = RungMemory()
        self._trials: dict[str, Trial] = {}
        self._release: set[str] = set()

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """Take Tune's metric and mode where none was given; refuse (False, so Tune raises)
        one that conflicts with the constructor's, rather than rank by another than Tune's."""
        if self._metric and metric and self._metric != metric:
            return False
        if self._mode and mode and self._mode != mode:
            return False
        self._metric = self._metric or metric
        self._mode = self._mode or mode
        return True

    # ---- bookkeeping -------------------------------------------------------------------
    @property
    def _state(self) -> dict[str, Any]:
        return self.memory.state

    @staticmethod
    def _tuned(trial) -> bool:
        return trial.config.get("stage") == "tune"

    def _bucket(self, trial) -> str:
        return self._bucket_of(trial.config)

    def on_trial_add(self, tune_controller, trial) -> None:
        if not self._tuned(trial):
            return
        self._trials[trial.trial_id] = trial
        members = self._state["members"].setdefault(self._bucket(trial), [])
        if trial.trial_id not in members:
            members.append(trial.trial_id)
        elif trial.status == Trial.PENDING:
            self._on_restore(trial)

    def _on_restore(self, trial) -> None:
        """``--resume`` hands back every unfinished trial as PENDING, and Tune starts every
        PENDING trial. A candidate waiting at an undecided rung goes back to PAUSED (it is
        released with its arm's decision); one the rung went against stays stopped (Ray
        does not snapshot a paused trial it stops as TERMINATED). Tune files the trial by
        the status it has once this callback returns."""
        state = self._rung_state(trial)
        if state == "waiting":
            trial.set_status(Trial.PAUSED)
        elif state == "stopped":
            trial.set_status(Trial.TERMINATED)

    def _drop(self, tune_controller, trial) -> None:
        """The trial left the race (finished, diverged, failed, or was stopped)."""
        if not self._tuned(trial) or trial.trial_id in self._state["out"]:
            return
        self._state["out"].append(trial.trial_id)
        self._release.discard(trial.trial_id)
        self._decide_ready(tune_controller, self._bucket(trial), current=None)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        self._drop(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial) -> None:
        if trial.should_recover():
            # Tune lost the trial's worker and restarts it from its checkpoint (on_trial_add
            # follows): it is still in the race.
            return
        self._drop(tune_controller, trial)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._drop(tune_controller, trial)

    # ---- decisions ---------------------------------------------------------------------
    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if result.get("status") == "diverged":
            return TrialScheduler.STOP  # no NaN enters a rung; _drop follows on completion
        if not self._tuned(trial) or result.get("status") not in (None, "running"):
            return TrialScheduler.CONTINUE  # a final report: the trial is ending anyway
        bucket, trial_id = self._bucket(trial), trial.trial_id
        self._trials[trial_id] = trial
        self._release.discard(trial_id)
        at = result.get(self._time_attr, 0)
        value = result.get(self._metric)
        scores = self._state["scores"].setdefault(bucket, {})
        for rung, milestone in enumerate(self.rungs):
            if at < milestone:
                break
            recorded = scores.setdefault(str(rung), {})
            if trial_id not in recorded and value is not None:
                recorded[trial_id] = float(value)
        for rung, milestone in enumerate(self.rungs):
            if at < milestone:
                break
            decided = self._state["decided"].setdefault(bucket, [])
            if rung not in decided:
                self._decide_ready(tune_controller, bucket, current=trial_id)
            if rung not in decided:
                return TrialScheduler.PAUSE
            if trial_id not in self._state["promoted"][bucket][str(rung)]:
                return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def _decide_ready(self, tune_controller, bucket: str, current: str | None) -> None:
        """Decide every rung of ``bucket`` whose candidates have all arrived, in order."""
        members = self._state["members"].get(bucket, [])
        if len(members) < self._candidates:
            return  # candidates still to be proposed: the rung is not complete
        out = set(self._state["out"])
        decided = self._state["decided"].setdefault(bucket, [])
        promoted = self._state["promoted"].setdefault(bucket, {})
        alive = [m for m in members if m not in out]
        for rung in range(len(self.rungs)):
            if rung in decided:
                alive = [m for m in alive if m in promoted[str(rung)]]
                continue
            scores = self._state["scores"].get(bucket, {}).get(str(rung), {})
            if not alive or any(m not in scores for m in alive):
                return  # someone still on the way to this rung (or nobody left)
            arrived = alive
            keep_n = max(1, int(len(arrived) / self._rf))
            sign = -1.0 if self._mode == "max" else 1.0
            ranked = sorted(arrived, key=lambda m: (sign * scores[m], self._draw(m)))
            keep = ranked[:keep_n]
            promoted[str(rung)] = keep
            decided.append(rung)
            for m in arrived:
                if m == current:
                    continue
                trial = self._trials.get(m)
                if m in keep:
                    self._release.add(m)
                elif trial is not None and trial.status == Trial.PAUSED:
                    tune_controller.stop_trial(trial)
            alive = [m for m in alive if m in keep]

    def _draw(self, trial_id: str) -> int:
        trial = self._trials.get(trial_id)
        return int(trial.config.get("draw", 0)) if trial is not None else 0

    def _rung_state(self, trial) -> str:
        """"waiting" at an undecided rung, "stopped" by a decided one, else "free"."""
        if not self._tuned(trial):
            return "free"
        bucket = self._bucket(trial)
        scores = self._state["scores"].get(bucket, {})
        for rung in range(len(self.rungs)):
            if trial.trial_id not in scores.get(str(rung), {}):
                return "free"
            if rung not in self._state["decided"].get(bucket, []):
                return "waiting"
            if trial.trial_id not in self._state["promoted"][bucket][str(rung)]:
                return "stopped"
        return "free"

    def is_waiting(self, trial_id: str) -> bool:
        """Paused at an undecided rung: the searcher does not count it as running."""
        trial = self._trials.get(trial_id)
        return trial is not None and self._rung_state(trial) == "waiting"

    def choose_trial_to_run(self, tune_controller) -> Trial | None:
        """Promoted candidates first (they bring their arm's next rung closer), then new
        trials; never a candidate still waiting at an undecided rung. (Tune starts every
        PENDING trial anyway; the order is what this decides.)"""
        trials = tune_controller.get_trials()
        for trial in trials:
            if trial.status == Trial.PAUSED and (trial.trial_id in self._release
                                                  or not self._tuned(trial)):
                return trial
        for trial in trials:
            if trial.status == Trial.PENDING:
                return trial
        return None

    def debug_string(self) -> str:
        return f"PerArmHalving: rungs {list(self.rungs)}, reduction {self._rf:g}"
