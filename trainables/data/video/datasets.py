"""From a dataset index to `ClipSplits`: pick the videos, open (or build) their clip store.

Shared by HMDB51 and WLASL so both get the same cache, the same skipped-file accounting and
the same one-line description a trial reports as its ``data_note``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainables.data.node_cache import default_cache_dir
from trainables.data.splits import stratified_subset
from trainables.data.video.clips import ClipSplits
from trainables.data.video.index import VideoEntry, VideoIndex
from trainables.data.video.sampling import FrameSampling
from trainables.data.video.store import open_or_build


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
    val_subset: str,
    test_subset: str | None,
    use_bbox: bool = False,
    limit_train: int | None = None,
    split_seed: int = 0,
    eval_clips: int | None = None,
    cache_dir: Path | None = None,
    workers: int | None = None,
) -> ClipSplits:
    """Clips of ``index`` for training: train windows random, ``val_subset`` for validation."""
    subsets = tuple(dict.fromkeys(s for s in ("train", val_subset, test_subset) if s))
    entries = select_entries(index, subsets, limit_train=limit_train, split_seed=split_seed)
    store = open_or_build(dataset, entries, sampling, size, cache_dir or default_cache_dir(),
                          use_bbox=use_bbox, workers=workers)

    def positions(name: str | None) -> np.ndarray | None:
        if name is None:
            return None
        return np.flatnonzero(store.subset == name)

    train, val, test = positions("train"), positions(val_subset), positions(test_subset)
    counts = ", ".join(f"{name} {len(positions(name))}" for name in subsets)
    parts = [f"{index.description}; using {counts} videos"]
    if limit_train is not None:
        parts.append(f"limit_train {limit_train}")
    if val_subset == "test":
        parts.append("val = the test list (the source's protocol)")
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
