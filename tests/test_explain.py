"""Unit tests of trainables/explain.py on tiny models and real digits: Grad-CAM against a hand
computation, attention and channel maps against the blocks' own gates, and the two saved
files against predictions made here (the end-to-end trial is in test_explain_trial.py).

These are the tests tools/mutate.py runs against explain.py, so each names one behaviour
and runs in well under a second.
"""

from __future__ import annotations

import copy
import io
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainables.blocks import CBAM, PointwiseSpatialGate, SqueezeExcite, set_record_gate
from trainables.data.splits import ArraySplits, DeviceSplits
from trainables.explain import (
    CONFUSION_FILE,
    MAPS_FILE,
    cam_layer,
    confusion_matrix,
    explain,
    grad_cam,
    pick_examples,
    write_artifacts,
)
from trainables.models.registry import get_model

FP16_STEP = 2.0 ** -11  # float16's spacing just below 1: the stored maps' resolution


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Torch on one thread here, before any fixture touches a tensor.

    Why: tools/mutate.py (mutmut) runs these tests in processes forked from one that already
    used torch's OpenMP pool; in the fork that pool is gone, a multi-threaded op spins until
    mutmut's CPU limit, and every mutant would count as "killed" by timeout.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class TwoConv(nn.Module):
    """conv -> ReLU -> conv (stride 2: Grad-CAM's layer) -> ReLU -> dropout -> Linear.

    A dense head (not global pooling) makes the gradient vary over the map, so the spatial
    mean that gives Grad-CAM's channel weights is not a no-op; dropout tells eval from train.
    """

    def __init__(self, classes: int = 10, size: tuple[int, int] = (24, 20)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(6 * (size[0] // 2) * (size[1] // 2), classes)

    @property
    def cam_layer(self) -> nn.Module:
        return self.conv2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(F.relu(self.conv1(x)))
        return self.fc(self.drop(F.relu(x)).flatten(1))


class Gated(nn.Module):
    """Every kind of map explain() reports: a channel gate (SE), a spatial gate, a CBAM whose
    sub-gates must not be reported on their own, and an SE that never runs (no gate)."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = SqueezeExcite(4, rd_channels=2)  # first in named_modules, never called
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.se = SqueezeExcite(4, rd_channels=2)
        self.pool = nn.MaxPool2d(2)
        self.spatial = PointwiseSpatialGate(4)
        self.cbam = CBAM(4, rd_channels=2)
        self.fc = nn.Linear(4, 10)

    @property
    def cam_layer(self) -> nn.Module:
        return self.cbam

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.se(F.relu(self.conv(x)))
        x = self.cbam(self.spatial(self.pool(x)))  # gates on a half-size map
        return self.fc(x.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    """Six real digits, cropped to 24x20 (not square, so height and width cannot swap)."""
    from trainables.data.mnist import bundled_digits

    x, _ = bundled_digits()
    crop = torch.from_numpy(x[:6, :, 2:26, 4:24].astype(np.float32)) / 255.0
    return (crop - 0.13) / 0.31


def two_conv(seed: int = 0) -> TwoConv:
    torch.manual_seed(seed)
    return TwoConv()


def hand_gradcam(model: TwoConv, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grad-CAM by hand in float64, one image at a time: (maps, classes, pre-ReLU sums)."""
    ref = copy.deepcopy(model).double().eval()
    maps, classes, raw = [], [], []
    for image in x.double():
        features = ref.conv2(F.relu(ref.conv1(image[None])))  # (1, K, h, w)
        logits = ref.fc(F.relu(features).flatten(1))[0]
        label = int(logits.argmax())
        (grads,) = torch.autograd.grad(logits[label], features)
        alpha = grads[0].mean(dim=(1, 2))  # (K,): the spatial mean of each channel's gradient
        weighted = (alpha[:, None, None] * features[0]).sum(dim=0).detach()  # (h, w)
        cam = F.interpolate(weighted.clamp_min(0)[None, None], size=x.shape[-2:],
                            mode="bilinear", align_corners=False)[0, 0]
        maps.append(((cam - cam.min()) / (cam.max() - cam.min())).numpy())
        classes.append(label)
        raw.append(weighted.numpy())
    return np.stack(maps), np.array(classes), np.stack(raw)


# ---------------------------------------------------------------------------- pick_examples


def test_pick_examples_is_class_balanced_and_fixed():
    labels = np.array([2, 0, 0, 1, 2, 1, 0, 2])
    picked = pick_examples(labels, 3, count=5)
    assert picked.tolist() == [1, 3, 0, 2, 5] and picked.dtype == np.int64
    assert pick_examples(labels, 3, count=100).tolist() == [1, 3, 0, 2, 5, 4, 6, 7]
    assert pick_examples(labels, 3, count=2).tolist() == [1, 3]  # fewer than the classes
    many = np.tile(np.arange(4), 6)  # 24 labels, 6 per class
    assert pick_examples(many, 4).tolist() == list(range(16))  # 16 by default


def test_pick_examples_stops_when_no_class_has_more():
    # Labels outside range(num_classes) are never picked; the loop must still end.
    labels = np.array([0, 7, 1, 7, 7, 0])
    assert pick_examples(labels, 2, count=16).tolist() == [0, 2, 5]
    none = pick_examples(np.array([], dtype=np.int64), 3)
    assert none.tolist() == [] and none.dtype == np.int64  # still usable as an index


# ---------------------------------------------------------------------------- cam_layer


def test_cam_layer_is_the_models_own():
    model = two_conv()
    assert cam_layer(model) is model.conv2


def test_a_model_without_cam_layer_is_an_error_not_a_guess():
    plain = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.LazyLinear(3))
    with pytest.raises(TypeError, match="Sequential declares no cam_layer"):
        cam_layer(plain)
    with pytest.raises(TypeError, match="Sequential declares no cam_layer"):
        explain(plain, torch.zeros(1, 1, 5, 5))


def test_a_cam_layer_outside_the_model_is_an_error():
    class Elsewhere(TwoConv):
        stray = nn.Conv2d(4, 6, 3)

        @property
        def cam_layer(self) -> nn.Module:
            return self.stray

    with pytest.raises(ValueError, match=r"Elsewhere\.cam_layer \(Conv2d\) is not a submodule"):
        cam_layer(Elsewhere())


@pytest.mark.parametrize(("layer", "got"), [("fc", r"shape \(2, 10\)"), ("unused", "nothing")])
def test_a_cam_layer_without_a_map_is_an_error_and_explain_cleans_up(digits, layer, got):
    class Wrong(Gated):
        @property
        def cam_layer(self) -> nn.Module:
            return getattr(self, layer)

    model = Wrong()
    with pytest.raises(ValueError, match=rf"Wrong\.cam_layer must output an \(N, C, h, w\) map "
                                         rf"for Grad-CAM; it gave {got}"):
        explain(model, digits[:2])
    assert all(not m._forward_hooks for m in model.modules())  # the hook is gone
    assert all(m.record_gate is False and m.last_gate is None
               for m in (model.se, model.spatial, model.cbam))


# ---------------------------------------------------------------------------- Grad-CAM


def test_grad_cam_matches_a_hand_computation(digits):
    model = two_conv().eval()
    hand, classes, raw = hand_gradcam(model, digits)
    # Not a degenerate case: ReLU cuts something, and the classes differ between images.
    assert (raw < 0).any() and (raw > 0).any() and len(set(classes.tolist())) > 1
    captured = {}
    handle = model.conv2.register_forward_hook(lambda _m, _i, out: captured.update(a=out))
    logits = model(digits)
    handle.remove()
    score = logits[torch.arange(len(digits)), torch.as_tensor(classes)].sum()
    cam = grad_cam(captured["a"], score, (24, 20))
    assert cam.dtype == torch.float32 and cam.shape == (6, 24, 20)
    np.testing.assert_allclose(cam.numpy(), hand, rtol=0, atol=1e-6)
    assert all(p.grad is None for p in model.parameters())  # autograd.grad, not backward


def test_explain_gradcam_is_the_hand_computation_for_the_predicted_class(digits):
    model = two_conv().train()  # explain must switch dropout off itself
    hand, classes, _ = hand_gradcam(model, digits)
    out = explain(model, digits)
    assert not model.training
    assert out["predictions"].tolist() == classes.tolist()
    assert out["predictions"].dtype == np.int64
    assert out["gradcam"].dtype == np.float16 and out["gradcam"].shape == (6, 24, 20)
    np.testing.assert_allclose(out["gradcam"].astype(np.float32), hand, rtol=0, atol=FP16_STEP)
    assert out["gradcam"].min() == 0 and out["gradcam"].max() == 1
    # Another class's map differs: explain really explains the prediction.
    ref = copy.deepcopy(model).double()
    other = (classes + 1) % 10
    features = ref.conv2(F.relu(ref.conv1(digits.double())))
    logits = ref.fc(F.relu(features).flatten(1))
    score = logits[torch.arange(6), torch.as_tensor(other)].sum()
    assert np.abs(grad_cam(features, score, (24, 20)).numpy() - hand).max() > 0.1


def test_explain_confidence_is_the_softmax_of_the_prediction(digits):
    model = two_conv()
    out = explain(model, digits)
    with torch.no_grad():
        probs = model.eval()(digits).softmax(dim=1).numpy()
    assert out["confidence"].dtype == np.float32 and out["confidence"].shape == (6,)
    np.testing.assert_allclose(out["confidence"], probs.max(axis=1), rtol=1e-6)
    assert out["predictions"].tolist() == probs.argmax(axis=1).tolist()


def test_explain_works_under_no_grad_and_in_another_dtype(digits):
    model = two_conv()
    expected = explain(model, digits)["gradcam"].astype(np.float32)
    with torch.no_grad():  # on_finish callers may hold no_grad; Grad-CAM needs gradients
        again = explain(model, digits)
    np.testing.assert_array_equal(again["gradcam"].astype(np.float32), expected)
    wide = copy.deepcopy(model).double()
    out = explain(wide, digits)  # float32 inputs are cast to the model's dtype
    np.testing.assert_allclose(out["gradcam"].astype(np.float32), expected, atol=FP16_STEP)


def test_explain_leaves_the_model_unchanged_and_recording_off():
    model = get_model("cifar_resnet20", attention="cbam", num_classes=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(4, 3, 32, 32)
    out = explain(model, x)
    assert set(out) >= {"predictions", "confidence", "gradcam"}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert all(not getattr(m, "record_gate", False) for m in model.modules())
    assert all(not m._forward_hooks for m in model.modules())
    assert cam_layer(model) is model.cam_layer


def test_unit_range_spans_zero_to_one_and_a_flat_map_is_zero(digits):
    # ReLU of an all-negative weighted sum: a flat zero map, not NaN.
    model = two_conv()
    with torch.no_grad():
        model.conv2.weight.zero_()
        model.conv2.bias.fill_(-100.0)  # every feature negative, so every cam is 0
    out = explain(model, digits[:2])
    assert np.array_equal(out["gradcam"], np.zeros((2, 24, 20), dtype=np.float16))


# ---------------------------------------------------------------------------- attention maps


def recorded_gates(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The gates the blocks themselves keep during one eval forward pass."""
    set_record_gate(model, True)
    with torch.no_grad():
        model.eval()(x)
    gates = {name: m.last_gate.clone() for name, m in model.named_modules()
             if getattr(m, "last_gate", None) is not None}
    set_record_gate(model, False)
    return gates


def test_attention_and_channel_maps_are_the_blocks_own_gates(digits):
    torch.manual_seed(0)
    model = Gated()
    gates = recorded_gates(model, digits)
    out = explain(model, digits)
    # Outermost recorders only (not cbam.channel / cbam.spatial), and none for `unused`.
    assert sorted(k for k in out if "/" in k) == ["attention/cbam", "attention/spatial",
                                                  "channel/se"]
    assert out["channel/se"].dtype == np.float16 and out["channel/se"].shape == (6, 4)
    np.testing.assert_allclose(out["channel/se"].astype(np.float32),
                               gates["se"].flatten(1).numpy(), rtol=1e-3, atol=1e-4)
    for name in ("spatial", "cbam"):
        gate = gates[name]
        assert gate.shape[-2:] == (12, 10)  # on the pooled map: upsampled below
        mean = F.interpolate(gate.mean(dim=1, keepdim=True), size=(24, 20), mode="bilinear",
                             align_corners=False)[:, 0].flatten(1)
        low, high = mean.min(dim=1, keepdim=True).values, mean.max(dim=1, keepdim=True).values
        expected = ((mean - low) / (high - low)).view(6, 24, 20).numpy()
        stored = out[f"attention/{name}"]
        assert stored.dtype == np.float16 and stored.shape == (6, 24, 20)
        np.testing.assert_allclose(stored.astype(np.float32), expected, rtol=0, atol=FP16_STEP)
        assert stored.min() == 0 and stored.max() == 1
    assert all(m.record_gate is False and m.last_gate is None
               for m in (model.unused, model.se, model.spatial, model.cbam, model.cbam.spatial))


def test_a_model_with_no_attention_reports_no_maps(digits):
    out = explain(two_conv(), digits[:2])
    assert set(out) == {"predictions", "confidence", "gradcam"}


# ---------------------------------------------------------------------------- saved files


def labelled_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return get_model("mnist_cnn", attention="se", image_size=28)


def predictions(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(x).argmax(dim=1).numpy()


def hand_confusion(true: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (true, predicted), 1)
    return matrix


def test_confusion_matrix_rows_are_true_labels_columns_predictions():
    # A linear "model" whose prediction is the argmax of its input: predictions are known.
    model = nn.Linear(3, 3, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(3))
    x = torch.eye(3)[[1, 1, 1, 2, 0]]
    y = torch.tensor([0, 0, 1, 2, 0])
    matrix = confusion_matrix(model, x, y, 3)
    assert matrix.tolist() == [[1, 2, 0], [0, 1, 0], [0, 0, 1]]
    assert confusion_matrix(model, x, y, 3, batch_size=2).tolist() == matrix.tolist()
    assert confusion_matrix(model, x, y, 3, batch_size=2, max_batches=1).tolist() == [
        [0, 2, 0], [0, 0, 0], [0, 0, 0]]  # only the first two examples
    assert confusion_matrix(model.double(), x, y, 3).tolist() == matrix.tolist()


def test_confusion_matrix_evaluates_in_eval_mode():
    # Train-mode batch norm would centre the batch and change every prediction.
    model = nn.Sequential(nn.BatchNorm1d(2), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    x = torch.tensor([[5.0, 1.0], [6.0, 2.0], [7.0, 9.0]])
    y = torch.tensor([0, 0, 1])
    with torch.no_grad():
        in_train_mode = copy.deepcopy(model).train()(x).argmax(dim=1)
    assert in_train_mode.tolist() == [1, 0, 1]  # what a forgotten model.eval() would count
    model.train()
    assert confusion_matrix(model, x, y, 2).tolist() == [[2, 0], [0, 1]]
    assert not model.training


@pytest.fixture(scope="module")
def device_digits(small_mnist: ArraySplits) -> DeviceSplits:
    return small_mnist.to_device(torch.device("cpu"))


def run_write(model: nn.Module, data: DeviceSplits, raw_val: np.ndarray,
              **kwargs) -> tuple[list[str], list[str], dict]:
    written: list[tuple[str, bytes]] = []
    names = write_artifacts(model, data, raw_val, lambda n, b: written.append((n, b)), **kwargs)
    files = dict(written)
    maps = dict(np.load(io.BytesIO(files[MAPS_FILE])))
    return names, [n for n, _ in written], {"maps": maps,
                                            "confusion": json.loads(files[CONFUSION_FILE])}


def test_write_artifacts_saves_the_chosen_images_their_maps_and_the_test_confusion(
        small_mnist, device_digits):
    model = labelled_model()
    names, order, saved = run_write(model, device_digits, small_mnist.x_val,
                                    class_names=tuple("abcdefghij"), count=12)
    assert names == order == [MAPS_FILE, CONFUSION_FILE]
    maps = saved["maps"]
    index = pick_examples(small_mnist.y_val, 10, 12)
    assert maps["index"].tolist() == index.tolist() and len(index) == 12
    assert np.array_equal(maps["images"], small_mnist.x_val[index])
    assert maps["images"].dtype == np.uint8
    assert maps["labels"].tolist() == small_mnist.y_val[index].tolist()
    assert maps["class_names"].tolist() == list("abcdefghij")
    direct = explain(model, device_digits.x_val[torch.as_tensor(index)])
    assert set(maps) == {*direct, "images", "labels", "index", "class_names"}
    for key, value in direct.items():
        assert np.array_equal(maps[key], value), key
    assert "channel/attention" in maps  # the SE's gate
    confusion = saved["confusion"]
    assert confusion["split"] == "test" and confusion["class_names"] == list("abcdefghij")
    expected = hand_confusion(small_mnist.y_test, predictions(model, device_digits.x_test), 10)
    assert confusion["matrix"] == expected.tolist() and expected.sum() == 150


def test_write_artifacts_without_a_test_split_uses_validation(small_mnist, device_digits):
    model = labelled_model()
    no_test = replace(device_digits, x_test=None, y_test=None)
    _, _, saved = run_write(model, no_test, small_mnist.x_val)
    assert "class_names" not in saved["maps"] and len(saved["maps"]["index"]) == 16
    confusion = saved["confusion"]
    assert confusion["split"] == "val" and confusion["class_names"] is None
    expected = hand_confusion(small_mnist.y_val, predictions(model, device_digits.x_val), 10)
    assert confusion["matrix"] == expected.tolist()


def test_write_artifacts_passes_the_evaluation_limits(small_mnist, device_digits):
    model = labelled_model()
    _, _, saved = run_write(model, device_digits, small_mnist.x_val, eval_batch_size=40,
                            max_batches=2)
    first = slice(0, 80)  # two batches of 40, in order
    expected = hand_confusion(small_mnist.y_test[first],
                              predictions(model, device_digits.x_test[first]), 10)
    assert saved["confusion"]["matrix"] == expected.tolist()


def test_write_artifacts_evaluates_in_batches_of_1000_by_default():
    """max_batches counts batches of eval_batch_size, 1000 unless the trial says otherwise."""
    from trainables.data.mnist import bundled_digits

    x, y = bundled_digits()
    images = torch.from_numpy(x[:1001, :, 2:26, 4:24].astype(np.float32)) / 255.0
    labels = torch.from_numpy(y[:1001])
    data = DeviceSplits(images, labels, images[:20], labels[:20], images, labels, 10)
    model = two_conv()
    _, _, saved = run_write(model, data, x[:20, :, 2:26, 4:24], max_batches=1)
    first = hand_confusion(y[:1000], predictions(model, images[:1000]), 10)
    assert saved["confusion"]["matrix"] == first.tolist()
