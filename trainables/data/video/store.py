"""The decoded-clip store: every video of a dataset decoded once per node, memory-mapped.

Why: decoding is the slow part of video training (an H.264 or MPEG-4 frame costs far more
to decode than a small 3-D CNN step costs to run on a GPU), and a sweep runs the same videos
through dozens of trials. Decoding once per node into one uint8 array on local disk, which
every trial maps read-only, turns every later epoch of every trial into memory copies, and
the operating system's page cache shares the bytes between trials instead of each trial
holding its own copy.

Safety, as in `trainables.data.node_cache`: the first trial to need a store takes an
exclusive lock and builds it in a temporary folder; trials that start at the same moment
wait on the lock and then open the finished store; the folder appears under its final name
by one ``os.replace``, so nobody ever maps a half-written array; where two nodes build one
store in a shared directory, the second rename fails and that node uses the first node's
store (``_publish``). The key hashes the dataset, its video files (name, size, mtime), the
sampling and the frame size, so a changed setting or file makes a new store instead of
serving stale frames.

Layout of ``<cache>/clips-<key>/``: ``frames.npy`` (total frames, H, W, 3) uint8;
``index.npz`` with per-video ``start``, ``length``, ``label``, ``subset``, ``video_id``;
``meta.json`` with what was skipped and how long decoding took.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainables.data.node_cache import cache_key, exclusive
from trainables.data.video.decode import CorruptVideoError, VideoInfo, decode_frames, probe
from trainables.data.video.index import VideoEntry
from trainables.data.video.sampling import FrameSampling, stored_indices

log = logging.getLogger(__name__)

STORE_VERSION = 1
INDEX_FIELDS = ("start", "length", "label", "subset", "video_id")


@dataclass(frozen=True)
class ClipStore:
    """A finished store: frames memory-mapped read-only, per-video index arrays in memory."""

    frames: np.ndarray               # (total, H, W, 3) uint8, np.memmap
    start: np.ndarray                # (videos,) int64 first row in `frames`
    length: np.ndarray               # (videos,) int64 stored frames
    label: np.ndarray                # (videos,) int64
    subset: np.ndarray               # (videos,) str: train | val | test
    video_id: np.ndarray             # (videos,) str
    skipped: tuple[tuple[str, str], ...]  # (video, reason) left out as undecodable
    path: Path
    hit: bool                        # True: opened an existing store; False: decoded it now
    build_seconds: float             # how long decoding took when it was built

    @property
    def nbytes(self) -> int:
        return int(self.frames.nbytes)

    def describe(self) -> str:
        """One line for a trial's data note: hit or miss, size, and what decoding cost."""
        state = "hit" if self.hit else "miss (decoded now)"
        return (f"clip cache {state}: {len(self.label)} videos, {len(self.frames)} frames "
                f"{self.frames.shape[1]}x{self.frames.shape[2]}, {self.nbytes / 2**20:.0f} MiB, "
                f"decoded in {self.build_seconds:.1f} s")


def store_key(dataset: str, entries: Sequence[VideoEntry], sampling: FrameSampling,
              size: tuple[int, int], use_bbox: bool) -> str:
    files = []
    for entry in entries:
        stat = entry.path.stat()
        files.append((entry.video_id, entry.path.name, stat.st_size, stat.st_mtime_ns,
                      entry.label, entry.subset, entry.frame_start, entry.frame_end,
                      entry.bbox if use_bbox else None))
    return cache_key({"dataset": dataset, "files": files, "sampling": sampling.describe(),
                      "size": list(size), "bbox": use_bbox, "version": STORE_VERSION})


