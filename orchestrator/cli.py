"""Command-line entry point. Heavy imports (torch, ray) happen inside commands: --help is instant."""

from __future__ import annotations

import argparse
import sys

from orchestrator.commands import data_cmd, list_cmd, report_cmd, run_cmd, show_cmd
from orchestrator.errors import UserError

EPILOG = """examples:
  python -m orchestrator list
  python -m orchestrator show mnist_attention
  python -m orchestrator run mnist_attention
  python -m orchestrator run mnist_attention --smoke --seeds 1
  python -m orchestrator run mnist_attention --set model.attention=[none,se] --seeds 5
  python -m orchestrator run mnist_attention --name my-run --resume
  python -m orchestrator report runs/mnist_attention/<run_id>
  python -m orchestrator data synth hmdb51 --out /tmp/hmdb51-synth
  python -m orchestrator run hmdb51_ablation --smoke --data-root /tmp/hmdb51-synth
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m orchestrator",
        description="Attention-ablation sweeps on Ray Tune: presets of published studies, "
                    "results in Parquet, an offline HTML report.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in (list_cmd, show_cmd, run_cmd, report_cmd, data_cmd):
        module.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
