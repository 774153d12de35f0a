"""A Ray Tune ``Searcher`` that runs the fair-ablation protocol in one Tuner.

Stage 1 (tune) proposes each arm's candidates: the shared Latin-hypercube draws for random
search, or one Optuna study per arm (each its own TPE, seeded, with the same number of
trials), never one pooled study over arms. When the last candidate of an arm finishes,
the arm's best candidate on the validation metric is chosen and stage 2 (replicate)
proposes it on the fresh seeds at once, so a fast arm does not wait for a slow one. With
nothing to tune (a protocol of 0 samples) every arm's recipe is proposed on its seeds at once.

With a ``SeedRule`` whose maximum is above the initial seeds (``--max-seeds``), stage 3
(decide) follows: whenever every arm is chosen and every compared trial has ended, the
searcher judges them (``orchestrator.protocol.look``, the replay the report makes, on the
values the sink writes) and proposes more seeds, numbered after the last ones, for the arms
still inconclusive and the baseline; when no arm needs more it finishes. The looks are a
function of the ended trials only, so a resumed run judges what it has and goes on.

Tune saves this object with its experiment state (``save``/``restore``), in the same
snapshot as the trials, so ``--resume`` continues both stages where they were: trials the
snapshot saw as running are rerun by Tune and report their completion here again.
"""

from __future__ import annotations

import math
import pickle
import sys
from collections.abc import Callable
from typing import Any

from ray.tune.search import Searcher

from orchestrator.domains import describe, to_optuna
from orchestrator.protocol import SeedRule, TuningProtocol, look
from orchestrator.sink import result_fields


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


