"""`report RUN_DIR`: the HTML report of a run, and its summary table on the terminal."""

from __future__ import annotations

import argparse
from pathlib import Path

from orchestrator.errors import UserError


def add_parser(commands) -> None:
    parser = commands.add_parser("report", help="write the HTML report of a run",
                                 description="Write RUN_DIR/report.html (opens offline) and print the summary.")
    parser.add_argument("run_dir", type=Path, help="a run directory: <storage>/<preset>/<run_id>")
    parser.add_argument("-o", "--output", type=Path, help="where to write the HTML (default: RUN_DIR/report.html)")
    parser.add_argument("-q", "--quiet", action="store_true", help="do not print the summary table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from analysis.load import load_run
    from analysis.report import write_report
    from analysis.summary import format_table, summarize

    try:
        run_data = load_run(args.run_dir)
    except FileNotFoundError as err:
        raise UserError(str(err)) from None
    out = write_report(args.run_dir, args.output)
    if not args.quiet:
        print(format_table(summarize(run_data)))
    print(f"report: {out}")
    return 0
