"""HMDB51 with validation held out of the split's training list (``data.val_fraction`` > 0).

Tuning chooses configs on validation, so validation must not be the test list: a stratified
share of the training videos (whole source videos at a time) becomes validation, the test
list stays the test split, and the decoded clip store is the same as without a holdout.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.conftest import needs_video_codecs
from trainables.config import ConfigError, TrainConfig
from trainables.data.registry import dataset_spec, load_dataset, parse_data_config
from trainables.data.video.datasets import holdout_videos
from trainables.data.video.hmdb51 import SPLIT_DIR, load_hmdb51_index, source_video

needs_video_codecs()

CLASSES = 3


@pytest.fixture(scope="module")
def hmdb_root(tmp_path_factory) -> Path:
    """3 classes x 8 tiny videos: 5 train, 2 test, 1 unused per class in split 1."""
    from trainables.data.video.synth import write_hmdb51

    root = tmp_path_factory.mktemp("hmdb51")
    write_hmdb51(root, classes=CLASSES, videos_per_class=8, seconds=1.0, fps=8,
                 size=(32, 40), seed=5)
    return root


def _data(root: Path, cache: Path, **kwargs) -> dict:
    return {"name": "hmdb51", "root": str(root), "frames": 4, "clip_seconds": 1.0,
            "height": 32, "width": 40, "crop": 24, "cache_dir": str(cache), **kwargs}


def _ids(splits, positions) -> list[str]:
    return sorted(str(v) for v in splits.store.video_id[positions])


# ---- the split --------------------------------------------------------------------------------

def test_holdout_partitions_the_training_list_and_keeps_the_test_list(hmdb_root, tmp_path):
    index = load_hmdb51_index(hmdb_root, split=1)
    listed_train = sorted(e.video_id for e in index.subset("train"))
    listed_test = sorted(e.video_id for e in index.subset("test"))
    assert len(listed_train) == 5 * CLASSES and len(listed_test) == 2 * CLASSES

    splits = load_dataset(_data(hmdb_root, tmp_path, val_fraction=0.2))
    train, val, test = splits.train, splits.val, splits.test
    assert test is not None
    # train and val: disjoint, and together exactly the split's training videos.
    assert not set(train.tolist()) & set(val.tolist())
    assert sorted(_ids(splits, train) + _ids(splits, val)) == listed_train
    # test: exactly the test list, apart from both.
    assert _ids(splits, test) == listed_test
    assert not set(test.tolist()) & (set(train.tolist()) | set(val.tolist()))
    assert set(splits.store.subset[val].tolist()) == {"train"}
    # Stratified: 20% of 15 is 3 videos, one from each class.
    assert np.bincount(splits.store.label[val], minlength=CLASSES).tolist() == [1] * CLASSES
    assert len(train) == 4 * CLASSES
    assert not splits.val_is_test
    assert "using train 12, val 3, test 6 videos" in splits.description
    assert ("val = 20% of train held out (stratified, whole source videos, seed 0), "
            "test = the split's test list") in splits.description
    assert "val = the test list" not in splits.description


def test_without_a_holdout_validation_is_the_test_list(hmdb_root, tmp_path):
    splits = load_dataset(_data(hmdb_root, tmp_path))
    index = load_hmdb51_index(hmdb_root, split=1)
    assert splits.val_is_test and splits.test is None
    assert _ids(splits, splits.val) == sorted(e.video_id for e in index.subset("test"))
    assert _ids(splits, splits.train) == sorted(e.video_id for e in index.subset("train"))
    assert "val = the test list (the source's protocol)" in splits.description


def test_the_registry_says_when_validation_is_the_test_split():
    validation = dataset_spec("hmdb51").validation
    assert validation(parse_data_config({"name": "hmdb51"})) == (
        True, ("data.val_fraction", 0.1))
    assert validation(parse_data_config({"name": "hmdb51", "val_fraction": 0.1}))[0] is False


def test_same_seed_same_split_another_seed_another(hmdb_root, tmp_path):
    first = load_dataset(_data(hmdb_root, tmp_path, val_fraction=0.2))
    again = load_dataset(_data(hmdb_root, tmp_path, val_fraction=0.2))
    assert np.array_equal(first.train, again.train) and np.array_equal(first.val, again.val)
    assert np.array_equal(first.test, again.test)
    other = load_dataset(_data(hmdb_root, tmp_path, val_fraction=0.2, split_seed=1))
    assert not np.array_equal(first.val, other.val)
    assert other.store.path == first.store.path  # split_seed picks positions, not videos


def test_val_fraction_out_of_range_is_a_config_error(hmdb_root, tmp_path):
    for bad in (-0.1, 1, 1.5):
        with pytest.raises(ConfigError, match=r"data\.val_fraction"):
            parse_data_config({"name": "hmdb51", "val_fraction": bad})
        with pytest.raises(ConfigError, match=r"data\.val_fraction"):
            load_dataset(_data(hmdb_root, tmp_path, val_fraction=bad))
    # In range but leaving a class with no training video is refused, not trained on.
    with pytest.raises(ConfigError, match=r"data\.val_fraction=0\.9 holds out every training"):
        load_dataset(_data(hmdb_root, tmp_path, val_fraction=0.9))


def test_the_store_is_shared_with_runs_that_validate_on_test(hmdb_root, tmp_path):
    cache = tmp_path / "cache"
    plain = load_dataset(_data(hmdb_root, cache))
    held = load_dataset(_data(hmdb_root, cache, val_fraction=0.2))
    assert not plain.store.hit and held.store.hit
    assert held.store.path == plain.store.path
    assert "clip cache hit" in held.description
    assert len([p for p in cache.iterdir() if p.name.startswith("clips-")]) == 1


# ---- evaluation -------------------------------------------------------------------------------

class TinyVideoNet(nn.Module):
    def __init__(self, classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 4, kernel_size=(2, 5, 5), stride=(1, 4, 4))
        self.head = nn.Linear(4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3, 4)))


def test_val_and_test_are_scored_per_video(hmdb_root, tmp_path):
    from trainables.loop import fit
    from trainables.seeding import seed_everything

    splits = load_dataset(_data(hmdb_root, tmp_path, val_fraction=0.2))
    data = splits.to_device(torch.device("cpu"))
    assert data.has_test
    for name, videos in (("val", splits.val), ("test", splits.test)):
        batches = list(data.eval_batches(name, 4, max_batches=None))
        groups = torch.cat([g for _, _, g in batches])
        labels = torch.cat([y for _, y, _ in batches])
        assert set(groups.tolist()) == set(videos.tolist())
        assert torch.equal(labels, torch.from_numpy(splits.store.label)[groups])

    rows = []
    cfg = TrainConfig(epochs=1, batch_size=4, eval_batch_size=8, lr=1e-2)
    result = fit(TinyVideoNet(splits.num_classes), data, cfg,
                 report=lambda m, s: rows.append(m), generator=seed_everything(0))
    assert result.status == "ok" and result.test_acc is not None
    # Per-video accuracy: a multiple of 1 / videos, for validation and test alike.
    for key, count in (("val_acc", len(splits.val)), ("test_acc", len(splits.test))):
        assert rows[-1][key] * count == pytest.approx(round(rows[-1][key] * count))


# ---- whole source videos ----------------------------------------------------------------------

def test_source_video_strips_the_clip_tags_and_number():
    assert source_video("April_09_brush_hair_u_nm_np1_ba_goo_0") == "April_09_brush_hair"
    assert source_video("Glory_walk_f_cm_np2_le_med_12") == "Glory_walk"
    assert source_video("oddly_named_clip") == "oddly_named_clip"


def test_holdout_videos_keeps_groups_whole_and_stratified():
    labels = np.repeat([0, 1, 2], 8)
    groups = [f"s{i // 2}" for i in range(len(labels))]  # pairs of clips share a source
    train, val = holdout_videos(labels, groups, 0.25, seed=3)
    assert sorted([*train, *val]) == list(range(len(labels)))
    assert np.bincount(labels[val], minlength=3).tolist() == [2, 2, 2]  # one pair per class
    val_groups = {groups[i] for i in val}
    assert not val_groups & {groups[i] for i in train}
    again = holdout_videos(labels, groups, 0.25, seed=3)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], val)


def test_clips_of_one_source_video_stay_on_one_side(hmdb_root, tmp_path):
    """Rename the synthetic clips so that pairs share a source, as HMDB51's clips do."""
    root = tmp_path / "shared"
    shutil.copytree(hmdb_root, root)
    for split_file in sorted((root / SPLIT_DIR).glob("*_test_split1.txt")):
        motion = split_file.name.removesuffix("_test_split1.txt")
        lines = []
        for k, line in enumerate(split_file.read_text().split("\n")):
            if not line.strip():
                continue
            name, tag = line.split()
            new = f"src{k // 2}_{motion}_f_nm_np1_fr_med_{k % 2}.avi"
            (root / motion / name).rename(root / motion / new)
            lines.append(f"{new} {tag}\n")
        split_file.write_text("".join(lines))

    splits = load_dataset(_data(root, tmp_path, val_fraction=0.3))
    store = splits.store

    def sources(positions):
        return {(int(store.label[p]), source_video(str(store.video_id[p]))) for p in positions}

    assert not sources(splits.val) & sources(splits.train)
    assert set(store.label[splits.val].tolist()) == set(range(CLASSES))
    shared = [s for s in sources(splits.val) if sum(
        (int(store.label[p]), source_video(str(store.video_id[p]))) == s
        for p in np.concatenate([splits.train, splits.val])) > 1]
    assert shared, "no held-out source has two training clips: the check proves nothing"
