"""From a dataset index to `ClipSplits`: pick the videos, open (or build) their clip store.

Shared by HMDB51 and WLASL so both get the same cache, the same skipped-file accounting and
the same one-line description a trial reports as its ``data_note``.

Validation held out of training (``val_fraction`` > 0) is chosen among the store's training
videos *after* the store is opened, so the store, its key and its decoded frames are the
same with or without a holdout: changing ``val_fraction`` never decodes anything again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from trainables.config import ConfigError
from trainables.data.node_cache import default_cache_dir
from trainables.data.splits import holdout_split, stratified_subset
from trainables.data.video.clips import ClipSplits
from trainables.data.video.index import VideoEntry, VideoIndex
from trainables.data.video.sampling import FrameSampling
from trainables.data.video.store import ClipStore, open_or_build


def select_entries(index: VideoIndex, subsets: tuple[str, ...], *, limit_train: int | None,
                   split_seed: int) -> list[VideoEntry]:
    """The index's videos of ``subsets``; ``limit_train`` keeps a class-balanced training subset."""
    chosen = []
    for name in subsets:
        entries = list(index.subset(name))
        if name == "train" and limit_train is not None:
            labels = np.array([e.label for e in entries], dtype=np.int64)
            entries = [entries[i] for i in stratified_subset(labels, limit_train, split_seed)]
        chosen.extend(entries)
    return chosen


def holdout_videos(labels: np.ndarray, groups: Sequence[str], fraction: float,
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, val) indices into ``labels``: ``fraction`` of the groups, stratified by
    class (`holdout_split`), held out whole, so videos of one group never straddle the split.

    A group is (label, ``groups[i]``); with one group per video this is a plain stratified
    holdout of videos. Deterministic for the same labels, groups (in order) and ``seed``.
    """
    labels = np.asarray(labels, dtype=np.int64)
    keys = list(zip(labels.tolist(), groups, strict=True))
    first_seen = {key: number for number, key in enumerate(dict.fromkeys(keys))}
    member = np.array([first_seen[key] for key in keys], dtype=np.int64)
    group_labels = np.array([label for label, _ in first_seen], dtype=np.int64)
    _, val_groups = holdout_split(group_labels, float(fraction), seed)
    is_val = np.isin(member, val_groups)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def clip_splits(
    index: VideoIndex,
    *,
    dataset: str,
    sampling: FrameSampling,
    size: tuple[int, int],
    crop: int,
    flip: bool,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    val_subset: str | None,
    test_subset: str | None,
    use_bbox: bool = False,
    limit_train: int | None = None,
    split_seed: int = 0,
    val_fraction: float = 0.0,
    source_of: Callable[[str], str] | None = None,
    eval_clips: int | None = None,
    cache_dir: Path | None = None,
    workers: int | None = None,
) -> ClipSplits:
    """Clips of ``index`` for training: train windows random, ``val_subset`` for validation.

    ``val_subset`` None holds validation out of training instead: ``val_fraction`` of the
    stored training videos, stratified by class with ``split_seed``, whole source videos at a
    time when ``source_of(video_id)`` names them (else each video is its own source). The
    fraction counts sources, so the share of videos is close to it, not exact. The holdout
    is taken after ``limit_train`` (which picks the videos the store holds), so the store is
    the one runs without a holdout open; ``test_subset`` stays the test split.
    """
    if (val_subset is None) == (val_fraction <= 0):
        raise ValueError("clip_splits needs either val_subset or val_fraction > 0, not "
                         f"both or neither (val_subset={val_subset!r}, "
                         f"val_fraction={val_fraction})")
    subsets = tuple(dict.fromkeys(s for s in ("train", val_subset, test_subset) if s))
    entries = select_entries(index, subsets, limit_train=limit_train, split_seed=split_seed)
    store = open_or_build(dataset, entries, sampling, size, cache_dir or default_cache_dir(),
                          use_bbox=use_bbox, workers=workers)

    def positions(name: str | None) -> np.ndarray | None:
        if name is None:
            return None
        return np.flatnonzero(store.subset == name)

    train, val, test = positions("train"), positions(val_subset), positions(test_subset)
    if val is None:
        train, val = _held_out(store, train, val_fraction, split_seed, source_of,
                               index.class_names)
        counts = ", ".join(f"{name} {len(part)}" for name, part in
                           (("train", train), ("val", val), ("test", test)) if part is not None)
    else:
        counts = ", ".join(f"{name} {len(positions(name))}" for name in subsets)
    parts = [f"{index.description}; using {counts} videos"]
    if limit_train is not None:
        parts.append(f"limit_train {limit_train}")
    if val_subset == "test":
        parts.append("val = the test list (the source's protocol)")
    elif val_subset is None:
        whole = ", whole source videos" if source_of is not None else ""
        held = (f"val = {val_fraction * 100:g}% of train held out (stratified{whole}, "
                f"seed {split_seed})")
        parts.append(held + (", test = the split's test list" if test is not None else ""))
    parts.append(store.describe())
    if index.missing:
        parts.append(f"{len(index.missing)} listed video(s) absent on disk")
    if store.skipped:
        names = ", ".join(name for name, _ in store.skipped[:5])
        more = f" and {len(store.skipped) - 5} more" if len(store.skipped) > 5 else ""
        parts.append(f"skipped {len(store.skipped)} undecodable video(s): {names}{more}")
    return ClipSplits(
        store=store, train=train, val=val,
        test=test if test_subset and test_subset != val_subset else None,
        frames=sampling.frames, crop=crop, flip=flip, mean=mean, std=std,
        num_classes=len(index.class_names), class_names=index.class_names,
        description="; ".join(parts), eval_clips=eval_clips, val_is_test=val_subset == "test",
    )


def _held_out(store: ClipStore, train: np.ndarray, fraction: float, seed: int,
              source_of: Callable[[str], str] | None,
              class_names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) store positions: ``fraction`` of the training videos held out."""
    labels = store.label[train]
    video_ids = [str(v) for v in store.video_id[train]]
    groups = [source_of(v) for v in video_ids] if source_of is not None else video_ids
    try:
        keep, held = holdout_videos(labels, groups, fraction, seed)
    except ValueError as err:
        raise ConfigError(f"data.val_fraction={fraction}: {err} (of {len(train)} training "
                          "videos)") from None
    emptied = sorted(set(labels.tolist()) - set(labels[keep].tolist()))
    if emptied:
        names = ", ".join(class_names[label] for label in emptied[:5])
        raise ConfigError(f"data.val_fraction={fraction} holds out every training video of "
                          f"{len(emptied)} class(es) ({names}); lower it or use more videos")
    return train[keep], train[held]
