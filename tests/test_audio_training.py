"""Audio-study training pieces: noise and SpecAugment masks, the Keras-style L2 term, the
precision axis (pure fp16 with Adam underflows), and the divergence-by-precision summary."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from analysis.divergence import divergence_matrix, divergence_sentences, divergence_table
from analysis.load import EPOCH_DTYPES, Run
from trainables.config import AugmentConfig, ConfigError, TrainConfig, TrialConfig
from trainables.data.augment import Compose, GaussianNoise, SpectrogramMask
from trainables.data.splits import ArraySplits
from trainables.image import build_augment
from trainables.loop import fit
from trainables.models import get_model
from trainables.seeding import seed_everything


class TestNoise:
    def test_std_matches_and_only_the_generator_decides(self):
        x = torch.zeros(64, 3, 32, 32)
        a = GaussianNoise(0.02, generator=torch.Generator().manual_seed(1))(x)
        b = GaussianNoise(0.02, generator=torch.Generator().manual_seed(1))(x)
        c = GaussianNoise(0.02, generator=torch.Generator().manual_seed(2))(x)
        assert torch.equal(a, b) and not torch.equal(a, c)
        assert a.std().item() == pytest.approx(0.02, rel=0.02)
        assert a.mean().abs().item() < 1e-3

    def test_successive_batches_differ(self):
        noise = GaussianNoise(0.1, generator=torch.Generator().manual_seed(0))
        x = torch.zeros(4, 1, 8, 8)
        assert not torch.equal(noise(x), noise(x))


class TestMasks:
    def test_bands_are_bounded_and_filled(self):
        mask = SpectrogramMask(freq_width=6, time_width=10, count=2, fill=0.0,
                               generator=torch.Generator().manual_seed(0))
        x = torch.ones(200, 1, 32, 48)
        out = mask(x)
        masked = out[:, 0] == 0
        full_rows = masked.all(dim=2).sum(dim=1)     # frequency bands span all time frames
        full_cols = masked.all(dim=1).sum(dim=1)     # time bands span all frequency bins
        assert int(full_rows.max()) <= 12 and int(full_cols.max()) <= 20
        assert full_rows.float().mean() > 2 and full_cols.float().mean() > 4
        assert set(out.unique().tolist()) <= {0.0, 1.0}

    def test_only_time_masks_leave_rows_whole(self):
        mask = SpectrogramMask(time_width=8, generator=torch.Generator().manual_seed(3))
        out = mask(torch.ones(50, 2, 16, 16))
        assert torch.equal(out[:, 0], out[:, 1])  # one mask for all channels of an example
        assert not (out == 0).all(dim=3).any()   # no frequency band masked

    def test_bad_widths_raise(self):
        with pytest.raises(ValueError, match="count"):
            SpectrogramMask(freq_width=2, count=0, generator=torch.Generator())


class TestBuildAugment:
    def _splits(self) -> ArraySplits:
        x = np.zeros((4, 1, 16, 16), dtype=np.uint8)
        y = np.arange(4) % 2
        return ArraySplits(x, y, x, y, x, y, num_classes=2, description="tiny")

    def test_nothing_asked_nothing_built(self):
        assert build_augment(TrialConfig(), self._splits(), torch.Generator()) is None

    def test_masks_then_noise(self):
        trial = TrialConfig(augment=AugmentConfig(noise_std=0.05, freq_mask=4))
        augment = build_augment(trial, self._splits(), torch.Generator().manual_seed(0))
        assert isinstance(augment, Compose)
        assert [type(s) for s in augment.steps] == [SpectrogramMask, GaussianNoise]

    def test_negative_values_are_config_errors(self):
        with pytest.raises(ConfigError, match=r"augment\.time_mask=-1"):
            AugmentConfig(time_mask=-1)
        with pytest.raises(ConfigError, match="mask_count"):
            AugmentConfig(mask_count=0)


def _spectro_splits(n: int = 64, seed: int = 0) -> ArraySplits:
    """Two classes of 32x32 'spectrograms': energy in the low or the high rows."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.integers(0, 60, size=(n, 1, 32, 32)).astype(np.uint8)
    for i, label in enumerate(y):
        rows = slice(20, 28) if label == 0 else slice(4, 12)
        x[i, 0, rows] = 220
    return ArraySplits(x, y, x[:16], y[:16], x[:16], y[:16], num_classes=2,
                       description="two bands")


def _fit(precision: str = "fp32", **overrides):
    model = get_model("spectro_lenet", attention="channel", batchnorm=True, in_channels=1,
                      num_classes=2, image_size=32, **overrides.pop("model", {}))
    cfg = TrainConfig(**{"epochs": 2, "batch_size": 16, "lr": 1e-3, "precision": precision,
                         "grad_clip": 1.0, **overrides})
    rows = []
    result = fit(model, _spectro_splits().to_device(torch.device("cpu")), cfg,
                 report=lambda m, s: rows.append(m), generator=seed_everything(0),
                 context={"data_note": "two bands"})
    return result, rows, model


