"""Free Spoken Digit Dataset (FSDD) in its own layout, as spectrogram images.

FSDD is ``recordings/{digit}_{speaker}_{index}.wav``: 8 kHz mono 16-bit WAVs, 6 speakers x
50 takes x 10 digits. Its own split puts takes 0-4 in test; Part B of "Impact of Attention
Mechanisms in Deep Learning" split 80/10/10 at random instead; holding out whole speakers
asks the harder question of unseen voices. All three are here
(``split="official" | "random" | "speaker"``).

Why features are cached on disk: every trial of a sweep needs the same 3000 spectrograms.
They are computed once per node (``trainables.data.node_cache``) and every later trial,
in any worker process, loads one ``.npz`` instead of reading and transforming the WAVs.

A real recording collection has bad files. A WAV that cannot be opened, has no samples, or
is shorter than its header says (a truncated copy, which libsndfile would otherwise read
without complaint) is skipped; the count and the first names go into the description, the
trial's ``data_note`` column and a logged warning, never an exception.
"""

from __future__ import annotations

import logging
import re
import struct
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from trainables.data.errors import DatasetMissingError
from trainables.data.node_cache import (
    cache_key,
    cached_arrays,
    default_cache_dir,
    file_fingerprint,
)
from trainables.data.spectrogram import SpectrogramMaker, SpectrogramSpec
from trainables.data.splits import ArraySplits, holdout_split, stratified_subset

log = logging.getLogger(__name__)

LAYOUT_HINT = ("recordings/{digit}_{speaker}_{index}.wav (FSDD: 8 kHz mono 16-bit WAV, "
               "e.g. recordings/7_jackson_32.wav)")
NAME_PATTERN = re.compile(r"^(?P<digit>\d)_(?P<speaker>[A-Za-z0-9-]+)_(?P<index>\d+)\.wav$")
CLASS_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# Bump when the feature computation changes, so old cache files are not reused.
FEATURE_VERSION = 1


class UnreadableAudio(ValueError):
    """A recording that cannot be used; the message says why in a few words."""


@dataclass(frozen=True)
class Recording:
    path: Path
    digit: int
    speaker: str
    index: int


def recordings_dir(root: Path) -> Path | None:
    """``root/recordings`` (FSDD's layout), or ``root`` itself when it holds the WAVs."""
    for candidate in (root / "recordings", root):
        if candidate.is_dir() and any(candidate.glob("*.wav")):
            return candidate
    return None


def find_recordings(root: Path) -> tuple[list[Recording], list[str]]:
    """Recordings named as FSDD names them, sorted, and the WAV names that do not parse."""
    directory = recordings_dir(root)
    if directory is None:
        raise DatasetMissingError(f"no FSDD recordings under {root}: expected {LAYOUT_HINT}")
    found, odd = [], []
    for path in sorted(directory.glob("*.wav")):
        match = NAME_PATTERN.match(path.name)
        if match is None:
            odd.append(path.name)
            continue
        found.append(Recording(path, int(match["digit"]), match["speaker"], int(match["index"])))
    if not found:
        raise DatasetMissingError(f"no WAV under {directory} is named like {LAYOUT_HINT}")
    return found, odd


def declared_data_bytes(path: Path) -> tuple[int, int] | None:
    """(declared size of the RIFF ``data`` chunk, bytes actually present), or None if unknown.

    libsndfile reads a truncated WAV as a shorter clip without an error; comparing the
    header's claim with the file's size is how a truncated copy is told apart.
    """
    size = path.stat().st_size
    with open(path, "rb") as stream:
        header = stream.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return None
        offset = 12
        while offset + 8 <= size:
            stream.seek(offset)
            chunk_id, chunk_size = struct.unpack("<4sI", stream.read(8))
            if chunk_id == b"data":
                if chunk_size in (0, 0xFFFFFFFF):  # written by a streaming tool: size unknown
                    return None
                return chunk_size, size - offset - 8
            offset += 8 + chunk_size + (chunk_size & 1)
    return None


