"""CIFAR, full MNIST and image folders round-trip through their generators and loaders;
holdouts are stratified and fixed; normalisation and batched augmentation are exact."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pytest
import torch

from trainables.data.augment import RandomCropFlip, fill_for
from trainables.data.cifar import (
    CIFAR10_NAMES,
    DatasetCorruptError,
    load_cifar,
    write_cifar,
)
from trainables.data.errors import DatasetMissingError
from trainables.data.image_folder import load_image_folder, write_image_folder
from trainables.data.mnist import load_mnist, write_mnist_idx
from trainables.data.normalize import CIFAR10_MEAN, CIFAR10_STD, MNIST_MEAN, channel_stats
from trainables.data.registry import DATASETS, load_dataset, parse_data_config
from trainables.data.splits import ArraySplits, holdout_split, stratified_subset


def _counts(y, classes):
    return np.bincount(y, minlength=classes).tolist()


# ------------------------------------------------------------------------- holdout split


def test_holdout_is_stratified_disjoint_and_fixed_per_seed():
    y = np.repeat(np.arange(10), 50)  # 500 examples, 50 per class: a 10x smaller CIFAR
    y = np.random.default_rng(1).permutation(y)
    train, val = holdout_split(y, 50, seed=3)
    assert len(train) == 450 and len(val) == 50
    assert _counts(y[val], 10) == [5] * 10 and _counts(y[train], 10) == [45] * 10
    assert not set(train) & set(val) and sorted([*train, *val]) == list(range(500))
    assert np.all(np.diff(val) > 0) and np.all(np.diff(train) > 0)
    again, other = holdout_split(y, 50, seed=3)[1], holdout_split(y, 50, seed=4)[1]
    np.testing.assert_array_equal(val, again)
    assert not np.array_equal(val, other)


def test_holdout_fraction_zero_and_errors():
    y = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    train, val = holdout_split(y, 0.2, seed=0)
    assert len(val) == 2 and len(train) == 8
    train, val = holdout_split(y, 0, seed=0)
    assert len(val) == 0 and train.tolist() == list(range(10))
    # Largest remainder: 5 of 10 gives classes of 3, 3, 4 shares 1.5, 1.5, 2 -> 2, 1, 2.
    assert _counts(y[holdout_split(y, 5, seed=0)[1]], 3) == [2, 1, 2]
    for bad in (10, 11, 1.0, -1, 1.5):
        with pytest.raises(ValueError, match="val_size"):
            holdout_split(y, bad, seed=0)
    assert _counts(y[stratified_subset(y, 3, seed=0)], 3) == [1, 1, 1]
    assert stratified_subset(y, None, seed=0).tolist() == list(range(10))


# ----------------------------------------------------------------------------- CIFAR-10


@pytest.fixture(scope="module")
def cifar10_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar10")
    write_cifar(root, classes=10, n_train=500, n_test=100, seed=0)
    return root


def test_cifar10_round_trip_keeps_file_order_and_pixels(cifar10_root):
    splits = load_cifar(cifar10_root, classes=10, val_size=0)
    assert splits.x_train.shape == (500, 3, 32, 32) and splits.x_train.dtype == np.uint8
    assert splits.x_test.shape == (100, 3, 32, 32) and splits.y_test.dtype == np.int64
    assert splits.val_is_test and splits.x_val is splits.x_test
    assert splits.class_names == CIFAR10_NAMES and splits.num_classes == 10
    assert splits.mean == CIFAR10_MEAN and splits.std == CIFAR10_STD
    assert _counts(splits.y_train, 10) == [50] * 10
    # Read the second batch's first row by hand: red plane first, rows first.
    with open(cifar10_root / "cifar-10-batches-py" / "data_batch_2", "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    assert set(batch) == {b"batch_label", b"labels", b"data", b"filenames"}
    row, label = batch[b"data"][0], batch[b"labels"][0]
    image = splits.x_train[100]  # batches of 100: the first image of data_batch_2
    np.testing.assert_array_equal(image[0, 0], row[:32])
    np.testing.assert_array_equal(image[1], row[1024:2048].reshape(32, 32))
    np.testing.assert_array_equal(image[2, 31], row[-32:])
    assert splits.y_train[100] == label


def test_cifar10_holdout_and_limit(cifar10_root):
    splits = load_cifar(cifar10_root / "cifar-10-batches-py", classes=10, val_size=50,
                        split_seed=1)
    assert len(splits.y_train) == 450 and _counts(splits.y_val, 10) == [5] * 10
    assert not splits.val_is_test and "val 50 held out" in splits.description
    small = load_cifar(cifar10_root, classes=10, val_size=50, split_seed=1, limit_train=100)
    assert _counts(small.y_train, 10) == [10] * 10
    np.testing.assert_array_equal(small.x_val, splits.x_val)  # the cap leaves val alone


def test_cifar_missing_batch_names_the_file(tmp_path):
    write_cifar(tmp_path, classes=10, n_train=50, n_test=10, batches=4)
    with pytest.raises(DatasetMissingError, match="data_batch_5") as info:
        load_cifar(tmp_path, classes=10, val_size=0)
    assert "cifar.html" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(DatasetMissingError, match="cifar-100-python/meta"):
        load_cifar(tmp_path / "nowhere", classes=100, val_size=0)


def test_cifar_corrupt_batch_is_a_clear_fatal_error(tmp_path):
    directory = write_cifar(tmp_path, classes=10, n_train=50, n_test=10)
    path = directory / "data_batch_3"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DatasetCorruptError, match=r"data_batch_3.*fifth of the training set"):
        load_cifar(tmp_path, classes=10, val_size=0)
    with open(path, "wb") as f:
        pickle.dump({b"data": np.zeros((5, 100), np.uint8), b"labels": [0] * 5}, f)
    with pytest.raises(DatasetCorruptError, match=r"expected uint8 \(N, 3072\)"):
        load_cifar(tmp_path, classes=10, val_size=0)


# ---------------------------------------------------------------------------- CIFAR-100


@pytest.mark.parametrize(("mode", "count"), [("fine", 100), ("coarse", 20)])
def test_cifar100_round_trip(tmp_path, mode, count):
    write_cifar(tmp_path, classes=100, n_train=400, n_test=200)
    splits = load_cifar(tmp_path, classes=100, val_size=100, label_mode=mode)
    assert splits.num_classes == count and len(splits.class_names) == count
    assert splits.class_names[3] == (f"{mode}_03")
    assert len(splits.y_train) == 300 and len(splits.y_val) == 100
    assert splits.x_test.shape == (200, 3, 32, 32) and splits.y_test.max() < count
    with open(tmp_path / "cifar-100-python" / "train", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    assert {b"fine_labels", b"coarse_labels", b"filenames", b"batch_label"} <= set(raw)


# ------------------------------------------------------------------------- full MNIST


@pytest.mark.parametrize("gzip_files", [False, True])
def test_full_mnist_round_trip(tmp_path, gzip_files):
    write_mnist_idx(tmp_path, train_per_class=20, test_per_class=5, gzip_files=gzip_files)
    splits = load_mnist(tmp_path, val_size=50, split_seed=0)
    assert splits.x_train.shape == (150, 1, 28, 28) and splits.x_test.shape == (50, 1, 28, 28)
    assert _counts(splits.y_val, 10) == [5] * 10 and not splits.val_is_test
    assert splits.mean == MNIST_MEAN and splits.class_names[7] == "7"
    assert load_mnist(tmp_path, val_size=0).val_is_test
    with pytest.raises(DatasetMissingError, match="train-labels-idx1-ubyte"):
        load_mnist(tmp_path / "empty", val_size=0)


# ------------------------------------------------------------------------- image folder


def test_image_folder_split_layout_skips_corrupt_files(tmp_path, caplog):
    write_image_folder(tmp_path, classes=3, per_class=10, image_size=16,
                       splits=("train", "val", "test"), corrupt=2)
    with caplog.at_level(logging.WARNING):
        splits = load_image_folder(tmp_path, image_size=16)
    assert splits.class_names == ("class_00", "class_01", "class_02")
    assert splits.x_train.shape == (30, 3, 16, 16) and len(splits.y_val) == 30
    assert len(splits.y_test) == 30 and not splits.val_is_test
    assert _counts(splits.y_train, 3) == [10, 10, 10]
    assert "skipped 2 unreadable" in splits.description
    assert "corrupt_0.png" in splits.description and "corrupt_0.png" in caplog.text


def test_image_folder_pixels_labels_and_resize(tmp_path):
    from PIL import Image

    write_image_folder(tmp_path, classes=2, per_class=6, image_size=8, splits=("train", "test"))
    folder = tmp_path / "train" / "class_01"
    (folder / "00006.png").rename(folder / "X.PNG")
    splits = load_image_folder(tmp_path, image_size=8, val_fraction=0.0)
    assert splits.val_is_test and len(splits.y_train) == 12  # the .PNG file counts too
    first = np.asarray(Image.open(tmp_path / "train" / "class_00" / "00000.png").convert("RGB"))
    np.testing.assert_array_equal(splits.x_train[0], first.transpose(2, 0, 1))
    grey = load_image_folder(tmp_path, image_size=4, channels=1, val_fraction=0.0)
    assert grey.x_train.shape == (12, 1, 4, 4) and len(grey.mean) == 1


def test_image_folder_flat_layout_holds_out_test_and_val(tmp_path):
    write_image_folder(tmp_path, classes=3, per_class=20, image_size=8, splits=(), fmt="jpg")
    splits = load_image_folder(tmp_path, image_size=8, val_fraction=0.25, test_fraction=0.25)
    assert _counts(splits.y_test, 3) == [5, 5, 5] and _counts(splits.y_val, 3) == [4, 4, 3]
    assert len(splits.y_train) == 34 and splits.num_classes == 3
    mean, std = channel_stats(splits.x_train)
    assert splits.mean == mean and splits.std == std
    with pytest.raises(DatasetMissingError, match="class"):
        load_image_folder(tmp_path / "nothing", image_size=8)


# ------------------------------------------------------------------------ normalisation


def test_own_mean_std_gives_zero_mean_unit_std_on_device(cifar10_root):
    raw = load_cifar(cifar10_root, classes=10, val_size=0)
    mean, std = channel_stats(raw.x_train)
    own = ArraySplits(raw.x_train, raw.y_train, raw.x_val, raw.y_val, raw.x_test, raw.y_test,
                      num_classes=10, description="", mean=mean, std=std)
    device = own.to_device(torch.device("cpu"))
    per_channel = device.x_train.transpose(0, 1).reshape(3, -1)
    torch.testing.assert_close(per_channel.mean(1), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(per_channel.std(1), torch.ones(3), atol=1e-3, rtol=0)
    assert device.mean == mean
    back = device.unnormalise(device.x_train[:4])
    torch.testing.assert_close(back * 255, torch.from_numpy(raw.x_train[:4]).float(),
                               atol=1e-3, rtol=0)


def test_mean_std_must_match_channels(cifar10_root):
    raw = load_cifar(cifar10_root, classes=10, val_size=0)
    with pytest.raises(ValueError, match="one per channel"):
        ArraySplits(raw.x_train, raw.y_train, raw.x_val, raw.y_val, None, None, 10, "",
                    mean=(0.5,), std=(0.5,))


# ------------------------------------------------------------------------- augmentation


def _batch(n=8, c=3, h=6, w=5, seed=0):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_crop_flip_identity_and_shape():
    x = _batch()
    same = RandomCropFlip(padding=0, flip=False, generator=torch.Generator().manual_seed(0))
    assert same(x) is x
    out = RandomCropFlip(padding=2, generator=torch.Generator().manual_seed(0))(x)
    assert out.shape == x.shape and out.dtype == x.dtype


def test_flip_only_mirrors_some_images():
    x = _batch(n=64)
    out = RandomCropFlip(padding=0, flip=True, generator=torch.Generator().manual_seed(1))(x)
    flipped = [bool(torch.equal(o, xi.flip(-1))) for o, xi in zip(out, x, strict=True)]
    kept = [bool(torch.equal(o, xi)) for o, xi in zip(out, x, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 16 < sum(flipped) < 48


def test_crops_are_shifts_of_the_padded_image_and_flips_mirror_them():
    x = _batch(n=32, h=6, w=5)
    fill = (0.1, -0.2, 0.3)
    out = RandomCropFlip(padding=2, fill=fill, generator=torch.Generator().manual_seed(2))(x)
    padded = torch.empty(32, 3, 10, 9)
    padded[:] = torch.tensor(fill).view(1, 3, 1, 1)
    padded[:, :, 2:8, 2:7] = x
    kinds = set()
    for i in range(32):
        matches = [(dy, dx, f) for dy in range(5) for dx in range(5) for f in (False, True)
                   if torch.equal(out[i], (lambda c: c.flip(-1) if f else c)(
                       padded[i, :, dy : dy + 6, dx : dx + 5]))]
        assert matches, f"image {i} is not a (flipped) crop of its padded original"
        kinds.update((m[0], m[2]) for m in matches)
    assert len({k[0] for k in kinds}) > 1 and {k[1] for k in kinds} == {False, True}


def test_same_seed_same_crops_and_generator_state_advances():
    x = _batch(n=16)
    a = RandomCropFlip(generator=torch.Generator().manual_seed(5))
    b = RandomCropFlip(generator=torch.Generator().manual_seed(5))
    first = a(x)
    torch.testing.assert_close(first, b(x), rtol=0, atol=0)
    assert not torch.equal(first, a(x))


def test_fill_for_pads_black_and_big_batches_on_meta_and_cpu():
    fill = fill_for(CIFAR10_MEAN, CIFAR10_STD)
    assert fill[0] == pytest.approx(-0.4914 / 0.2470)
    x = torch.zeros(256, 3, 32, 32)
    out = RandomCropFlip(padding=4, fill=fill, generator=torch.Generator().manual_seed(0))(x)
    for channel, value in enumerate(fill):  # black image + black padding: one value each
        padding = out[:, channel] != 0
        assert padding.any() and torch.all(out[:, channel][padding] == torch.tensor(value))
    meta = RandomCropFlip(padding=4, fill=fill, generator=torch.Generator().manual_seed(0))(
        torch.empty(256, 3, 32, 32, device="meta"))
    assert meta.shape == (256, 3, 32, 32) and meta.device.type == "meta"
    with pytest.raises(ValueError, match="fill"):
        RandomCropFlip(fill=(0.0, 0.0), generator=torch.Generator())(x)


# ----------------------------------------------------------------------------- registry


def test_registry_availability_and_loading(tmp_path):
    cifar = tmp_path / "data"
    write_cifar(cifar, classes=10, n_train=50, n_test=20)
    write_cifar(cifar, classes=100, n_train=200, n_test=100)
    write_mnist_idx(cifar, train_per_class=6, test_per_class=2)
    write_image_folder(cifar / "folder", classes=2, per_class=4, image_size=8)
    empty = str(tmp_path / "empty")
    for name, root in [("cifar10", cifar), ("cifar100", cifar), ("mnist", cifar),
                       ("image_folder", cifar / "folder")]:
        ok, detail = DATASETS[name].available(str(root))
        assert ok, detail
        ok, detail = DATASETS[name].available(empty)
        assert not ok
        ok, detail = DATASETS[name].available(None)
        assert not ok and "--data-root" in detail
    assert "data_batch_1" in DATASETS["cifar10"].available(empty)[1]
    assert "cifar-100-python/train" in DATASETS["cifar100"].available(empty)[1]
    splits = load_dataset({"name": "cifar100", "root": str(cifar), "val_size": 0.1,
                           "label_mode": "coarse"})
    assert splits.num_classes == 20 and len(splits.y_val) == 20
    folder = load_dataset({"name": "image_folder", "root": str(cifar / "folder"),
                           "image_size": 8, "val_fraction": 0})
    assert folder.val_is_test and folder.x_train.shape[1:] == (3, 8, 8)
    cfg = parse_data_config({"name": "mnist", "root": str(cifar), "val_size": 10})
    assert cfg.val_size == 10 and cfg.limit_train is None
    with pytest.raises(DatasetMissingError, match="--data-root"):
        load_dataset({"name": "cifar10"})
