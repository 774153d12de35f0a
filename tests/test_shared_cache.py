"""Cache entries built twice at once in a shared directory (an NFS home as the cache dir),
where the fcntl lock may not reach from one node to the other: the loser must not crash.

Each test replays the race deterministically: the second build starts before the first is
published (it passed the "already there?" check) and publishes after it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest

SIZE = (48, 64)


def test_clip_store_loser_of_the_rename_uses_the_winners_store(tmp_path):
    from tests.conftest import needs_video_codecs

    needs_video_codecs()
    from trainables.data.video import store as clip_store
    from trainables.data.video.hmdb51 import load_hmdb51_index
    from trainables.data.video.sampling import FrameSampling
    from trainables.data.video.synth import write_hmdb51

    write_hmdb51(tmp_path / "hmdb51", classes=2, videos_per_class=3, seconds=1.0, fps=8,
                 size=(64, 80), seed=1)
    entries = list(load_hmdb51_index(tmp_path / "hmdb51", split=1).entries)
    sampling = FrameSampling("rate", 4, clip_seconds=1.0)
    cache = tmp_path / "shared-cache"
    cache.mkdir()
    key = clip_store.store_key("hmdb51", entries, sampling, SIZE, False)
    folder = cache / f"clips-hmdb51-{key}"

    # Node A and node B both found no store; A publishes first, then B finishes decoding.
    clip_store._build(folder, entries, sampling, SIZE, False, 1, None)
    winner = (folder / "meta.json").stat().st_mtime_ns
    clip_store._build(folder, entries, sampling, SIZE, False, 1, None)  # ENOTEMPTY before

    assert (folder / "meta.json").stat().st_mtime_ns == winner
    assert sorted(p.name for p in cache.iterdir()) == [folder.name]  # B's temp copy is gone
    opened = clip_store.open_or_build("hmdb51", entries, sampling, SIZE, cache)
    assert opened.hit and opened.frames.shape[1:] == (*SIZE, 3)


def test_clip_store_still_raises_when_the_winners_store_is_unreadable(tmp_path):
    from trainables.data.video import store as clip_store

    temp, folder = tmp_path / ".temp", tmp_path / "clips-x"
    temp.mkdir()
    folder.mkdir()
    (folder / "meta.json").write_text("{torn")
    with pytest.raises(OSError, match=r"not empty|exists"):
        clip_store._publish(temp, folder)


def test_array_cache_built_twice_without_a_working_lock_stays_readable(tmp_path, monkeypatch):
    """``cached_arrays`` renames a file over a file (atomic, no ENOTEMPTY): the loser's
    identical file replaces the winner's and both processes get the arrays."""
    from trainables.data import node_cache

    monkeypatch.setattr(node_cache, "exclusive", lambda path: contextlib.nullcontext())
    calls: list[str] = []

    def build_b():
        calls.append("b")
        return {"x": np.arange(5)}, {"by": "b"}

    def build_a():
        calls.append("a")
        node_cache.cached_arrays(tmp_path, "k", build_b)  # the other node publishes first
        return {"x": np.arange(5)}, {"by": "a"}

    result = node_cache.cached_arrays(tmp_path, "k", build_a)
    assert calls == ["a", "b"] and not result.hit
    again = node_cache.cached_arrays(tmp_path, "k", build_b)
    assert again.hit and np.array_equal(again.arrays["x"], np.arange(5))
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["k.npz"]  # no temp files
