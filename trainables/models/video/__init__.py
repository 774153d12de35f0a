"""Video networks (R(2+1)D + Perceiver for HMDB51, from github.com/vuthanhtung2412/3DCNN-Attention-mechanism;
frame CNN + temporal head for WLASL); importing this package registers them."""

# Importing each model module runs its @register_model decorators.
from trainables.models.video.frame_temporal import FrameTemporal
from trainables.models.video.perceiver import R2Plus1DPerceiver
from trainables.models.video.r2plus1d import R2Plus1DClassifier
from trainables.models.video.weights import MissingWeightsError, required_weight_files

__all__ = [
    "FrameTemporal",
    "MissingWeightsError",
    "R2Plus1DClassifier",
    "R2Plus1DPerceiver",
    "required_weight_files",
]
