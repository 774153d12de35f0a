"""What a video dataset lists: one entry per video, shared by the HMDB51 and WLASL loaders.

Why a common index: the clip store, the sampler and the dataset check work on entries and do
not care which dataset's index or split files produced them. A video the index lists but the
disk lacks is kept by name in ``missing`` instead of failing the load: WLASL in particular
always has dead links, and a run should say how many, not stop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SUBSETS = ("train", "val", "test")


@dataclass(frozen=True)
class VideoEntry:
    path: Path            # the video file
    label: int            # class index into VideoIndex.class_names
    subset: str           # "train" | "val" | "test"
    video_id: str         # file stem (HMDB51) or WLASL video_id
    frame_start: int = 0          # 0-based first frame of the action
    frame_end: int | None = None  # 0-based exclusive end; None = to the end of the video
    bbox: tuple[int, int, int, int] | None = None  # (x0, y0, x1, y1) pixels in the source frame


@dataclass(frozen=True)
class VideoIndex:
    entries: tuple[VideoEntry, ...]
    class_names: tuple[str, ...]
    missing: tuple[str, ...]      # listed by the index/split files but absent on disk (names)
    description: str              # one line, e.g. "HMDB51 split 1: 3570 train, 1530 test, ..."

    def subset(self, name: str) -> tuple[VideoEntry, ...]:
        """The entries of one subset ("train", "val" or "test"), in index order."""
        if name not in SUBSETS:
            raise ValueError(f"subset {name!r} is not one of {', '.join(SUBSETS)}")
        return tuple(entry for entry in self.entries if entry.subset == name)
