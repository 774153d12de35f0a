"""What the model looked at, end to end: a real (tiny) CIFAR image trial saves its attention
maps, Grad-CAM and confusion matrix (the unit tests of trainables/explain.py are in
test_explain.py; these take minutes, so tools/mutate.py leaves them out)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from trainables.data.cifar import write_cifar
from trainables.explain import CONFUSION_FILE, MAPS_FILE
from trainables.image import run_image_trial


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar_explain")
    write_cifar(root, classes=10, n_train=300, n_test=60)
    return str(root)


def _trial(cifar_root: str, attention: str, **train) -> dict:
    return {
        "seed": 0,
        "variant": attention,
        "data": {"name": "cifar10", "root": cifar_root, "val_size": 50},
        "model": {"name": "cifar_resnet20", "attention": attention, "residual": "weighted"},
        "train": {"epochs": 2, "batch_size": 32, "eval_batch_size": 64, "optimizer": "adam",
                  "lr": 2e-3, **train},
        "augment": {"crop_padding": 4, "flip": True},
        "device": "cpu",
    }


def _run(config: dict) -> tuple[list[dict], dict[str, bytes]]:
    rows: list[dict] = []
    files: dict[str, bytes] = {}
    run_image_trial(config, report=lambda metrics, state: rows.append(metrics),
                    artifacts=files.__setitem__)
    return rows, files


@pytest.mark.parametrize(("attention", "map_kind"), [
    ("selfatt", "attention/"), ("cbam", "attention/"), ("se", "channel/"),
])
def test_trial_saves_maps_gradcam_and_confusion(cifar_root, attention, map_kind):
    rows, files = _run(_trial(cifar_root, attention))
    assert rows[-1]["status"] == "ok" and rows[-1]["test_acc"] is not None
    assert set(files) == {MAPS_FILE, CONFUSION_FILE}
    maps = np.load(io.BytesIO(files[MAPS_FILE]))
    n = len(maps["labels"])
    assert n == 16 and sorted(set(maps["labels"].tolist())) == list(range(10))
    assert maps["images"].dtype == np.uint8 and maps["images"].shape == (n, 3, 32, 32)
    cam = maps["gradcam"].astype(np.float32)
    assert cam.shape == (n, 32, 32) and cam.min() >= 0 and cam.max() <= 1
    assert not np.allclose(cam[0], cam[1])  # per-image heatmaps, not one shared picture
    assert maps["class_names"].shape == (10,)
    attention_keys = [k for k in maps.files if k.startswith(map_kind)]
    assert len(attention_keys) == 3, maps.files  # one module after each of the three stages
    if map_kind == "attention/":
        first = maps[attention_keys[0]].astype(np.float32)
        assert first.shape == (n, 32, 32) and first.min() >= 0 and first.max() <= 1
    else:
        assert maps[attention_keys[0]].shape == (n, 16)  # SE's gate on the 16-channel stage
    confusion = json.loads(files[CONFUSION_FILE])
    assert confusion["split"] == "test"
    matrix = np.array(confusion["matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 60
    # The confusion matrix agrees with the test accuracy the loop reported.
    assert np.trace(matrix) / matrix.sum() == pytest.approx(rows[-1]["test_acc"])


def test_diverged_trial_writes_no_artifacts(cifar_root):
    config = _trial(cifar_root, "none", lr=1e30, optimizer="sgd", divergence_check_every=1)
    rows, files = _run(config)
    assert rows[-1]["status"] == "diverged" and files == {}


def test_augmentation_changes_training_but_is_reproducible(cifar_root):
    first, _ = _run(_trial(cifar_root, "none"))
    again, _ = _run(_trial(cifar_root, "none"))
    plain_config = _trial(cifar_root, "none")
    plain_config["augment"] = {"crop_padding": 0, "flip": False}
    plain, _ = _run(plain_config)
    assert [r["train_loss"] for r in first] == [r["train_loss"] for r in again]
    assert first[0]["train_loss"] != plain[0]["train_loss"]