class AblationSearcher(Searcher):
    """Tune each arm on its candidates, pick its best on validation, replicate it; with an
    adaptive ``rule``, add seeds to the arms still undecided until each is decided."""

    def __init__(self, protocol: TuningProtocol, *, max_concurrent: int | None = None,
                 optuna_in_flight: int = 2, verbosity: int = 1,
                 waiting: Callable[[str], bool] | None = None,
                 rule: SeedRule | None = None) -> None:
        super().__init__(metric=protocol.metric, mode=protocol.mode)
        self.protocol = protocol
        self.rule = rule
        self.max_concurrent = max_concurrent
        # Candidates paused at an undecided rung (halving) hold no resources and wait for
        # the very candidates not yet proposed: they do not count against max_concurrent.
        self.waiting = waiting
        self.optuna_in_flight = optuna_in_flight
        self.verbosity = verbosity
        self._queue: list[tuple[int, str, int, dict[str, Any]]] = []  # arm, stage, draw, values
        self._trials: dict[str, dict[str, Any]] = {}
        self._asked = [0] * len(protocol.arms)
        self._selected: dict[int, dict[str, Any]] = {}
        self._failed: dict[int, str] = {}
        self._studies: list[Any] = []
        self._ot_trials: dict[str, Any] = {}
        self._seeds: dict[int, list[int]] = {}   # arm -> seeds proposed for comparison
        self._looks: list[dict[str, Any]] = []   # what each look saw and queued
        self._settled = False                    # the last look asked for no more seeds
        if not protocol.samples:
            # Nothing to tune: each arm's recipe is its choice, on the initial seeds.
            for arm in range(len(protocol.arms)):
                self._selected[arm] = {"draw": 0, "values": {}, "value": None, "epochs": 0}
                self._queue_seeds(arm, protocol.seeds)
        elif protocol.search == "random":
            candidates = protocol.candidates()
            # Draw-major order: every arm advances through its candidates at the same pace.
            for draw in range(protocol.samples):
                for arm in range(len(protocol.arms)):
                    self._queue.append((arm, "tune", draw, candidates[arm][draw]))
            self._asked = [protocol.samples] * len(protocol.arms)
        else:
            self._studies = [self._new_study() for _ in protocol.arms]

    # ---- proposing ---------------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.max_concurrent and self._in_flight() >= self.max_concurrent:
            return None
        if self._queue:
            arm, stage, draw, values = self._queue.pop(0)
            return self._register(trial_id, arm, stage, draw, values)
        if self.protocol.search == "optuna":
            arm = self._next_optuna_arm()
            if arm is not None:
                ot_trial = self._studies[arm].ask(self._distributions(arm))
                self._ot_trials[trial_id] = ot_trial
                draw = self._asked[arm]
                self._asked[arm] += 1
                return self._register(trial_id, arm, "tune", draw, dict(ot_trial.params))
        if self._resolved() and (self._settled or not self.adaptive):
            return Searcher.FINISHED
        return None

    @property
    def adaptive(self) -> bool:
        return self.rule is not None and self.rule.adaptive

    def _resolved(self) -> bool:
        """Every arm has its choice (or has none to make): no tuning left to wait for."""
        return len(self._selected) + len(self._failed) == len(self.protocol.arms)

    def _queue_seeds(self, arm: int, seeds: Any) -> None:
        choice = self._selected[arm]
        for seed in seeds:
            self._queue.append((arm, self.protocol.compare_stage, choice["draw"],
                                {**choice["values"], "__seed__": seed}))
            self._seeds.setdefault(arm, []).append(seed)

    def _register(self, trial_id: str, arm: int, stage: str, draw: int,
                  values: dict[str, Any]) -> dict[str, Any]:
        seed = self.protocol.tuning_seed if stage == "tune" else values.pop("__seed__")
        self._trials[trial_id] = {"arm": arm, "stage": stage, "draw": draw, "values": values,
                                  "seed": seed, "best": None, "epochs": 0, "status": None,
                                  "done": False, "error": False, "fields": {}}
        return self.protocol.arms[arm].with_values(values, seed=seed, stage=stage, draw=draw)

    def _in_flight(self) -> int:
        return sum(1 for trial_id, t in self._trials.items()
                   if not t["done"] and not (self.waiting and self.waiting(trial_id)))

    def _next_optuna_arm(self) -> int | None:
        eligible = [arm for arm in range(len(self.protocol.arms))
                    if self._asked[arm] < self.protocol.samples
                    and self._tune_in_flight(arm) < self.optuna_in_flight]
        return min(eligible, key=lambda arm: (self._asked[arm], arm)) if eligible else None

    def _tune_in_flight(self, arm: int) -> int:
        return sum(1 for t in self._trials.values()
                   if t["arm"] == arm and t["stage"] == "tune" and not t["done"])

    # ---- hearing back ------------------------------------------------------------------
    def on_trial_result(self, trial_id: str, result: dict) -> None:
        record = self._trials.get(trial_id)
        if record is None:
            return
        if record["done"]:
            # An ended trial reporting again: --resume reruns it (it had errored). No look
            # until it ends again, so every look sees what trials.parquet will hold.
            record.update(done=False, rerun=True)
        self._update(record, result)
        ot_trial = self._ot_trials.get(trial_id)
        value, epoch = result.get(self.metric), result.get("epoch")
        reported = record.setdefault("reported", set())
        # A resumed trial re-reports its epochs; Optuna takes each step once.
        if (ot_trial is not None and _finite(value) and isinstance(epoch, int)
                and epoch not in reported):
            reported.add(epoch)
            ot_trial.report(float(value), step=epoch)

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        record = self._trials.get(trial_id)
        if record is None:
            return
        again = record["done"] or record.get("rerun", False)
        if result:
            self._update(record, result)
        # A trial whose code raised reports status "error" before Tune sees it fail.
        record.update(done=True, error=error or record["status"] == "error")
        if record["stage"] == "tune" and not again:
            # A rerun (resume of an errored trial) cannot change a made choice.
            if trial_id in self._ot_trials:
                self._tell(trial_id, record)
            arm = record["arm"]
            tuned = [t for t in self._trials.values()
                     if t["arm"] == arm and t["stage"] == "tune"]
            if (self._asked[arm] == self.protocol.samples
                    and len(tuned) == self.protocol.samples
                    and all(t["done"] for t in tuned) and arm not in self._selected):
                self._select(arm, tuned)
        self._look()

    # ---- deciding ----------------------------------------------------------------------
    def _look(self) -> None:
        """When every compared trial so far has ended, judge them and queue what they need."""
        if not self.adaptive or self._settled or not self._resolved():
            return
        compared = [t for t in self._trials.values() if t["stage"] != "tune"]
        if any(item[1] != "tune" for item in self._queue) or not all(
                t["done"] for t in compared):
            return
        labels = {arm: self.protocol.arms[arm].label for arm in self._selected}
        queued = {labels[arm]: len(seeds) for arm, seeds in self._seeds.items()}
        result = look([self._row(t) for t in compared], list(labels.values()), self.rule,
                      queued)
        self._looks.append({"look": result.judgement.look if result.judgement else 0,
                            "seeds": result.seeds, "metric": result.metric,
                            "verdicts": {c.variant: c.verdict for c in
                                         (result.judgement.comparisons
                                          if result.judgement else [])},
                            "more": dict(result.more)})
        self._say(result.line(self.rule))
        if result.done:
            self._settled = True
            return
        by_label = {label: arm for arm, label in labels.items()}
        for label, n in result.more.items():
            arm = by_label[label]
            last = max(self._seeds.get(arm, [-1]))
            self._queue_seeds(arm, range(last + 1, last + 1 + n))

    def _row(self, record: dict[str, Any]) -> dict[str, Any]:
        """The trial as trials.parquet has it once ended (the sink's fields and status)."""
        row = dict(record.get("fields", {}))
        status = row.get("status")
        if record["error"]:
            status = "error"              # as the sink marks a trial Tune saw fail
        elif status in (None, "running"):
            status = "early_stopped"      # as the sink marks one a scheduler stopped
        row.update(variant=self.protocol.arms[record["arm"]].label, seed=record["seed"],
                   status=status)
        return row

    def looks(self) -> list[dict[str, Any]]:
        """What each look saw (seeds, metric, verdicts) and the seeds it asked for."""
        return list(self._looks)

    def _update(self, record: dict[str, Any], result: dict) -> None:
        value, epoch = result.get(self.metric), result.get("epoch")
        if _finite(value) and (record["best"] is None or self._better(value, record["best"])):
            record["best"] = float(value)
        if isinstance(epoch, int | float):
            record["epochs"] = max(record["epochs"], int(epoch))
        if result.get("status"):
            record["status"] = result["status"]
        record.setdefault("fields", {}).update(result_fields(result))

    def _better(self, a: float, b: float) -> bool:
        return a > b if self.mode == "max" else a < b

    def _select(self, arm: int, tuned: list[dict[str, Any]]) -> None:
        """The arm's candidate with the best validation metric among those that got furthest.

        Diverged and errored candidates cannot be chosen. Halving and ASHA let only some
        candidates reach the full budget; comparing a candidate stopped at epoch 1 with one
        trained for ten would favour whichever curve starts fast, so the furthest compete.
        """
        label = self.protocol.arms[arm].label
        usable = [t for t in tuned if not t["error"] and t["status"] != "diverged"
                  and t["best"] is not None]
        if not usable:
            self._failed[arm] = "every candidate diverged or failed"
            self._say(f"tuned {label}: {self._failed[arm]}; nothing to replicate")
            return
        sign = 1.0 if self.mode == "max" else -1.0
        best = max(usable, key=lambda t: (t["epochs"], sign * t["best"], -t["draw"]))
        self._selected[arm] = {"draw": best["draw"], "values": dict(best["values"]),
                               "value": best["best"], "epochs": best["epochs"]}
        self._queue_seeds(arm, self.protocol.seeds)
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in best["values"].items())
        seeds = ", ".join(map(str, self.protocol.seeds))
        self._say(f"tuned {label}: draw {best['draw']} of {self.protocol.samples} chosen "
                  f"({shown}; best {self.metric} {best['best']:.4f} in {best['epochs']} "
                  f"epochs); replicating on seed(s) {seeds}")

    # ---- optuna ------------------------------------------------------------------------
    def _new_study(self):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        startup = min(10, max(3, self.protocol.samples // 3))
        sampler = optuna.samplers.TPESampler(seed=self.protocol.search_seed,
                                             n_startup_trials=startup, constant_liar=True)
        direction = "maximize" if self.protocol.mode == "max" else "minimize"
        return optuna.create_study(sampler=sampler, direction=direction)

    def _distributions(self, arm: int) -> dict[str, Any]:
        return {key: to_optuna(domain)
                for key, domain in self.protocol.arms[arm].domains.items()}

    def _tell(self, trial_id: str, record: dict[str, Any]) -> None:
        from optuna.trial import TrialState

        ot_trial = self._ot_trials[trial_id]
        study = self._studies[record["arm"]]
        if record["error"] or record["status"] == "diverged" or record["best"] is None:
            study.tell(ot_trial, state=TrialState.FAIL)
        elif record["status"] == "running":
            # Its last report was mid-training: the scheduler stopped it (ASHA).
            study.tell(ot_trial, state=TrialState.PRUNED)
        else:
            study.tell(ot_trial, record["best"])

    # ---- reporting, saving -------------------------------------------------------------
    def selections(self) -> dict[str, dict[str, Any]]:
        return {self.protocol.arms[arm].label: choice for arm, choice in self._selected.items()}

    def _say(self, text: str) -> None:
        if self.verbosity > 0:
            print(text, file=sys.stdout, flush=True)

    def save(self, checkpoint_path: str) -> None:
        # Not `waiting`: it is the live scheduler's method, restored with the Tuner itself.
        state = {k: v for k, v in self.__dict__.items() if k != "waiting"}
        with open(checkpoint_path, "wb") as f:
            pickle.dump(state, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))
        # A run started before seeds were decided has none of the decide stage's state.
        for key, value in (("rule", None), ("_seeds", {}), ("_looks", []), ("_settled", False)):
            self.__dict__.setdefault(key, value)

    def describe(self) -> str:
        if not self.protocol.samples:
            return "AblationSearcher(no tuning; seeds until decided)"
        keys = ", ".join(f"{k} {describe(d)}" for k, d in self.protocol.arms[0].domains.items())
        return f"AblationSearcher({self.protocol.search}; {keys})"


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
