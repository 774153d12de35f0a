"""Folders of image files, in torchvision's ImageFolder layout, with optional split folders.

Layouts (``<class>`` folders sorted by name give the label order, torchvision's rule; hidden
folders are ignored; files are found recursively, extensions compared case-insensitively):

- ``<root>/<class>/<image>``: one pool, from which test and validation are held out;
- ``<root>/train/<class>/...`` with optional ``val/`` and ``test/`` next to it. A missing
  ``test/`` is a stratified ``test_fraction`` holdout of train; a missing ``val/`` is a
  stratified ``val_fraction`` holdout of what remains (0: validate on test).

Images are decoded once with Pillow (threads: decoding releases the GIL), converted to RGB
(or L for ``channels=1``) and resized bilinearly to ``image_size`` squares. Unreadable
files are skipped and counted, never fatal: a folder scraped from anywhere often holds a few
broken files, and losing three images of thousands does not change what a run means. The
count and the first names go into the description and a logged warning. Mean/std come from
the training images themselves: an arbitrary folder has no published constants, and the
training split is the only data a model may legitimately look at before testing.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from trainables.data.errors import DatasetMissingError
from trainables.data.normalize import channel_stats
from trainables.data.splits import ArraySplits, holdout_split, stratified_subset

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
SPLITS = ("train", "val", "test")
LAYOUT_HINT = ("<data-root>/<class>/<image> or <data-root>/{train,val,test}/<class>/<image> "
               "(png, jpg, jpeg, bmp, webp; val/ and test/ optional)")
_FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "bmp": "BMP", "webp": "WEBP"}


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def split_dirs(root: Path) -> dict[str, Path] | None:
    """The split folders when ``root`` holds ``train/`` and nothing but split folders."""
    if not (root / "train").is_dir():
        return None
    names = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    if not names <= set(SPLITS):
        return None  # a class that happens to be called "train", next to other classes
    return {s: root / s for s in SPLITS if (root / s).is_dir()}


def find_classes(directory: Path) -> list[str]:
    """Class folder names in label order: sorted, as torchvision.datasets.ImageFolder does."""
    entries = os.scandir(directory)
    return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def list_images(directory: Path, classes: list[str]) -> tuple[list[Path], np.ndarray]:
    """Image paths under ``directory/<class>`` (recursively, sorted) and their labels."""
    index = {name: i for i, name in enumerate(classes)}
    strays = [n for n in find_classes(directory) if n not in index]
    if strays:
        raise ValueError(f"{directory} has class folders absent from the training split: "
                         f"{', '.join(strays[:5])}")
    paths: list[Path] = []
    labels: list[int] = []
    for name in classes:
        found: list[Path] = []
        for dirpath, _, files in os.walk(directory / name, followlinks=True):
            found.extend(Path(dirpath) / f for f in files if _is_image(f))
        paths.extend(sorted(found))
        labels.extend([index[name]] * len(found))
    return paths, np.asarray(labels, dtype=np.int64)


def folder_available(root: str | Path) -> tuple[bool, str]:
    """Cheap check: the layout exists and some class folder holds an image (no decoding)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        return False, f"no folder {root}; expected {LAYOUT_HINT}"
    layout = split_dirs(root)
    train = layout["train"] if layout else root
    for name in find_classes(train):
        for _, _, files in os.walk(train / name, followlinks=True):
            if any(_is_image(f) for f in files):
                splits = "/".join(layout) if layout else "one pool"
                return True, f"image folder under {root} ({splits})"
    return False, f"no class folder with images under {train}; expected {LAYOUT_HINT}"


