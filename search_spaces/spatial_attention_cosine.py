"""spatial_attention_cosine: a light CNN with or without spatial attention, from Part I of
"How Attention Affects CNN Modules During Training" (project write-up).

Three conv stages (32/64/128 channels) with CBAM's 7x7 spatial gate after each conv, or
without it, each trained with Adam and with AdamW under a cosine schedule for 100 epochs.
The source's claim is about stability (train and validation accuracy close, a smooth
curve), not peak accuracy, so the report's learning curves matter more than the table.

Choices where the source is silent, and why:
- Dataset: not named. CIFAR-100 is the choice: the reported best validation accuracy of
  0.4895 with train accuracy 0.544 is what a light CNN reaches there; on CIFAR-10 it would
  be far higher. No augmentation (none is mentioned).
- Adam and AdamW share lr 1e-3 and weight decay 5e-4 (L2 for Adam, decoupled for AdamW), so
  the axis compares only how the decay is applied.
- Tuning (`--samples N`): the source's knobs are the optimizer (a grid axis here) and the
  learning rate; weight decay is what Adam and AdamW apply differently, so a fair
  comparison tunes it per arm too: lr 1e-4-3e-3, weight decay 5e-5-5e-3.
- The source says "Adam / AdamW" without saying which gave 0.4895: the number sits on both
  spatial-attention rows.
"""

from dataclasses import replace

from ray import tune

from search_spaces.experiment import Experiment, Resources
from search_spaces.sources import ATTENTION_TRAINING_WRITEUP, CBAM, with_role

EXPERIMENT = Experiment(
    name="spatial_attention_cosine",
    source=replace(ATTENTION_TRAINING_WRITEUP, part="Part I (images, CNN + spatial attention)",
                   builds_on=(with_role(CBAM, "spatial gate used here"),)),
    trainable="image",
    modality="image",
    description=__doc__,
    param_space={
        "data": {"name": "cifar100", "root": None, "val_size": 5000, "split_seed": 0},
        "model": {
            "name": "light_cnn",
            "attention": tune.grid_search(["none", "spatial7"]),
            "widths": [32, 64, 128],
            "dropout": 0.3,
        },
        "train": {
            "epochs": 100,
            "batch_size": 128,
            "eval_batch_size": 1000,
            "optimizer": tune.grid_search(["adam", "adamw"]),
            "lr": 1e-3,
            "weight_decay": 5e-4,
            "schedule": "cosine",
            "precision": "fp32",
        },
    },
    variant_keys=("model.attention", "train.optimizer"),
    baseline_variant="attention=none,optimizer=adam",
    reported={
        "attention=spatial7,optimizer=adam": {"best_val_acc": 0.4895},
        "attention=spatial7,optimizer=adamw": {"best_val_acc": 0.4895},
    },
    reported_note="one run on a single consumer GPU; dataset and optimizer not stated",
    seeds=3,
    scheduler="halving-per-variant",
    search="random",
    resources=Resources(cpu=1, gpu=0.25),
    smoke={"train.epochs": 2, "train.max_batches": 4, "train.eval_batch_size": 256,
           "data.val_size": 0.1},
    search_space={"train.lr": tune.loguniform(1e-4, 3e-3),
                  "train.weight_decay": tune.loguniform(5e-5, 5e-3)},
    search_space_note="the source compared Adam with AdamW and set the learning rate; weight "
                      "decay is how the two differ, so each arm tunes both",
)
