"""Open a sweep's data cheaply on the driver before Ray starts, and refuse data no trial can use.

Why: the presence check (``plan._check_data``) only sees that the files are there. A CIFAR
batch that is not a pickle, an FSDD folder of garbage WAVs or a video tree where nothing
decodes would otherwise be found by every trial on its own, after Ray has started: a minute
or more, then a page of identical per-trial errors. Here each dataset the sweep names is
opened with the loaders' own readers and a bad one becomes one line naming the files.

Cheap for good data, and no stricter than the loaders: CIFAR files are each fatal to a
trial, so all of them are read (CIFAR-10's 180 MB: about a second); FSDD recordings and
videos are skipped and counted by the loaders when only some are bad, so the check stops at
the first usable one: a handful spread over the dataset first, then the rest in order for a
few seconds at most. It fails only when none of those tried is usable.

Data a sweep reads from somewhere the driver cannot see is not checked: bundled data (no
root) and a root that does not exist here (with --address the data may live only on the
worker nodes; without it the presence check has already refused a missing root).

A bucket root (s3://, gs://) is checked without downloading the dataset: the loaders run on
a tree of empty placeholders named like the bucket's objects (``remote_view``), and only the
files a check reads are fetched: the FSDD recordings and videos it tries, the HMDB51 split
lists or the WLASL index, and CIFAR's small meta file (the 30 MB batches are left to the
trials, which each node reads from its own copy).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from orchestrator.errors import UserError
from orchestrator.space import grid_axes, set_path
from trainables.data.stores import StoreError, is_uri

SHOWN = 3            # bad files named in the error; the rest are counted
FSDD_TRIES = 16      # recordings tried first, spread over the sorted list
VIDEO_TRIES = 8      # videos tried first, spread over the index
FSDD_BUDGET_S = 5.0  # then more, until one is usable or this time has passed
VIDEO_BUDGET_S = 10.0
T = TypeVar("T")


def check_space(space: dict[str, Any]) -> None:
    """Raise UserError when a dataset the sweep's trials will load cannot be used at all."""
    for cfg in _data_configs(space):
        check_data(cfg)


def check_data(cfg: Any) -> None:
    """One dataset, given its typed config (``trainables.data.registry.parse_data_config``)."""
    root = getattr(cfg, "root", None)
    if not root:
        return  # bundled with the package
    if is_uri(root):
        _check_remote(cfg, root)
        return
    path = Path(root).expanduser()
    if not path.exists():
        return  # the presence check's business; on a cluster the data may be on workers only
    if cfg.name in ("cifar10", "cifar100"):
        _check_cifar(path, 10 if cfg.name == "cifar10" else 100, getattr(cfg, "label_mode", "fine"))
    elif cfg.name == "fsdd":
        _check_fsdd(path, cfg.sample_rate)
    elif cfg.name in ("hmdb51", "wlasl"):
        _check_video(cfg, path)


def _check_remote(cfg: Any, root: str) -> None:
    """``check_data`` for a bucket root: the same checks on placeholders, fetching only the
    files they read; messages name the URI."""
    from trainables.data.remote_view import sparse_view

    try:
        view = sparse_view(root)
        if cfg.name in ("cifar10", "cifar100"):
            _check_cifar(view.root, 10 if cfg.name == "cifar10" else 100,
                         getattr(cfg, "label_mode", "fine"), fetch=view.fetch)
        elif cfg.name == "fsdd":
            _check_fsdd(view.root, cfg.sample_rate, fetch=view.fetch)
        elif cfg.name in ("hmdb51", "wlasl"):
            _check_video(cfg, view.root, fetch=view.fetch)
    except StoreError as err:
        raise UserError(f"cannot use the data root {err}") from None
    except UserError as err:
        raise UserError(view.shown(str(err))) from None


def _data_configs(space: dict[str, Any]) -> Iterator[Any]:
    """The typed data config of each distinct dataset (name, root and index settings) the
    trials get; keys a sampler varies per trial keep their defaults, as they do not change
    which files are read."""
    from trainables.config import ConfigError
    from trainables.data.registry import parse_data_config

    data = space.get("data")
    if not isinstance(data, dict):
        return
    axes = grid_axes({"data": data})
    seen = set()
    for combo in itertools.product(*axes.values()):
        resolved = {"data": copy.deepcopy(data)}
        for key, value in zip(axes, combo, strict=True):
            set_path(resolved, key, value)
        plain = {k: v for k, v in resolved["data"].items() if _is_plain(v)}
        try:
            cfg = parse_data_config(plain)
        except ConfigError:
            continue  # the plan's config checks report it
        key = tuple(getattr(cfg, field, None) for field in
                    ("name", "root", "split", "classes", "glosses", "label_mode", "sample_rate"))
        if key not in seen:
            seen.add(key)
            yield cfg


