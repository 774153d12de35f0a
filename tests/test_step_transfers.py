"""What crosses from the host to the device per training step, checked without a GPU.

On CUDA a blocking or pageable host-to-device copy, or reading a device tensor back on the
host, makes the host wait for the device every step. Without a GPU these tests check the
shape of the code instead: every crossing goes through `to_device_async` (pinned and
non-blocking on CUDA), and it happens once per epoch or once per batch for the host-drawn
random numbers, never hidden in a step. "meta" stands in for the accelerator where a test
needs host and device tensors told apart. tests/test_cuda_sync.py checks the real thing on
a GPU under ``torch.cuda.set_sync_debug_mode("error")``.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from trainables.data import augment, batches
from trainables.data.augment import RandomCropFlip, SpectrogramMask
from trainables.data.batches import IndexedBatches, to_device_async
from trainables.seeding import seed_everything

META = torch.device("meta")


class Sent:
    """Stands in for `to_device_async`: records each crossing, then makes it."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self, host: torch.Tensor, device: torch.device) -> torch.Tensor:
        assert host.device.type == "cpu", "only host tensors cross"
        self.shapes.append(tuple(host.shape))
        # No .to here (meta holds no values; the CPU is both ends), so any .to that a
        # TransferLog sees is one the code under test made itself.
        if device.type == "cpu":
            return host
        return torch.empty(host.shape, dtype=host.dtype, device=device)


class TransferLog(TorchFunctionMode):
    """Every ``.to`` (with its non_blocking flag) and every read of a tensor's values back
    into Python made inside."""

    READS: ClassVar[set[str]] = {"item", "tolist", "__bool__", "__int__", "__float__", "__index__", "nonzero",
             "cpu", "cuda", "numpy"}

    def __init__(self) -> None:
        super().__init__()
        self.moves: list[bool] = []
        self.reads: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        if name == "to":
            self.moves.append(bool(kwargs.get("non_blocking", False)))
        elif name in self.READS:
            self.reads.append(name)
        return func(*args, **kwargs)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- to_device_async -------------------------------------------------------------------------

def test_to_device_async_pins_then_copies_without_blocking_on_cuda():
    calls = []

    class Host:  # the CUDA path, recorded: no GPU needed to see what it asks for
        def pin_memory(self):
            calls.append("pin_memory")
            return self

        def to(self, device, **kwargs):
            calls.append(("to", device, kwargs))
            return "moved"

    assert to_device_async(Host(), torch.device("cuda")) == "moved"
    assert calls == ["pin_memory", ("to", torch.device("cuda"), {"non_blocking": True})]
    host = torch.arange(6).reshape(2, 3)
    assert torch.equal(to_device_async(host, torch.device("cpu")), host)
    on_meta = to_device_async(host, META)
    assert on_meta.device == META and on_meta.shape == (2, 3) and on_meta.dtype == host.dtype


# ---- image batches ---------------------------------------------------------------------------

def test_host_indices_cross_once_per_epoch_and_steps_index_on_the_device(monkeypatch):
    sent = Sent()
    monkeypatch.setattr(batches, "to_device_async", sent)
    x, y = torch.empty(10, 1, 2, 2, device=META), torch.empty(10, dtype=torch.long, device=META)
    order = list(torch.randperm(10, generator=_gen(0)).split(4))
    epoch = IndexedBatches(x, y, order)
    assert sent.shapes == [(10,)]  # all of the epoch's indices, in one crossing
    assert [idx.device for idx in epoch.order] == [META] * 3
    assert [len(idx) for idx in epoch.order] == [4, 4, 2]
    with TransferLog() as log:
        shapes = [(xb.shape[0], yb.shape[0], xb.device, yb.device) for xb, yb in epoch]
    assert shapes == [(4, 4, META, META), (4, 4, META, META), (2, 2, META, META)]
    assert log.moves == [] and log.reads == []
    # Indices already on the data's device are used as they are: nothing crosses.
    cpu_x, cpu_y = torch.arange(10.0), torch.arange(10)
    same = IndexedBatches(cpu_x, cpu_y, order)
    assert sent.shapes == [(10,)] and all(a is b for a, b in zip(same.order, order, strict=True))
    assert torch.equal(torch.cat([xb for xb, _ in same]), torch.cat(order).float())


# ---- augmentations ---------------------------------------------------------------------------

@pytest.fixture
def no_python_tensors_on_the_device(monkeypatch):
    """``torch.tensor``/``torch.as_tensor`` of Python values onto a device is a blocking copy
    on CUDA (and torch function modes do not see these two): refuse it."""
    for name in ("tensor", "as_tensor"):
        real = getattr(torch, name)

        def guarded(*args, _real=real, _name=name, **kwargs):
            device = kwargs.get("device")
            if device is not None and torch.device(device).type != "cpu":
                raise AssertionError(f"torch.{_name}(..., device={device}) in a step")
            return _real(*args, **kwargs)

        monkeypatch.setattr(torch, name, guarded)


