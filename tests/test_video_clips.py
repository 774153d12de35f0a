"""The decoded-clip store, clip sampling and the loop's view of video data, on real encoded videos."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.conftest import needs_video_codecs
from trainables.config import TrainConfig
from trainables.data.video.decode import VideoInfo, decode_frames
from trainables.data.video.index import VideoEntry
from trainables.data.video.sampling import (
    FrameSampling,
    covering_starts,
    random_starts,
    stored_indices,
    window,
)
from trainables.loop import fit, majority_vote_accuracy
from trainables.seeding import seed_everything

needs_video_codecs()

SIZE = (48, 64)


@pytest.fixture(scope="module")
def hmdb_tree(tmp_path_factory) -> Path:
    from trainables.data.video.synth import write_hmdb51

    root = tmp_path_factory.mktemp("hmdb51")
    write_hmdb51(root, classes=3, videos_per_class=5, seconds=2.0, fps=12, size=(64, 80), seed=3)
    return root


def _index(root: Path):
    from trainables.data.video.hmdb51 import load_hmdb51_index

    return load_hmdb51_index(root, split=1)


def _rate(frames: int = 8) -> FrameSampling:
    return FrameSampling("rate", frames, clip_seconds=2.0)


# ---- sampling ---------------------------------------------------------------------------------

def test_rate_sampling_takes_the_clip_frame_rate_over_the_action():
    info = VideoInfo(num_frames=90, fps=30.0, height=240, width=320)
    entry = VideoEntry(Path("v.avi"), 0, "train", "v")
    indices = stored_indices(FrameSampling("rate", 16, clip_seconds=2.0), info, entry)
    # 16 frames per 2 s is 8 fps: every 3.75th frame of a 30 fps video, 24 over 3 seconds.
    assert len(indices) == 24 and indices[0] == 0 and indices[1] == 3 and indices[2] == 7
    assert indices[-1] <= 89 and np.all(np.diff(indices) > 0)
    ranged = VideoEntry(Path("v.avi"), 0, "train", "v", frame_start=30, frame_end=60)
    inside = stored_indices(FrameSampling("rate", 16, clip_seconds=2.0), info, ranged)
    assert inside.min() >= 30 and inside.max() < 60 and len(inside) == 8


def test_centre_sampling_is_centred_on_the_sign_and_clamped():
    info = VideoInfo(num_frames=100, fps=25.0, height=240, width=320)
    entry = VideoEntry(Path("v.mp4"), 0, "train", "v", frame_start=20, frame_end=61)
    indices = stored_indices(FrameSampling("centre", 8, stride=2), info, entry)
    assert len(indices) == 8 and np.all(np.diff(indices) == 2)
    assert (indices[3] + indices[4]) / 2 == pytest.approx(40, abs=1)  # the middle of 20..60
    short = VideoEntry(Path("v.mp4"), 0, "train", "v", frame_start=0, frame_end=3)
    clamped = stored_indices(FrameSampling("centre", 8, stride=2), info, short)
    assert clamped.min() == 0 and clamped.max() == 2


def test_windows_random_starts_and_covering_windows():
    assert window(20, 4, 8).tolist() == list(range(4, 12))
    assert window(5, 0, 8).tolist() == [0, 1, 2, 3, 4, 0, 1, 2]  # a short video loops
    lengths = np.array([8, 30, 3])
    starts = random_starts(lengths, 8, np.array([0.999, 0.999, 0.5]))
    assert starts.tolist() == [0, 22, 0]
    assert covering_starts(30, 8).tolist() == [0, 7, 15, 22]
    assert covering_starts(30, 8, limit=2).tolist() == [0, 22]
    assert covering_starts(5, 8).tolist() == [0]


def test_majority_vote_scores_each_video_once():
    # video 0: clips say 1, 1, 0 -> 1 (label 1, right); video 1: one clip says 2 (label 0, wrong)
    predicted = torch.tensor([1, 1, 0, 2])
    probs = torch.nn.functional.one_hot(predicted, 3).float()
    labels = torch.tensor([1, 1, 1, 0])
    groups = torch.tensor([5, 5, 5, 9])
    assert majority_vote_accuracy(probs, predicted, labels, groups) == 0.5
    # A tie (one vote each) goes to the class with more summed probability.
    probs = torch.tensor([[0.1, 0.9], [0.45, 0.55]])
    predicted = torch.tensor([1, 0])  # the second clip voted 0 despite its softmax (ties)
    assert majority_vote_accuracy(probs, predicted, torch.tensor([1, 1]),
                                  torch.tensor([0, 0])) == 1.0


# ---- the store ---------------------------------------------------------------------------------

def test_store_decodes_once_then_hits_and_matches_direct_decoding(hmdb_tree, tmp_path):
    from trainables.data.video.store import open_or_build

    entries = list(_index(hmdb_tree).entries)
    first = open_or_build("hmdb51", entries, _rate(), SIZE, tmp_path)
    again = open_or_build("hmdb51", entries, _rate(), SIZE, tmp_path)
    assert not first.hit and again.hit and again.path == first.path
    assert first.frames.shape[1:] == (*SIZE, 3) and first.frames.dtype == np.uint8
    assert isinstance(again.frames, np.memmap)
    assert len(first.label) == len(entries) and not first.skipped
    # Video k's rows are exactly what decoding its sampled frames gives.
    k = 4
    entry = entries[k]
    from trainables.data.video.decode import probe

    indices = stored_indices(_rate(), probe(entry.path), entry)
    direct = decode_frames(entry.path, indices, size=SIZE)
    rows = again.frames[again.start[k]: again.start[k] + again.length[k]]
    np.testing.assert_array_equal(rows, direct)
    assert again.video_id[k] == entry.video_id and again.label[k] == entry.label
    # Another frame size is another store.
    other = open_or_build("hmdb51", entries, _rate(), (32, 40), tmp_path)
    assert not other.hit and other.path != first.path
    assert "hit" in again.describe() and "miss" in first.describe()
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary folder left behind


def test_corrupt_video_is_skipped_counted_and_named(hmdb_tree, tmp_path):
    from trainables.data.video.store import open_or_build
    from trainables.data.video.synth import corrupt_copy

    entries = list(_index(hmdb_tree).entries)[:4]
    broken = tmp_path / "broken.avi"
    corrupt_copy(entries[0].path, broken, "garbage")
    entries.append(VideoEntry(broken, 0, "train", "broken"))
    store = open_or_build("hmdb51", entries, _rate(), SIZE, tmp_path / "cache")
    assert len(store.label) == 4 and [name for name, _ in store.skipped] == ["broken.avi"]
    assert "broken" not in store.video_id.tolist()


def _race(args: tuple[str, str, int]) -> bool:
    root, cache, _ = args
    from trainables.data.video.hmdb51 import load_hmdb51_index
    from trainables.data.video.store import open_or_build

    entries = list(load_hmdb51_index(Path(root), split=1).entries)
    store = open_or_build("hmdb51", entries, FrameSampling("rate", 8, clip_seconds=2.0), SIZE,
                          Path(cache))
    return store.hit


def test_two_concurrent_writers_decode_once(hmdb_tree, tmp_path):
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        hits = pool.map(_race, [(str(hmdb_tree), str(tmp_path), i) for i in range(2)])
    assert sorted(hits) == [False, True]  # one built it, the other waited and read it
    folders = [p for p in tmp_path.iterdir() if p.name.startswith("clips-")]
    assert len(folders) == 1 and not list(tmp_path.glob(".*tmp*"))


def test_unreadable_store_is_rebuilt(hmdb_tree, tmp_path):
    from trainables.data.video.store import open_or_build

    entries = list(_index(hmdb_tree).entries)[:3]
    store = open_or_build("hmdb51", entries, _rate(), SIZE, tmp_path)
    (store.path / "frames.npy").write_bytes(b"torn")
    rebuilt = open_or_build("hmdb51", entries, _rate(), SIZE, tmp_path)
    assert not rebuilt.hit and rebuilt.frames.shape == store.frames.shape


# ---- the loop's view ---------------------------------------------------------------------------

def _splits(root: Path, cache: Path, **kwargs):
    from trainables.data.registry import Hmdb51Config, _hmdb51

    cfg = Hmdb51Config(root=str(root), frames=8, height=SIZE[0], width=SIZE[1], crop=40,
                       cache_dir=str(cache), **kwargs)
    return _hmdb51(cfg)


def test_train_batches_are_cropped_normalised_and_replayable(hmdb_tree, tmp_path):
    splits = _splits(hmdb_tree, tmp_path)
    data = splits.to_device(torch.device("cpu"))
    assert data.memory_format == torch.channels_last_3d and not data.has_test
    first = [(x.clone(), y.clone()) for x, y in
             data.train_epoch(4, generator=seed_everything(1), max_batches=None)]
    again = list(data.train_epoch(4, generator=seed_everything(1), max_batches=None))
    assert len(first) == -(-len(splits.train) // 4)
    x, y = first[0]
    assert x.shape == (4, 3, 8, 40, 40) and x.dtype == torch.float32 and y.dtype == torch.long
    for (a, b), (c, d) in zip(first, again, strict=True):
        torch.testing.assert_close(a, c)
        assert torch.equal(b, d)
    # (0.45, 0.225) normalisation: pixel p -> (p/255 - 0.45) / 0.225.
    assert x.min() >= (0 - 0.45) / 0.225 - 1e-5 and x.max() <= (1 - 0.45) / 0.225 + 1e-5
    other = list(data.train_epoch(4, generator=seed_everything(2), max_batches=2))
    assert len(other) == 2 and not torch.equal(other[0][0], x)


def test_eval_covers_every_video_with_grouped_centre_crops(hmdb_tree, tmp_path):
    splits = _splits(hmdb_tree, tmp_path)
    data = splits.to_device(torch.device("cpu"))
    store = splits.store
    batches = list(data.eval_batches("val", 5, max_batches=None))
    groups = torch.cat([g for _, _, g in batches])
    labels = torch.cat([y for _, y, _ in batches])
    assert set(groups.tolist()) == set(splits.val.tolist())
    expected = sum(len(covering_starts(int(store.length[v]), 8)) for v in splits.val)
    assert len(groups) == expected
    assert torch.equal(labels, torch.from_numpy(store.label)[groups])
    # Centre crop of the first clip of the first video: rows 4..44, cols 12..52 of 48x64.
    v = int(splits.val[0])
    raw = store.frames[store.start[v]: store.start[v] + 8, 4:44, 12:52]
    expect = (torch.from_numpy(np.ascontiguousarray(raw)).permute(3, 0, 1, 2).float() / 255
              - 0.45) / 0.225
    torch.testing.assert_close(batches[0][0][0], expect)


class TinyVideoNet(nn.Module):
    """Frame differences see motion; enough to check the loop runs on clips."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 8, kernel_size=(3, 5, 5), stride=(1, 2, 2))
        self.head = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3, 4)))


