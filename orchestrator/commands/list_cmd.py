"""`list`: the presets, their modality and source, and whether their data is here."""

from __future__ import annotations

import argparse


def add_parser(commands) -> None:
    parser = commands.add_parser("list", help="list presets and whether their data is available",
                                 description="List presets with modality, source, and data availability.")
    parser.add_argument("--data-root", help="where datasets live (default: bundled data only)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from orchestrator.space import grid_axes
    from search_spaces.registry import load_experiment, preset_names
    from search_spaces.sources import cite_short
    from trainables.data.registry import dataset_spec

    rows = []
    for name in preset_names():
        exp = load_experiment(name)
        data = exp.param_space.get("data", {})
        names = grid_axes(data).get("name") or [data["name"]]
        checks = [dataset_spec(n).available(args.data_root or data.get("root")) for n in names]
        ok = all(found for found, _ in checks)
        detail = "; ".join(f"{n}: {d}" if len(names) > 1 else d
                           for n, (_, d) in zip(names, checks, strict=True))
        rows.append((name, exp.modality, "yes" if ok else "no", detail, cite_short(exp.source)))
    width = max(len(r[0]) for r in rows)
    print(f"{'preset':<{width}}  modality     data  source")
    for name, modality, ok, detail, source in rows:
        print(f"{name:<{width}}  {modality:<11}  {ok:<4}  {source}")
        print(f"{'':<{width}}  {'':<11}        data: {detail}")
    return 0
