"""Which failures a sweep retries, and how a retry and a run's remaining errors are told.

A trial whose *process* is lost (its worker killed by the OOM killer, its node preempted
or its raylet gone) did nothing wrong: Tune restarts it from its last checkpoint, on any
node, up to ``--max-failures`` times. A trial whose own code raises (a bad config, a shape
error) would raise again: the trainable reports that error (``status="error"``) just before
it raises (see ``trainables.tune_adapter``), and ``RetryPolicy`` then lowers that trial's
retry allowance so that Tune records the failure at once instead of retrying it. The trial
still ends in Tune's ERROR state, so ``--resume`` (after the cause is fixed) reruns it from
its last checkpoint, as it reruns a trial that ran out of retries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ray.tune import Callback

# Enough for a preempted node or two per trial; a trial that keeps losing its worker is
# more likely killed for memory, which retrying cannot fix.
CLUSTER_MAX_FAILURES = 2


def default_max_failures(address: str | None) -> int:
    """Retry lost trials on a cluster (nodes come and go); locally a lost worker is rare
    and usually the machine's memory, so the run says so instead of trying again."""
    return CLUSTER_MAX_FAILURES if address else 0


class RetryPolicy(Callback):
    """Tune's FailureConfig retries every failure; this keeps retries for lost processes.

    Tune decides whether to retry from ``trial.max_failures`` when the failure arrives, and
    the trial's error report always arrives before its failure (it is the trial's last
    result), so lowering the allowance there is enough. The next result of that trial
    (it was rerun by ``--resume``) gives the allowance back.
    """

    def __init__(self, max_failures: int) -> None:
        self.max_failures = max_failures

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict,
                        **info: Any) -> None:
        if result.get("status") == "error":
            # should_recover() is num_failures <= max_failures, and the failure about to
            # arrive makes num_failures at least 1.
            trial.max_failures = 0
        elif trial.max_failures != self.max_failures:
            trial.max_failures = self.max_failures


def failure_cause(error_text: str) -> str:
    """A few words for why Tune lost a trial, from Ray's (long) error message.

    Only what Ray states: its message about any dead worker lists the OOM killer among
    "common causes", which is not a finding, so that alone reads "worker died".
    """
    text = error_text.lower()
    if "low on memory" in text or "outofmemoryerror" in text:
        return "out of memory"
    if "preempt" in text:
        return "node preempted"
    if "node has died" in text or "node died" in text or "nodediederror" in text:
        return "node died"
    return "worker died"


def was_lost(trial: Any) -> bool:
    """Tune's last failure of ``trial`` was its process (worker, actor or node) dying,
    not an exception of its code."""
    from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError

    try:
        error = trial.get_pickled_error()
    except Exception:
        error = None
    if isinstance(error, RayTaskError):
        error = error.as_instanceof_cause()
    if error is None:  # no pickled error kept: judge Ray's text
        text = trial_error_text(trial).lower()
        return any(word in text for word in ("died", "dead", "killed", "preempt"))
    return isinstance(error, RayActorError | WorkerCrashedError)


def trial_error_text(trial: Any) -> str:
    """Ray's error for the trial's last failure, or '' when it kept none."""
    try:
        error = trial.get_error()
    except Exception:
        error = None
    if error is not None:
        return str(error)
    path = getattr(trial, "error_file", None)
    if path:
        try:
            with open(path) as handle:
                return handle.read()
        except OSError:
            return ""
    return ""


def checkpoint_epoch(trial: Any) -> int | None:
    """The epoch of the checkpoint a retried trial restarts from (None: from scratch)."""
    try:
        latest = trial.run_metadata.checkpoint_manager.latest_checkpoint_result
    except AttributeError:
        return None
    if latest is None:
        return None
    epoch = (latest.metrics or {}).get("epoch")
    return int(epoch) if isinstance(epoch, int | float) else None


def retry_line(name: str, trial: Any) -> str:
    """One progress line for a retry: what was lost, where it restarts, which attempt."""
    cause = failure_cause(trial_error_text(trial))
    epoch = checkpoint_epoch(trial)
    start = f"from epoch {epoch}" if epoch else "from the start (no checkpoint yet)"
    attempt = trial.num_failures + 1
    return (f"{name} lost its worker ({cause}); retrying {start}, "
            f"attempt {attempt}/{trial.max_failures + 1}")


def errored_trials(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [row for row in rows if row.get("status") == "error"]


def lost(row: Mapping[str, Any]) -> bool:
    """The trial ended because Tune lost its process (not because its code raised)."""
    return row.get("stopped_by") == "lost"


def errors_line(rows: list[Mapping[str, Any]], resume_command: str) -> str:
    """The run's last line when trials ended in error: which, and what to do."""
    shown = "; ".join(
        f"{row.get('variant')} seed={row.get('seed')}"
        + (f" draw={row.get('draw')} (tune)" if row.get("stage") == "tune" else "")
        + f": {row.get('error') or 'failed'}"
        for row in rows[:5])
    more = f" (and {len(rows) - 5} more)" if len(rows) > 5 else ""
    if any(lost(row) for row in rows):
        advice = f"rerun them from their checkpoints with: {resume_command}"
    else:
        advice = ("their own code raised, which a rerun would repeat: fix the cause (the "
                  f"traceback is in artifacts/<trial>/error.txt), then: {resume_command}")
    return f"{len(rows)} trial(s) ended in error: {shown}{more}; {advice}"