def test_the_one_loop_trains_on_clips_and_scores_videos(hmdb_tree, tmp_path):
    splits = _splits(hmdb_tree, tmp_path)
    data = splits.to_device(torch.device("cpu"))
    rows = []
    cfg = TrainConfig(epochs=2, batch_size=4, eval_batch_size=8, lr=1e-2, channels_last=True,
                      restore_best=False)   # validation is the test list here
    result = fit(TinyVideoNet(splits.num_classes), data, cfg,
                 report=lambda m, s: rows.append(m), generator=seed_everything(0),
                 context={"data_note": splits.description})
    assert result.status == "ok" and len(rows) == 2
    n_val = len(splits.val)
    # Per-video accuracy is a multiple of 1 / (number of validation videos).
    assert rows[-1]["val_acc"] * n_val == pytest.approx(round(rows[-1]["val_acc"] * n_val))
    assert "clip cache" in rows[0]["data_note"] and "val = the test list" in rows[0]["data_note"]


def test_a_range_past_the_end_means_a_pre_cut_video():
    info = VideoInfo(num_frames=40, fps=25.0, height=240, width=320)
    entry = VideoEntry(Path("v.mp4"), 0, "train", "v", frame_start=250, frame_end=300)
    indices = stored_indices(FrameSampling("centre", 8, stride=2), info, entry)
    assert (indices[3] + indices[4]) / 2 == pytest.approx(19.5, abs=1)  # the middle of 0..39
