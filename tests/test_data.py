"""MNIST formats round-trip through their generators and loaders; errors name the layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import labels_per_class
from trainables.data.errors import DatasetMissingError
from trainables.data.idx import read_idx, write_idx
from trainables.data.mnist import reduced_mnist, write_mnist_idx
from trainables.data.registry import load_dataset
from trainables.data.splits import index_batches


@pytest.mark.parametrize("name", ["images-idx3-ubyte", "images-idx3-ubyte.gz"])
def test_idx_round_trip(tmp_path, name):
    array = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / name, array)
    np.testing.assert_array_equal(read_idx(tmp_path / name), array)


def test_idx_rejects_truncated_and_foreign_files(tmp_path):
    write_idx(tmp_path / "a", np.zeros((3, 4), dtype=np.uint8))
    data = (tmp_path / "a").read_bytes()
    (tmp_path / "b").write_bytes(data[:-2])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "b")
    (tmp_path / "c").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "c")


@pytest.mark.parametrize("gzip_files", [False, True])
def test_reduced_mnist_from_idx_takes_first_per_class(tmp_path, gzip_files):
    write_mnist_idx(tmp_path, train_per_class=12, test_per_class=5, gzip_files=gzip_files)
    splits = reduced_mnist(data_root=tmp_path, train_per_class=10, test_per_class=4)
    assert splits.x_train.shape == (100, 1, 28, 28) and splits.x_train.dtype == np.uint8
    assert labels_per_class(splits.y_train) == [10] * 10
    assert labels_per_class(splits.y_test) == [4] * 10
    assert splits.val_is_test
    # "first per class" means file order: the kept images are the first ones of each class.
    full = read_idx(next((tmp_path / "mnist").glob("train-images*")))
    labels = read_idx(next((tmp_path / "mnist").glob("train-labels*")))
    first_zero = np.flatnonzero(labels == 0)[0]
    np.testing.assert_array_equal(splits.x_train[splits.y_train == 0][0, 0], full[first_zero])


def test_bundled_split_is_stratified_and_fixed():
    a = reduced_mnist(data_root=None, split_seed=4)
    b = reduced_mnist(data_root=None, split_seed=4)
    assert len(a.y_train) == 4000 and len(a.y_test) == 1000
    assert labels_per_class(a.y_train) == [400] * 10 and labels_per_class(a.y_test) == [100] * 10
    np.testing.assert_array_equal(a.y_train, b.y_train)
    held = reduced_mnist(data_root=None, val_fraction=0.1)
    assert len(held.y_val) == 400 and len(held.y_train) == 3600 and not held.val_is_test


def test_missing_idx_names_expected_files(tmp_path):
    with pytest.raises(DatasetMissingError, match="t10k-images-idx3-ubyte"):
        load_dataset({"name": "reduced_mnist", "root": str(tmp_path)})


def test_index_batches_cover_every_example_once():
    generator = torch.Generator().manual_seed(0)
    batches = list(index_batches(103, 10, device=torch.device("cpu"), shuffle=True,
                                 generator=generator))
    assert [len(b) for b in batches] == [10] * 10 + [3]
    assert sorted(torch.cat(batches).tolist()) == list(range(103))
    capped = list(index_batches(103, 10, device=torch.device("cpu"), shuffle=False, max_batches=2))
    assert torch.cat(capped).tolist() == list(range(20))


def test_device_splits_are_scaled_floats(small_mnist):
    device = small_mnist.to_device(torch.device("cpu"))
    assert device.x_train.dtype == torch.float32
    assert device.x_train.min() >= 0.0 and device.x_train.max() <= 1.0
