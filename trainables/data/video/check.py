"""Check a video dataset tree before a sweep: which listed videos decode, which are broken.

Why a separate check: a sweep should not discover at hour three that 40 clips are cut-off
downloads. Decoding the first, middle and last frame of each video's range finds a file
that cannot be opened, a truncated file (its late frames fail) and a garbage file, for a
fraction of the cost of decoding everything, and the summary says what a loader will skip.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trainables.data.video.decode import CorruptVideoError, decode_frames, probe
from trainables.data.video.index import SUBSETS, VideoEntry, VideoIndex

SHOWN = 10  # corrupt files listed by name in the summary


@dataclass(frozen=True)
class CheckReport:
    dataset: str
    root: Path
    total: int                                  # entries the index lists and the disk has
    decodable: int
    corrupt: tuple[tuple[str, str], ...]        # (name, reason)
    missing: tuple[str, ...]
    description: str
    subsets: tuple[tuple[str, int, int], ...] = ()   # (subset, entries, decodable)
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        """A few lines for a person: counts per subset, the corrupt files, the missing count."""
        lines = [f"{self.dataset} at {self.root}: {self.description}",
                 f"  {self.decodable} of {self.total} videos decode, {len(self.corrupt)} corrupt, "
                 f"{len(self.missing)} listed but missing"]
        for name, count, good in self.subsets:
            lines.append(f"  {name}: {good} of {count} decode")
        if self.corrupt:
            lines.append("  corrupt:")
            lines += [f"    {name}: {reason}" for name, reason in self.corrupt[:SHOWN]]
            if len(self.corrupt) > SHOWN:
                lines.append(f"    ... and {len(self.corrupt) - SHOWN} more")
        if self.missing:
            shown = ", ".join(self.missing[:3]) + (", ..." if len(self.missing) > 3 else "")
            lines.append(f"  missing: {len(self.missing)} ({shown})")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def _load(kind: str, root: Path, split: int, num_glosses: int, classes: int | None
          ) -> VideoIndex:
    if kind == "hmdb51":
        from trainables.data.video.hmdb51 import load_hmdb51_index

        return load_hmdb51_index(root, split=split, classes=classes)
    if kind == "wlasl":
        from trainables.data.video.wlasl import load_wlasl_index

        return load_wlasl_index(root, num_glosses=num_glosses)
    raise ValueError(f"dataset kind {kind!r} is not 'hmdb51' or 'wlasl'")


def _name(entry: VideoEntry) -> str:
    """The file as the index names it: ``<class>/<video>.avi`` or ``videos/<id>.mp4``."""
    return f"{entry.path.parent.name}/{entry.path.name}"


def check_entry(entry: VideoEntry) -> tuple[str | None, bool]:
    """(why the video is unusable or None, whether its frame range starts past its end)."""
    try:
        info = probe(entry.path)
        end = info.num_frames if entry.frame_end is None else min(entry.frame_end,
                                                                   info.num_frames)
        start = min(entry.frame_start, end - 1)
        decode_frames(entry.path, [start, (start + end - 1) // 2, end - 1])
    except CorruptVideoError as err:
        return str(err).removeprefix(f"{entry.path}: "), False
    return None, entry.frame_start >= info.num_frames


def check_dataset(kind: str, root: Path, *, split: int = 1, num_glosses: int = 10,
                  classes: int | None = None) -> CheckReport:
    """Decode the first, middle and last frame of every listed video's range."""
    root = Path(root)
    index = _load(kind, root, split, num_glosses, classes)
    corrupt: list[tuple[str, str]] = []
    bad: set[int] = set()
    past_end = 0
    for position, entry in enumerate(index.entries):
        reason, beyond = check_entry(entry)
        past_end += beyond
        if reason is not None:
            corrupt.append((_name(entry), reason))
            bad.add(position)
    subsets = []
    for name in SUBSETS:
        positions = [k for k, entry in enumerate(index.entries) if entry.subset == name]
        if positions:
            subsets.append((name, len(positions), sum(k not in bad for k in positions)))
    notes = []
    if past_end:
        notes.append(f"{past_end} videos are shorter than their frame range's start (already "
                     "cut to the range, as WLASL's preprocess.py does?); decoding clamps them")
    return CheckReport(dataset=kind, root=root, total=len(index.entries),
                       decodable=len(index.entries) - len(corrupt), corrupt=tuple(corrupt),
                       missing=index.missing, description=index.description,
                       subsets=tuple(subsets), notes=tuple(notes))