def read_wave(path: Path, sample_rate: int) -> tuple[torch.Tensor, bool]:
    """Mono float waveform at ``sample_rate`` and whether it had to be resampled."""
    import soundfile as sf

    try:
        declared = declared_data_bytes(path)
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except (OSError, RuntimeError, struct.error) as err:  # LibsndfileError is a RuntimeError
        raise UnreadableAudio(str(err).split(":")[-1].strip() or type(err).__name__) from None
    if declared is not None and declared[1] < declared[0]:
        raise UnreadableAudio(f"truncated: {declared[1]} of {declared[0]} data bytes")
    if data.size == 0:
        raise UnreadableAudio("no samples")
    wave = torch.from_numpy(data.mean(axis=1))  # downmix the odd stereo file
    if not torch.isfinite(wave).all():
        raise UnreadableAudio("non-finite samples")
    if rate != sample_rate:
        import torchaudio.functional as AF

        return AF.resample(wave, rate, sample_rate), True
    return wave, False


def compute_features(recordings: list[Recording], spec: SpectrogramSpec
                     ) -> tuple[dict[str, np.ndarray], dict]:
    """Spectrogram images of every readable recording, and what was skipped or resampled."""
    maker = SpectrogramMaker(spec)
    images, kept, skipped, resampled = [], [], [], 0
    started = time.perf_counter()
    for recording in recordings:
        try:
            wave, was_resampled = read_wave(recording.path, spec.sample_rate)
        except UnreadableAudio as err:
            skipped.append([recording.path.name, str(err)])
            continue
        resampled += was_resampled
        images.append(maker(wave))
        kept.append(recording)
    if not kept:
        raise DatasetMissingError(f"none of the {len(recordings)} FSDD recordings could be read")
    arrays = {
        "x": np.stack(images)[:, None],  # (N, 1, H, W) uint8
        "digit": np.array([r.digit for r in kept], dtype=np.int64),
        "index": np.array([r.index for r in kept], dtype=np.int64),
        "speaker": np.array([r.speaker for r in kept]),
        "name": np.array([r.path.name for r in kept]),
    }
    meta = {"skipped": skipped, "resampled": resampled,
            "seconds": round(time.perf_counter() - started, 3)}
    return arrays, meta


