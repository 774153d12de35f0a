"""Run or resume a sweep: a Plan becomes a ray.tune.Tuner writing into one run directory.

Run directory: ``<storage>/<preset>/<run_id>/``. Ray keeps its experiment state and trial
checkpoints there, and our sink writes meta.json, trials.parquet and epochs/ beside them,
so a run is one folder to copy, report on or resume.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import sys
from dataclasses import dataclass
from typing import Any

from orchestrator import meta as run_meta
from orchestrator.cluster_fit import fit_to_cluster
from orchestrator.errors import UserError
from orchestrator.plan import Plan, describe_protocol
from orchestrator.ray_connect import init_ray
from orchestrator.storage import RunFiles, check_writable, join, normalise
from search_spaces.sources import cite, source_url

EXIT_OK, EXIT_TRIAL_ERRORS, EXIT_INTERRUPTED = 0, 1, 130


@dataclass(frozen=True)
class RunTarget:
    storage: str
    preset: str
    run_id: str

    @property
    def experiment_dir(self) -> str:
        return join(self.storage, self.preset)

    @property
    def location(self) -> str:
        return join(self.storage, self.preset, self.run_id)


def new_run_id() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def normalise_storage(storage: str) -> str:
    return normalise(storage)


# Checkpoints Ray keeps per trial. Two, not one: Ray forces an experiment-state snapshot
# whenever a trial has written num_to_keep checkpoints since the last periodic one (so the
# state never names a deleted checkpoint); at one that is every checkpoint.
CHECKPOINTS_KEPT = 2


def _trainable(kind: str, cpus: float, gpus: float, run_location: str, metric: str):
    from ray import tune

    from trainables.tune_adapter import tune_trainable

    return tune.with_resources(
        tune.with_parameters(tune_trainable, kind=kind, cpus=cpus, run_location=run_location,
                             checkpoints_kept=CHECKPOINTS_KEPT, metric=metric, gpus=gpus),
        {"cpu": cpus, "gpu": gpus})


def build_tuner(plan: Plan, target: RunTarget, verbosity: int, max_failures: int = 0,
                watch_nodes: bool = False):
    """One Tuner for the whole run: the grid of arms x seeds, or both stages of tuning.

    ``watch_nodes``: the trials wait for nodes the autoscaler starts; say when they are up.
    """
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    from orchestrator.progress import ProgressView
    from orchestrator.retries import RetryPolicy
    from orchestrator.schedulers import build_scheduler
    from orchestrator.searcher import AblationSearcher
    from orchestrator.sink import ParquetSink
    from orchestrator.space import VariantLabeler

    exp = plan.experiment
    labeler = VariantLabeler(plan.variant_keys)
    halving = plan.scheduler == "halving-per-variant"
    scheduler = build_scheduler(
        plan.scheduler, variant_keys=plan.variant_keys, max_t=plan.max_t,
        grace_period=plan.grace_period, reduction_factor=exp.reduction_factor,
        candidates=plan.protocol.samples if plan.protocol else 1)
    search, param_space, max_concurrent = None, plan.space, plan.max_concurrent
    callbacks: list[Any] = []
    if plan.searched is not None:
        # The searcher proposes complete configs and limits concurrency itself: Tune's own
        # ConcurrencyLimiter does not save which trials it saw, so after --resume it would
        # swallow their completions and the protocol would wait for them forever. It also
        # adds the seeds an adaptive run's undecided arms need (a grid cannot).
        search = AblationSearcher(plan.searched, verbosity=verbosity,
                                  max_concurrent=plan.max_concurrent,
                                  waiting=scheduler.is_waiting if halving else None,
                                  rule=plan.seed_rule)
        param_space, max_concurrent = {}, None
    if halving:
        callbacks.append(scheduler.memory)  # its rung decisions ride in Tune's snapshots
    if watch_nodes:
        from orchestrator.cluster_fit import node_wait_callback

        callbacks.append(node_wait_callback(plan, verbosity))
    return tune.Tuner(
        _trainable(exp.trainable, plan.cpus, plan.gpus, target.location, exp.metric),
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=exp.metric, mode=exp.mode, scheduler=scheduler, search_alg=search,
            num_samples=plan.num_samples, max_concurrent_trials=max_concurrent,
            # A trial reuses a finished trial's worker: no new process, torch import or data
            # load. Seeds are set per trial, so results are identical (benchmarks/RESULTS.md).
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=target.run_id,
            storage_path=target.experiment_dir,
            callbacks=[ParquetSink(target.location, labeler),
                       ProgressView(plan.max_trials or plan.n_trials, labeler, verbosity),
                       RetryPolicy(max_failures),
                       # result.json per trial: what Tune's ResultGrid (fit's return value)
                       # and ExperimentAnalysis read; the sink's Parquet is the product's.
                       JsonLoggerCallback(), *callbacks],
            # A lost worker or node is retried from the trial's last checkpoint; an error
            # the trial's own code raised is not (RetryPolicy).
            failure_config=tune.FailureConfig(max_failures=max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT),
            verbose=0,
        ),
    )


def write_meta(target: RunTarget, plan: Plan, argv: list[str], options: Any, **extra: Any) -> None:
    exp = plan.experiment
    files = RunFiles(target.location)
    record = {
        "run_id": target.run_id, "preset": exp.name, "source": cite(exp.source),
        "source_url": source_url(exp.source),
        "trainable": exp.trainable, "metric": exp.metric, "mode": exp.mode,
        "baseline_variant": exp.baseline_variant,
        "reported": {k: dict(v) for k, v in plan.reported.items()},
        "reported_note": plan.reported_note,
        "variant_keys": list(plan.variant_keys), "n_trials": plan.n_trials,
        "max_trials": plan.max_trials or plan.n_trials,
        "scheduler": plan.scheduler, "search": plan.search, "grace_period": plan.grace_period,
        "reduction_factor": plan.experiment.reduction_factor,
        "protocol": (plan.protocol.record() if plan.protocol is not None
                     else {"stages": ["single"], "seeds": _seeds(plan)}),
        "resources": {"cpu": plan.cpus, "gpu": plan.gpus},
        "overrides": list(options.overrides), "options": dataclasses.asdict(options),
        "cli": argv, "git_revision": run_meta.git_revision(), "versions": run_meta.versions(),
        "hardware": run_meta.hardware(), "started_at": run_meta.now(), "ended_at": None,
        "smoke": options.smoke, "state": "running",
        # Always, also for a fixed number of seeds: the report replays its looks from these.
        **_seed_record(plan),
    }
    if files.exists("meta.json"):
        previous = files.read_json("meta.json")
        record["started_at"] = previous.get("started_at", record["started_at"])
        record["resumed_at"] = [*previous.get("resumed_at", []), run_meta.now()]
    record.update(extra)
    files.write_json(record, "meta.json")


def _seed_record(plan: Plan) -> dict[str, Any]:
    from analysis.sequential import SeedSchedule
    from analysis.verdicts import DEFAULT_ALPHA, DEFAULT_MARGIN

    if plan.seed_rule is not None:
        return plan.seed_rule.record()
    return {"seed_schedule": SeedSchedule.fixed(len(_seeds(plan))).to_meta(),
            "alpha": DEFAULT_ALPHA, "margin": DEFAULT_MARGIN}


def _seeds(plan: Plan) -> list[Any]:
    seeds = plan.space.get("seed")
    return list(seeds["grid_search"]) if isinstance(seeds, dict) else [seeds]


def finish_meta(target: RunTarget, state: str) -> None:
    from analysis.schema import TRIALS_FILE
    from analysis.tuning import selected_configs

    files = RunFiles(target.location)
    record = files.read_json("meta.json")
    record.update(ended_at=run_meta.now(), state=state)
    if "tune" in record.get("protocol", {}).get("stages", []) and files.exists(TRIALS_FILE):
        record["selected"] = selected_configs(files.read_parquet(TRIALS_FILE),
                                              record["protocol"])
    files.write_json(record, "meta.json")


@contextlib.contextmanager
def _pending_trials(plan: Plan):
    """Let Tune queue as many trials as the searcher offers (it would queue one at a time
    for a custom searcher), so a cluster's autoscaler sees the demand at once."""
    if plan.searched is None:
        yield
        return
    name = "TUNE_MAX_PENDING_TRIALS_PG"
    before = os.environ.get(name)
    os.environ[name] = str(max(1, plan.max_trials or plan.n_trials))
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _pack_gpus(plan: Plan, verbosity: int) -> tuple[Plan, dict[str, Any]]:
    """--gpus-per-trial auto: probe the arms' GPU footprint, pick the fraction, say why."""
    from orchestrator.gpu_packing import choose_packing, gpu_node_cpus, probe_cluster

    if verbosity > 0:
        print("--gpus-per-trial auto: measuring each arm's GPU memory on one GPU "
              "(a few training steps)...", flush=True)
    footprint = probe_cluster(plan.space, plan.variant_keys, plan.experiment.trainable)
    node_cpus, gpus_per_node = gpu_node_cpus()
    packing = choose_packing(footprint, cpus_per_trial=plan.cpus, node_cpus=node_cpus,
                             gpus_per_node=gpus_per_node)
    plan = dataclasses.replace(plan, gpus=packing.fraction,
                               notes=(*plan.notes, packing.describe()))
    return plan, packing.record()


