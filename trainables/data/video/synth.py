"""Small synthetic HMDB51 and WLASL sets in the exact real layouts, encoded with real codecs.

Why synthetic videos at all: tests, smoke runs and CI need the whole path (index or split
files, container, codec, decoder, frame ranges, boxes) without 2 GB of HMDB51 or a WLASL
download that is half dead links. So the files are what the real ones are: MPEG-4 Part 2
in AVI (HMDB51's DivX/XviD clips, tagged XVID) and H.264 in MP4 (WLASL), with the real
split files and JSON index next to them.

Why motions: a video model must learn something that a single frame cannot show, or the
set cannot tell a temporal model from an image model. Each class is a motion of a bright
shape over a static textured background with a little sensor noise. The look of a video
(shape, colour, size, position) is drawn at random whatever the class, and the motion wraps
around the region's edges, so any one frame looks the same for every class: position is
uniform, and sizes of the growing and shrinking shapes are spread like the moving ones.

Everything is drawn from ``numpy.random.default_rng((seed, ...))`` per video, so a seed
writes the same files (byte-identical with this PyAV/FFmpeg build, which ``codecs`` keeps
from mixing with decord's) and one video does not change when the count of others does.
"""

from __future__ import annotations

import colorsys
import json
from pathlib import Path
from typing import Any

import numpy as np

from trainables.data.video.hmdb51 import SPLIT_DIR
from trainables.data.video.wlasl import INDEX_FILE

MOTIONS = ("move_right", "move_left", "move_up", "move_down", "grow", "shrink")
SHAPES = ("disk", "square", "diamond")
# (dy, dx) per frame of progress for the moves; grow and shrink stay in place.
DIRECTIONS = {"move_right": (0, 1), "move_left": (0, -1), "move_up": (-1, 0), "move_down": (1, 0)}
# The shape's brightest channel is 255 and the background stays under BACKGROUND_MAX in every
# channel, so "brightest channel above BRIGHT" finds the shape in a decoded frame.
BRIGHT = 170
BACKGROUND_MAX = 125
# HMDB51 name parts: visible body parts, camera motion, people, view, quality.
HMDB_PARTS = (("f", "h", "u", "l"), ("cm", "nm"), ("np1",), ("fr", "ba", "le", "ri"),
              ("bad", "med", "goo"))


def _av() -> Any:
    from trainables.data.video.codecs import import_av

    return import_av()


# ------------------------------------------------------------------------------ drawing