def _is_plain(value: Any) -> bool:
    return not isinstance(value, dict) and not type(value).__module__.startswith("ray.")


def _spread_first(items: Sequence[T], count: int) -> list[T]:
    """All items, beginning with ``count`` spread evenly from first to last: damage confined
    to one class folder or one speaker does not hide the good files behind it."""
    if len(items) <= count:
        return list(items)
    step = (len(items) - 1) / (count - 1)
    first = sorted({round(k * step) for k in range(count)})
    chosen = set(first)
    return [items[k] for k in first] + [item for k, item in enumerate(items) if k not in chosen]


def _search_usable(items: Sequence[T], problem: Callable[[T], str | None], *, tries: int,
                   budget_s: float) -> tuple[bool, list[tuple[T, str]]]:
    """(whether one item is usable, the unusable ones met before it, with reasons).

    Tries ``tries`` items spread over the list, then the rest in order until one is usable,
    all were tried, or ``budget_s`` has passed: good data costs one read, and data that is
    mostly bad is only refused when nothing usable turned up in the time given.
    """
    bad: list[tuple[T, str]] = []
    deadline = time.monotonic() + budget_s
    for position, item in enumerate(_spread_first(items, tries)):
        if position >= tries and time.monotonic() > deadline:
            break
        reason = problem(item)
        if reason is None:
            return True, bad
        bad.append((item, reason))
    return False, bad


def _tried(bad: Sequence[Any], total: int, what: str, budget_s: float) -> str:
    if len(bad) == total:
        return f"none of the {total} {what}"
    return f"none of {len(bad)} {what} tried in {budget_s:.0f} s (of {total})"


def _listing(bad: Sequence[tuple[str, str]]) -> str:
    shown = ", ".join(f"{name} ({_short(reason)})" for name, reason in bad[:SHOWN])
    return shown + (f" and {len(bad) - SHOWN} more" if len(bad) > SHOWN else "")


