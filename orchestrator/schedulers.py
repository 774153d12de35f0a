"""Trial schedulers and search algorithms, including ASHA that is fair to an ablation.

Plain ASHA ranks every trial against every other. In an ablation that lets one
architecture's strong draws kill another architecture's trials, and that variant's row of
the ablation table ends up empty or biased. ``PerVariantASHA`` keeps one ASHA per bucket
(the arm's variant label), so a hyperparameter draw is only ever stopped by a better draw of
the same arm. ASHA only ever sees tuning draws (``stage`` "tune"): replicate and
single-stage trials are seeds of a chosen config, compared afterwards, so they always run
their full budget.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from orchestrator.errors import UserError
from orchestrator.space import VariantLabeler

SCHEDULERS = ("halving-per-variant", "asha-per-variant", "asha", "fifo")
SEARCHES = ("random", "optuna")


class PerVariantASHA(FIFOScheduler):
    """One ``ASHAScheduler`` per bucket; trial callbacks are forwarded to their bucket's."""

    def __init__(self, bucket_of: Callable[[Mapping[str, Any]], str], *, time_attr: str,
                 max_t: int, grace_period: int, reduction_factor: float,
                 metric: str | None = None, mode: str | None = None) -> None:
        super().__init__()
        self._bucket_of = bucket_of
        self._asha_args = dict(time_attr=time_attr, max_t=max_t, grace_period=grace_period,
                               reduction_factor=reduction_factor)
        self._metric, self._mode = metric, mode
        self._by_bucket: dict[str, ASHAScheduler] = {}
        self._bucket_of_trial: dict[str, str] = {}

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """Take Tune's metric and mode where none was given; refuse (False, so Tune raises)
        one that conflicts with the constructor's, rather than rank by another than Tune's."""
        if self._metric and metric and self._metric != metric:
            return False
        if self._mode and mode and self._mode != mode:
            return False
        self._metric = self._metric or metric
        self._mode = self._mode or mode
        return all(s.set_search_properties(metric, mode, **spec) for s in self._by_bucket.values())

    @staticmethod
    def _tuned(trial) -> bool:
        return trial.config.get("stage") == "tune"

    def _scheduler(self, trial) -> ASHAScheduler:
        bucket = self._bucket_of_trial.get(trial.trial_id)
        if bucket is None:
            bucket = self._bucket_of(trial.config)
            self._bucket_of_trial[trial.trial_id] = bucket
        if bucket not in self._by_bucket:
            self._by_bucket[bucket] = ASHAScheduler(metric=self._metric, mode=self._mode,
                                                    **self._asha_args)
        return self._by_bucket[bucket]

    def on_trial_add(self, tune_controller, trial) -> None:
        if self._tuned(trial):
            self._scheduler(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if result.get("status") == "diverged":
            # A NaN must not enter a rung; the trial is over anyway.
            return TrialScheduler.STOP
        if result.get("status") == "error":
            # The trial's code raised and it reported why before raising: no rung for its
            # NaN, and no STOP, which would end it as finished instead of failed.
            return TrialScheduler.CONTINUE
        if not self._tuned(trial):
            return TrialScheduler.CONTINUE
        return self._scheduler(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        if not self._tuned(trial):
            return
        scheduler = self._scheduler(trial)
        if result and result.get("status") == "diverged":
            scheduler.on_trial_remove(tune_controller, trial)
        else:
            scheduler.on_trial_complete(tune_controller, trial, result)

    def on_trial_error(self, tune_controller, trial) -> None:
        if self._tuned(trial):
            self._scheduler(trial).on_trial_error(tune_controller, trial)

    def on_trial_remove(self, tune_controller, trial) -> None:
        if self._tuned(trial):
            self._scheduler(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return f"PerVariantASHA: {len(self._by_bucket)} buckets"


def build_scheduler(name: str, *, variant_keys: tuple[str, ...], max_t: int,
                    grace_period: int, reduction_factor: float,
                    candidates: int = 1) -> TrialScheduler:
    """``halving-per-variant``: synchronous successive halving within each arm (equal budgets);
    ``asha-per-variant`` buckets asynchronous ASHA by arm; ``asha`` is one bucket for every
    tuning draw; ``fifo`` stops nothing."""
    if name == "halving-per-variant":
        from orchestrator.halving import PerArmHalving

        return PerArmHalving(VariantLabeler(variant_keys), candidates=candidates, max_t=max_t,
                             grace_period=min(grace_period, max_t),
                             reduction_factor=reduction_factor)
    args = dict(time_attr="epoch", max_t=max_t, grace_period=min(grace_period, max_t),
                reduction_factor=reduction_factor)
    if name == "asha-per-variant":
        return PerVariantASHA(VariantLabeler(variant_keys), **args)
    if name == "asha":
        return PerVariantASHA(VariantLabeler(()), **args)
    if name == "fifo":
        return FIFOScheduler()
    raise UserError(f"unknown scheduler {name!r}; choose from {', '.join(SCHEDULERS)}")
