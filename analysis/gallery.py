"""Attention-map and Grad-CAM galleries from the trials' `maps.npz` artifacts, as inline PNGs.

Why in the report: CNNtention (arXiv:2412.11657) argues about what each attention variant
"looks at" from a few Grad-CAM pictures. Showing the same fixed validation images for every
variant, beside each module's own map, lets a reader check such claims instead of taking
them on trust. Images are inline `data:` PNGs, so the report stays one self-contained file.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from analysis.schema import ARTIFACTS_DIR, MAPS_FILE

CELL = 64          # pixels per image in the gallery
MAX_IMAGES = 8     # images per row

# A perceptually ordered dark-to-bright ramp (black, purple, orange, yellow) for heatmaps.
_RAMP = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]],
                 dtype=np.float32)


def _heat(values: np.ndarray) -> np.ndarray:
    """(H, W) in [0, 1] -> (H, W, 3) uint8 through the ramp."""
    position = np.clip(values, 0, 1) * (len(_RAMP) - 1)
    low = np.floor(position).astype(int).clip(0, len(_RAMP) - 2)
    frac = (position - low)[..., None]
    return (_RAMP[low] * (1 - frac) + _RAMP[low + 1] * frac).astype(np.uint8)


def _rgb(image: np.ndarray) -> np.ndarray:
    """(C, H, W) uint8 -> (H, W, 3) uint8."""
    hwc = np.transpose(image, (1, 2, 0))
    return np.repeat(hwc, 3, axis=2) if hwc.shape[2] == 1 else hwc[..., :3]


def _overlay(image: np.ndarray, heat: np.ndarray) -> np.ndarray:
    grey = _rgb(image).astype(np.float32).mean(axis=2, keepdims=True)
    return (0.45 * grey + 0.55 * _heat(heat).astype(np.float32)).astype(np.uint8)


def _strip_png(tiles: Sequence[np.ndarray]) -> str:
    from PIL import Image

    resized = [np.asarray(Image.fromarray(t).resize((CELL, CELL), Image.NEAREST)) for t in tiles]
    buffer = io.BytesIO()
    Image.fromarray(np.concatenate(resized, axis=1)).save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode()


def _variant_gallery(variant: str, seed: int, maps: np.lib.npyio.NpzFile) -> str:
    count = min(MAX_IMAGES, len(maps["labels"]))
    images = maps["images"][:count]
    names = maps["class_names"] if "class_names" in maps.files else None

    def label(k: int) -> str:
        return str(names[k]) if names is not None and k < len(names) else str(k)

    caption = " · ".join(
        f"{label(t)}→{label(p)}" for t, p in zip(maps["labels"][:count],
                                                  maps["predictions"][:count], strict=True))
    rows = [("input", [_rgb(i) for i in images])]
    if "gradcam" in maps.files:
        cams = maps["gradcam"][:count].astype(np.float32)
        rows.append(("Grad-CAM", [_overlay(i, c) for i, c in zip(images, cams, strict=True)]))
    for key in sorted(k for k in maps.files if k.startswith("attention/")):
        attention = maps[key][:count].astype(np.float32)
        rows.append((key.removeprefix("attention/"),
                     [_overlay(i, a) for i, a in zip(images, attention, strict=True)]))
    body = "".join(
        f'<tr><th>{html.escape(name)}</th><td><img alt="{html.escape(name)}" '
        f'src="data:image/png;base64,{_strip_png(tiles)}"></td></tr>' for name, tiles in rows)
    return (f'<h3>{html.escape(variant)} <span class="note">seed {seed}; true→predicted: '
            f'{html.escape(caption)}</span></h3><table class="gallery">{body}</table>')


def gallery_html(run_dir: Path, trials: pl.DataFrame, order: Sequence[str]) -> str:
    """One gallery per variant (its lowest-seed trial with maps), or "" when none has maps."""
    if trials.is_empty() or "trial_id" not in trials.columns:
        return ""
    sections = []
    for variant in order:
        rows = trials.filter(pl.col("variant") == variant).sort("seed")
        for trial_id, seed in rows.select("trial_id", "seed").iter_rows():
            path = Path(run_dir) / ARTIFACTS_DIR / str(trial_id) / MAPS_FILE
            if not path.is_file():
                continue
            try:
                with np.load(path) as maps:
                    sections.append(_variant_gallery(variant, seed, maps))
            except (OSError, ValueError, KeyError):
                continue  # a damaged artifact loses its picture, not the report
            break
    if not sections:
        return ""
    intro = ('<p class="note">The same validation images for every variant (the first of each '
             'class). Grad-CAM: where the predicted class\'s logit was sensitive, read at the '
             'last stage. Other rows: each attention module\'s own spatial map, upsampled. '
             'Bright is high.</p>')
    return "<h2>What the models looked at</h2>" + intro + "".join(sections)