def _short(reason: str, limit: int = 100) -> str:
    text = " ".join(reason.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------------- CIFAR


def _check_cifar(root: Path, classes: int, label_mode: str,
                 fetch: Callable[[Path], Path] | None = None) -> None:
    """Read every CIFAR file with the loader's readers: any bad one is fatal to every trial.
    With ``fetch`` (a bucket's placeholders) only the meta file is fetched and read."""
    from trainables.data import cifar

    directory = cifar.find_cifar(root, classes)
    if directory is None:
        return  # the presence check names what is missing
    if classes == 10:
        reads = [("batches.meta", lambda p: cifar._read_names(p, "label_names", 10, classes))]
        reads += [(name, lambda p: cifar._read_batch(p, "labels", 10, classes))
                  for name in (*cifar.CIFAR10_TRAIN, "test_batch")]
    else:
        count = 100 if label_mode == "fine" else 20
        reads = [("meta", lambda p: cifar._read_names(p, f"{label_mode}_label_names", count,
                                                      classes))]
        reads += [(name, lambda p: cifar._read_batch(p, f"{label_mode}_labels", count, classes))
                  for name in ("train", "test")]
    if fetch is not None:
        reads = reads[:1]
    bad = []
    for name, read in reads:
        path = directory / name
        if fetch is not None:
            fetch(path)
        try:
            read(path)
        except cifar.DatasetCorruptError as err:
            # The loader's message is "<path>: <problem>. <why fatal>. <what to do>".
            problem = str(err).removeprefix(f"{path}: ").split(". A corrupt CIFAR file")[0]
            bad.append((name, problem))
    if bad:
        _, _, archive = cifar._layout(classes)
        raise UserError(
            f"dataset cifar{classes} under {directory}: {len(bad)} of {len(reads)} files are "
            f"corrupt: {_listing(bad)}; every trial needs all of them: re-extract {archive} "
            f"(the python version) from {cifar.URL} into {root}")


# ---------------------------------------------------------------------------------- FSDD


def _check_fsdd(root: Path, sample_rate: int,
                fetch: Callable[[Path], Path] | None = None) -> None:
    """Fail only when none of a handful of recordings reads: the loader skips the odd bad one.
    ``fetch`` gives a bucket's placeholder its bytes before it is read."""
    from trainables.data.errors import DatasetMissingError
    from trainables.data.fsdd import LAYOUT_HINT, UnreadableAudio, find_recordings, read_wave

    try:
        recordings, _ = find_recordings(root)
    except DatasetMissingError as err:
        raise UserError(f"dataset fsdd: {err}") from None
    def problem(recording) -> str | None:
        if fetch is not None:
            fetch(recording.path)
        try:
            read_wave(recording.path, sample_rate)
        except UnreadableAudio as err:
            return str(err)
        return None

    usable, bad = _search_usable(recordings, problem, tries=FSDD_TRIES, budget_s=FSDD_BUDGET_S)
    if usable:
        return
    none = _tried(bad, len(recordings), "recordings", FSDD_BUDGET_S)
    raise UserError(
        f"dataset fsdd under {recordings[0].path.parent}: {none} could be read: "
        f"{_listing([(r.path.name, why) for r, why in bad])}; replace them with readable WAVs "
        f"({LAYOUT_HINT}) or pass --data-root with a good copy")


# --------------------------------------------------------------------------------- video


def _check_video(cfg: Any, root: Path, fetch: Callable[[Path], Path] | None = None) -> None:
    """Fail only when none of a few listed videos decodes: the loader skips the odd bad one.
    ``fetch`` gives a bucket's placeholders their bytes: the index files, then each video tried."""
    from trainables.data.errors import DatasetMissingError
    from trainables.data.video.check import _name, check_entry
    from trainables.data.video.decode import DecoderMissingError

    if fetch is not None:
        _fetch_index_files(cfg, root, fetch)
    try:
        if cfg.name == "hmdb51":
            from trainables.data.video.hmdb51 import load_hmdb51_index

            index = load_hmdb51_index(root, split=cfg.split, classes=cfg.classes)
        else:
            from trainables.data.video.wlasl import load_wlasl_index

            index = load_wlasl_index(root, num_glosses=cfg.glosses)
    except (DatasetMissingError, ValueError) as err:
        raise UserError(f"dataset {cfg.name} under {root}: {err}") from None
    def problem(entry) -> str | None:
        if fetch is not None:
            fetch(entry.path)
        with _native_stderr_silenced():
            reason, _ = check_entry(entry)
        # decord repeats the path in its reason; the listing names the file already.
        path = str(entry.path)
        return None if reason is None else reason.replace(f"{path}...", "the file").replace(
            path, "the file")

    try:
        usable, bad = _search_usable(index.entries, problem, tries=VIDEO_TRIES,
                                     budget_s=VIDEO_BUDGET_S)
    except DecoderMissingError:
        return  # no decoder on the driver: the trials, wherever they run, will say so
    if usable:
        return
    none = _tried(bad, len(index.entries), "listed videos", VIDEO_BUDGET_S)
    raise UserError(
        f"dataset {cfg.name} under {root}: {none} decode: "
        f"{_listing([(_name(e), why) for e, why in bad])}; see them all with `python -m "
        f"orchestrator data check {cfg.name} --data-root {root}{_check_flags(cfg)}`, then "
        "re-download or re-extract the videos")


def _fetch_index_files(cfg: Any, root: Path, fetch: Callable[[Path], Path]) -> None:
    """The files a video index is read from: HMDB51's split lists of the chosen split,
    WLASL's JSON index."""
    if cfg.name == "hmdb51":
        from trainables.data.video.hmdb51 import SPLIT_DIR, find_hmdb51

        base = find_hmdb51(root)
        for path in (base / SPLIT_DIR).glob(f"*_test_split{cfg.split}.txt") if base else ():
            fetch(path)
    else:
        from trainables.data.video.wlasl import INDEX_FILE, find_wlasl

        base = find_wlasl(root)
        if base is not None:
            fetch(base / INDEX_FILE)


def _check_flags(cfg: Any) -> str:
    """The `data check` options that select the same videos as ``cfg`` (beyond defaults)."""
    if cfg.name == "hmdb51":
        return f" --split {cfg.split}" if cfg.split != 1 else ""
    return f" --glosses {cfg.glosses}" if cfg.glosses != 10 else ""


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """decord and FFmpeg write a line per broken file straight to file descriptor 2, past
    Python; the preflight's own one line says what they would. Run before Ray starts, in the
    driver's only thread, so nothing else is writing there meanwhile."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable stderr: nothing to keep clean
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
