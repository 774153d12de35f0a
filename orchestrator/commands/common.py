"""Pieces shared by subcommands: loading a preset as a user error, not a traceback."""

from __future__ import annotations

import argparse

from orchestrator.errors import UserError


def load_preset(name: str):
    from search_spaces.registry import PresetFileError, UnknownPresetError, load_experiment

    try:
        return load_experiment(name)
    except (UnknownPresetError, PresetFileError) as err:
        raise UserError(str(err)) from None


def verbosity(args) -> int:
    return 0 if getattr(args, "quiet", False) else 1 + min(getattr(args, "verbose", 0), 1)


def add_sweep_arguments(parser) -> None:
    """Options that change what a sweep contains; `show` takes them too, to preview a run."""
    group = parser.add_argument_group("sweep")
    group.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. train.lr=0.01 or model.attention=[none,se] "
                            "(a list makes a grid axis); a domain tunes the key with --samples: "
                            "loguniform(a,b) uniform(a,b) quniform(a,b,q) randint(a,b) "
                            "choice([x,y]); repeatable")
    group.add_argument("--profile", dest="profiles", action="append", default=[], metavar="NAME",
                       help="apply one of the preset's named override bundles (see `show`), "
                            "before any --set; repeatable")
    group.add_argument("--seeds", type=int, help="seeds per variant (default: the preset's)")
    group.add_argument("--max-seeds", type=int, metavar="M",
                       help="seeds until decided: after --seeds K per arm, arms still "
                            "inconclusive against the baseline (and the baseline) get "
                            "--seed-batch more at a time until each is better, worse or "
                            "equivalent, or has M (default: K, a fixed number)")
    group.add_argument("--seed-batch", type=int, metavar="B",
                       help="seeds added to each undecided arm per look (default 2)")
    group.add_argument("--alpha", type=float,
                       help="error rate of the verdicts over the whole run, split over the "
                            "planned looks (default 0.05)")
    group.add_argument("--margin", type=float,
                       help="equivalence margin in the metric's units: an arm this close to "
                            "the baseline is 'equivalent' (default: the preset's, else 0.005, "
                            "half an accuracy point)")
    group.add_argument("--scheduler",
                       choices=("halving-per-variant", "asha-per-variant", "asha", "fifo"),
                       help="how tuning candidates are stopped early (default: the preset's): "
                            "halving-per-variant (synchronous, equal budget per arm), "
                            "asha-per-variant (asynchronous, per arm), asha (all arms "
                            "pooled), fifo (never)")
    group.add_argument("--samples", type=int,
                       help="tuning candidates per arm (default 1: the source's recipe, no "
                            "tuning); N > 1 tunes every arm with N candidates, then replicates "
                            "each arm's best on --seeds fresh seeds")
    group.add_argument("--search", choices=("random", "optuna", "grid"),
                       help="how candidates are drawn with --samples > 1: random (the same "
                            "Latin-hypercube draws for every arm) or optuna (one TPE study per "
                            "arm); 'grid' is the older name of random")
    group.add_argument("--search-seed", type=int,
                       help="seed of the candidate draws (default fixed: two runs draw the "
                            "same candidates)")
    group.add_argument("--data-root",
                       help="where the dataset is: a directory (local or shared), or a bucket "
                            "URI (s3://bucket/prefix, gs://..., S3-compatible stores via "
                            "$AWS_ENDPOINT_URL or ?endpoint_override=HOST:PORT&scheme=http) "
                            "that each node copies once into its cache (default: bundled data)")
    group.add_argument("--weights-root", metavar="URI",
                       help="a bucket URI or directory holding pretrained weight files "
                            "(torchvision's *.pth): each node copies them once into its "
                            "torch hub cache before building a pretrained model")
    group.add_argument("--smoke", action="store_true",
                       help="two epochs of a few batches: checks the plumbing in about a minute on CPU")
    resources = parser.add_argument_group("resources")
    resources.add_argument("--max-concurrent", type=int, help="at most this many trials at once")
    resources.add_argument("--cpus-per-trial", type=float, help="CPUs per trial (default: the preset's)")
    resources.add_argument("--gpus-per-trial", type=_gpus,
                           help="GPUs per trial; fractions pack several trials on one GPU "
                                "(e.g. 0.25); auto: a probe trains a few steps of each arm "
                                "on a GPU first and packs as many trials as fit 85%% of its "
                                "memory and the node's CPUs")


def _gpus(text: str) -> float | str:
    """A number of GPUs per trial, or "auto": measured by a probe before the sweep."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a number (e.g. 0.25) or auto") from None


def sweep_options(args):
    from orchestrator.plan import SweepOptions

    for flag, value in (("--seeds", args.seeds), ("--samples", args.samples),
                        ("--max-concurrent", args.max_concurrent)):
        if value is not None and value < 1:
            raise UserError(f"{flag} {value}: must be at least 1")
    for flag, value in (("--cpus-per-trial", args.cpus_per_trial), ("--gpus-per-trial", args.gpus_per_trial)):
        if isinstance(value, float) and value < 0:
            raise UserError(f"{flag} {value}: must not be negative")
    return SweepOptions(
        overrides=tuple(args.overrides), profiles=tuple(args.profiles), seeds=args.seeds, scheduler=args.scheduler,
        search=args.search, samples=args.samples, max_concurrent=args.max_concurrent,
        cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
        data_root=args.data_root, weights_root=args.weights_root, smoke=args.smoke,
        search_seed=args.search_seed,
        max_seeds=args.max_seeds, seed_batch=args.seed_batch, alpha=args.alpha,
        margin=args.margin,
    )