def open_or_build(
    dataset: str,
    entries: Sequence[VideoEntry],
    sampling: FrameSampling,
    size: tuple[int, int],
    cache_dir: Path,
    *,
    use_bbox: bool = False,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ClipStore:
    """The store for these videos, decoding them only if no finished store exists yet.

    ``progress(done, total)`` is called while decoding (the ``data cache`` command prints it).
    """
    key = store_key(dataset, entries, sampling, size, use_bbox)
    folder = cache_dir / f"clips-{dataset}-{key}"
    store = _try_open(folder)
    if store is not None:
        return store
    cache_dir.mkdir(parents=True, exist_ok=True)
    with exclusive(cache_dir / f".clips-{dataset}-{key}.lock"):
        store = _try_open(folder)  # another trial finished it while we waited
        if store is not None:
            return store
        if folder.exists():  # unreadable leftovers of an older layout: rebuild
            shutil.rmtree(folder)
        _build(folder, entries, sampling, size, use_bbox, workers, progress)
    store = _try_open(folder)
    if store is None:
        raise RuntimeError(f"the clip store {folder} was just built but cannot be read")
    return ClipStore(**{**store.__dict__, "hit": False})


def _try_open(folder: Path) -> ClipStore | None:
    if not (folder / "meta.json").exists():
        return None
    try:
        meta = json.loads((folder / "meta.json").read_text())
        frames = np.load(folder / "frames.npy", mmap_mode="r")
        with np.load(folder / "index.npz", allow_pickle=False) as archive:
            index = {name: archive[name] for name in INDEX_FIELDS}
        if meta.get("version") != STORE_VERSION or len(frames) != meta["total_frames"]:
            raise ValueError("version or size does not match meta.json")
    except (OSError, ValueError, KeyError) as err:
        log.warning("clip store %s is unreadable (%s); rebuilding it", folder, err)
        return None
    return ClipStore(frames=frames, **index, skipped=tuple(map(tuple, meta["skipped"])),
                     path=folder, hit=True, build_seconds=meta["build_seconds"])


def _build(folder: Path, entries: Sequence[VideoEntry], sampling: FrameSampling,
           size: tuple[int, int], use_bbox: bool, workers: int | None,
           progress: Callable[[int, int], None] | None) -> None:
    started = time.perf_counter()
    workers = workers or min(8, os.cpu_count() or 1)
    skipped: list[tuple[str, str]] = []

    def look(entry: VideoEntry) -> VideoInfo | str:
        try:
            return probe(entry.path)
        except CorruptVideoError as err:
            return str(err)

    # Pass 1: frame counts and rates, to size the array and place every video in it.
    with ThreadPoolExecutor(workers) as pool:
        infos = list(pool.map(look, entries))
    plan: list[tuple[VideoEntry, np.ndarray]] = []
    for entry, info in zip(entries, infos, strict=True):
        if isinstance(info, str):
            skipped.append((entry.path.name, info))
        else:
            plan.append((entry, stored_indices(sampling, info, entry)))
    lengths = np.array([len(indices) for _, indices in plan], dtype=np.int64)
    starts = np.cumsum(lengths) - lengths
    total = int(lengths.sum())

    cache_root = folder.parent
    temp = Path(tempfile.mkdtemp(dir=cache_root, prefix=f".{folder.name}.tmp-"))
    try:
        frames = np.lib.format.open_memmap(temp / "frames.npy", mode="w+", dtype=np.uint8,
                                           shape=(total, *size, 3))

        # Pass 2: decode straight into the mapped array (decord releases the GIL).
        def fill(position: int) -> str | None:
            entry, indices = plan[position]
            try:
                clip = decode_frames(entry.path, indices, size=size,
                                     bbox=entry.bbox if use_bbox else None)
            except CorruptVideoError as err:
                return str(err)
            frames[starts[position]: starts[position] + lengths[position]] = clip
            return None

        kept = np.ones(len(plan), dtype=bool)
        with ThreadPoolExecutor(workers) as pool:
            for position, failure in enumerate(pool.map(fill, range(len(plan)))):
                if failure is not None:
                    kept[position] = False
                    skipped.append((plan[position][0].path.name, failure))
                if progress is not None:
                    progress(position + 1, len(plan))
        frames.flush()
        chosen = [entry for (entry, _), keep in zip(plan, kept, strict=True) if keep]
        np.savez(temp / "index.npz", start=starts[kept], length=lengths[kept],
                 label=np.array([e.label for e in chosen], dtype=np.int64),
                 subset=np.array([e.subset for e in chosen], dtype=str),
                 video_id=np.array([e.video_id for e in chosen], dtype=str))
        meta: dict[str, Any] = {"version": STORE_VERSION, "total_frames": total,
                                "skipped": skipped, "sampling": sampling.describe(),
                                "size": list(size), "videos": len(chosen),
                                "build_seconds": round(time.perf_counter() - started, 3)}
        (temp / "meta.json").write_text(json.dumps(meta, indent=1))
        _publish(temp, folder)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def _publish(temp: Path, folder: Path) -> None:
    """Rename the finished ``temp`` store to ``folder``.

    In a cache directory shared by several nodes (an NFS home) the lock may not reach across
    nodes, so another node can finish the same store first: renaming a folder onto a
    non-empty one fails (ENOTEMPTY, or EEXIST on some systems). The same key means the same
    content, so the loser drops its copy and uses the winner's, if that one opens.
    """
    try:
        os.replace(temp, folder)
    except OSError as err:
        if err.errno not in (errno.ENOTEMPTY, errno.EEXIST) or _try_open(folder) is None:
            raise
        log.info("clip store %s was finished by another process; using it", folder)
        shutil.rmtree(temp, ignore_errors=True)