class TestLoopPieces:
    def test_l2_term_is_part_of_the_training_loss(self):
        """With the same seed, the only difference L2 makes to the first step's loss is the
        penalty itself, which the model computes from its initial dense kernels."""
        torch.manual_seed(0)
        model = get_model("spectro_lenet", in_channels=1, num_classes=2, image_size=32,
                          dense_l2=1e-3)
        expected = 1e-3 * sum(m.weight.pow(2).sum() for m in (model.head.fc1, model.head.fc2))
        assert model.regularization_loss().item() == pytest.approx(expected.item(), rel=1e-5)

        _, plain, _ = _fit(max_batches=1, epochs=1, model={"dense_l2": 0.0})
        _, with_l2, _ = _fit(max_batches=1, epochs=1, model={"dense_l2": 1.0})
        assert with_l2[0]["train_loss"] > plain[0]["train_loss"] + 1.0

    def test_context_reaches_every_report(self):
        _, rows, _ = _fit()
        assert [r["data_note"] for r in rows] == ["two bands", "two bands"]

    @pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
    def test_autocast_precisions_train(self, precision):
        result, rows, _ = _fit(precision, epochs=3)
        assert result.status == "ok"
        assert rows[-1]["train_loss"] < rows[0]["train_loss"]

    def test_pure_fp16_adam_underflows_and_is_recorded(self):
        """Adam's eps (1e-8) is 0 in float16 and the squared gradients underflow, so the
        update divides by zero: the trial ends as diverged with its epoch and step."""
        result, rows, _ = _fit("fp16_pure", divergence_check_every=1)
        assert result.status == "diverged" and result.stopped_by == "divergence"
        last = rows[-1]
        assert last["diverged_epoch"] == 1 and last["diverged_step"] >= 2
        assert last["error"] == f"non-finite loss at epoch 1 step {last['diverged_step']}"

    def test_pure_fp16_trains_with_an_eps_float16_can_hold(self):
        result, _, model = _fit("fp16_pure", eps=1e-4, lr=1e-4)
        assert result.status == "ok"
        assert next(model.parameters()).dtype == torch.float16


def _run(rows: list[dict]) -> Run:
    trials = pl.DataFrame(rows, schema_overrides={"diverged_epoch": pl.Int64,
                                                  "diverged_step": pl.Int64})
    return Run(meta={}, trials=trials, epochs=pl.DataFrame(schema=EPOCH_DTYPES))


def _row(variant: str, precision: str, seed: int, status: str, step: int | None = None):
    return {"variant": f"variant={variant},precision={precision}", "seed": seed,
            "status": status, "cfg.variant": variant, "cfg.train.precision": precision,
            "diverged_epoch": 1 if step else None, "diverged_step": step}


RUN_ROWS = [
    _row("baseline", "fp32", 0, "ok"), _row("baseline", "fp32", 1, "ok"),
    _row("baseline", "fp16_pure", 0, "diverged", 2),
    _row("baseline", "fp16_pure", 1, "diverged", 3),
    _row("cbam", "fp32", 0, "ok"), _row("cbam", "fp32", 1, "ok"),
    _row("cbam", "fp16_pure", 1, "ok"), _row("cbam", "fp16_pure", 0, "diverged", 7),
]


class TestDivergenceSummary:
    RUN = tuple(RUN_ROWS)

    def test_table_counts_per_variant_and_precision(self):
        table = divergence_table(_run(list(self.RUN)))
        cells = {(r["variant"], r["precision"]): (r["diverged"], r["n"], r["where"])
                 for r in table.iter_rows(named=True)}
        assert cells == {
            ("baseline", "fp32"): (0, 2, ""),
            ("baseline", "fp16_pure"): (2, 2, "epoch 1 step 2; epoch 1 step 3"),
            ("cbam", "fp32"): (0, 2, ""),
            ("cbam", "fp16_pure"): (1, 2, "epoch 1 step 7"),
        }

    def test_sentences_name_variant_precision_and_clean_precisions(self):
        sentences = divergence_sentences(divergence_table(_run(list(self.RUN))))
        assert sentences == [
            "baseline diverged under fp16_pure in 2 of 2 trial(s) (epoch 1 step 2; "
            "epoch 1 step 3)",
            "cbam diverged under fp16_pure in 1 of 2 trial(s) (epoch 1 step 7)",
            "no trial diverged under fp32",
        ]

    def test_matrix_has_precisions_in_safety_order(self):
        headers, rows = divergence_matrix(divergence_table(_run(list(self.RUN))))
        assert headers == ["diverged/n", "fp32", "fp16_pure"]
        assert rows == [["baseline", "0/2", "2/2"], ["cbam", "0/2", "1/2"]]

    def test_nothing_diverged_says_nothing(self):
        run = _run([_row("baseline", "fp32", 0, "ok")])
        assert divergence_sentences(divergence_table(run)) == []

    def test_labels_without_named_variants(self):
        rows = [{"variant": "attention=se,precision=fp16", "seed": 0, "status": "diverged",
                 "cfg.train.precision": "fp16", "diverged_epoch": 3, "diverged_step": 10}]
        table = divergence_table(_run(rows))
        assert table.row(0, named=True)["variant"] == "se"



def test_model_is_sized_from_the_data(tmp_path):
    """Changing the spectrogram size alone resizes LeNet's dense layer: no second --set."""
    from trainables.image import run_image_trial

    rows: list[dict] = []
    result = run_image_trial(
        {"data": {"name": "fsdd", "split": "random", "height": 64, "width": 96,
                  "cache_dir": str(tmp_path)},
         "model": {"name": "spectro_lenet"},
         "train": {"epochs": 1, "max_batches": 2, "batch_size": 16}},
        report=lambda metrics, state: rows.append(metrics), device="cpu")
    assert result.status == "ok"
    height, width = ((64 - 4) // 2 - 4) // 2, ((96 - 4) // 2 - 4) // 2  # 13 x 21 after stage 2
    # The 3-channel 128x128 count, minus 300 first-conv weights for 1 channel, with the
    # first dense layer's 13456 inputs replaced by 16 x 13 x 21.
    assert result.params == 1_628_726 - 300 - 120 * (13_456 - 16 * height * width)