@pytest.mark.parametrize("fill", [(0.0, 1.0, 2.0), 0.5, (0.25,)])
def test_crop_flip_crosses_once_per_batch_and_builds_no_host_tensor(
        monkeypatch, no_python_tensors_on_the_device, fill):
    sent = Sent()
    monkeypatch.setattr(augment, "to_device_async", sent)
    crop = RandomCropFlip(padding=2, fill=fill, generator=_gen(0))
    x = torch.empty(5, 3, 8, 8, device=META)
    with TransferLog() as log:
        for _ in range(3):
            assert crop(x).device == META
    assert sent.shapes == [(5, 3)] * 3  # offsets and flip flags packed: one crossing a batch
    assert log.moves == [] and log.reads == []


def test_padding_values_are_unchanged_by_filling_in_place():
    # fill_ with Python values writes what a tensor of them would: per channel, in the
    # input's dtype (half rounds 0.1 the same way either way).
    x = torch.full((2, 3, 2, 2), 7.0, dtype=torch.float16)
    crop = RandomCropFlip(padding=1, flip=False, fill=(0.1, -0.2, 0.3), generator=_gen(0))
    padded = crop._pad(x)
    expected = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float16).view(1, 3, 1, 1)
    assert padded.dtype == torch.float16 and padded.shape == (2, 3, 4, 4)
    assert torch.equal(padded[:, :, 0], expected[..., 0].expand(2, 3, 4))
    assert torch.equal(padded[:, :, 1:3, 1:3], x)
    with pytest.raises(ValueError, match="fill has 2 values for 3 channels"):
        RandomCropFlip(padding=1, fill=[0.0, 1.0], generator=_gen(0))._pad(x)


def test_masks_cross_once_per_band_kind_and_read_nothing_back(
        monkeypatch, no_python_tensors_on_the_device):
    sent = Sent()
    monkeypatch.setattr(augment, "to_device_async", sent)
    mask = SpectrogramMask(freq_width=2, time_width=3, count=2, generator=_gen(0))
    with TransferLog() as log:
        assert mask(torch.empty(4, 1, 6, 8, device=META)).device == META
    assert sent.shapes == [(2, 4, 2), (2, 4, 2)]  # (start, stop) x batch x count, per kind
    assert log.moves == [] and log.reads == []


# ---- video clips -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clip_splits(tmp_path_factory):
    from tests.conftest import needs_video_codecs

    needs_video_codecs()
    from trainables.data.registry import Hmdb51Config, _hmdb51
    from trainables.data.video.synth import write_hmdb51

    root = tmp_path_factory.mktemp("hmdb51")
    write_hmdb51(root, classes=3, videos_per_class=5, seconds=2.0, fps=12, size=(64, 80), seed=3)
    cfg = Hmdb51Config(root=str(root), frames=8, height=48, width=64, crop=40,
                       cache_dir=str(Path(tmp_path_factory.mktemp("cache"))))
    return _hmdb51(cfg)


def test_a_video_epoch_sends_labels_and_flips_once_and_steps_copy_only_frames(
        clip_splits, monkeypatch):
    from trainables.data.video import clips

    sent = Sent()
    monkeypatch.setattr(clips, "to_device_async", sent)
    data = clip_splits.to_device(torch.device("cpu"))
    count = len(clip_splits.train)
    epoch = data.train_epoch(4, generator=seed_everything(1), max_batches=None)
    assert sent.shapes == [(2, count)]  # the epoch's labels and flip flags, one crossing
    with TransferLog() as log:
        got = [(x, y) for x, y in epoch]
    assert sent.shapes == [(2, count)]
    # Per step only the frames cross (from pinned memory on CUDA), without blocking.
    assert log.moves == [True] * len(got) and log.reads == []
    store = clip_splits.store
    for batch, (x, y) in zip(epoch.plan, got, strict=True):
        assert torch.equal(y, torch.from_numpy(store.label[batch.ids]))
        # The device flip flags are this batch's: the clips flip exactly where drawn.
        plain = data.finish(data.gather(batch.ids, batch.starts), batch.tops, batch.lefts,
                            np.zeros(len(batch.ids), dtype=bool))
        flags = torch.from_numpy(batch.flips).view(-1, 1, 1, 1, 1)
        assert torch.equal(x, torch.where(flags, plain.flip(-1), plain))
    flipped = np.concatenate([b.flips for b in epoch.plan])
    assert flipped.any() and not flipped.all()
    first = epoch.plan[0]
    with pytest.raises(ValueError, match="flip flags on the device"):
        data.finish(data.gather(first.ids, first.starts), first.tops, first.lefts,
                    np.ones(len(first.ids), dtype=bool))


def test_a_video_evaluation_sends_ids_and_labels_once(clip_splits, monkeypatch):
    from trainables.data.video import clips

    sent = Sent()
    monkeypatch.setattr(clips, "to_device_async", sent)
    data = clip_splits.to_device(torch.device("cpu"))
    with TransferLog() as log:
        got = list(data.eval_batches("val", 2, max_batches=None))
    clips_seen = sum(len(y) for _, y, _ in got)
    assert len(got) > 2 and sent.shapes == [(2, clips_seen)]
    assert log.moves == [True] * len(got) and log.reads == []
    store = clip_splits.store
    for _, labels, groups in got:
        assert torch.equal(labels, torch.from_numpy(store.label)[groups])
    capped = list(data.eval_batches("val", 2, max_batches=2))
    assert len(capped) == 2 and sent.shapes[-1] == (2, sum(len(y) for _, y, _ in capped))
    for (xa, ya, ga), (xb, yb, gb) in zip(capped, got, strict=False):
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(ga, gb)
