"""What a trained model looked at: its attention modules' own maps and Grad-CAM heatmaps.

Why both: an attention module's map is what the module *computed*, which need not be what
the decision depended on; Grad-CAM (Selvaraju et al., ICCV 2017) weighs the last feature map
by the gradient of the predicted class, i.e. what the logit was sensitive to. CNNtention
(arXiv:2412.11657) argues from Grad-CAM pictures alone; putting both beside each other, on
the same fixed validation images for every variant and seed, lets a reader check such
arguments.

The file format is the contract with the report (see `analysis/schema.py`, MAPS_FILE):
one `maps.npz` per trial with

- ``images``       uint8 (N, C, H, W): the inputs as stored, before normalisation
- ``labels``       int64 (N,), ``predictions`` int64 (N,), ``confidence`` float32 (N,)
- ``index``        int64 (N,): positions of the images in the validation split
- ``gradcam``      float16 (N, H, W) in [0, 1], for the predicted class, at input size
- ``attention/<module>``  float16 (N, H, W) in [0, 1]: a spatial attention map, upsampled
- ``channel/<module>``    float16 (N, C_module): a channel gate (SE, ECA, CBAM's channel part)
- ``class_names``  str (K,), when the dataset names its classes

and a ``confusion.json`` with the test (or validation) confusion matrix.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainables.blocks.helpers import RecordsMap, set_record_gate
from trainables.data.splits import DeviceSplits, index_batches

MAPS_FILE = "maps.npz"
CONFUSION_FILE = "confusion.json"

ArtifactWriter = Callable[[str, bytes], None]
"""``write(name, payload)``: store one file of a trial's artifacts."""


def pick_examples(labels: np.ndarray, num_classes: int, count: int = 16) -> np.ndarray:
    """Indices of a fixed, class-balanced set of examples: the first of each class in turn.

    Deterministic given the split, so every variant and seed explains the same images.
    """
    chosen: list[int] = []
    by_class = [np.flatnonzero(labels == c) for c in range(num_classes)]
    depth = 0
    while len(chosen) < min(count, len(labels)):
        added = False
        for positions in by_class:
            if depth < len(positions) and len(chosen) < count:
                chosen.append(int(positions[depth]))
                added = True
        if not added:
            break
        depth += 1
    return np.asarray(chosen, dtype=np.int64)


def cam_layer(model: nn.Module) -> nn.Module:
    """The layer Grad-CAM reads: the model's own ``cam_layer`` (a submodule), nothing else.

    Why no fallback: the last Conv2d, the usual guess, sits inside the attention block of
    some variants (a spatial gate's 1x1 conv, SE's excitation on a 1x1 map), so Grad-CAM
    would read a different layer per variant and stop being comparable. Every 2-D model
    builder declares the layer after its attention (tests/test_cam_layers.py); only image
    trials write these artifacts, and the video models, which have no such layer, never get
    here, so a model without one is a bug to report, not a case to guess.
    """
    declared = getattr(model, "cam_layer", None)
    if not isinstance(declared, nn.Module):
        raise TypeError(f"{type(model).__name__} declares no cam_layer (the module whose "
                        f"output map Grad-CAM reads); add one to the model")
    if not any(declared is module for module in model.modules()):
        raise ValueError(f"{type(model).__name__}.cam_layer ({type(declared).__name__}) is "
                         f"not a submodule of the model, so no forward pass reaches it")
    return declared


def _outermost_recorders(model: nn.Module) -> list[tuple[str, RecordsMap]]:
    """Map-recording blocks not nested in another (CBAM's sub-gates are part of CBAM's map)."""
    found: list[tuple[str, RecordsMap]] = []
    for name, module in model.named_modules():
        if isinstance(module, RecordsMap) and not any(name.startswith(f"{outer}.")
                                                      for outer, _ in found):
            found.append((name, module))
    return found


def _unit_range(maps: torch.Tensor) -> torch.Tensor:
    """Scale each map of (N, ...) to [0, 1]; a constant map becomes all zeros."""
    flat = maps.flatten(1)
    low = flat.min(dim=1, keepdim=True).values
    span = (flat.max(dim=1, keepdim=True).values - low).clamp_min(1e-12)
    return ((flat - low) / span).view_as(maps)


