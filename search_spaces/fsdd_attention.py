"""fsdd_attention: spoken digits as spectrogram images, x numeric precision, from Part B of the
course report "Impact of Attention Mechanisms in Deep Learning" (Problem 4).

Three LeNet-style networks on 128x128x3 spectrograms: the baseline (Conv6-AvgPool-Conv16-
AvgPool-Dense120-Dense84-Dense10, 1.63M parameters); the same with BatchNorm + CBAM (r=8)
after each conv; and the "hybrid" with BatchNorm + channel attention (SE, r=8, then
LayerNorm) + Dropout 0.1 after each conv, L2 1e-3 and Dropout 0.5 on the dense layers and
Gaussian noise 0.02 on the training inputs. Each runs in fp32, bf16 autocast, fp16
autocast with a grad scaler, and pure fp16: the source lost its fp16 runs to inf losses and
switched to fp32; here every precision runs, a trial whose loss goes non-finite is recorded
as diverged (with epoch and step) and the sweep goes on, and the summary says which
variants diverged under which precision.

Choices where the source is vague or cannot be matched, and why:
- Data: without --data-root, a bundled set of 600 spoken digits synthesised with espeak-ng
  (6 synthetic voices x 10 takes, 8 kHz, FSDD's file layout) stands in for FSDD. It is far
  easier than real speech: its accuracies say nothing about FSDD. Pass --data-root DIR
  with DIR/recordings/{digit}_{speaker}_{index}.wav (FSDD from
  github.com/Jakobovski/free-spoken-digit-dataset) for the real study.
- Split 80/10/10 stratified by digit (the source's, seed 0); `--profile official-split`
  uses FSDD's own (takes 0-4 test, 10% of the rest for validation), `--profile
  unseen-speaker` tests on one speaker left out of training.
- Spectrograms: log-mel, 128 bands, 25 ms windows, each clip's own length stretched to
  128 frames (as resizing a spectrogram picture does), 80 dB range onto [0, 1], repeated
  to 3 channels (the source's RGB pictures); no further normalisation, as in the source.
- Noise 0.02 on the hybrid only (STUDIES.md lists it with the hybrid); `--profile
  noise-for-all` adds it to every variant, which separates the noise from the attention.
- Adam 1e-4, clipnorm 1.0 (each variable's gradient clipped on its own, as Keras does:
  train.grad_clip_mode per_tensor), batch 16, 15 epochs, early stopping on val loss with patience
  3 and the best weights restored, as in the source. L2 is a loss term (Keras semantics).
- Every seed trains to its own early stop: no scheduler ever cuts a seed (that would leave
  some seeds of a (variant, precision) cell shorter than others). With `--samples N` the
  tuning candidates of each cell are halved (halving-per-variant); the replicates are not.
- Parameters: baseline 1,628,726, CBAM 1,629,069, hybrid 1,628,915 (the source: ~1.62M,
  ~1.63M, 1,629,144; Keras also counts BatchNorm's moving statistics).
- fp16_pure keeps weights, gradients and Adam's moments in float16. Measured on the bundled
  set: 99% of Adam's squared-gradient averages underflow to 0 at the first step and eps
  1e-8 is 0 in float16, so the second step divides 0 by 0 and every network diverges at
  step 2, attention or not; fp16 autocast (float32 weights and moments, a grad scaler)
  trains. `--set train.eps=1e-4` lets pure fp16 train, as a different optimizer (with v
  underflowed, Adam's step becomes lr * m / eps).
- Tuning (`--samples N`): the source proposes learning rates 5e-5 to 1e-3, dense dropout
  0.3 to 0.7 and L2 5e-4 to 1e-2; dropout and L2 are tuned on the hybrid, the only network
  that has them. Every (variant, precision) cell is an arm with its own candidates.
- Reported numbers are one run each on a Kaggle T4 in fp32, on FSDD; they sit on the fp32
  rows. A trial is small: a GPU holds eight (gpu 0.125 each). On a CPU, half precision
  is slow (fp16 autocast 5.8x, bf16 1.3x fp32's epoch time, measured): `--profile
  fp32-only` runs the source's final setting, 9 trials.
"""

from dataclasses import replace

from ray import tune