def _decode(path: Path, mode: str, size: int) -> np.ndarray | None:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            image = image.convert(mode)
            if image.size != (size, size):
                image = image.resize((size, size), Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except Exception:  # Pillow raises many types for broken files; all mean "skip it"
        return None
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def decode_images(paths: list[Path], *, channels: int, size: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, C, size, size) for the readable files and a mask of which were readable."""
    mode = "L" if channels == 1 else "RGB"
    out = np.zeros((len(paths), channels, size, size), dtype=np.uint8)
    ok = np.zeros(len(paths), dtype=bool)
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, array in enumerate(pool.map(lambda p: _decode(p, mode, size), paths)):
            if array is not None:
                out[i], ok[i] = array, True
    return out[ok], ok


def load_image_folder(
    root: Path,
    *,
    image_size: int,
    channels: int = 3,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    limit_train: int | None = None,
) -> ArraySplits:
    """An image folder as ArraySplits, normalised with the training images' own mean/std."""
    root = Path(root).expanduser()
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), not {channels}")
    if image_size < 1:
        raise ValueError(f"image_size must be positive, not {image_size}")
    if not root.is_dir():
        raise DatasetMissingError(f"image folder {root} not found; expected {LAYOUT_HINT}")
    layout = split_dirs(root) or {"train": root}
    classes = find_classes(layout["train"])
    if not classes:
        raise DatasetMissingError(
            f"no class folders under {layout['train']}; expected {LAYOUT_HINT}")

    skipped: list[Path] = []
    decoded: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split, directory in layout.items():
        paths, labels = list_images(directory, classes)
        x, ok = decode_images(paths, channels=channels, size=image_size)
        skipped += [p for p, good in zip(paths, ok, strict=True) if not good]
        decoded[split] = (x, labels[ok])
    x_train, y_train = decoded["train"]
    if not len(y_train):
        raise DatasetMissingError(
            f"no readable images under {layout['train']}; expected {LAYOUT_HINT}")

    notes = [f"image folder under {root}, {len(classes)} classes, {image_size}px"]
    if "test" in decoded:
        x_test, y_test = decoded["test"]
    elif test_fraction > 0:
        keep, test = holdout_split(y_train, float(test_fraction), split_seed)
        x_test, y_test = x_train[test], y_train[test]
        x_train, y_train = x_train[keep], y_train[keep]
        notes.append(f"test {len(test)} held out of train")
    else:
        x_test = y_test = None
    if "val" in decoded:
        x_val, y_val = decoded["val"]
    elif val_fraction > 0:
        keep, val = holdout_split(y_train, float(val_fraction), split_seed)
        x_val, y_val = x_train[val], y_train[val]
        x_train, y_train = x_train[keep], y_train[keep]
        notes.append(f"val {len(val)} held out of train")
    elif x_test is not None and y_test is not None:
        x_val, y_val = x_test, y_test
        notes.append("val = test")
    else:
        raise ValueError(f"{root}: nothing to validate on; add a val/ or test/ folder or set "
                         "val_fraction or test_fraction above 0")
    subset = stratified_subset(y_train, limit_train, split_seed)
    if len(subset) < len(y_train):
        notes.append(f"limit_train {len(subset)} of {len(y_train)}")
        x_train, y_train = x_train[subset], y_train[subset]
    if skipped:
        names = ", ".join(str(p.relative_to(root)) for p in skipped[:3])
        more = ", ..." if len(skipped) > 3 else ""
        notes.append(f"skipped {len(skipped)} unreadable image(s): {names}{more}")
        log.warning("%s: skipped %d unreadable image(s): %s%s", root, len(skipped), names, more)
    mean, std = channel_stats(x_train)
    notes.append(f"train {len(y_train)}, val {len(y_val)}, test "
                 f"{len(y_test) if y_test is not None else 0}, mean/std from train")
    return ArraySplits(
        x_train, y_train, x_val, y_val, x_test, y_test, num_classes=len(classes),
        description="; ".join(notes), val_is_test=x_val is x_test, mean=mean, std=std,
        class_names=tuple(classes), skipped=len(skipped),
    )


def write_image_folder(
    root: Path,
    *,
    classes: int = 3,
    per_class: int = 10,
    image_size: int = 32,
    splits: tuple[str, ...] = ("train", "test"),
    fmt: str = "png",
    seed: int = 0,
    corrupt: int = 0,
) -> Path:
    """Write real image files in the ImageFolder layout for tests; return ``root``.

    ``splits=()`` writes the flat ``<root>/<class>/`` layout. Images carry class-dependent
    stripe patterns (learnable). ``corrupt`` truncated files named ``corrupt_<i>.<fmt>`` go
    into the first class of the first split, to exercise skipping.
    """
    from io import BytesIO

    from PIL import Image

    from trainables.data.cifar import pattern_images

    if fmt.lower() not in _FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(_FORMATS)}, not {fmt!r}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    names = [f"class_{c:02d}" for c in range(classes)]
    for split in splits or ("",):
        labels = np.repeat(np.arange(classes), per_class)
        images = pattern_images(labels, size=image_size, channels=3, rng=rng)
        for i, (label, image) in enumerate(zip(labels, images, strict=True)):
            folder = root / split / names[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image.transpose(1, 2, 0)).save(
                folder / f"{i:05d}.{fmt}", format=_FORMATS[fmt.lower()])
    if corrupt:
        buffer = BytesIO()
        Image.fromarray(images[0].transpose(1, 2, 0)).save(buffer, format=_FORMATS[fmt.lower()])
        data = buffer.getvalue()
        folder = root / (splits[0] if splits else "") / names[0]
        for j in range(corrupt):
            (folder / f"corrupt_{j}.{fmt}").write_bytes(data[: len(data) // 2])
    return root
