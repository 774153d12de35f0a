"""A small synthetic spoken-digit set in the exact Free Spoken Digit Dataset (FSDD) layout.

Why this exists: the ``fsdd_attention`` preset must run on any machine without a download,
and FSDD itself (https://github.com/Jakobovski/free-spoken-digit-dataset) cannot be fetched
everywhere this project runs. So we ship a stand-in inside the package, laid out and encoded
exactly like FSDD, that the FSDD loader reads unchanged::

    <root>/recordings/{digit}_{speaker}_{index}.wav    8000 Hz, mono, 16-bit PCM

The recordings are synthesized with espeak-ng (formant synthesis, no mbrola): 6 synthetic
"speakers" (an English accent plus a voice variant each) say "zero".."nine" a few times, each
take with its own speed, pitch and amplitude, then trimmed to the word, resampled to 8 kHz and
given a random gain, a little background noise and a few ms of leading silence.

Honesty note: this is *not* FSDD. Synthetic formant speech from 6 voices, with take-to-take
variation that is only speed, pitch, level and noise, is far easier to classify than real
people; a model's accuracy on it says nothing about its accuracy on FSDD. It exists so the
pipeline (loading, features, training, reporting) runs end to end anywhere.

Regenerate the bundled copy with ``python -m trainables.data.spoken_digits`` (needs the
Debian package espeak-ng). The output is reproducible: every random draw comes from a
generator seeded by (seed, digit, speaker, take).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BUNDLED_ROOT: Path = Path(__file__).parent / "bundled" / "spoken_digits"

SAMPLE_RATE = 8000  # FSDD's rate
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DEFAULT_TAKES = 10  # 600 files, about 4.6 MB: a few MB in the package
MISSING_ESPEAK = (
    "espeak-ng not found: install the Debian package espeak-ng (apt-get install espeak-ng) "
    "to generate spoken digits"
)

# Take-to-take variation, shared by all speakers (each speaker's speed and pitch ranges are
# in SPEAKERS). Kept modest so every take still sounds like the same word and speaker.
AMPLITUDE_RANGE = (70, 130)        # espeak-ng -a (0-200, default 100)
GAIN_DB_RANGE = (-6.0, 0.0)        # after resampling; a peak limiter follows
SNR_DB_RANGE = (35.0, 50.0)        # white background noise against the word's RMS
LEAD_SILENCE_S = (0.005, 0.040)    # random silence put before the word
TRIM_THRESHOLD_DB = -45.0          # frames this far below the loudest frame are silence
TRIM_MARGIN_S = 0.010              # kept either side of the detected word
PEAK_LIMIT = 0.95                  # scale down (never hard-clip) louder takes


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: an espeak-ng voice spec and its speed/pitch ranges."""

    voice: str                     # espeak-ng -v (language + "+variant")
    speed: tuple[int, int]         # words per minute, inclusive range
    pitch: tuple[int, int]         # espeak-ng -p 0-99, inclusive range


# Names are lowercase without underscores, like FSDD's ("jackson", "theo", "yweweler"), because
# the file name is split on "_". Order matters: ``generate(speakers=n)`` takes the first n.
SPEAKERS: dict[str, Speaker] = {
    "sam": Speaker("en-us+m3", speed=(150, 195), pitch=(30, 50)),
    "fiona": Speaker("en-gb-scotland+f2", speed=(150, 190), pitch=(50, 70)),
    "kai": Speaker("en-029+m7", speed=(155, 200), pitch=(35, 55)),
    "rita": Speaker("en-gb-x-rp+f4", speed=(160, 200), pitch=(45, 65)),
    "vinny": Speaker("en-us-nyc+croak", speed=(140, 180), pitch=(25, 45)),
    "nell": Speaker("en-gb-x-gbclan+f3", speed=(150, 195), pitch=(55, 75)),
}


def _espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError(MISSING_ESPEAK)
    return exe


