"""FSDD on generated WAVs in the real layout: parsing, bad files, splits, features, node cache."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from trainables.config import ConfigError
from trainables.data import fsdd
from trainables.data.errors import DatasetMissingError
from trainables.data.fsdd import (
    declared_data_bytes,
    find_recordings,
    load_fsdd,
    read_wave,
    split_indices,
    write_fsdd,
)
from trainables.data.node_cache import cache_key, cached_arrays
from trainables.data.registry import load_dataset
from trainables.data.spectrogram import SpectrogramMaker, SpectrogramSpec
from trainables.data.spoken_digits import BUNDLED_ROOT


@pytest.fixture(scope="module")
def fsdd_root(tmp_path_factory) -> Path:
    """10 digits x 3 speakers x 10 takes, one garbage file, one truncated copy, one odd name."""
    root = tmp_path_factory.mktemp("fsdd")
    write_fsdd(root, speakers=3, takes=10, corrupt=1, truncated=1)
    (root / "recordings" / "notes.wav").write_bytes(b"not a digit")
    return root


SMALL = SpectrogramSpec(height=32, width=40)


class TestLayout:
    def test_names_parse_and_odd_names_are_listed(self, fsdd_root):
        recordings, odd = find_recordings(fsdd_root)
        assert len(recordings) == 10 * 3 * 10 + 2
        assert odd == ["notes.wav"]
        first = recordings[0]
        assert (first.digit, first.speaker, first.index) == (0, "broken", 0)

    def test_missing_folder_names_the_layout(self, tmp_path):
        with pytest.raises(DatasetMissingError, match=r"recordings/\{digit\}_\{speaker\}"):
            find_recordings(tmp_path)

    def test_bundled_set_is_found_as_fsdd(self):
        recordings, odd = find_recordings(BUNDLED_ROOT)
        assert len(recordings) == 600 and not odd
        assert len({r.speaker for r in recordings}) == 6


class TestReadWave:
    def test_truncated_copy_is_detected_from_the_header(self, fsdd_root):
        cut = fsdd_root / "recordings" / "0_cut_0.wav"
        declared, present = declared_data_bytes(cut)
        assert present < declared
        with pytest.raises(fsdd.UnreadableAudio, match="truncated"):
            read_wave(cut, 8000)

    def test_garbage_is_unreadable(self, fsdd_root):
        with pytest.raises(fsdd.UnreadableAudio):
            read_wave(fsdd_root / "recordings" / "0_broken_0.wav", 8000)

    def test_other_rates_are_resampled_and_stereo_downmixed(self, tmp_path):
        t = np.arange(16000) / 16000
        tone = 0.5 * np.sin(2 * np.pi * 440 * t)
        sf.write(tmp_path / "s.wav", np.stack([tone, tone], axis=1), 16000, subtype="PCM_16")
        wave, resampled = read_wave(tmp_path / "s.wav", 8000)
        assert resampled and wave.shape == (8000,)
        assert wave.abs().max() == pytest.approx(0.5, abs=0.02)

    def test_empty_recording_is_unreadable(self, tmp_path):
        sf.write(tmp_path / "e.wav", np.zeros(0, dtype=np.float32), 8000, subtype="PCM_16")
        with pytest.raises(fsdd.UnreadableAudio, match="no samples"):
            read_wave(tmp_path / "e.wav", 8000)


class TestSpectrogram:
    @pytest.mark.parametrize("kind", ["mel", "stft"])
    @pytest.mark.parametrize("duration", [None, 0.5])
    def test_shape_range_and_orientation(self, kind, duration):
        maker = SpectrogramMaker(SpectrogramSpec(kind=kind, height=48, width=64,
                                                 duration_s=duration))
        t = torch.arange(4000) / 8000
        low = torch.sin(2 * torch.pi * 200 * t)  # energy near the bottom of the picture
        image = maker(low)
        assert image.shape == (48, 64) and image.dtype == np.uint8
        assert image.max() == 255 and image.min() == 0
        rows = image.astype(float).mean(axis=1)
        assert rows[-8:].mean() > rows[:8].mean() + 50  # low frequencies drawn at the bottom

    def test_fixed_duration_keeps_absolute_time(self):
        maker = SpectrogramMaker(SpectrogramSpec(height=32, width=64, duration_s=1.0))
        short = torch.sin(torch.arange(2000) * 0.3)  # 0.25 s of sound in a 1 s frame
        columns = maker(short).astype(float).mean(axis=0)
        # Silence at both ends, the sound in the middle quarter of the frame.
        assert columns[:8].max() < 5 and columns[-8:].max() < 5
        assert columns[28:36].min() > 20

    def test_bad_spec_is_a_clear_error(self):
        with pytest.raises(ValueError, match="win_length"):
            SpectrogramSpec(n_fft=128, win_length=200)


class TestLoad:
    def test_bad_files_skipped_counted_and_named(self, fsdd_root, tmp_path):
        splits = load_fsdd(fsdd_root, SMALL, cache_dir=tmp_path)
        assert splits.skipped == 2
        assert "skipped 2 unreadable recording(s)" in splits.description
        assert "0_cut_0.wav (truncated" in splits.description
        assert "ignored 1 WAV(s)" in splits.description
        total = len(splits.y_train) + len(splits.y_val) + len(splits.y_test)
        assert total == 300

    def test_official_split_puts_takes_0_to_4_in_test(self, fsdd_root, tmp_path):
        splits = load_fsdd(fsdd_root, SMALL, cache_dir=tmp_path, split="official",
                           val_fraction=0.1)
        assert len(splits.y_test) == 150 and len(splits.y_val) == 15
        assert len(splits.y_train) == 135
        assert np.bincount(splits.y_test).tolist() == [15] * 10
        assert splits.x_train.shape[1:] == (1, 32, 40)

    def test_random_split_is_the_sources_80_10_10(self, fsdd_root, tmp_path):
        splits = load_fsdd(fsdd_root, SMALL, cache_dir=tmp_path, split="random", channels=3)
        assert (len(splits.y_train), len(splits.y_val), len(splits.y_test)) == (240, 30, 30)
        assert np.bincount(splits.y_test).tolist() == [3] * 10
        assert splits.x_train.shape[1:] == (3, 32, 40)
        assert np.array_equal(splits.x_train[:, 0], splits.x_train[:, 2])

    def test_speaker_split_holds_out_whole_voices(self):
        digits = np.repeat(np.arange(10), 6)
        speakers = np.array(["a", "b", "c"] * 20)
        takes = np.zeros(60, dtype=np.int64)
        train, val, test = split_indices(digits, takes, speakers, split="speaker",
                                         val_fraction=0.1)
        assert set(speakers[test]) == {"c"} and not {"c"} & set(speakers[train])
        assert len(train) + len(val) + len(test) == 60
        with pytest.raises(ValueError, match="not in the data"):
            split_indices(digits, takes, speakers, split="speaker", test_speakers=("zed",))

    def test_val_fraction_zero_validates_on_test(self, fsdd_root, tmp_path):
        splits = load_fsdd(fsdd_root, SMALL, cache_dir=tmp_path, val_fraction=0.0)
        assert splits.val_is_test and len(splits.y_val) == len(splits.y_test)

    def test_features_are_learnable(self, fsdd_root, tmp_path):
        """Nearest class mean on the generated set beats chance by far: the images carry
        the digit, so a smoke run that learns nothing points at the model, not the data."""
        s = load_fsdd(fsdd_root, SMALL, cache_dir=tmp_path, split="random")
        x_train = s.x_train.reshape(len(s.x_train), -1).astype(float)
        x_test = s.x_test.reshape(len(s.x_test), -1).astype(float)
        means = np.stack([x_train[s.y_train == c].mean(0) for c in range(10)])
        predicted = ((x_test[:, None] - means[None]) ** 2).sum(-1).argmin(1)
        assert (predicted == s.y_test).mean() > 0.5


class TestCache:
    def test_second_load_reads_the_cache(self, fsdd_root, tmp_path, monkeypatch):
        first = load_fsdd(fsdd_root, SMALL, cache_dir=tmp_path)
        assert "features computed" in first.description

        def refuse(*args, **kwargs):
            raise AssertionError("features were recomputed despite a cache entry")

        monkeypatch.setattr(fsdd, "compute_features", refuse)
        second = load_fsdd(fsdd_root, SMALL, cache_dir=tmp_path)
        assert "features from cache" in second.description
        assert np.array_equal(first.x_train, second.x_train)
        assert second.skipped == first.skipped == 2

    def test_changed_spec_or_file_gives_a_new_entry(self, tmp_path):
        root = tmp_path / "data"
        write_fsdd(root, digits=[0, 1], speakers=1, takes=6)
        cache = tmp_path / "cache"
        load_fsdd(root, SMALL, cache_dir=cache)
        load_fsdd(root, SpectrogramSpec(height=32, width=48), cache_dir=cache)
        assert len(list((cache / "fsdd").glob("*.npz"))) == 2
        target = root / "recordings" / "0_speaker0_0.wav"
        sf.write(target, np.zeros(3000, dtype=np.float32) + 0.1, 8000, subtype="PCM_16")
        again = load_fsdd(root, SMALL, cache_dir=cache)
        assert "features computed" in again.description

    def test_unreadable_cache_file_is_rebuilt(self, tmp_path):
        key = cache_key({"x": 1})
        (tmp_path / f"{key}.npz").write_bytes(b"torn")
        result = cached_arrays(tmp_path, key, lambda: ({"a": np.arange(3)}, {"m": 1}))
        assert not result.hit and result.meta == {"m": 1}
        assert cached_arrays(tmp_path, key, lambda: ({}, {})).hit

    def test_concurrent_builders_compute_once(self, tmp_path):
        """Four processes ask for the same entry at once: one builds, three wait and read."""
        context = multiprocessing.get_context("spawn")
        with context.Pool(4) as pool:
            results = pool.starmap(_build_slowly, [(str(tmp_path), i) for i in range(4)])
        builds = sorted((tmp_path / "builds").iterdir())
        assert len(builds) == 1
        assert sorted(hit for hit, _ in results) == [False, True, True, True]
        assert all(total == sum(range(1000)) for _, total in results)
        assert not list(tmp_path.glob("cache/*.tmp"))


def _build_slowly(directory: str, worker: int) -> tuple[bool, int]:
    import time

    root = Path(directory)

    def build():
        (root / "builds").mkdir(exist_ok=True)
        (root / "builds" / f"worker{worker}").write_text("built")
        time.sleep(0.5)
        return {"values": np.arange(1000)}, {"by": worker}

    result = cached_arrays(root / "cache", "shared", build)
    return result.hit, int(result.arrays["values"].sum())


class TestRegistry:
    def test_bundled_set_by_default(self, tmp_path):
        splits = load_dataset({"name": "fsdd", "split": "random", "height": 32, "width": 32,
                               "cache_dir": str(tmp_path)})
        assert "bundled espeak-ng spoken digits" in splits.description
        assert (len(splits.y_train), len(splits.y_val), len(splits.y_test)) == (480, 60, 60)
        assert splits.class_names[7] == "seven" and splits.mean is None

    def test_bad_keys_are_config_errors(self):
        with pytest.raises(ConfigError, match=r"data\.channels=2"):
            load_dataset({"name": "fsdd", "channels": 2})
        with pytest.raises(ConfigError, match="win_length"):
            load_dataset({"name": "fsdd", "n_fft": 64})