def split_indices(digits: np.ndarray, takes: np.ndarray, speakers: np.ndarray, *, split: str,
                  test_below: int = 5, test_speakers: tuple[str, ...] = (),
                  val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) index arrays. ``val_fraction`` 0 validates on the test split.

    official: takes below ``test_below`` are test (FSDD's README), validation is a
    stratified share of the rest. speaker: the recordings of ``test_speakers`` (default:
    the last speaker A-Z) are test, so the score is for voices never heard in training.
    random: stratified by digit, ``test_fraction`` of all for test and ``val_fraction``
    of all for validation (0.1 / 0.1: the source's 80/10/10).
    """
    everything = np.arange(len(digits))
    if split in ("official", "speaker"):
        if split == "official":
            is_test = takes < test_below
            what = f"test_below={test_below} (takes run {takes.min()}..{takes.max()})"
        else:
            known = sorted(set(speakers.tolist()))
            chosen = list(test_speakers) or known[-1:]
            unknown = sorted(set(chosen) - set(known))
            if unknown:
                raise ValueError(f"test_speakers {', '.join(unknown)} not in the data; "
                                 f"speakers are {', '.join(known)}")
            is_test = np.isin(speakers, chosen)
            what = f"test_speakers={','.join(chosen)}"
        test, rest = everything[is_test], everything[~is_test]
        if not len(test) or not len(rest):
            raise ValueError(f"split={split} with {what} leaves an empty train or test split")
        keep, val = holdout_split(digits[rest], val_fraction, seed)
        return rest[keep], rest[val], test
    keep, test = holdout_split(digits, test_fraction, seed)
    if not len(test):
        raise ValueError("split=random needs test_fraction > 0")
    val_share = val_fraction / (1.0 - test_fraction)
    if not 0.0 <= val_share < 1.0:
        raise ValueError(f"val_fraction={val_fraction} and test_fraction={test_fraction} leave "
                         "no training data")
    train, val = holdout_split(digits[keep], val_share, seed + 1)
    return keep[train], keep[val], test


def load_fsdd(root: Path, spec: SpectrogramSpec, *, channels: int = 1,
              split: Literal["official", "random", "speaker"] = "official", test_below: int = 5,
              test_speakers: tuple[str, ...] = (),
              val_fraction: float = 0.1, test_fraction: float = 0.1, split_seed: int = 0,
              limit_train: int | None = None, cache_dir: Path | None = None,
              label: str = "FSDD") -> ArraySplits:
    """Spectrogram splits of an FSDD-layout folder; features come from the node's cache."""
    if channels not in (1, 3):
        raise ValueError(f"channels={channels} must be 1 or 3")
    recordings, odd = find_recordings(root)
    key = cache_key({"dataset": "fsdd", "version": FEATURE_VERSION, "spec": asdict(spec),
                     "files": file_fingerprint([r.path for r in recordings], root)})
    cached = cached_arrays((cache_dir or default_cache_dir()) / "fsdd", key,
                           lambda: compute_features(recordings, spec))
    arrays, meta = cached.arrays, cached.meta

    train, val, test = split_indices(arrays["digit"], arrays["index"], arrays["speaker"],
                                     split=split, test_below=test_below,
                                     test_speakers=test_speakers, val_fraction=val_fraction,
                                     test_fraction=test_fraction, seed=split_seed)
    n_before = len(train)
    train = train[stratified_subset(arrays["digit"][train], limit_train, split_seed)]
    x = arrays["x"] if channels == 1 else np.repeat(arrays["x"], 3, axis=1)
    y = arrays["digit"]
    x_val, y_val = (x[val], y[val]) if len(val) else (x[test], y[test])

    notes = [f"{label} {len(y)} recordings ({len(set(arrays['speaker'].tolist()))} speakers), "
             f"{spec.kind} {spec.height}x{spec.width}x{channels}, split={split}: "
             f"train {len(train)}" + (f" (limit_train: of {n_before})" if len(train) < n_before
                                     else "")
             + (f", val {len(val)}" if len(val) else ", val = test") + f", test {len(test)}",
             f"features {'from cache' if cached.hit else 'computed'} {cached.path}"]
    if meta.get("resampled"):
        notes.append(f"resampled {meta['resampled']} recording(s) to {spec.sample_rate} Hz")
    skipped = meta.get("skipped") or []
    if skipped:
        shown = ", ".join(f"{name} ({why})" for name, why in skipped[:3])
        more = ", ..." if len(skipped) > 3 else ""
        notes.append(f"skipped {len(skipped)} unreadable recording(s): {shown}{more}")
        log.warning("%s: skipped %d unreadable recording(s): %s%s", root, len(skipped), shown,
                    more)
    if odd:
        notes.append(f"ignored {len(odd)} WAV(s) not named digit_speaker_index.wav")
    return ArraySplits(
        x[train], y[train], x_val, y_val, x[test], y[test], num_classes=10,
        description="; ".join(notes), val_is_test=not len(val), class_names=CLASS_NAMES,
        skipped=len(skipped),
    )


# ------------------------------------------------------------------- test data generator


def write_fsdd(root: Path, *, digits: range | list[int] = range(10), speakers: int = 2,
               takes: int = 5, sample_rate: int = 8000, seed: int = 0, corrupt: int = 0,
               truncated: int = 0) -> list[Path]:
    """Write a tiny FSDD-layout set of synthetic "words" (tests, benchmarks), return the paths.

    Each digit is a learnable pattern: two tones whose frequencies depend on the digit,
    shifted per speaker (a voice's pitch) and jittered per take, with noise, at 8 kHz in
    16-bit PCM. ``corrupt`` files are garbage after a RIFF tag, ``truncated`` files are
    real recordings cut in half, both named like good ones so the loader must notice.
    """
    import soundfile as sf

    folder = root / "recordings"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for digit in digits:
        for s in range(speakers):
            pitch = 1.0 + 0.08 * s
            for take in range(takes):
                seconds = 0.25 + 0.03 * digit + rng.uniform(0, 0.1)
                t = np.arange(int(seconds * sample_rate)) / sample_rate
                f1 = (300 + 150 * digit) * pitch * rng.uniform(0.97, 1.03)
                f2 = (1800 - 100 * digit) * pitch
                envelope = np.sin(np.pi * t / seconds)
                wave = envelope * (0.5 * np.sin(2 * np.pi * f1 * t)
                                   + 0.3 * np.sin(2 * np.pi * f2 * t * (1 + 0.2 * t)))
                wave += rng.normal(0, 0.01, size=t.shape)
                path = folder / f"{digit}_speaker{s}_{take}.wav"
                sf.write(path, np.clip(wave, -1, 1).astype(np.float32), sample_rate,
                         subtype="PCM_16")
                paths.append(path)
    good = list(paths)
    for j in range(corrupt):
        path = folder / f"{j % 10}_broken_{j}.wav"
        path.write_bytes(b"RIFF" + rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
        paths.append(path)
    for j in range(truncated):
        source = good[j % len(good)].read_bytes()
        path = folder / f"{j % 10}_cut_{j}.wav"
        path.write_bytes(source[: len(source) // 2])
        paths.append(path)
    return paths
