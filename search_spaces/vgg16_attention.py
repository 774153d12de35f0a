"""vgg16_attention: VGG16_bn on 32x32 images with attention at three depths, from the blog
article "How Attention Improves a CNN's performance: A Beginner's Perspective".

The plain VGG16_bn against Jetley et al.'s "Learn to pay attention" (ICLR 2018) linear
attention estimators on three intermediate maps, normalised by softmax or by sigmoid, and
against the attention gates of the IPMI 2019 attention-gated VGG the article links, on
CIFAR-10 and CIFAR-100.

Choices where the sources are vague, and why:
- The article shows no numbers; the reported numbers are Jetley et al.'s
  CIFAR-100 top-1 errors (VGG 30.62, attention 22.97), put on the softmax estimator, the
  paper's main (parametrised compatibility) model.
- Recipe of the public reimplementation of Jetley et al.: SGD 0.1 with momentum 0.9, weight
  decay 5e-4, LR halved every 25 epochs, 300 epochs, batch 128, crop + flip.
- 45k/5k train/val split, test on the test set with the best-val checkpoint.
- Tuning (`--samples N`): neither source reports a search; the domains bracket the
  recipe, SGD learning rate 0.02-0.2 and weight decay 1e-4-1e-3.
- A trial takes half a GPU: the attention layout keeps the first three blocks at full
  32x32 resolution, which costs several times a standard CIFAR VGG.
"""

from dataclasses import replace

from ray import tune

from search_spaces.experiment import Experiment, Resources
from search_spaces.sources import (
    LEARN_TO_PAY_ATTENTION,
    MELANOMA_ATTENTION,
    VGG_ATTENTION_BLOG,
    with_role,
)
from search_spaces.variants import named_variants

VARIANTS = {
    "none": {"model.attention": "none"},
    "linear_softmax": {"model.attention": "linear", "model.normalize": "softmax"},
    "linear_sigmoid": {"model.attention": "linear", "model.normalize": "sigmoid"},
    "gate": {"model.attention": "gate"},
}

BASE = {
    "data": {"name": tune.grid_search(["cifar100", "cifar10"]), "root": None,
             "val_size": 5000, "split_seed": 0},
    "model": {"name": "vgg16_attention", "attention": "none", "normalize": "softmax",
              "width": 64},
    "train": {
        "epochs": 300,
        "batch_size": 128,
        "eval_batch_size": 500,
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "schedule": "step",
        "step_size": 25,          # epochs between LR halvings
        "gamma": 0.5,
        "precision": "fp32",
    },
    "augment": {"crop_padding": 4, "flip": True},
}

EXPERIMENT = Experiment(
    name="vgg16_attention",
    source=replace(VGG_ATTENTION_BLOG, builds_on=(
        with_role(LEARN_TO_PAY_ATTENTION, "linear attention estimators"),
        with_role(MELANOMA_ATTENTION, "attention gates"))),
    trainable="image",
    modality="image",
    description=__doc__,
    param_space=named_variants(BASE, VARIANTS),
    variant_keys=("variant", "data.name"),
    baseline_variant="variant=none,name=cifar100",
    reported={
        "variant=none,name=cifar100": {"test_acc": 0.6938},
        "variant=linear_softmax,name=cifar100": {"test_acc": 0.7703},
    },
    reported_note="Jetley et al. 2018, CIFAR-100 top-1 error, one run each (a public "
                  "reimplementation reports 22.62% for the attention model)",
    seeds=3,
    scheduler="halving-per-variant",
    search="random",
    resources=Resources(cpu=1, gpu=0.5),
    smoke={"train.epochs": 2, "train.max_batches": 4, "train.batch_size": 32,
           "train.eval_batch_size": 128, "model.width": 8, "data.val_size": 0.1},
    search_space={"train.lr": tune.loguniform(0.02, 0.2),
                  "train.weight_decay": tune.loguniform(1e-4, 1e-3)},
    search_space_note="the sources tune nothing; a bracket around the reimplementation's SGD "
                      "0.1 and weight decay 5e-4",
)