from search_spaces.experiment import Experiment, Resources
from search_spaces.sources import ATTENTION_COURSE_REPORT, CBAM, FSDD_GITHUB, FSDD_KAGGLE, with_role
from search_spaces.tuning import PerArm
from search_spaces.variants import named_variants

PRECISIONS = ["fp32", "bf16", "fp16", "fp16_pure"]

VARIANTS = {
    "baseline": {"model.attention": "none", "model.batchnorm": False},
    "cbam": {"model.attention": "cbam", "model.batchnorm": True},
    "hybrid": {
        "model.attention": "channel",
        "model.batchnorm": True,
        "model.attention_dropout": 0.1,
        "model.dense_dropout": 0.5,
        "model.dense_l2": 1e-3,
        "augment.noise_std": 0.02,
    },
}

BASE = {
    "data": {
        "name": "fsdd",
        "root": None,               # None: the bundled espeak-ng spoken digits
        "split": "random",          # the source's 80/10/10
        "val_fraction": 0.1,
        "test_fraction": 0.1,
        "split_seed": 0,
        "features": "mel",
        "height": 128,
        "width": 128,
        "channels": 3,
    },
    "model": {
        "name": "spectro_lenet",
        "attention": "none",
        "batchnorm": False,
        "reduction": 8,
        "attention_dropout": 0.0,
        "dense_dropout": 0.0,
        "dense_l2": 0.0,
    },
    "train": {
        "epochs": 15,
        "batch_size": 16,
        "eval_batch_size": 256,
        "optimizer": "adam",
        "lr": 1e-4,
        "schedule": "none",
        "grad_clip": 1.0,
        "grad_clip_mode": "per_tensor",   # Keras clipnorm: each variable's gradient alone
        "patience": 3,
        "monitor": "val_loss",
        "restore_best": True,
        "precision": tune.grid_search(PRECISIONS),
    },
    "augment": {"noise_std": 0.0},
}


def _label(variant: str, precision: str = "fp32") -> str:
    """The run's label for a (variant, precision) cell, as the results table writes it."""
    return f"variant={variant},precision={precision}"


EXPERIMENT = Experiment(
    name="fsdd_attention",
    source=replace(ATTENTION_COURSE_REPORT, part="Problem 4, Part B (spoken digits)",
                   builds_on=(with_role(FSDD_KAGGLE, "dataset as cited there"),
                              with_role(FSDD_GITHUB, "its recordings"), with_role(CBAM, "CBAM"))),
    trainable="audio",
    modality="spectrogram",
    description=__doc__,
    param_space=named_variants(BASE, VARIANTS),
    variant_keys=("variant", "train.precision"),
    baseline_variant=_label("baseline"),
    reported={
        _label("baseline"): {"test_acc": 0.9727, "train_time_s": 126.41},
        _label("cbam"): {"test_acc": 0.9922, "train_time_s": 310.01},
        _label("hybrid"): {"test_acc": 0.9844, "train_time_s": 137.72},
    },
    reported_note="one Keras run each on FSDD (80/10/10 split) on a Kaggle T4 GPU, float32 "
                  "(its float16 runs gave inf losses)",
    seeds=3,
    scheduler="halving-per-variant",
    search="random",
    resources=Resources(cpu=1, gpu=0.125),
    smoke={"train.epochs": 2, "train.max_batches": 4},
    search_space={
        "train.lr": tune.loguniform(5e-5, 1e-3),
        "model.dense_dropout": PerArm("variant", {"hybrid": tune.uniform(0.3, 0.7)}),
        "model.dense_l2": PerArm("variant", {"hybrid": tune.loguniform(5e-4, 1e-2)}),
    },
    search_space_note="the source's tuning proposal: learning rate 5e-5 to 1e-3, dropout 0.3 "
                      "to 0.7 and L2 5e-4 to 1e-2 (the last two exist in the hybrid only)",
    profiles={
        "noise-for-all": {"augment.noise_std": 0.02},
        "fp32-only": {"train.precision": "fp32"},
        "official-split": {"data.split": "official", "data.val_fraction": 0.1},
        # Test on a voice never heard in training (the last speaker A-Z): harder than a
        # random split, where every test voice is also a training voice.
        "unseen-speaker": {"data.split": "speaker", "data.val_fraction": 0.1},
        "specaugment": {"augment.freq_mask": 16, "augment.time_mask": 16,
                        "augment.mask_count": 1},
    },
)
