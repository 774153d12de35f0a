"""Model builders by name; importing this package registers every model."""

# Importing each model module runs its @register_model decorators.
from trainables.models.mnist_cnn import MnistCNN
from trainables.models.registry import get_model, list_models, register_model

__all__ = ["MnistCNN", "get_model", "list_models", "register_model"]
