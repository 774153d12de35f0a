"""CIFAR-10 and CIFAR-100 in the "python version" pickle format (Krizhevsky, 2009).

Layout, as extracted from cifar-10-python.tar.gz / cifar-100-python.tar.gz:

- ``cifar-10-batches-py/``: ``data_batch_1`` .. ``data_batch_5`` (10000 images each),
  ``test_batch`` and ``batches.meta`` (``label_names``).
- ``cifar-100-python/``: ``train`` (50000), ``test`` (10000) and ``meta``
  (``fine_label_names``, ``coarse_label_names``); batches carry ``fine_labels`` and
  ``coarse_labels``.

Every batch is a pickled dict (written by Python 2, so loaded with ``encoding="bytes"``;
keys arrive as bytes) holding ``data``, uint8 (N, 3072): the 1024 red, then green, then blue
values of each image, rows first. Pickle runs code on load: read only files you trust, as
with any copy of this format. The generator at the bottom writes the same format, with
class-dependent stripe patterns, so a tiny model beats chance on it within a few steps.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Literal

import numpy as np

from trainables.data.errors import DatasetMissingError
from trainables.data.normalize import CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD
from trainables.data.splits import ArraySplits, with_holdout

URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR100_DIR = "cifar-100-python"
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_FILES = (*CIFAR10_TRAIN, "test_batch", "batches.meta")
CIFAR100_FILES = ("train", "test", "meta")
CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck")
LabelMode = Literal["fine", "coarse"]


class DatasetCorruptError(DatasetMissingError):
    """A dataset file exists but cannot be used; a subclass so callers handle both alike."""


def _layout(classes: int) -> tuple[str, tuple[str, ...], str]:
    if classes == 10:
        return CIFAR10_DIR, CIFAR10_FILES, "cifar-10-python.tar.gz"
    if classes == 100:
        return CIFAR100_DIR, CIFAR100_FILES, "cifar-100-python.tar.gz"
    raise ValueError(f"CIFAR has 10 or 100 classes, not {classes}")


def layout_hint(classes: int) -> str:
    """One line naming the files a CIFAR loader needs and where to get them."""
    folder, files, archive = _layout(classes)
    return (f"<data-root>/{folder}/{{{','.join(files)}}} (extract {archive}, the python "
            f"version, from {URL})")


def find_cifar(root: Path, classes: int) -> Path | None:
    """The folder holding every CIFAR file: ``root/<folder>`` or ``root`` itself."""
    folder, files, _ = _layout(classes)
    for directory in (root / folder, root):
        if all((directory / name).is_file() for name in files):
            return directory
    return None


def missing_files(root: Path, classes: int) -> list[str]:
    """CIFAR files absent from the folder the user most likely meant (for error messages)."""
    folder, files, _ = _layout(classes)
    inside = root.name == folder or any((root / f).is_file() for f in files)
    directory = root if inside else root / folder
    prefix = "" if directory == root else f"{folder}/"
    return [prefix + name for name in files if not (directory / name).is_file()]


def _fatal(path: Path, problem: str, classes: int) -> DatasetCorruptError:
    share = "a fifth of the training set" if path.name.startswith("data_batch") else (
        "the class names" if "meta" in path.name else f"the whole {path.name} split")
    _, _, archive = _layout(classes)
    return DatasetCorruptError(
        f"{path}: {problem}. A corrupt CIFAR file is fatal, not skipped: it holds {share}, "
        f"so results would not be CIFAR-{classes}'s. Re-extract {archive} from {URL}")


def _read_pickle(path: Path, classes: int) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="bytes")
    except Exception as err:  # any unpickling failure means the same thing: a broken file
        raise _fatal(path, f"not a readable CIFAR pickle ({type(err).__name__}: {err})",
                     classes) from err
    if not isinstance(obj, dict):
        raise _fatal(path, f"holds a {type(obj).__name__}, not a dict", classes)
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _read_batch(path: Path, label_key: str, num_labels: int, classes: int
                ) -> tuple[np.ndarray, np.ndarray]:
    batch = _read_pickle(path, classes)
    if "data" not in batch or label_key not in batch:
        raise _fatal(path, f"lacks key {'data' if 'data' not in batch else label_key!r}; "
                     f"has {sorted(batch)}", classes)
    data = np.asarray(batch["data"])
    labels = np.asarray(batch[label_key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise _fatal(path, f"data is {data.dtype} {data.shape}, expected uint8 (N, 3072)", classes)
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise _fatal(path, f"{len(data)} images but labels of shape {labels.shape}", classes)
    if len(labels) and (labels.min() < 0 or labels.max() >= num_labels):
        raise _fatal(path, f"labels outside 0..{num_labels - 1}", classes)
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _read_names(path: Path, key: str, count: int, classes: int) -> tuple[str, ...]:
    names = _read_pickle(path, classes).get(key)
    if not isinstance(names, list | tuple) or len(names) != count:
        raise _fatal(path, f"{key} should list {count} names", classes)
    return tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names)


def load_cifar(
    root: Path,
    *,
    classes: int,
    val_size: int | float = 5000,
    split_seed: int = 0,
    label_mode: LabelMode = "fine",
    limit_train: int | None = None,
) -> ArraySplits:
    """CIFAR-10 or CIFAR-100 (``classes``) as uint8 (N, 3, 32, 32), normalisation constants set.

    Validation is a stratified holdout of ``val_size`` training images (5000: the usual
    45k/5k); 0 validates on the test split. ``label_mode`` picks CIFAR-100's 100 fine or 20
    coarse labels. ``limit_train`` keeps a class-balanced subset of that many training images
    after the holdout (see ``with_holdout``), so CPU smoke runs stay small.
    """
    root = Path(root).expanduser()
    directory = find_cifar(root, classes)
    if directory is None:
        missing = ", ".join(missing_files(root, classes))
        raise DatasetMissingError(f"CIFAR-{classes} not found under {root}: missing {missing}; "
                                  f"expected {layout_hint(classes)}")
    if classes == 10:
        if label_mode != "fine":
            raise ValueError("label_mode='coarse' exists for CIFAR-100 only")
        names = _read_names(directory / "batches.meta", "label_names", 10, classes)
        parts = [_read_batch(directory / name, "labels", 10, classes) for name in CIFAR10_TRAIN]
        x_train = np.concatenate([x for x, _ in parts])
        y_train = np.concatenate([y for _, y in parts])
        x_test, y_test = _read_batch(directory / "test_batch", "labels", 10, classes)
        mean, std = CIFAR10_MEAN, CIFAR10_STD
    else:
        if label_mode not in ("fine", "coarse"):
            raise ValueError(f"label_mode must be 'fine' or 'coarse', not {label_mode!r}")
        count = 100 if label_mode == "fine" else 20
        key = f"{label_mode}_labels"
        names = _read_names(directory / "meta", f"{label_mode}_label_names", count, classes)
        x_train, y_train = _read_batch(directory / "train", key, count, classes)
        x_test, y_test = _read_batch(directory / "test", key, count, classes)
        mean, std = CIFAR100_MEAN, CIFAR100_STD
    title = f"CIFAR-{classes}" + (" (coarse labels)" if label_mode == "coarse" else "")
    return with_holdout(
        x_train, y_train, x_test, y_test, val_size=val_size, split_seed=split_seed,
        limit_train=limit_train, num_classes=len(names), description=f"{title} under {directory}",
        mean=mean, std=std, class_names=names,
    )


# ----------------------------------------------------------------------------- generators


def pattern_images(labels: np.ndarray, *, size: int = 32, channels: int = 3,
                   rng: np.random.Generator) -> np.ndarray:
    """uint8 (N, C, size, size) images a small model can learn: each class has its own colour
    and stripe orientation/frequency (fixed per class, so train and test agree); each image
    gets a random stripe phase and pixel noise so that memorising pixels does not suffice.
    """
    labels = np.asarray(labels)
    grid = np.arange(size) / size
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    out = np.empty((len(labels), channels, size, size), dtype=np.uint8)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        colour = np.random.default_rng([int(c), 2024]).uniform(50, 205, channels)
        theta = (int(c) * 2.399963) % np.pi  # the golden angle spreads orientations evenly
        freq = 1.5 + int(c) % 4
        phase = rng.uniform(0, 2 * np.pi, len(idx))
        ramp = xx * np.cos(theta) + yy * np.sin(theta)
        wave = np.sin(2 * np.pi * freq * ramp[None] + phase[:, None, None])
        noise = rng.normal(0, 15, (len(idx), channels, size, size))
        image = colour[None, :, None, None] + 45 * wave[:, None] + noise
        out[idx] = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return out


def _balanced_labels(n: int, classes: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(n) % classes).astype(np.int64)


def _dump(path: Path, obj: dict[bytes, Any]) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # the real files are Python 2 pickles


def _batch(label: str, x: np.ndarray, labels: dict[bytes, list[int]], names: list[str]
           ) -> dict[bytes, Any]:
    first = next(iter(labels.values()))
    return {
        b"batch_label": label.encode(),
        **labels,
        b"data": x.reshape(len(x), 3072),
        b"filenames": [f"{names[c]}_s_{i:06d}.png".encode() for i, c in enumerate(first)],
    }


def write_cifar(
    root: Path,
    *,
    classes: int = 10,
    n_train: int = 500,
    n_test: int = 100,
    seed: int = 0,
    batches: int = 5,
) -> Path:
    """Write a miniature CIFAR-10/100 in the exact python-pickle format; return its folder.

    Classes are balanced and shuffled. CIFAR-10's training images are spread over five
    batches as in the real files; ``batches`` < 5 writes only the first ones (an incomplete
    extraction, for testing the error). CIFAR-100 coarse labels are ``fine // 5`` here (the
    real mapping groups alphabetically named classes; only the format matters for tests).
    """
    folder, _, _ = _layout(classes)
    directory = Path(root) / folder
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    y_train = _balanced_labels(n_train, classes, rng)
    y_test = _balanced_labels(n_test, classes, rng)
    x_train = pattern_images(y_train, rng=rng)
    x_test = pattern_images(y_test, rng=rng)
    if classes == 10:
        names = list(CIFAR10_NAMES)
        parts = np.array_split(np.arange(n_train), 5)
        for i, part in enumerate(parts[:batches], start=1):
            _dump(directory / f"data_batch_{i}", _batch(
                f"training batch {i} of 5", x_train[part],
                {b"labels": y_train[part].tolist()}, names))
        _dump(directory / "test_batch", _batch(
            "testing batch 1 of 1", x_test, {b"labels": y_test.tolist()}, names))
        _dump(directory / "batches.meta", {
            b"num_cases_per_batch": len(parts[0]),
            b"label_names": [n.encode() for n in names],
            b"num_vis": 3072,
        })
    else:
        names = [f"fine_{c:02d}" for c in range(100)]
        for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
            label = "training batch 1 of 1" if split == "train" else "testing batch 1 of 1"
            _dump(directory / split, _batch(
                label, x, {b"fine_labels": y.tolist(), b"coarse_labels": (y // 5).tolist()},
                names))
        _dump(directory / "meta", {
            b"fine_label_names": [n.encode() for n in names],
            b"coarse_label_names": [f"coarse_{c:02d}".encode() for c in range(20)],
        })
    return directory
