"""Pretrained weights for the video networks, read from the torch hub cache and never downloaded.

Why no download: trials run on cluster nodes that may have no internet, and a sweep that
fails in every trial at the first `torchvision` download is expensive to discover. So a
weight file must already sit where torchvision's own downloader would have put it,
`<torch.hub.get_dir()>/checkpoints/<basename of the weights URL>`; when it does not, the
error names that exact path and the URL to fetch it from, and `required_weight_files` lets
the CLI check every file a sweep needs before its first trial starts. On a cluster,
`--weights-root` (a bucket or shared folder holding the files) fills each node's cache before
the first pretrained model is built there (`ensure_weights`, `weight_copy`).

Files used (torchvision's names, so a cache filled by torchvision itself is found):

- "r2plus1d_18": Kinetics-400 R(2+1)D-18 (`R2Plus1D_18_Weights.KINETICS400_V1`),
  r2plus1d_18-91a641e6.pth, for `r2plus1d` and `r2plus1d_perceiver`.
- "resnet18": ImageNet ResNet-18 (`ResNet18_Weights.IMAGENET1K_V1`), resnet18-f37072fd.pth,
  for `frame_temporal`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torchvision.models import ResNet18_Weights, WeightsEnum
from torchvision.models.video import R2Plus1D_18_Weights

# Weight key -> the torchvision weights whose file it is.
WEIGHTS: dict[str, WeightsEnum] = {
    "r2plus1d_18": R2Plus1D_18_Weights.KINETICS400_V1,
    "resnet18": ResNet18_Weights.IMAGENET1K_V1,
}

# Registered model name -> the weight key its `pretrained=True` needs (None: read `backbone`).
_MODEL_WEIGHTS: dict[str, str | None] = {
    "r2plus1d": "r2plus1d_18",
    "r2plus1d_perceiver": "r2plus1d_18",
    "frame_temporal": None,
}
_DEFAULT_FRAME_BACKBONE = "resnet18"


class MissingWeightsError(FileNotFoundError):
    """A pretrained weight file is not in the torch hub cache (we never download it)."""


def _weights(key: str) -> WeightsEnum:
    try:
        return WEIGHTS[key]
    except KeyError:
        raise ValueError(
            f"unknown pretrained weights {key!r}; choose from {', '.join(sorted(WEIGHTS))}"
        ) from None


def weight_url(key: str) -> str:
    """The URL torchvision downloads the `key` weights from."""
    return _weights(key).url


def weight_path(key: str) -> Path:
    """Where torchvision's downloader keeps the `key` weights: <hub dir>/checkpoints/<file>.

    Calls `torch.hub.get_dir()` each time (it honours `torch.hub.set_dir` and $TORCH_HOME),
    so tests and users can redirect the cache without touching this module.
    """
    url = weight_url(key)
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def missing_weights_message(key: str) -> str:
    """One line: the file to place, where to fetch it, and how to train without it."""
    return (
        f"pretrained {key} weights not found at {weight_path(key)}: download "
        f"{weight_url(key)} on a machine with internet and place it at that path (or in a "
        f"bucket or shared folder passed as --weights-root, which every node copies from), "
        f"or set model.pretrained=false to train from scratch"
    )


def ensure_weights(key: str, weights_root: str | None) -> None:
    """Before a pretrained model is built: with a weights root, copy its files into this
    node's hub cache (once per node), and fail in one line if the `key` file is not among them.

    Without one, nothing happens here: `load_pretrained_state_dict` reports a missing file.
    """
    if not weights_root:
        return
    from trainables.data.stores import display
    from trainables.models.video.weight_copy import fetch_weights

    copy = fetch_weights(weights_root)
    path = weight_path(key)
    if not path.is_file():
        held = ", ".join(sorted(copy.available)[:5]) or "no .pth files"
        raise MissingWeightsError(
            f"pretrained {key} weights not found at {path}, and --weights-root "
            f"{display(weights_root)} does not hold {path.name} (it holds: {held}): upload "
            f"{weight_url(key)} there, or set model.pretrained=false to train from scratch")


def load_pretrained_state_dict(key: str) -> dict[str, torch.Tensor]:
    """The `key` state dict from the hub cache, on the CPU; MissingWeightsError if absent.

    `weights_only=True`: a checkpoint is data, never code to run.
    """
    path = weight_path(key)
    if not path.is_file():
        raise MissingWeightsError(missing_weights_message(key))
    return torch.load(path, map_location="cpu", weights_only=True)


def _truthy(value: object) -> bool:
    """A config's `pretrained` value, tolerating the strings a CLI override may leave."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def required_weight_files(model_values: Mapping[str, object]) -> list[Path]:
    """The weight files a model config needs, e.g. {"name": "r2plus1d", "pretrained": True}.

    Empty when `pretrained` is false or absent (every builder defaults to False) and for
    models that use no pretrained weights. Paths are returned whether or not they exist;
    `missing_weight_files` keeps only the absent ones.
    """
    if not _truthy(model_values.get("pretrained", False)):
        return []
    name = model_values.get("name")
    if name not in _MODEL_WEIGHTS:
        return []
    key = _MODEL_WEIGHTS[str(name)]
    if key is None:  # frame_temporal: the 2-D backbone's ImageNet weights
        key = str(model_values.get("backbone", _DEFAULT_FRAME_BACKBONE))
    return [weight_path(key)]


def missing_weight_files(model_values: Mapping[str, object]) -> list[Path]:
    """`required_weight_files` that are not in the cache yet."""
    return [path for path in required_weight_files(model_values) if not path.is_file()]
