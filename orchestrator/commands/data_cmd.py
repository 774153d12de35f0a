"""`data synth|check|cache`: make a small dataset, validate a real one, pre-decode a sweep's clips.

Why a command for each: a sweep that meets a broken tree should fail before it books a GPU
(``check``); the first trials of a sweep should not all wait on decoding (``cache`` fills the
node's clip store once, ahead of time); and tests and first-time users need a dataset in the
real layout without downloading anything (``synth``).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path
from typing import Any

from orchestrator.commands.common import add_sweep_arguments, load_preset, sweep_options
from orchestrator.errors import UserError

VIDEO_DATASETS = ("hmdb51", "wlasl")


def add_parser(commands) -> None:
    parser = commands.add_parser("data", help="make, check or pre-decode video datasets",
                                 description=__doc__.split("\n")[0])
    actions = parser.add_subparsers(title="actions", metavar="ACTION")

    synth = actions.add_parser("synth", help="write a small synthetic dataset in the real layout")
    synth.add_argument("dataset", choices=VIDEO_DATASETS)
    synth.add_argument("--out", type=Path, required=True, help="directory to write (created)")
    synth.add_argument("--classes", type=int, default=4,
                       help="classes (hmdb51) or glosses (wlasl): motions of a shape (default 4)")
    synth.add_argument("--videos", type=int, default=10, help="videos per class (default 10)")
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(func=_synth)

    check = actions.add_parser("check", help="validate a dataset tree and count corrupt videos")
    check.add_argument("dataset", choices=VIDEO_DATASETS)
    check.add_argument("--data-root", required=True,
                       help="the dataset's directory, or a bucket URI (copied into this "
                            "node's cache first, as a trial would)")
    check.add_argument("--split", type=int, default=1, help="hmdb51 split list (1, 2 or 3)")
    check.add_argument("--glosses", type=int, default=10, help="wlasl: the first K glosses")
    check.set_defaults(func=_check)

    cache = actions.add_parser(
        "cache", help="decode a preset's videos into this node's clip store before a sweep",
        description="Decode every video a preset's trials will read into the node's clip "
                    "store (the same settings --set/--profile/--smoke give `run`).")
    cache.add_argument("preset", help="a video preset, e.g. hmdb51_ablation")
    add_sweep_arguments(cache)
    cache.set_defaults(func=_cache)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _synth(args: argparse.Namespace) -> int:
    from trainables.data.video import synth

    if args.classes < 2 or args.videos < 3:
        raise UserError("--classes needs at least 2 and --videos at least 3 (train, val, test)")
    try:
        # Created first, so a path that cannot exist fails before any video is encoded.
        args.out.mkdir(parents=True, exist_ok=True)
        if args.dataset == "hmdb51":
            synth.write_hmdb51(args.out, classes=args.classes, videos_per_class=args.videos,
                               seed=args.seed)
        else:
            synth.write_wlasl(args.out, glosses=args.classes, videos_per_gloss=args.videos,
                              seed=args.seed)
    except OSError as err:
        raise UserError(_cannot_write(args.out, err)) from None
    print(f"wrote a synthetic {args.dataset} dataset to {args.out}")
    print(f"use it with: --data-root {args.out}")
    return 0


def _cannot_write(out: Path, err: OSError) -> str:
    """One line: the path the OS refused (``out`` or a file in it) and the OS's reason."""
    reason = err.strerror or (str(err).splitlines() or [type(err).__name__])[0]
    blocker = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        reason += f" ({blocker} is a file, not a directory)"
    elif err.filename and Path(err.filename) != out:
        reason += f" (writing {err.filename})"
    return (f"cannot write the synthetic dataset to --out {out}: {reason}; pass --out "
            "a directory that can be created and written")


def _check(args: argparse.Namespace) -> int:
    from trainables.data.errors import DatasetMissingError
    from trainables.data.remote import local_root
    from trainables.data.video.check import check_dataset

    try:
        report = check_dataset(args.dataset, local_root(args.data_root), split=args.split,
                               num_glosses=args.glosses)
    except (DatasetMissingError, ValueError) as err:
        raise UserError(str(err)) from None
    print(report.summary())
    if report.decodable == 0:
        raise UserError(f"no decodable video under {args.data_root}")
    return 0


def data_configs(space: dict[str, Any]) -> list[dict[str, Any]]:
    """Every distinct ``data`` section a sweep's trials will get (grid axes expanded)."""
    from orchestrator.space import grid_axes, set_path

    data = space["data"]
    axes = {key: values for key, values in grid_axes({"data": data}).items()}
    configs = []
    for combo in itertools.product(*axes.values()) if axes else [()]:
        resolved = {"data": dict(data)}
        for key, value in zip(axes, combo, strict=True):
            set_path(resolved, key, value)
        for key, value in resolved["data"].items():
            if isinstance(value, dict) or type(value).__module__.startswith("ray."):
                raise UserError(f"data.{key} varies per trial in a way `data cache` cannot "
                                "expand; give it one value with --set")
        if resolved["data"] not in configs:
            configs.append(resolved["data"])
    return configs


def _cache(args: argparse.Namespace) -> int:
    from orchestrator.plan import make_plan
    from trainables.config import ConfigError
    from trainables.data.errors import DatasetMissingError
    from trainables.data.registry import load_dataset
    from trainables.data.video.clips import ClipSplits

    experiment = load_preset(args.preset)
    if experiment.trainable != "video":
        raise UserError(f"preset {experiment.name} is not a video preset; its data needs no "
                        "clip cache")
    plan = make_plan(experiment, sweep_options(args))
    for config in data_configs(plan.space):
        try:
            splits = load_dataset(config)
        except (DatasetMissingError, ConfigError) as err:
            raise UserError(str(err)) from None
        assert isinstance(splits, ClipSplits)
        store = splits.store
        state = "hit (already decoded)" if store.hit else "miss (decoded now)"
        print(f"{config['name']}: {state}: {len(store.label)} videos, {len(store.frames)} "
              f"frames, {store.nbytes / 2**20:.0f} MiB in {store.path}")
        if store.skipped:
            print(f"  skipped {len(store.skipped)} undecodable video(s):", file=sys.stderr)
            for name, reason in store.skipped[:10]:
                print(f"    {name}: {reason}", file=sys.stderr)
    return 0
