"""`report RUN [RUN ...]`: a run's HTML report (or several runs side by side), its terminal
summary in Markdown, and its charts as PNG/SVG files."""

from __future__ import annotations

import argparse
from pathlib import Path

from orchestrator.errors import UserError


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "report", help="write the HTML report of a run, or compare runs",
        description="Write RUN_DIR/report.html (opens offline) and print the summary. With "
                    "several run dirs, write one page that compares them side by side.")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help="a run directory: <storage>/<preset>/<run_id>, local or in a "
                             "bucket (s3://..., gs://...; the report is written into it)")
    parser.add_argument("-o", "--output", type=Path,
                        help="where to write the HTML (default: RUN_DIR/report.html; for "
                             "several runs, compare-<ids>.html beside the first)")
    parser.add_argument("--format", choices=("html", "md"), default="html",
                        help="md: print the answer and tables as Markdown instead of writing "
                             "HTML")
    parser.add_argument("--export", type=Path, metavar="DIR",
                        help="also save every chart into DIR as a file (see --export-format)")
    parser.add_argument("--export-format", choices=("svg", "png"), default="svg")
    parser.add_argument("--aso", action="store_true",
                        help="add Almost Stochastic Order (epsilon_min) to each comparison")
    parser.add_argument("--alpha", type=_probability, default=None,
                        help="significance level of every verdict (default: the run's, 0.05)")
    parser.add_argument("--margin", type=_positive, default=None,
                        help="equivalence margin in the metric's units, e.g. 0.005 = half an "
                             "accuracy point (default: the run's)")
    parser.add_argument("-q", "--quiet", action="store_true", help="do not print the summary table")
    parser.set_defaults(func=run)


def _probability(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"--alpha must be between 0 and 1, got {text}")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"--margin must be positive, got {text}")
    return value


def _load(run_dirs: list[Path], locations: list[str]):
    from analysis.load import load_run
    from analysis.study import compared_trials

    runs = []
    for run_dir, location in zip(run_dirs, locations, strict=True):
        try:
            run = load_run(run_dir)
            compared_trials(run)  # two results for one (arm, seed): say so before any work
        except (FileNotFoundError, ValueError) as err:
            raise UserError(f"{location}: {err}") from None
        runs.append(run)
    return runs


def run(args: argparse.Namespace) -> int:
    """Report on local copies of bucket runs (see orchestrator.bucket_runs), then put the
    page where a local run's would be: into the run (or beside the first run)."""
    import contextlib

    from orchestrator.bucket_runs import readable_run
    from orchestrator.storage import is_uri, normalise

    locations = [normalise(d) if is_uri(d) else d for d in args.run_dirs]
    with contextlib.ExitStack() as stack:
        local = [Path(stack.enter_context(readable_run(loc))) for loc in locations]
        return _report(args, local, locations)


def _report(args: argparse.Namespace, run_dirs: list[Path], locations: list[str]) -> int:
    from analysis.compare import (
        comparison_markdown,
        render_comparison,
        run_label,
        run_markdown,
    )
    from analysis.schema import REPORT_FILE
    from analysis.study import study_stats
    from analysis.summary import format_table, summarize
    from orchestrator.bucket_runs import publish
    from orchestrator.storage import is_uri, parent

    runs = _load(run_dirs, locations)
    labelled = [(run_label(r, d.name), r) for r, d in zip(runs, run_dirs, strict=True)]
    if args.export is not None:
        _export(labelled, args.export, args.export_format)
    if len(runs) > 1:
        if args.format == "md":
            print(comparison_markdown(labelled), end="")
            return 0
        first = run_dirs[0]
        name = f"compare-{'-'.join(d.name for d in run_dirs)[:120]}.html"
        out = args.output or first.parent / name
        _write(out, render_comparison(labelled))
        if args.output is None and is_uri(locations[0]):
            out = publish(out, parent(locations[0]), name)
        print(f"comparison: {out}")
        return 0

    run_data, run_dir = runs[0], run_dirs[0]
    if args.format == "md":
        stats = study_stats(run_data, with_aso=args.aso, alpha=args.alpha, margin=args.margin)
        print(run_markdown(run_data, stats, labelled[0][0]))
        return 0
    from analysis.report import write_report

    out = write_report(run_dir, args.output, with_aso=args.aso, alpha=args.alpha,
                       margin=args.margin)
    if args.output is None and is_uri(locations[0]):
        out = publish(out, locations[0], REPORT_FILE)
    if not args.quiet:
        print(format_table(summarize(run_data)))
    print(f"report: {out}")
    return 0


def _write(path: Path, text: str) -> None:
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)


def _export(labelled, folder: Path, suffix: str) -> None:
    """Every chart of every run as `<folder>[/<run_id>]/<chart>.<suffix>`."""
    from analysis.plots import export_chart
    from analysis.report import report_charts
    from analysis.study import study_stats
    from analysis.summary import summarize

    for label, run in labelled:
        target = folder if len(labelled) == 1 else folder / str(run.meta.get("run_id") or label)
        stats = study_stats(run)
        charts = report_charts(run, stats, summarize(run))
        for name, chart, _ in charts:
            try:
                path = export_chart(chart, target / f"{name}.{suffix}")
            except ImportError as err:
                raise UserError(f"exporting charts needs vl-convert-python ({err})") from None
            print(f"chart: {path}")
        if not charts:
            print(f"{label}: no charts to export yet")
