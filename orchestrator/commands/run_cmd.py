"""`run NAME`: run a preset's sweep (or resume one), then print the summary and write the report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orchestrator.commands.common import add_sweep_arguments, load_preset, sweep_options, verbosity
from orchestrator.errors import UserError


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "run", help="run a preset's sweep",
        description="Run a preset's sweep on this machine or a Ray cluster; results go to "
                    "<storage>/<preset>/<run_id>/ as Parquet, with report.html.")
    parser.add_argument("preset", help="preset name (see `list`) or path to a preset .py file")
    add_sweep_arguments(parser)
    where = parser.add_argument_group("where")
    where.add_argument("--address", help="join a running Ray cluster: auto or HOST:PORT "
                                         "(default: start a local Ray)")
    where.add_argument("--storage", default="runs",
                       help="results root: a local directory, or s3://... / gs://... for clusters "
                            "(default: ./runs)")
    where.add_argument("--name", help="run id (default: a timestamp); with --resume, the run to resume")
    where.add_argument("--resume", action="store_true",
                       help="finish an interrupted run: unfinished and errored trials continue from "
                            "their last checkpoint (default run: the latest of this preset)")
    where.add_argument("--max-failures", type=int, metavar="N",
                       help="restart a trial whose worker or node is lost up to N times, from "
                            "its last checkpoint (default: 2 with --address, 0 locally); a "
                            "trial whose own code raises is never retried")
    where.add_argument("--keep-checkpoints", action="store_true",
                       help="keep the checkpoints of trials that finished (default: deleted "
                            "when the run ends; errored and unfinished trials always keep "
                            "theirs for --resume)")
    where.add_argument("--keep-best", action="store_true",
                       help="keep each finished trial's best weights as "
                            "artifacts/<trial>/best_weights_epochNNNN.pt (default: deleted)")
    out = parser.add_argument_group("output")
    out.add_argument("-v", "--verbose", action="count", default=0, help="every epoch, and Ray's own logs")
    out.add_argument("-q", "--quiet", action="store_true", help="only the final table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from orchestrator.plan import make_plan
    from orchestrator.preflight import check_space
    from orchestrator.run_index import latest_started_run
    from orchestrator.runner import (
        RunTarget,
        errors_line,
        execute,
        new_run_id,
        normalise_storage,
        resume_command,
    )
    from orchestrator.storage import check_readable

    if args.max_failures is not None and args.max_failures < 0:
        raise UserError(f"--max-failures {args.max_failures}: must be 0 or more")
    exp = load_preset(args.preset)
    storage = normalise_storage(args.storage)
    # First, before anything reads the store: an unreachable endpoint or refused credentials
    # is then one line, whatever the command was going to read.
    check_readable(storage)
    if args.resume:
        run_id = args.name
        if run_id is None:
            latest = latest_started_run(storage, exp.name)
            if latest is None:
                raise UserError(f"--resume: no runs of {exp.name} under {storage}; "
                                "start one with `run` first, or check --storage")
            run_id = latest.run_id
            if verbosity(args):
                print(f"resuming run {run_id} ({latest.describe()}), the latest of {exp.name}",
                      flush=True)
    else:
        run_id = args.name or new_run_id()
    target = RunTarget(storage=storage, preset=exp.name, run_id=run_id)
    options = _stored_options(target, args) if args.resume else sweep_options(args)
    plan = make_plan(exp, options)
    if not args.resume and _exists(target):
        raise UserError(f"run {target.location} already exists; pass --resume to finish it, "
                        "or another --name")
    # Before Ray starts: data that is there but that no trial could use is one line here,
    # not a minute of trials failing one by one.
    check_space(plan.space)
    level = verbosity(args)
    command = resume_command(args.preset, target, args.address)
    code = execute(plan, target, resume=args.resume, address=args.address, verbosity=level,
                   argv=sys.argv, options=options, resume_command=command,
                   max_failures=args.max_failures)
    if code == 130:
        return code
    _summarise(target.location, quiet=level == 0)
    if not args.keep_checkpoints:
        from orchestrator.checkpoints import clean_checkpoints, describe

        removed = clean_checkpoints(target.location, keep_best=args.keep_best)
        if level and removed["files"]:
            print(f"checkpoints: {describe(removed)} (--keep-checkpoints keeps them)",
                  flush=True)
    line = errors_line(target, command)
    if line:
        print(line, file=sys.stderr, flush=True)
    return code


def _stored_options(target, args):
    """A resumed run keeps the sweep it started with; changing it on resume is an error."""
    from orchestrator.plan import SweepOptions
    from orchestrator.storage import RunFiles

    given = sweep_options(args)
    if given != SweepOptions():
        raise UserError("--resume continues a run as it was started; drop the sweep options "
                        "(--set, --seeds, --smoke, ...) or start a new run")
    files = RunFiles(target.location)
    if not files.exists("meta.json"):
        raise UserError(f"no run to resume at {target.location} (no meta.json); "
                        "check --storage and --name")
    stored = files.read_json("meta.json").get("options", {})
    stored["overrides"] = tuple(stored.get("overrides", ()))
    stored["profiles"] = tuple(stored.get("profiles", ()))
    return SweepOptions(**stored)


def _exists(target) -> bool:
    from orchestrator.storage import RunFiles

    return RunFiles(target.location).exists("meta.json")


def _skipped_notes(run) -> str:
    """The data notes that mention skipped files, once each (every trial repeats them)."""
    notes = run.trials["data_note"].drop_nulls().unique(maintain_order=True).to_list()
    parts = [p for note in notes for p in note.split("; ") if p.startswith("skipped ")]
    return "; ".join(dict.fromkeys(parts))


def _clip_cache_line(run) -> str:
    """How many trials found the decoded-clip store ready and how many decoded it."""
    notes = run.trials["data_note"].drop_nulls().to_list()
    hits = sum("clip cache hit" in note for note in notes)
    misses = sum("clip cache miss" in note for note in notes)
    if not hits and not misses:
        return ""
    return (f"clip cache: {hits} trial(s) read decoded clips, {misses} decoded them "
            "(once per node and data setting)")


def _summarise(location: str, *, quiet: bool) -> None:
    """The summary, the answer and report.html, for a run on local disk or in a bucket."""
    from orchestrator.bucket_runs import readable_run

    with readable_run(location) as run_dir:
        report = _summarise_local(run_dir)
        if "://" in location:
            from analysis.schema import REPORT_FILE
            from orchestrator.bucket_runs import publish

            report = publish(report, location, REPORT_FILE)
    print(f"results: {location}\nreport:  {report}")


def _summarise_local(run_dir: Path):
    from analysis.divergence import format_divergence
    from analysis.load import load_run
    from analysis.report import write_report
    from analysis.study import answer, study_stats
    from analysis.summary import format_table, summarize

    run = load_run(run_dir)
    print(format_table(summarize(run)))
    for sentence in answer(study_stats(run), run):
        print(f"  {sentence}")
    divergence = format_divergence(run)
    if divergence:
        print(divergence)
    skipped = _skipped_notes(run)
    if skipped:
        print("data: " + skipped)
    cache = _clip_cache_line(run)
    if cache:
        print(cache)
    return write_report(run_dir)