def espeak_version() -> str:
    """espeak-ng's version line, e.g. 'eSpeak NG text-to-speech: 1.51  Data at: ...'."""
    out = subprocess.run([_espeak(), "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip().split("  Data at:")[0]


def _rng(seed: int, digit: int, speaker: str, take: int) -> np.random.Generator:
    # crc32 of the name (not its position) so a take's draws don't depend on table order.
    return np.random.default_rng([seed, digit, zlib.crc32(speaker.encode()), take])


def _synthesize(exe: str, voice: str, word: str, speed: int, pitch: int, amplitude: int,
                wav: Path) -> tuple[np.ndarray, int]:
    """espeak-ng's rendering of ``word`` as float64 mono samples and its rate (22050 Hz)."""
    import soundfile as sf

    args = [exe, "-v", voice, "-s", str(speed), "-p", str(pitch), "-a", str(amplitude),
            "-w", str(wav), word]
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0 or not wav.is_file():
        detail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"espeak-ng failed for voice {voice!r}: {detail[0]}")
    audio, rate = sf.read(wav, dtype="float64", always_2d=True)
    return audio.mean(axis=1), rate


def _trim(audio: np.ndarray, rate: int) -> np.ndarray:
    """Cut leading/trailing silence: 10 ms frames below TRIM_THRESHOLD_DB of the loudest."""
    frame = max(1, rate // 100)
    n = len(audio) // frame
    if n == 0:
        return audio
    rms = np.sqrt(np.mean(audio[: n * frame].reshape(n, frame) ** 2, axis=1))
    if rms.max() <= 0:
        return audio[:0]
    loud = np.flatnonzero(rms >= rms.max() * 10 ** (TRIM_THRESHOLD_DB / 20))
    margin = int(TRIM_MARGIN_S * rate)
    start = max(0, loud[0] * frame - margin)
    stop = min(len(audio), (loud[-1] + 1) * frame + margin)
    return audio[start:stop]


def _resample(audio: np.ndarray, rate: int) -> np.ndarray:
    import torch
    import torchaudio.functional as AF

    out = AF.resample(torch.from_numpy(audio), orig_freq=rate, new_freq=SAMPLE_RATE)
    return out.numpy()


def _vary(word: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random gain, a few ms of leading silence and low background noise, peak-limited."""
    word = word * 10 ** (rng.uniform(*GAIN_DB_RANGE) / 20)
    lead = np.zeros(int(rng.uniform(*LEAD_SILENCE_S) * SAMPLE_RATE))
    audio = np.concatenate([lead, word])
    signal_rms = float(np.sqrt(np.mean(word**2)))
    noise_rms = signal_rms * 10 ** (-rng.uniform(*SNR_DB_RANGE) / 20)
    audio = audio + rng.normal(0.0, noise_rms, size=len(audio))
    peak = float(np.abs(audio).max())
    if peak > PEAK_LIMIT:
        audio = audio * (PEAK_LIMIT / peak)
    return np.clip(audio, -1.0, 1.0)


def _speakers(count: int | None) -> dict[str, Speaker]:
    names = list(SPEAKERS)
    if count is not None:
        if not 1 <= count <= len(names):
            raise ValueError(f"speakers must be between 1 and {len(names)}, got {count}")
        names = names[:count]
    return {name: SPEAKERS[name] for name in names}


def generate(out_root: Path, *, speakers: int | None = None, takes: int = DEFAULT_TAKES,
             seed: int = 0, digits: Iterable[int] = range(10)) -> list[Path]:
    """Write ``out_root/recordings/{digit}_{speaker}_{index}.wav`` and ``out_root/README.md``.

    ``speakers`` None means all of SPEAKERS, else the first that many. Same arguments, same
    bytes: every draw comes from a generator seeded by (seed, digit, speaker, take).
    Returns the written WAV paths. Raises RuntimeError if espeak-ng is missing or fails.
    """
    import soundfile as sf

    exe = _espeak()
    if takes < 1:
        raise ValueError(f"takes must be at least 1, got {takes}")
    chosen = _speakers(speakers)
    digits = list(digits)
    if any(d not in range(10) for d in digits):
        raise ValueError(f"digits must be 0-9, got {digits}")
    out_root = Path(out_root)
    recordings = out_root / "recordings"
    recordings.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="spoken_digits_") as tmp:
        wav = Path(tmp) / "tmp.wav"
        for digit in digits:
            for name, spk in chosen.items():
                for take in range(takes):
                    rng = _rng(seed, digit, name, take)
                    speed = int(rng.integers(spk.speed[0], spk.speed[1] + 1))
                    pitch = int(rng.integers(spk.pitch[0], spk.pitch[1] + 1))
                    amplitude = int(rng.integers(AMPLITUDE_RANGE[0], AMPLITUDE_RANGE[1] + 1))
                    raw, rate = _synthesize(exe, spk.voice, DIGIT_WORDS[digit], speed, pitch,
                                            amplitude, wav)
                    word = _resample(_trim(raw, rate), rate)
                    if word.size == 0 or np.abs(word).max() == 0:
                        raise RuntimeError(f"espeak-ng produced silence for {spk.voice!r}")
                    path = recordings / f"{digit}_{name}_{take}.wav"
                    sf.write(path, _vary(word, rng), SAMPLE_RATE, subtype="PCM_16")
                    written.append(path)
    _write_readme(out_root, chosen, takes, seed, digits, len(written), espeak_version())
    return written


def _write_readme(out_root: Path, chosen: dict[str, Speaker], takes: int, seed: int,
                  digits: list[int], count: int, version: str) -> None:
    voices = "\n".join(
        f"| {name} | `{s.voice}` | {s.speed[0]}-{s.speed[1]} | {s.pitch[0]}-{s.pitch[1]} |"
        for name, s in chosen.items()
    )
    speakers_arg = "" if len(chosen) == len(SPEAKERS) else f" --speakers {len(chosen)}"
    text = f"""# Synthetic spoken digits (FSDD layout)

{count} WAV files: digits {", ".join(map(str, digits))} x {len(chosen)} synthetic \
speakers x {takes} takes, as `recordings/{{digit}}_{{speaker}}_{{index}}.wav`, 8000 Hz mono \
16-bit PCM: the layout and format of the Free Spoken Digit Dataset (FSDD), so the FSDD \
loader reads it unchanged. Seed {seed}.

Synthesized with espeak-ng ({version}), formant voices only (no mbrola).

| speaker | espeak-ng voice | speed (wpm) | pitch (0-99) |
|---|---|---|---|
{voices}

Each take draws its own speed and pitch from its speaker's range and an espeak-ng \
amplitude in {AMPLITUDE_RANGE[0]}-{AMPLITUDE_RANGE[1]}, from a generator seeded by \
(seed, digit, speaker, take). The rendering is trimmed to the word \
({TRIM_THRESHOLD_DB:g} dB threshold, {TRIM_MARGIN_S * 1000:g} ms margin), resampled from \
22050 to 8000 Hz, and given a random gain of {GAIN_DB_RANGE[0]:g} to \
{GAIN_DB_RANGE[1]:g} dB, {LEAD_SILENCE_S[0] * 1000:g}-{LEAD_SILENCE_S[1] * 1000:g} ms of \
leading silence and white background noise at {SNR_DB_RANGE[0]:g}-{SNR_DB_RANGE[1]:g} dB SNR.

## How this differs from the real FSDD

- Synthetic formant speech, not recordings of people.
- {len(chosen)} synthetic speakers (accent + voice variant), not FSDD's human speakers.
- {takes} takes per speaker and digit instead of FSDD's 50.
- Take-to-take variation is only speed, pitch, level and noise: much easier than real
  speech. Accuracy on this set says nothing about accuracy on FSDD; it exists so the
  `fsdd_attention` pipeline runs anywhere without a download.

## Regenerate

```
python -m trainables.data.spoken_digits{speakers_arg} --takes {takes} --seed {seed}
```

(needs the Debian package espeak-ng: `apt-get install espeak-ng`). The same espeak-ng \
version and seed give the same files.
"""
    (out_root / "README.md").write_text(text)


def _summary(paths: list[Path]) -> str:
    import soundfile as sf

    if not paths:
        return "0 files"
    durations = [sf.info(p).duration for p in paths]
    size = sum(p.stat().st_size for p in paths)
    return (f"{len(paths)} files, {size / 1e6:.2f} MB, "
            f"durations {min(durations):.2f}-{max(durations):.2f} s")


def main(argv: list[str] | None = None) -> None:
    """CLI: regenerate the set (default: the bundled copy), replacing its old recordings."""
    parser = argparse.ArgumentParser(
        prog="python -m trainables.data.spoken_digits",
        description="Synthesize FSDD-layout spoken digits with espeak-ng.",
    )
    parser.add_argument("--out", type=Path, default=BUNDLED_ROOT,
                        help="dataset root; recordings/ goes under it (default: bundled copy)")
    parser.add_argument("--speakers", type=int, default=None,
                        help=f"first N of the {len(SPEAKERS)} speakers (default: all)")
    parser.add_argument("--takes", type=int, default=DEFAULT_TAKES,
                        help="takes per speaker and digit")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        _espeak()
        # Stale files from a bigger earlier run would otherwise linger in the set.
        for old in (args.out / "recordings").glob("*.wav"):
            old.unlink()
        paths = generate(args.out, speakers=args.speakers, takes=args.takes, seed=args.seed)
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None
    print(f"{args.out}: {_summary(paths)}")


if __name__ == "__main__":
    main()
