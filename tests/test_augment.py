"""Batched augmentation against hand computations on tiny tensors.

Tensors stay under 32768 elements (ATen's grain size), so no op starts OpenMP threads: a
mutation-testing child forked after they started would hang instead of failing.

Every draw comes from the trial's seeded CPU generator, so each test can replay the same
draws (in the order the module documents: offsets then flips; freq bands then time bands;
one seed for the device generator per noise batch) and build the expected batch with plain
per-pixel loops.
"""

from __future__ import annotations

import pytest
import torch
from torch.overrides import TorchFunctionMode

from trainables.data import augment
from trainables.data.augment import (
    Compose,
    GaussianNoise,
    RandomCropFlip,
    SpectrogramMask,
    fill_for,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class DeviceLog(TorchFunctionMode):
    """Every torch call made inside, with the device of the tensor it returned."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []
        self.kwargs: dict[str, dict] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = getattr(func, "__name__", str(func))
        self.kwargs[name] = dict(kwargs or {})
        if isinstance(out, torch.Tensor):
            self.calls.append((name, out.device.type))
        return out

    def assert_draws_travel_once(self, device: str, transfers: int, also=()) -> None:
        """Only the random draws (and ``also``) are made on the host, and each draw reaches
        ``device`` in one transfer before anything else uses it; every index and buffer is
        built there."""
        host = {name for name, where in self.calls if where == "cpu"}
        draw_ops = {"randint", "rand", "lt", "le", "long", "__getitem__", "cat", "__rsub__",
                    "add", "mul", "stack"}  # drawing, comparing, packing
        assert host <= draw_ops | set(also), host
        assert [name for name, _ in self.calls].count("to") == transfers
        for (_, where), (after, after_where) in zip(self.calls, self.calls[1:], strict=False):
            if where == "cpu":
                assert after_where == "cpu" or after == "to", self.calls
        assert self.calls[-1][1] == device


def _image(b=1, c=1, h=2, w=3) -> torch.Tensor:
    """Distinct values, so every moved pixel can be traced: value = its flat index."""
    return torch.arange(b * c * h * w, dtype=torch.float32).reshape(b, c, h, w)


# ---------------------------------------------------------------------------- fill_for


def test_fill_for_is_black_normalised_per_channel():
    assert fill_for((0.5, 0.25), (0.5, 0.125)) == (-1.0, -2.0)
    assert fill_for((), ()) == ()
    with pytest.raises(ValueError):
        fill_for((0.5, 0.5), (0.5,))


# ------------------------------------------------------------------ crop and flip by hand


def _fixed(crop: RandomCropFlip, offsets, flips):
    """Make ``crop`` use the given (dy, dx) offsets and flip flags instead of drawing."""
    crop._draw = lambda batch, device: (torch.tensor(offsets, device=device),
                                        torch.tensor(flips, device=device))
    return crop


def test_crop_at_each_offset_moves_the_pixels_by_hand():
    # 2x3 image padded by 1 with -1:    -1 -1 -1 -1 -1
    #                                   -1  0  1  2 -1
    #                                   -1  3  4  5 -1
    #                                   -1 -1 -1 -1 -1
    x = _image().expand(4, 1, 2, 3)
    crop = _fixed(RandomCropFlip(padding=1, fill=-1.0, generator=_gen(0)),
                  [[0, 0], [2, 2], [1, 1], [0, 2]], [False, False, False, True])
    out = crop(x)
    expected = torch.tensor([
        [[-1, -1, -1], [-1, 0, 1]],     # (0, 0): the top-left corner of the padded image
        [[4, 5, -1], [-1, -1, -1]],     # (2, 2): the bottom-right corner
        [[0, 1, 2], [3, 4, 5]],         # (1, 1): the original
        [[-1, -1, -1], [-1, 2, 1]],     # (0, 2), flipped: crop [[-1,-1,-1],[1,2,-1]] mirrored
    ], dtype=torch.float32)[:, None]
    assert torch.equal(out, expected)


def test_flip_without_padding_mirrors_columns_only():
    x = _image(b=2, c=2, h=2, w=3)
    crop = _fixed(RandomCropFlip(padding=0, flip=True, generator=_gen(0)),
                  [[0, 0], [0, 0]], [True, False])
    out = crop(x)
    assert torch.equal(out[0], x[0].flip(-1)) and torch.equal(out[1], x[1])


def test_per_channel_fill_pads_each_channel_with_its_value():
    x = torch.full((1, 3, 2, 2), 9.0)
    crop = _fixed(RandomCropFlip(padding=2, fill=(0.5, -1.5, 2.0), generator=_gen(0)),
                  [[0, 0]], [False])
    out = crop(x)  # offset (0, 0) of a 2-padded 2x2: only padding
    for channel, value in enumerate((0.5, -1.5, 2.0)):
        assert torch.equal(out[0, channel], torch.full((2, 2), value))
    scalar = _fixed(RandomCropFlip(padding=1, fill=0.25, generator=_gen(0)), [[0, 0]], [False])
    assert torch.equal(scalar(x)[0, :, 0, :], torch.full((3, 2), 0.25))
    assert scalar(x)[0, :, 1, 1].tolist() == [9.0, 9.0, 9.0]


def _reference_crop_flip(x, padding, fill, generator, flip=True):
    """Per-pixel crop and flip with the draws replayed from ``generator``."""
    b, c, h, w = x.shape
    offsets = (torch.randint(0, 2 * padding + 1, (b, 2), generator=generator) if padding
               else torch.zeros(b, 2, dtype=torch.int64))
    flips = (torch.rand(b, generator=generator) < 0.5 if flip
             else torch.zeros(b, dtype=torch.bool))
    fills = list(fill) if isinstance(fill, tuple) else [fill] * c
    out = torch.empty_like(x)
    for i in range(b):
        dy, dx = offsets[i].tolist()
        for ch in range(c):
            for r in range(h):
                for q in range(w):
                    col = (w - 1 - q) if flips[i] else q
                    sr, sc = dy + r - padding, dx + col - padding  # in the unpadded image
                    inside = 0 <= sr < h and 0 <= sc < w
                    out[i, ch, r, q] = x[i, ch, sr, sc] if inside else fills[ch]
    return out, offsets, flips


@pytest.mark.parametrize(("padding", "flip"), [(2, True), (1, False), (0, True), (3, True)])
def test_crop_flip_matches_the_per_pixel_reference_for_the_same_seed(padding, flip):
    x = torch.rand(24, 2, 4, 5, generator=_gen(9))
    fill = (0.5, -0.5)
    out = RandomCropFlip(padding=padding, flip=flip, fill=fill, generator=_gen(3))(x)
    expected, offsets, flips = _reference_crop_flip(x, padding, fill, _gen(3), flip=flip)
    assert torch.equal(out, expected)
    if padding:  # the offsets span every shift, 0 .. 2 * padding, on both axes
        assert set(offsets.flatten().tolist()) == set(range(2 * padding + 1))
    assert flips.any() == flip and (not flip or not flips.all())


def test_default_crop_pads_by_four_with_black_and_flips():
    x = torch.rand(64, 1, 5, 5, generator=_gen(4)) + 1.0
    out = RandomCropFlip(generator=_gen(8))(x)
    expected, offsets, flips = _reference_crop_flip(x, 4, 0.0, _gen(8), flip=True)
    assert torch.equal(out, expected)
    assert set(offsets.flatten().tolist()) == set(range(9)) and 0 < int(flips.sum()) < 64


def test_offsets_and_flips_are_uniform_over_many_images():
    g = _gen(11)
    crop = RandomCropFlip(padding=2, generator=g)
    offsets, flips = crop._draw(4000, torch.device("cpu"))
    counts = torch.bincount(offsets.flatten(), minlength=5)
    assert counts.numel() == 5 and torch.all((counts > 1400) & (counts < 1800))  # 1600 each
    assert 1850 < int(flips.sum()) < 2150
    assert offsets.dtype == torch.int64 and flips.dtype == torch.bool
    # No crop, no flip: the draws are all zero and take nothing from the generator.
    state = g.get_state()
    none = RandomCropFlip(padding=0, flip=False, generator=g)._draw(3, torch.device("cpu"))
    assert torch.equal(none[0], torch.zeros(3, 2, dtype=torch.int64))
    assert torch.equal(none[1], torch.zeros(3, dtype=torch.bool))
    assert torch.equal(g.get_state(), state)


def test_crop_draws_differ_across_batches_and_repeat_for_the_seed():
    x = torch.rand(16, 1, 6, 6, generator=_gen(1))
    a, b = RandomCropFlip(generator=_gen(5)), RandomCropFlip(generator=_gen(5))
    first_a, first_b = a(x), b(x)
    assert torch.equal(first_a, first_b)
    assert not torch.equal(first_a, a(x))
    assert not torch.equal(first_a, RandomCropFlip(generator=_gen(6))(x))


def test_crop_flip_checks_its_arguments_and_keeps_dtype():
    with pytest.raises(ValueError, match="padding must be >= 0, not -1"):
        RandomCropFlip(padding=-1, generator=_gen(0))
    RandomCropFlip(padding=0, generator=_gen(0))  # 0 is allowed: flip only
    crop = RandomCropFlip(padding=1, generator=_gen(0))
    with pytest.raises(ValueError, match=r"expected a \(B, C, H, W\) batch, got shape \(2, 3\)"):
        crop(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="fill has 2 values for 3 channels"):
        RandomCropFlip(padding=1, fill=(0.0, 1.0), generator=_gen(0))(torch.zeros(1, 3, 2, 2))
    x = torch.zeros(2, 1, 3, 3, dtype=torch.float64)
    same = RandomCropFlip(padding=0, flip=False, generator=_gen(0))
    assert same(x) is x
    out = RandomCropFlip(padding=1, fill=0.5, generator=_gen(0))(x.half())
    assert out.dtype == torch.float16 and out.shape == (2, 1, 3, 3)


def test_crop_flip_on_another_device_gathers_there():
    # "meta" stands in for an accelerator here: every index must be made on the input's
    # device for the gather to run there.
    x = torch.empty(64, 3, 8, 8, device="meta")
    out = RandomCropFlip(padding=2, fill=(0.0, 1.0, 2.0), generator=_gen(0))(x)
    assert out.device == x.device and out.shape == x.shape
    offsets, flips = RandomCropFlip(padding=2, generator=_gen(0))._draw(4, x.device)
    assert offsets.device == x.device and flips.device == x.device
    with DeviceLog() as log:
        RandomCropFlip(padding=2, fill=(0.0, 1.0, 2.0), generator=_gen(0))(x)
    log.assert_draws_travel_once("meta", transfers=1)
    with DeviceLog() as log:  # flip only: zero offsets join the flips in one transfer
        RandomCropFlip(padding=0, generator=_gen(0))(x)
    log.assert_draws_travel_once("meta", transfers=1, also={"zeros"})


# --------------------------------------------------------------------------------- noise


def test_noise_is_the_seeded_device_generator_scaled_by_std():
    x = torch.rand(3, 2, 4, 5, generator=_gen(2), dtype=torch.float64)
    out = GaussianNoise(0.02, generator=_gen(4))(x)
    replay = _gen(4)
    seed = int(torch.randint(0, 2**62, (1,), generator=replay))
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed),
                        dtype=torch.float64)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, x + 0.02 * noise, rtol=0, atol=0)
    # The noise is standard normal before scaling: std ~ 0.02 on many values.
    big = GaussianNoise(0.02, generator=_gen(4))(torch.zeros(20_000))
    assert abs(float(big.std()) - 0.02) < 0.0005 and abs(float(big.mean())) < 0.0005


def test_noise_keeps_half_precision_and_zero_std_is_identity():
    x = torch.zeros(4, 1, 3, 3, dtype=torch.float16)
    assert GaussianNoise(0.1, generator=_gen(0))(x).dtype == torch.float16
    assert GaussianNoise(0.0, generator=_gen(0))(x) is x
    with pytest.raises(ValueError, match=r"noise std must be >= 0, not -0\.1"):
        GaussianNoise(-0.1, generator=_gen(0))


def test_noise_differs_across_batches_and_repeats_for_the_seed():
    x = torch.zeros(2, 1, 4, 4)
    a, b = GaussianNoise(0.1, generator=_gen(8)), GaussianNoise(0.1, generator=_gen(8))
    first = a(x)
    assert torch.equal(first, b(x))
    assert not torch.equal(first, a(x))
    # Every batch takes exactly one draw from the trial generator (the device seed), so
    # resuming from a saved generator state reproduces the noise.
    g = _gen(8)
    GaussianNoise(0.1, generator=g)(x)
    state = g.get_state()
    nxt = GaussianNoise(0.1, generator=g)(x)
    assert torch.equal(nxt, GaussianNoise(0.1, generator=torch.Generator().set_state(state))(x))


def test_noise_is_drawn_on_the_input_device_with_a_generator_made_there(monkeypatch):
    # Without an accelerator, check what the draw is asked for: the input's device for
    # both the noise tensor and the generator that fills it (on a GPU, a host generator
    # or host noise would fail, or copy the whole batch across every step).
    made = []
    real = torch.Generator
    noise = GaussianNoise(0.1, generator=_gen(0))

    def recording(device="cpu"):
        made.append(device)
        return real(device=device)

    monkeypatch.setattr(augment.torch, "Generator", recording)
    x = torch.zeros(2, 1, 3, 3)
    with DeviceLog() as log:
        noise(x)
    assert made == [x.device]
    asked = log.kwargs["randn"]
    assert asked["device"] == x.device and asked["generator"].device == x.device
    assert asked["dtype"] == x.dtype


def test_device_generator_is_seeded_from_the_trial_generator_on_the_device(monkeypatch):
    made = []
    real = torch.Generator

    def recording(device="cpu"):
        made.append(torch.device(device))
        return real(device=device)

    source = _gen(12)
    expected_seed = int(torch.randint(0, 2**62, (1,), generator=_gen(12)))
    monkeypatch.setattr(augment.torch, "Generator", recording)
    generator = augment._device_generator(source, torch.device("cpu"))
    assert made == [torch.device("cpu")] and generator.initial_seed() == expected_seed
    # Seeds span [0, 2**62): many draws reach above 2**61.
    seeds = [augment._device_generator(source, torch.device("cpu")).initial_seed()
             for _ in range(64)]
    assert max(seeds) < 2**62 and any(s >= 2**61 for s in seeds) and min(seeds) >= 0


# --------------------------------------------------------------------------------- masks


def _reference_mask(x, freq_width, time_width, count, fill, generator):
    """Per-row and per-column masking with the draws replayed from ``generator``."""
    b, _, h, w = x.shape
    out = x.clone()

    def bands(size, width):
        widths = torch.randint(0, min(width, size) + 1, (b, count), generator=generator)
        starts = (torch.rand(b, count, generator=generator) * (size - widths + 1)).long()
        return [[(int(s), int(s + wd)) for s, wd in zip(starts[i], widths[i], strict=True)]
                for i in range(b)]

    drawn = {}
    if freq_width:
        drawn["freq"] = bands(h, freq_width)
        for i in range(b):
            for start, stop in drawn["freq"][i]:
                out[i, :, start:stop, :] = fill
    if time_width:
        drawn["time"] = bands(w, time_width)
        for i in range(b):
            for start, stop in drawn["time"][i]:
                out[i, :, :, start:stop] = fill
    return out, drawn


@pytest.mark.parametrize(("freq", "time", "count"), [(3, 4, 2), (2, 0, 1), (0, 5, 3), (9, 9, 1)])
def test_masks_match_the_per_row_and_column_reference(freq, time, count):
    x = torch.rand(64, 2, 6, 7, generator=_gen(1)) + 1.0  # never equal to the fill
    mask = SpectrogramMask(freq_width=freq, time_width=time, count=count, fill=-0.5,
                           generator=_gen(7))
    expected, drawn = _reference_mask(x, freq, time, count, -0.5, _gen(7))
    assert torch.equal(mask(x), expected)
    for axis, size, width in (("freq", 6, freq), ("time", 7, time)):
        if axis not in drawn:
            continue
        spans = [stop - start for per in drawn[axis] for start, stop in per]
        assert len(spans) == 64 * count                    # count bands per example
        assert max(spans) == min(width, size) and min(spans) == 0  # widths span 0 .. width
        assert all(0 <= start <= stop <= size for per in drawn[axis] for start, stop in per)


def test_one_band_masks_a_contiguous_run_the_same_in_every_channel():
    x = torch.ones(100, 3, 8, 10)
    out = SpectrogramMask(freq_width=4, count=1, fill=0.0, generator=_gen(2))(x)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 0], out[:, 2])
    rows = (out[:, 0] == 0).all(dim=2)  # (B, H): whole rows masked
    assert torch.equal((out[:, 0] == 0).any(dim=2), rows)  # ... and only whole rows
    widths = rows.sum(dim=1)
    assert set(widths.tolist()) == {0, 1, 2, 3, 4}
    for example in rows:
        masked = example.nonzero().flatten().tolist()
        assert masked == list(range(masked[0], masked[0] + len(masked))) if masked else True
    # Bands reach both edges: starts cover 0 .. size - width.
    assert rows[:, 0].any() and rows[:, -1].any()


def test_time_masks_leave_rows_and_freq_masks_leave_columns_whole():
    x = torch.ones(50, 1, 6, 9)
    time_only = SpectrogramMask(time_width=3, fill=0.0, generator=_gen(4))(x)[:, 0]
    assert torch.equal((time_only == 0).all(dim=1), (time_only == 0).any(dim=1))
    assert (time_only == 0).any()
    freq_only = SpectrogramMask(freq_width=3, fill=0.0, generator=_gen(4))(x)[:, 0]
    assert torch.equal((freq_only == 0).all(dim=2), (freq_only == 0).any(dim=2))
    assert (freq_only == 0).any()
    nothing = SpectrogramMask(generator=_gen(4))
    assert torch.equal(nothing(x), x)


def test_masks_differ_across_batches_and_repeat_for_the_seed():
    x = torch.ones(8, 1, 10, 12)
    a = SpectrogramMask(freq_width=4, time_width=5, count=2, generator=_gen(3))
    b = SpectrogramMask(freq_width=4, time_width=5, count=2, generator=_gen(3))
    first = a(x)
    assert torch.equal(first, b(x)) and not torch.equal(first, a(x))


def test_masks_check_their_arguments_and_default_to_silence():
    for bad in (dict(freq_width=-1), dict(time_width=-2), dict(count=0)):
        with pytest.raises(ValueError, match="mask widths must be >= 0 and count >= 1"):
            SpectrogramMask(**bad, generator=_gen(0))
    with pytest.raises(ValueError, match="freq_width=2, time_width=-1, count=1"):
        SpectrogramMask(freq_width=2, time_width=-1, generator=_gen(0))
    mask = SpectrogramMask(freq_width=1, time_width=1, generator=_gen(0))
    assert mask.count == 1 and mask.fill == 0.0
    out = mask(torch.ones(100, 1, 4, 4))
    assert set(out.unique().tolist()) == {0.0, 1.0}


def test_masks_are_built_on_the_input_device():
    x = torch.empty(4, 2, 6, 8, device="meta")
    out = SpectrogramMask(freq_width=2, time_width=3, generator=_gen(0))(x)
    assert out.device == x.device and out.shape == x.shape
    bands = SpectrogramMask(freq_width=2, generator=_gen(0))._bands(4, 6, 2, x.device)
    assert bands.device == x.device and bands.shape == (4, 6) and bands.dtype == torch.bool
    with DeviceLog() as log:
        SpectrogramMask(freq_width=2, time_width=3, count=2, generator=_gen(0))(x)
    log.assert_draws_travel_once("meta", transfers=2)  # frequency bands, then time bands


# ------------------------------------------------------------------------------- compose


def test_compose_applies_steps_in_order():
    x = torch.ones(1, 1, 2, 2)
    out = Compose([lambda t: t + 1, lambda t: t * 3])(x)
    assert torch.equal(out, torch.full((1, 1, 2, 2), 6.0))
    assert Compose([])(x) is x


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_draws_match_cpu_and_stay_on_the_device():
    x = torch.rand(32, 3, 8, 8, generator=_gen(0))
    crop_cpu = RandomCropFlip(padding=2, fill=(0.1, 0.2, 0.3), generator=_gen(1))(x)
    crop_gpu = RandomCropFlip(padding=2, fill=(0.1, 0.2, 0.3), generator=_gen(1))(x.cuda())
    assert crop_gpu.is_cuda and torch.equal(crop_gpu.cpu(), crop_cpu)
    mask_cpu = SpectrogramMask(freq_width=3, time_width=3, count=2, generator=_gen(2))(x)
    mask_gpu = SpectrogramMask(freq_width=3, time_width=3, count=2, generator=_gen(2))(x.cuda())
    assert mask_gpu.is_cuda and torch.equal(mask_gpu.cpu(), mask_cpu)
    noisy = GaussianNoise(0.1, generator=_gen(3))(x.cuda())
    again = GaussianNoise(0.1, generator=_gen(3))(x.cuda())
    assert noisy.is_cuda and torch.equal(noisy, again) and not torch.equal(noisy, x.cuda())
