"""Model builders by name; importing this package registers every model."""

# Importing each model module runs its @register_model decorators.
import trainables.models.video  # noqa: F401  (registers the video networks)
from trainables.models.cifar_resnet import CifarResNet
from trainables.models.light_cnn import LightCNN
from trainables.models.mnist_cnn import MnistCNN
from trainables.models.registry import get_model, list_models, register_model
from trainables.models.spectro_lenet import SpectroLeNet
from trainables.models.vgg_attention import VGGAttention

__all__ = [
    "CifarResNet",
    "LightCNN",
    "MnistCNN",
    "SpectroLeNet",
    "VGGAttention",
    "get_model",
    "list_models",
    "register_model",
]
