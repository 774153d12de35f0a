"""Model registry and the Reduced-MNIST CNN: parameter counts, shapes, one training step."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainables.blocks import CBAM, PointwiseSpatialGate, SqueezeExcite
from trainables.models import MnistCNN, get_model, list_models, register_model

# Keras counts for the source models (biases everywhere).
EXPECTED_PARAMS = {
    "none": 225_034,
    "spatial": 225_034 + 33,
    "se": 225_034 + 292,
    "cbam": 225_034 + 292 + 99,
    "self": 225_034 + 66_368 + 128,
}
VARIANTS = sorted(EXPECTED_PARAMS)


def test_registry_lists_mnist_cnn() -> None:
    assert "mnist_cnn" in list_models()


def test_get_model_unknown_name() -> None:
    with pytest.raises(ValueError, match=r"Unknown model 'nope'; choose from .*mnist_cnn"):
        get_model("nope")


def test_register_model_refuses_duplicates() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_model("mnist_cnn")(lambda: nn.Identity())


def test_builder_is_keyword_only() -> None:
    from trainables.models.mnist_cnn import mnist_cnn

    assert isinstance(mnist_cnn(), MnistCNN)
    with pytest.raises(TypeError):
        mnist_cnn("se")  # type: ignore[misc]


def test_unknown_attention_lists_choices() -> None:
    with pytest.raises(ValueError) as info:
        get_model("mnist_cnn", attention="transformer")
    for valid in ("none", "spatial", "self", "cbam", "se"):
        assert repr(valid) in str(info.value)


@pytest.mark.parametrize("attention", VARIANTS)
def test_param_count(attention: str) -> None:
    model = get_model("mnist_cnn", attention=attention)
    assert sum(p.numel() for p in model.parameters()) == EXPECTED_PARAMS[attention]


def test_attention_module_is_exposed() -> None:
    assert get_model("mnist_cnn").attention is None
    assert isinstance(get_model("mnist_cnn", attention="se").attention, SqueezeExcite)
    assert isinstance(get_model("mnist_cnn", attention="cbam").attention, CBAM)
    spatial = get_model("mnist_cnn", attention="spatial")
    assert isinstance(spatial.attention, PointwiseSpatialGate)
    assert spatial.attention_after == "block1"
    assert get_model("mnist_cnn", attention="self").attention_after == "block2"


@pytest.mark.parametrize("attention", VARIANTS)
def test_forward_shape(attention: str) -> None:
    torch.manual_seed(0)
    model = get_model("mnist_cnn", attention=attention).eval()
    out = model(torch.rand(2, 1, 28, 28))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("attention", VARIANTS)
def test_one_sgd_step_reduces_loss(attention: str) -> None:
    torch.manual_seed(0)
    # No dropout, so the step follows the gradient of exactly the loss measured after it.
    model = get_model("mnist_cnn", attention=attention, dropout=0.0)
    x = torch.rand(8, 1, 28, 28)
    y = torch.randint(0, 10, (8,))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loss = nn.functional.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    with torch.no_grad():
        after = nn.functional.cross_entropy(model(x), y)
    assert after.item() < loss.item()


def test_other_image_sizes_and_classes() -> None:
    model = MnistCNN(attention="self", in_channels=3, num_classes=7, image_size=32)
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 7)
    with pytest.raises(ValueError, match="image_size"):
        MnistCNN(image_size=8)
