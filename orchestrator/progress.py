"""A compact progress view of a sweep: one line per finished trial, a periodic status line.

Ray's own reporter prints wide tables every few seconds; for an ablation a person wants to
know how many trials are done, what is running, and each finished trial's outcome.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from ray.tune import Callback


def _fmt(value: Any, spec: str = ".4f") -> str:
    return "—" if value is None or value != value else format(value, spec)


def _slot(config: Mapping[str, Any]) -> str:
    """A tuning candidate is named by its draw, a compared trial by its seed."""
    if config.get("stage") == "tune":
        return f"draw={config.get('draw')} (tune)"
    return f"seed={config.get('seed')}"


class ProgressView(Callback):
    """verbosity 0: silent; 1: finished trials and a status line every ``every_s``; 2: every epoch."""

    def __init__(self, total: int, label_of: Callable[[Mapping[str, Any]], str],
                 verbosity: int = 1, every_s: float = 15.0) -> None:
        self.total, self.label_of, self.verbosity, self.every_s = total, label_of, verbosity, every_s
        self._last_status = 0.0
        self._last: dict[str, dict[str, Any]] = {}
        self._done: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_last={}, _done=set(), _last_status=0.0)
        return state

    def _say(self, text: str) -> None:
        if self.verbosity > 0:
            print(text, file=sys.stdout, flush=True)

    def _name(self, trial) -> str:
        return f"{self.label_of(trial.config)} {_slot(trial.config)} [{trial.trial_id}]"

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info: Any) -> None:
        self._last[trial.trial_id] = result
        if self.verbosity >= 2 and "epoch" in result:
            self._say(f"  {self._name(trial)} epoch {result['epoch']}: train_loss "
                      f"{_fmt(result.get('train_loss'))} val_acc {_fmt(result.get('val_acc'))} "
                      f"({_fmt(result.get('epoch_time_s'), '.1f')} s)")
        now = time.monotonic()
        if now - self._last_status >= self.every_s:
            self._last_status = now
            running = [t for t in trials if t.status == "RUNNING"]
            self._say(f"[{len(self._done)}/{self.total} done, {len(running)} running] " + "; ".join(
                f"{self.label_of(t.config)} {_slot(t.config)} ep {self._last.get(t.trial_id, {}).get('epoch', 0)}"
                for t in running[:6]))

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._done.add(trial.trial_id)
        last = self._last.get(trial.trial_id, {})
        status = last.get("status", "early_stopped")
        if status == "running":
            status = "stopped by scheduler"
        self._say(f"[{len(self._done)}/{self.total}] {self._name(trial)}: {status}, "
                  f"epochs {last.get('epoch', '—')}, best val_acc {_fmt(last.get('best_val_acc'))}, "
                  f"test_acc {_fmt(last.get('test_acc'))}")

    def on_trial_recover(self, iteration: int, trials: list, trial, **info: Any) -> None:
        from orchestrator.retries import retry_line

        self._say(retry_line(self._name(trial), trial))

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._done.add(trial.trial_id)
        from orchestrator.sink import error_fields

        fields = error_fields(trial, self._last.get(trial.trial_id, {}))
        where = ("artifacts/" + trial.trial_id if fields["stopped_by"] == "error"
                 else getattr(trial, "path", None) or "the trial's directory")
        self._say(f"[{len(self._done)}/{self.total}] {self._name(trial)}: ERROR "
                  f"{fields['error']} (traceback: {where}/error.txt)")
