"""The driver's checks of a bucket dataset, per format, without downloading it: the loaders'
own presence checks on the listing, and the preflight's content checks on the few files they
read. Every dataset here is written in its real format by the project's generators and
uploaded to a real S3 server (moto's); trials' loading goes through the node copy.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import UserError


@pytest.fixture(autouse=True)
def fresh(s3_env, tmp_path, monkeypatch):
    from trainables.data.remote_view import clear_views

    monkeypatch.setenv("ORCHESTRATOR_CACHE", str(tmp_path / "cache"))
    clear_views()


def _upload(s3, local: Path, name: str) -> str:
    bucket = s3.new_bucket(name)
    s3.upload_tree(local, bucket, "data")
    return f"s3://{bucket}/data"


def _garble(path: Path, size: int = 600) -> None:
    path.write_bytes(b"RIFF" + bytes(range(256)) * (size // 256 + 1))


def _config(name: str, root: str, **extra):
    from trainables.data.registry import parse_data_config

    return parse_data_config({"name": name, "root": root, **extra})


def _fetched(uri: str) -> set[str]:
    from trainables.data.remote_view import sparse_view

    return sparse_view(uri).fetched


def test_cifar_layout_from_the_listing_and_only_the_meta_file_read(s3_env, tmp_path):
    import pickle

    from orchestrator.preflight import check_data
    from trainables.data.cifar import write_cifar
    from trainables.data.registry import dataset_spec

    directory = write_cifar(tmp_path / "good", classes=10, n_train=100, n_test=20)
    uri = _upload(s3_env, tmp_path / "good", "cifar")
    assert dataset_spec("cifar10").available(uri) == (
        True, f"CIFAR-10 batches in {uri}/cifar-10-batches-py")
    check_data(_config("cifar10", uri))
    assert _fetched(uri) == {"cifar-10-batches-py/batches.meta"}

    (directory / "data_batch_5").unlink()
    with open(directory / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"one"]}, f, protocol=2)
    bad = _upload(s3_env, tmp_path / "good", "badcifar")
    ok, detail = dataset_spec("cifar10").available(bad)
    assert not ok and detail.startswith("missing cifar-10-batches-py/data_batch_5; expected ")
    (directory / "data_batch_5").write_bytes((directory / "data_batch_4").read_bytes())
    bad = _upload(s3_env, tmp_path / "good", "badmeta")
    with pytest.raises(UserError) as err:
        check_data(_config("cifar10", bad))
    assert str(err.value).startswith(f"dataset cifar10 under {bad}/cifar-10-batches-py: 1 of 1 "
                                     "files are corrupt: batches.meta (")


def test_fsdd_reads_a_few_recordings_and_names_the_uri(s3_env, tmp_path):
    from orchestrator.preflight import check_data
    from trainables.data.fsdd import write_fsdd

    paths = write_fsdd(tmp_path / "fsdd", speakers=2, takes=5)
    good = _upload(s3_env, tmp_path / "fsdd", "fsdd")
    check_data(_config("fsdd", good))
    assert len(_fetched(good)) == 1  # the first one tried reads

    for path in paths:
        _garble(path)
    bad = _upload(s3_env, tmp_path / "fsdd", "garbled")
    with pytest.raises(UserError) as err:
        check_data(_config("fsdd", bad))
    assert str(err.value).startswith(f"dataset fsdd under {bad}/recordings: none of the 100 "
                                     "recordings could be read: 0_speaker0_0.wav (")
    assert "orchestrator-view" not in str(err.value)


def test_video_index_files_and_one_video_fetched(s3_env, tmp_path):
    from tests.conftest import needs_video_codecs

    needs_video_codecs()
    from orchestrator.preflight import check_data
    from trainables.data.video.synth import write_hmdb51

    videos = write_hmdb51(tmp_path / "hmdb51", classes=2, videos_per_class=3, seconds=1.0,
                          size=(48, 64))
    good = _upload(s3_env, tmp_path / "hmdb51", "hmdb")
    check_data(_config("hmdb51", good))
    fetched = _fetched(good)
    assert {p for p in fetched if p.endswith(".txt")} == {
        f"testTrainMulti_7030_splits/{cls}_test_split1.txt" for cls in
        {v.parent.name for v in videos}}
    assert len(fetched) == 2 + 1  # two split lists, one video

    for path in videos:
        _garble(path, 2000)
    bad = _upload(s3_env, tmp_path / "hmdb51", "badhmdb")
    with pytest.raises(UserError) as err:
        check_data(_config("hmdb51", bad))
    message = str(err.value)
    assert message.startswith(f"dataset hmdb51 under {bad}: none of the 6 listed videos decode")
    assert f"`python -m orchestrator data check hmdb51 --data-root {bad}`" in message


def test_mnist_idx_loads_from_the_nodes_copy(s3_env, tmp_path):
    from trainables.data.mnist import write_mnist_idx
    from trainables.data.registry import dataset_spec, load_dataset

    write_mnist_idx(tmp_path / "idx", train_per_class=20, test_per_class=5, gzip_files=True)
    uri = _upload(s3_env, tmp_path / "idx", "mnist")
    assert dataset_spec("mnist").available(uri) == (True, f"MNIST IDX under {uri}")
    splits = load_dataset({"name": "mnist", "root": uri, "val_size": 20})
    assert (len(splits.y_train), len(splits.y_val), len(splits.y_test)) == (180, 20, 50)
    assert splits.description.endswith(f"; data: copied 4 files ({_size(tmp_path / 'idx')}) "
                                       f"from {uri} in " + splits.description.rsplit(" in ", 1)[1])
    again = load_dataset({"name": "mnist", "root": uri, "val_size": 20})
    assert again.description.endswith(f"data: node copy reused (4 files, "
                                       f"{_size(tmp_path / 'idx')} from {uri})")


def _size(root: Path) -> str:
    return f"{sum(p.stat().st_size for p in root.rglob('*') if p.is_file()) / 1e6:.1f} MB"


def test_image_folder_split_folders_seen_in_the_listing(s3_env, tmp_path):
    from trainables.data.image_folder import write_image_folder
    from trainables.data.registry import ImageFolderConfig, dataset_spec

    write_image_folder(tmp_path / "imgs", classes=2, per_class=3, splits=("train", "val", "test"))
    uri = _upload(s3_env, tmp_path / "imgs", "imgs")
    ok, detail = dataset_spec("image_folder").available(uri)
    assert ok and detail == f"image folder under {uri} (train/val/test)"
    # Its own val/ split: no holdout needed, as for the same folder on disk.
    assert dataset_spec("image_folder").validation(
        ImageFolderConfig(root=uri, val_fraction=0.0)) == (False, ("data.val_fraction", 0.1))
