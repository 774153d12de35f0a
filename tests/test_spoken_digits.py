"""The bundled spoken digits are exact FSDD layout and format; generation is reproducible.

The FSDD loader reads the bundled set as if it were FSDD, so any drift in names, rate,
channels or sample format would silently break ``fsdd_attention`` on machines without FSDD.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from trainables.data.spoken_digits import BUNDLED_ROOT, DEFAULT_TAKES, SPEAKERS, generate

NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")  # FSDD: {digit}_{speaker}_{index}.wav
RECORDINGS = BUNDLED_ROOT / "recordings"
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng not installed (apt-get install espeak-ng)")


def _parse(paths: list[Path]) -> set[tuple[int, str, int]]:
    keys = set()
    for path in paths:
        match = NAME.match(path.name)
        assert match, f"not an FSDD name: {path.name}"
        keys.add((int(match[1]), match[2], int(match[3])))
    return keys


def _assert_fsdd_format(path: Path) -> None:
    info = sf.info(path)
    assert (info.samplerate, info.channels, info.subtype) == (8000, 1, "PCM_16"), path.name


def test_bundled_names_cover_every_digit_speaker_take():
    paths = sorted(RECORDINGS.glob("*"))
    expected = {(d, s, i) for d in range(10) for s in SPEAKERS for i in range(DEFAULT_TAKES)}
    assert len(SPEAKERS) == 6 and all("_" not in s for s in SPEAKERS)
    assert _parse(paths) == expected
    assert len(paths) == 10 * 6 * DEFAULT_TAKES


def test_bundled_files_are_fsdd_format_audible_and_word_length():
    for path in sorted(RECORDINGS.glob("*.wav")):
        _assert_fsdd_format(path)
        audio, rate = sf.read(path, dtype="float32")
        assert 0.2 <= len(audio) / rate <= 1.5, path.name
        assert np.abs(audio).max() > 0.05, f"{path.name} is (nearly) silent"


def test_bundled_set_is_small_and_documented():
    size = sum(p.stat().st_size for p in RECORDINGS.glob("*.wav"))
    assert size < 6e6
    readme = (BUNDLED_ROOT / "README.md").read_text()
    assert "espeak-ng" in readme and "FSDD" in readme


@needs_espeak
def test_generate_writes_fsdd_files_reproducibly(tmp_path):
    first = generate(tmp_path / "a", speakers=2, takes=2, digits=[1, 7])
    names = list(SPEAKERS)[:2]
    assert _parse(first) == {(d, s, i) for d in (1, 7) for s in names for i in range(2)}
    assert sorted(p.name for p in (tmp_path / "a" / "recordings").iterdir()) == sorted(
        p.name for p in first)
    for path in first:
        _assert_fsdd_format(path)
    assert "espeak-ng" in (tmp_path / "a" / "README.md").read_text()

    again = generate(tmp_path / "b", speakers=2, takes=2, digits=[1, 7])
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]

    other = generate(tmp_path / "c", speakers=2, takes=2, digits=[1, 7], seed=1)
    assert all(a.read_bytes() != b.read_bytes() for a, b in zip(first, other, strict=True))


def test_generate_without_espeak_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(RuntimeError, match=r"apt-get install espeak-ng"):
        generate(tmp_path / "out", speakers=1, takes=1, digits=[0])
    assert not (tmp_path / "out").exists()
