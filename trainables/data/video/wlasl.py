"""WLASL in its own layout: the ``WLASL_v0.3.json`` index and ``videos/<video_id>.mp4``.

The index is a list of glosses (words), each with its instances: a ``video_id``, the
``split`` (train/val/test), the sign's frame range in the video (``frame_start`` 1-based,
``frame_end`` 1-based inclusive or -1 for "to the end"), and the signer's ``bbox``
[x0, y0, x1, y1] in pixels. The WLASL-K subsets (K = 100, 300, 1000, 2000) are the first K
glosses in file order, so ``num_glosses`` keeps the file's order.

WLASL is distributed as URLs, and many are dead: a copy always lacks some videos. Those go
to ``missing`` with the count in the description; they are not an error.

Note on frame ranges: WLASL's own ``preprocess.py`` cuts YouTube-sourced instances to their
range when it writes ``videos/<video_id>.mp4``. For such a copy the range is already
applied; decoding clamps frame numbers into the video, and ``check_dataset`` reports
entries whose range starts past the end of their file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainables.data.errors import DatasetMissingError
from trainables.data.video.index import SUBSETS, VideoEntry, VideoIndex

INDEX_FILE = "WLASL_v0.3.json"
LAYOUT_HINT = "<root>/WLASL_v0.3.json and <root>/videos/<video_id>.mp4"


def find_wlasl(root: Path) -> Path | None:
    """The folder holding the index file: ``root`` or a child of it; None when absent."""
    root = Path(root)
    if (root / INDEX_FILE).is_file():
        return root
    if root.is_dir():
        for child in sorted(root.iterdir()):
            if child.is_dir() and (child / INDEX_FILE).is_file():
                return child
    return None


def parse_wlasl(path: Path, num_glosses: int) -> list[tuple[str, list[dict]]]:
    """The first ``num_glosses`` glosses in file order, each with its instance dicts."""
    if num_glosses < 1:
        raise ValueError(f"num_glosses={num_glosses} must be at least 1")
    try:
        content = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(content, list):
        raise ValueError(f"{path}: expected a JSON list of {{gloss, instances}} entries, "
                         f"got {type(content).__name__}")
    glosses = []
    for number, item in enumerate(content[:num_glosses]):
        if not (isinstance(item, dict) and isinstance(item.get("gloss"), str)
                and isinstance(item.get("instances"), list)):
            raise ValueError(f"{path}: entry {number} lacks a 'gloss' string and an "
                             "'instances' list")
        glosses.append((item["gloss"], item["instances"]))
    return glosses


def _entry(instance: Any, label: int, videos: Path, where: str) -> VideoEntry:
    """One instance as an entry (ranges converted to 0-based, end exclusive)."""
    if not isinstance(instance, dict) or "video_id" not in instance:
        raise ValueError(f"{where}: an instance without a video_id")
    video_id = str(instance["video_id"])
    subset = instance.get("split")
    if subset not in SUBSETS:
        raise ValueError(f"{where}: video {video_id} has split {subset!r}, not one of "
                         f"{', '.join(SUBSETS)}")
    try:
        start = max(0, int(instance.get("frame_start", 1)) - 1)
        end_raw = int(instance.get("frame_end", -1))
    except (TypeError, ValueError):
        raise ValueError(f"{where}: video {video_id} has a non-integer frame range") from None
    # 1-based inclusive end == 0-based exclusive end; -1 (or an empty range) = to the end.
    end = end_raw if end_raw > start else None
    bbox = instance.get("bbox")
    box = None
    if isinstance(bbox, list | tuple) and len(bbox) == 4:
        try:
            box = tuple(round(float(v)) for v in bbox)
        except (TypeError, ValueError):
            box = None  # a malformed box: use the whole frame rather than fail the index
    return VideoEntry(path=videos / f"{video_id}.mp4", label=label, subset=subset,
                      video_id=video_id, frame_start=start, frame_end=end, bbox=box)


def load_wlasl_index(root: Path, num_glosses: int = 10) -> VideoIndex:
    """The instances of the first ``num_glosses`` glosses whose video is on disk."""
    base = find_wlasl(Path(root))
    if base is None:
        raise DatasetMissingError(f"WLASL index not found under {root}: expected {LAYOUT_HINT}")
    index_file = base / INDEX_FILE
    glosses = parse_wlasl(index_file, num_glosses)
    entries: list[VideoEntry] = []
    missing: list[str] = []
    for label, (gloss, instances) in enumerate(glosses):
        for instance in instances:
            entry = _entry(instance, label, base / "videos", f"{index_file} gloss {gloss!r}")
            if entry.path.is_file():
                entries.append(entry)
            else:
                missing.append(f"videos/{entry.path.name}")
    if not entries:
        raise DatasetMissingError(f"none of the {len(missing)} WLASL videos listed for the first "
                                  f"{len(glosses)} glosses are under {base / 'videos'}: "
                                  f"expected {LAYOUT_HINT}")
    counts = {name: sum(entry.subset == name for entry in entries) for name in SUBSETS}
    description = (f"WLASL first {len(glosses)} glosses: {counts['train']} train, "
                   f"{counts['val']} val, {counts['test']} test")
    if missing:
        description += (f"; {len(missing)} of {len(entries) + len(missing)} listed videos "
                        "missing")
    return VideoIndex(entries=tuple(entries), class_names=tuple(g for g, _ in glosses),
                      missing=tuple(missing), description=description)