def execute(plan: Plan, target: RunTarget, *, resume: bool, address: str | None,
            verbosity: int, argv: list[str], options: Any, resume_command: str,
            max_failures: int | None = None) -> int:
    """Run (or resume) the sweep; return the CLI's exit code.

    ``max_failures`` (None: ``default_max_failures``) only applies to a new run: a resumed
    run keeps the failure policy it was started with, as Tune restores it.
    """
    from ray import tune

    from orchestrator.retries import default_max_failures

    check_writable(target.experiment_dir)
    if resume and not tune.Tuner.can_restore(target.location):
        raise UserError(f"no resumable run at {target.location}; "
                        "check --storage and --name (see the run directories under it)")
    init_ray(address, verbosity)
    if address:
        from orchestrator.shared_storage import check_storage_visible

        check_storage_visible(target.experiment_dir)
    plan, waiting = fit_to_cluster(plan, explicit_gpus=options.gpus_per_trial is not None,
                                   explicit_cpus=options.cpus_per_trial is not None,
                                   address=address)
    if max_failures is None:
        max_failures = default_max_failures(address)
    packing = None
    if resume:
        previous = RunFiles(target.location).read_json("meta.json")
        max_failures = previous.get("max_failures", max_failures)
        packing = previous.get("gpu_packing")
        if plan.gpus_auto and packing:  # the trials already running were packed so
            plan = dataclasses.replace(plan, gpus=packing["fraction"])
    elif plan.gpus_auto:
        plan, packing = _pack_gpus(plan, verbosity)
    write_meta(target, plan, argv, options, max_failures=max_failures,
               **({"gpu_packing": packing} if packing else {}))
    if verbosity > 0:
        verb = "resuming" if resume else "running"
        count = (f"{plan.n_trials} to {plan.max_trials}" if plan.adaptive
                 else str(plan.n_trials))
        print(f"{verb} {plan.experiment.name}: {count} trials "
              f"({plan.scheduler}, {plan.search}) -> {target.location}", flush=True)
        if plan.protocol is not None:
            print(f"protocol: {describe_protocol(plan.protocol)}", flush=True)
        if plan.adaptive:
            print(f"seeds: {plan.seed_rule.describe()}", flush=True)
        for note in plan.notes:
            print(f"note: {note}", flush=True)
        if waiting:
            print(waiting, flush=True)
    if resume:
        tuner = tune.Tuner.restore(
            target.location,
            trainable=_trainable(plan.experiment.trainable, plan.cpus, plan.gpus,
                               target.location, plan.experiment.metric),
            resume_unfinished=True, resume_errored=True,
        )
    else:
        tuner = build_tuner(plan, target, verbosity, max_failures,
                            watch_nodes=waiting is not None)
    try:
        with _pending_trials(plan):
            grid = tuner.fit()
    except KeyboardInterrupt:
        grid = None
    interrupted = grid is None or _was_interrupted(target, plan)
    errors = 0 if grid is None else sum(1 for r in grid if r.error is not None)
    finish_meta(target, "interrupted" if interrupted else "finished")
    if interrupted:
        print(f"interrupted: state saved in {target.location}; resume with: {resume_command}",
              file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    return EXIT_TRIAL_ERRORS if errors else EXIT_OK


def resume_command(preset: str, target: RunTarget, address: str | None) -> str:
    """The exact command that continues this run (``preset`` as the user gave it)."""
    import shlex

    parts = ["python", "-m", "orchestrator", "run", preset, "--storage", target.storage,
             "--name", target.run_id, "--resume"]
    if address:
        parts += ["--address", address]
    return shlex.join(parts)


def errors_line(target: RunTarget, command: str) -> str | None:
    """The run's closing line when trials ended in error (None when none did)."""
    from analysis.schema import TRIALS_FILE
    from orchestrator.retries import errored_trials
    from orchestrator.retries import errors_line as line

    files = RunFiles(target.location)
    if not files.exists(TRIALS_FILE):
        return None
    rows = errored_trials(files.read_parquet(TRIALS_FILE).to_dicts())
    return line(rows, command) if rows else None


def _was_interrupted(target: RunTarget, plan: Plan) -> bool:
    """True if a trial is unfinished or never started (Tune returns normally after SIGINT)."""
    from analysis.schema import TRIALS_FILE

    files = RunFiles(target.location)
    if not files.exists(TRIALS_FILE):
        return True
    trials = files.read_parquet(TRIALS_FILE)
    statuses = trials["status"].to_list()
    if "running" in statuses:
        return True
    if plan.searched is None:
        return len(statuses) < plan.n_trials
    # An arm whose every candidate diverged or failed has nothing to replicate.
    protocol = plan.searched
    stage = protocol.compare_stage
    columns = [c for c in ("variant", "stage", "seed", "status", "test_acc", "best_val_acc")
               if c in trials.columns]
    rows = trials.select(columns).to_dicts()
    compared_arms = []
    for arm in protocol.arms:
        tuned = [r for r in rows if r["variant"] == arm.label and r["stage"] == "tune"]
        compared = [r for r in rows if r["variant"] == arm.label and r["stage"] == stage]
        usable = not protocol.samples or any(r["status"] in ("ok", "early_stopped")
                                             for r in tuned)
        if len(tuned) < protocol.samples or (usable and len(compared) < len(protocol.seeds)):
            return True
        if usable:
            compared_arms.append(arm.label)
    if not plan.adaptive:
        return False
    # The same look the searcher makes: seeds still wanted mean the run stopped early.
    from orchestrator.protocol import look

    compared = [r for r in rows if r["stage"] == stage]
    queued = {arm: sum(r["variant"] == arm for r in compared) for arm in compared_arms}
    return not look(compared, compared_arms, plan.seed_rule, queued).done