def _background(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A static (H, W, 3) float texture: smooth colour blobs plus fixed fine grain."""
    import torch
    import torch.nn.functional as F

    height, width = size
    coarse = rng.uniform(-30, 30, size=(1, 3, height // 8 + 2, width // 8 + 2))
    smooth = F.interpolate(torch.from_numpy(coarse), size=(height, width), mode="bicubic",
                           align_corners=False)[0].permute(1, 2, 0).numpy()
    base = rng.uniform(35, 70, size=3)
    grain = rng.uniform(-12, 12, size=(height, width, 1))
    return np.clip(base + smooth + grain, 0, BACKGROUND_MAX - 10)


def _bright_colour(rng: np.random.Generator) -> np.ndarray:
    red, green, blue = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.2, 0.7), 1.0)
    return np.array([red, green, blue]) * 255.0


def _progress(n_frames: int, active: tuple[int, int]) -> np.ndarray:
    """0 before the active frames, rising evenly to 1 across them, 1 after."""
    first, end = active
    steps = max(end - first - 1, 1)
    return np.clip((np.arange(n_frames) - first) / steps, 0.0, 1.0)


def render_clip(motion: str, n_frames: int, size: tuple[int, int], rng: np.random.Generator, *,
                active: tuple[int, int] | None = None,
                region: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """(n_frames, H, W, 3) uint8 frames of one ``motion``.

    The shape moves only during the ``active`` frames [first, end) and only inside
    ``region`` (x0, y0, x1, y1), wrapping around its edges; elsewhere the picture is still
    except for sensor noise. The look is drawn from ``rng`` before the motion, the same way
    for every class.
    """
    if motion not in MOTIONS:
        raise ValueError(f"motion {motion!r} is not one of {', '.join(MOTIONS)}")
    height, width = size
    x0, y0, x1, y1 = region or (0, 0, width, height)
    rh, rw = y1 - y0, x1 - x0
    background = _background(size, rng)
    shape = SHAPES[rng.integers(len(SHAPES))]
    colour = _bright_colour(rng)
    radius = rng.uniform(0.09, 0.15) * min(rh, rw)
    centre = np.array([rng.uniform(0, rh), rng.uniform(0, rw)])
    factor = rng.uniform(2.0, 2.6)          # grow/shrink: size ratio from first to last frame
    travel = rng.uniform(0.35, 0.6)         # moves: share of the region crossed
    phase = rng.uniform()                   # moves: which size of the grow range they keep
    progress = _progress(n_frames, active or (0, n_frames))

    yy = np.arange(rh, dtype=np.float64)[:, None] + 0.5
    xx = np.arange(rw, dtype=np.float64)[None, :] + 0.5
    frames = np.empty((n_frames, height, width, 3), dtype=np.uint8)
    for t, p in enumerate(progress):
        cy, cx, r = centre[0], centre[1], radius * factor ** (phase - 0.5)
        if motion in DIRECTIONS:
            dy, dx = DIRECTIONS[motion]
            cy += dy * travel * rh * p
            cx += dx * travel * rw * p
        else:
            r = radius * factor ** ((p - 0.5) if motion == "grow" else (0.5 - p))
        oy = (yy - cy + rh / 2) % rh - rh / 2   # offsets on a torus: the shape wraps around
        ox = (xx - cx + rw / 2) % rw - rw / 2
        if shape == "disk":
            dist = np.sqrt(oy**2 + ox**2)
        elif shape == "square":
            dist = np.maximum(np.abs(oy), np.abs(ox))
        else:
            dist = (np.abs(oy) + np.abs(ox)) / 1.3
        alpha = np.clip(r + 0.5 - dist, 0.0, 1.0)[..., None]
        frame = background.copy()
        frame[y0:y1, x0:x1] = frame[y0:y1, x0:x1] * (1 - alpha) + colour * alpha
        frame += rng.normal(0, 2.0, size=(height, width, 1))
        frames[t] = np.clip(frame, 0, 255).round().astype(np.uint8)
    return frames


# ----------------------------------------------------------------------------- encoding


def encode_video(path: Path, frames: np.ndarray, *, fps: int, codec: str) -> None:
    """Write RGB frames with ``codec`` "mpeg4" (AVI, XviD tag) or "libx264" (MP4), yuv420p."""
    av = _av()
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        context = stream.codec_context
        context.thread_count = 1   # one thread: the same bytes on every machine
        if codec == "mpeg4":
            context.codec_tag = "XVID"
            context.qscale = True  # constant quantiser 3, like a good XviD encode
            context.global_quality = 3 * 118  # FF_QP2LAMBDA
        else:
            stream.options = {"crf": "20", "preset": "veryfast"}
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


# ------------------------------------------------------------------------------- HMDB51


def _hmdb_tags(n: int, rng: np.random.Generator) -> np.ndarray:
    """HMDB51-style tags for one class: ~70% train (1), ~30% test (2), ~10% unused (0)."""
    unused = max(1, round(0.1 * n)) if n >= 4 else 0
    test = max(1, round(0.3 * (n - unused)))
    tags = np.array([0] * unused + [2] * test + [1] * (n - unused - test))
    return rng.permutation(tags)


def write_hmdb51(out: Path, *, classes: int = 4, videos_per_class: int = 10,
                 seconds: float = 2.5, fps: int = 15, size: tuple[int, int] = (96, 128),
                 seed: int = 0) -> list[Path]:
    """Write ``out/<class>/<video>.avi`` (MPEG-4 Part 2) and the three split files; the videos.

    Names follow HMDB51 (``<source>_<class>_<body>_<camera>_np1_<view>_<quality>_<n>.avi``),
    lengths vary by up to 20% around ``seconds``, and each split file tags the class's
    videos 1 (train), 2 (test) or 0 (unused) with a different draw per split.
    """
    if not 1 <= classes <= len(MOTIONS):
        raise ValueError(f"classes={classes} must be 1..{len(MOTIONS)}")
    if videos_per_class < 2:
        raise ValueError("videos_per_class must be at least 2 (one train, one test)")
    out = Path(out)
    written: list[Path] = []
    names: dict[str, list[str]] = {}
    for label, motion in enumerate(MOTIONS[:classes]):
        names[motion] = []
        for v in range(videos_per_class):
            rng = np.random.default_rng((seed, 51, label, v))
            parts = "_".join(str(rng.choice(choices)) for choices in HMDB_PARTS)
            name = f"synth_clip{v:03d}_{motion}_{parts}_{int(rng.integers(3))}.avi"
            n_frames = max(4, round(seconds * fps * rng.uniform(0.8, 1.2)))
            frames = render_clip(motion, n_frames, size, rng)
            path = out / motion / name
            encode_video(path, frames, fps=fps, codec="mpeg4")
            names[motion].append(name)
            written.append(path)
    split_dir = out / SPLIT_DIR
    split_dir.mkdir(parents=True, exist_ok=True)
    for label, motion in enumerate(MOTIONS[:classes]):
        rng = np.random.default_rng((seed, 52, label))
        drawn: list[np.ndarray] = []
        for split in (1, 2, 3):
            tags = _hmdb_tags(videos_per_class, rng)
            for _ in range(20):  # each split a different assignment where the class allows
                if not any(np.array_equal(tags, old) for old in drawn):
                    break
                tags = _hmdb_tags(videos_per_class, rng)
            drawn.append(tags)
            lines = [f"{name} {tag} \n" for name, tag in sorted(zip(names[motion], tags.tolist(),
                                                                    strict=True))]
            (split_dir / f"{motion}_test_split{split}.txt").write_text("".join(lines))
    return sorted(written)


# -------------------------------------------------------------------------------- WLASL


def _wlasl_splits(n: int, rng: np.random.Generator) -> list[str]:
    """About 60/20/20 train/val/test, at least one of each."""
    val = max(1, round(0.2 * n))
    test = max(1, round(0.2 * n))
    return rng.permutation(["val"] * val + ["test"] * test + ["train"] * (n - val - test)
                           ).tolist()


def write_wlasl(out: Path, *, glosses: int = 4, videos_per_gloss: int = 8, fps: int = 25,
                size: tuple[int, int] = (96, 128), seed: int = 0, missing: int = 1
                ) -> list[Path]:
    """Write ``out/WLASL_v0.3.json`` and ``out/videos/<video_id>.mp4`` (H.264); the videos.

    Each instance's motion happens only inside its frame range and its bbox, so a loader
    that ignores either sees still frames or background. The ranges cycle through WLASL's
    cases: the whole video (1, -1), a still lead-in (k, -1), a lead-in and a still tail
    (k, m), a still tail (1, m). ``missing`` train instances are listed but not written,
    like WLASL's dead links.
    """
    if not 1 <= glosses <= len(MOTIONS):
        raise ValueError(f"glosses={glosses} must be 1..{len(MOTIONS)}")
    if videos_per_gloss < 3:
        raise ValueError("videos_per_gloss must be at least 3 (one train, one val, one test)")
    out = Path(out)
    height, width = size
    top = np.random.default_rng((seed, 100))
    ids = [f"{int(i):05d}" for i in top.choice(100_000, glosses * videos_per_gloss,
                                               replace=False)]
    content: list[dict[str, Any]] = []
    plans: list[tuple[str, str, dict[str, Any], np.random.Generator, int]] = []
    for label, gloss in enumerate(MOTIONS[:glosses]):
        rng = np.random.default_rng((seed, 101, label))
        splits = _wlasl_splits(videos_per_gloss, rng)
        instances = []
        for j in range(videos_per_gloss):
            video_id = ids[label * videos_per_gloss + j]
            vrng = np.random.default_rng((seed, 102, label, j))
            n_frames = round(fps * vrng.uniform(1.6, 2.8))
            lead = int(vrng.integers(4, n_frames // 4)) if j % 4 in (1, 2) else 0
            tail = int(vrng.integers(4, n_frames // 4)) if j % 4 in (2, 3) else 0
            bw = int(vrng.uniform(0.55, 0.8) * width)
            bh = int(vrng.uniform(0.6, 0.9) * height)
            bx, by = int(vrng.integers(0, width - bw + 1)), int(vrng.integers(0, height - bh + 1))
            instance = {
                "bbox": [bx, by, bx + bw, by + bh], "fps": fps,
                "frame_end": -1 if tail == 0 else n_frames - tail,  # 1-based inclusive
                "frame_start": lead + 1, "instance_id": j, "signer_id": int(vrng.integers(1, 40)),
                "source": "synthetic", "split": splits[j],
                "url": f"https://example.invalid/wlasl/{video_id}.mp4", "variation_id": 0,
                "video_id": video_id,
            }
            instances.append(instance)
            plans.append((gloss, video_id, instance, vrng, n_frames))
        content.append({"gloss": gloss, "instances": instances})

    train = [k for k, plan in enumerate(plans) if plan[2]["split"] == "train"]
    dead = {plans[k][1] for k in top.choice(train, min(missing, len(train)), replace=False)}
    written = []
    for gloss, video_id, instance, vrng, n_frames in plans:
        if video_id in dead:
            continue
        end = n_frames if instance["frame_end"] == -1 else instance["frame_end"]
        frames = render_clip(gloss, n_frames, size, vrng,
                             active=(instance["frame_start"] - 1, end),
                             region=tuple(instance["bbox"]))
        path = out / "videos" / f"{video_id}.mp4"
        encode_video(path, frames, fps=fps, codec="libx264")
        written.append(path)
    out.mkdir(parents=True, exist_ok=True)
    (out / INDEX_FILE).write_text(json.dumps(content))
    return sorted(written)


# ---------------------------------------------------------------------------- bad files


def corrupt_copy(src: Path, dst: Path, mode: str = "truncate") -> None:
    """Write a damaged copy of ``src`` to ``dst``: "truncate" keeps the first ~30% of the
    bytes (a cut-off download), "garbage" writes as many random bytes (a wrong file)."""
    data = Path(src).read_bytes()
    if mode == "truncate":
        damaged = data[: max(1, int(len(data) * 0.3))]
    elif mode == "garbage":
        damaged = np.random.default_rng(len(data)).integers(0, 256, len(data), np.uint8).tobytes()
    else:
        raise ValueError(f"mode {mode!r} is not 'truncate' or 'garbage'")
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    Path(dst).write_bytes(damaged)