def grad_cam(features: torch.Tensor, score: torch.Tensor,
             size: tuple[int, int]) -> torch.Tensor:
    """Grad-CAM maps, float32 (N, H, W) in [0, 1]: ReLU(sum_k alpha_k A_k) at ``size``.

    ``features`` is the (N, K, h, w) map A that ``score`` was computed from, and alpha_k the
    spatial mean of dscore/dA_k. ``score`` sums each image's own class logit: images do not
    interact in eval mode, so its gradient holds every image's own. ``autograd.grad`` rather
    than ``backward``, so the parameters' ``.grad`` is left as it was.
    """
    (grads,) = torch.autograd.grad(score, features)
    weights = grads.float().mean(dim=(2, 3), keepdim=True)  # (N, K, 1, 1)
    cam = F.relu((weights * features.detach().float()).sum(dim=1, keepdim=True))  # (N, 1, h, w)
    cam = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)[:, 0]
    return _unit_range(cam)


def explain(model: nn.Module, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Predictions, Grad-CAM and attention maps for a small batch ``x`` (already normalised)."""
    model.eval()
    dtype = next(model.parameters()).dtype
    x = x.to(dtype)
    height, width = x.shape[-2:]
    layer = cam_layer(model)
    captured: dict[str, torch.Tensor] = {}

    def keep(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        captured["features"] = output

    handle = layer.register_forward_hook(keep)
    set_record_gate(model, True)
    try:
        with torch.enable_grad():
            logits = model(x).float()
            probs = logits.softmax(dim=1)
            predictions = probs.argmax(dim=1)
            out: dict[str, np.ndarray] = {
                "predictions": predictions.cpu().numpy().astype(np.int64),
                "confidence": probs.gather(1, predictions[:, None])[:, 0].detach()
                .cpu().numpy().astype(np.float32),
            }
            for name, block in _outermost_recorders(model):
                gate = block.last_gate
                if gate is None:
                    continue
                gate = gate.float()
                if gate.shape[-2:] == (1, 1):  # a channel gate: one weight per channel
                    out[f"channel/{name}"] = gate.flatten(1).cpu().numpy().astype(np.float16)
                    continue
                spatial = gate.mean(dim=1, keepdim=True)  # (N, 1, h, w)
                spatial = F.interpolate(spatial, size=(height, width), mode="bilinear",
                                        align_corners=False)[:, 0]
                out[f"attention/{name}"] = _unit_range(spatial).cpu().numpy().astype(np.float16)
            features = captured.get("features")
            if features is None or features.dim() != 4:
                got = "nothing" if features is None else f"shape {tuple(features.shape)}"
                raise ValueError(f"{type(model).__name__}.cam_layer must output an (N, C, h, w) "
                                 f"map for Grad-CAM; it gave {got}")
            score = logits.gather(1, predictions[:, None]).sum()  # each image's own class
            cam = grad_cam(features, score, (height, width))
            out["gradcam"] = cam.cpu().numpy().astype(np.float16)
    finally:
        handle.remove()
        set_record_gate(model, False)
    return out


@torch.no_grad()
def confusion_matrix(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                     *, batch_size: int = 1000, max_batches: int | None = None) -> np.ndarray:
    """(true, predicted) counts over a device-resident split."""
    model.eval()
    dtype = next(model.parameters()).dtype
    counts = torch.zeros(num_classes * num_classes, dtype=torch.long, device=x.device)
    for idx in index_batches(len(x), batch_size, device=x.device, shuffle=False,
                             max_batches=max_batches):
        predicted = model(x[idx].to(dtype)).argmax(dim=1)
        counts += torch.bincount(y[idx] * num_classes + predicted, minlength=num_classes ** 2)
    return counts.view(num_classes, num_classes).cpu().numpy()


def write_artifacts(model: nn.Module, data: DeviceSplits, raw_val: np.ndarray,
                    write: ArtifactWriter, *, class_names: tuple[str, ...] | None = None,
                    count: int = 16, max_batches: int | None = None,
                    eval_batch_size: int = 1000) -> list[str]:
    """Explain a fixed set of validation images and save the confusion matrix; returns names.

    ``raw_val`` is the validation split as stored (uint8), so the report shows real pixels.
    """
    labels = data.y_val.cpu().numpy()
    index = pick_examples(labels, data.num_classes, count)
    chosen = torch.as_tensor(index, device=data.x_val.device)
    payload = explain(model, data.x_val[chosen])
    payload.update(images=raw_val[index], labels=labels[index], index=index)
    if class_names:
        payload["class_names"] = np.asarray(class_names, dtype=str)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **payload)
    write(MAPS_FILE, buffer.getvalue())

    on_test = data.x_test is not None
    x, y = (data.x_test, data.y_test) if on_test else (data.x_val, data.y_val)
    matrix = confusion_matrix(model, x, y, data.num_classes, batch_size=eval_batch_size,
                              max_batches=max_batches)
    record = {"split": "test" if on_test else "val", "matrix": matrix.tolist(),
              "class_names": list(class_names) if class_names else None}
    write(CONFUSION_FILE, json.dumps(record).encode())
    return [MAPS_FILE, CONFUSION_FILE]
