"""HMDB51 in its own layout: class folders of AVI clips plus the official split files.

HMDB51 ships ``<class>/<video>.avi`` (51 classes, 6766 clips) and, separately,
``testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt``: each line names a clip and
tags it 1 (train), 2 (test) or 0 (not used in that split). Every split uses 70 train and
30 test clips per class, chosen so that clips cut from the same source video stay on one
side; using the official files (rather than a random split) is what keeps published
numbers comparable, so this loader reads them and never invents a split.

Validation: the split lists have no validation part, so by default validation is the test
list (the source's protocol). ``data.val_fraction`` > 0 instead holds a stratified share of
the list's *training* clips out as validation (see `trainables.data.video.datasets`), and
`source_video` keeps every clip of one source video on the same side of that holdout, as the
official lists do for train and test: clips cut from one video share actors, scene and
camera, so splitting them would let validation reward memorising a scene.

Clips named by a split file but absent on disk are listed in ``missing`` rather than
failing the load; a copy whose clips were re-encoded (``.mp4`` next to the listed ``.avi``)
is found by its stem.
"""

from __future__ import annotations

import re
from pathlib import Path

from trainables.data.errors import DatasetMissingError
from trainables.data.video.index import VideoEntry, VideoIndex

SPLIT_DIR = "testTrainMulti_7030_splits"
LAYOUT_HINT = ("<root>/<class>/<video>.avi (51 class folders) and "
               "<root>/testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt")
SPLIT_NAME = re.compile(r"^(?P<cls>.+)_test_split(?P<split>[123])\.txt$")
TAG_SUBSETS = {1: "train", 2: "test"}
# <source>_<body>_<camera>_np<people>_<view>_<quality>_<clip number>; <source> ends in the
# action's name, e.g. April_09_brush_hair_u_nm_np1_ba_goo_0 is clip 0 of "April_09_brush_hair".
CLIP_NAME = re.compile(r"^(?P<source>.+)_[fhul]_(?:cm|nm)_np\d+_(?:fr|ba|le|ri)_"
                       r"(?:bad|med|goo)_\d+$")
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".webm", ".mov")


def parse_split_file(path: Path) -> list[tuple[str, int]]:
    """(video name, tag) per line of one split file; blank lines and extra spaces are fine."""
    pairs = []
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise ValueError(f"{path}:{number}: expected '<video>.avi <tag 0|1|2>', "
                             f"got {line.strip()[:80]!r}")
        pairs.append((fields[0], int(fields[1])))
    return pairs


def source_video(video_id: str) -> str:
    """The source video an HMDB51 clip was cut from (its name without the clip's tags and
    number); a name outside HMDB51's pattern is its own source."""
    match = CLIP_NAME.match(video_id)
    return match["source"] if match else video_id


def _has_splits(folder: Path) -> bool:
    split_dir = folder / SPLIT_DIR
    return split_dir.is_dir() and any(split_dir.glob("*_test_split*.txt"))


def find_hmdb51(root: Path) -> Path | None:
    """The folder holding the split folder and the class folders: ``root`` or a child of it."""
    root = Path(root)
    if _has_splits(root):
        return root
    if root.is_dir():
        for child in sorted(root.iterdir()):
            if child.is_dir() and _has_splits(child):
                return child
    return None


def _videos_by_stem(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {path.stem: path for path in sorted(folder.iterdir(), reverse=True)
            if path.suffix.lower() in VIDEO_SUFFIXES and path.is_file()}


def load_hmdb51_index(root: Path, split: int = 1, classes: int | None = None) -> VideoIndex:
    """The train and test clips of one official split; ``classes`` keeps the first K classes
    in name order (smoke runs)."""
    if split not in (1, 2, 3):
        raise ValueError(f"HMDB51 split must be 1, 2 or 3, not {split!r}")
    if classes is not None and classes < 1:
        raise ValueError(f"classes={classes} must be at least 1")
    base = find_hmdb51(Path(root))
    if base is None:
        raise DatasetMissingError(f"HMDB51 not found under {root}: expected {LAYOUT_HINT}")
    split_files = {}
    for path in (base / SPLIT_DIR).glob(f"*_test_split{split}.txt"):
        match = SPLIT_NAME.match(path.name)
        if match:
            split_files[match["cls"]] = path
    if not split_files:
        raise DatasetMissingError(f"HMDB51 under {base} has no split {split} files: "
                                  f"expected {LAYOUT_HINT}")
    names = sorted(split_files)
    chosen = names[:classes] if classes else names

    entries: list[VideoEntry] = []
    missing: list[str] = []
    for label, name in enumerate(chosen):
        on_disk = _videos_by_stem(base / name)
        for video, tag in parse_split_file(split_files[name]):
            if tag == 0:
                continue
            path = base / name / video
            if not path.is_file():
                path = on_disk.get(Path(video).stem)
            if path is None:
                missing.append(f"{name}/{video}")
                continue
            entries.append(VideoEntry(path=path, label=label, subset=TAG_SUBSETS[tag],
                                      video_id=Path(video).stem))
    if not entries:
        raise DatasetMissingError(f"none of the {len(missing)} HMDB51 videos that split {split} "
                                  f"lists are under {base}: expected {LAYOUT_HINT}")
    train = sum(entry.subset == "train" for entry in entries)
    description = (f"HMDB51 split {split}: {train} train, {len(entries) - train} test, "
                   f"{len(chosen)} classes")
    if len(chosen) < len(names):
        description += f" (first {len(chosen)} of {len(names)})"
    if missing:
        description += f"; {len(missing)} listed videos missing"
    return VideoIndex(entries=tuple(entries), class_names=tuple(chosen),
                      missing=tuple(missing), description=description)
