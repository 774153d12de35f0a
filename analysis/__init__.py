"""Read finished (or in-flight) runs from disk and report on them.

Reads files only, never ray, torch or the orchestrator, so a report can be rebuilt on any
machine that has the run directory. The on-disk contract is `analysis.schema`.
"""

from analysis.load import Run, load_run
from analysis.report import render_report, write_report
from analysis.summary import format_table, summarize, variant_order

__all__ = [
    "Run",
    "format_table",
    "load_run",
    "render_report",
    "summarize",
    "variant_order",
    "write_report",
]
