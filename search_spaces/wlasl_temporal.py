"""wlasl_temporal: WLASL-10 signs with a frozen frame CNN + temporal pooling, from Part II of
"How Attention Affects CNN Modules During Training" (project write-up).

8 frames around the centre of each sign go through a frozen ImageNet ResNet-18, one
512-d feature per frame; a temporal head turns the 8 features into one prediction. The
source compared a TCN (dilated temporal convolutions, which it called temporal attention)
with plain frame averaging; this preset adds real temporal attention pooling (a learned
query attending over the frames) as the third row, so "attention over time" is tested by
an attention layer too.

Choices where the source is vague, and why:
- Data: the first 10 glosses of WLASL_v0.3.json with their own train/val/test splits;
  instances whose video is missing (WLASL's dead links) are counted and reported. Frames
  come from the sign's own range (frame_start/frame_end), cropped to the signer's box,
  8 frames 2 apart centred on the middle of the sign ("center frames"), 128x128, random
  112 crop in training (no flip: mirroring a sign changes its handedness), ImageNet
  normalisation for the ResNet.
- Adam 1e-3, batch 4, 20 epochs, early stopping on val acc with patience 5 and the best
  checkpoint restored, as the source (which named no patience).
- Tuning (`--samples N`): only the learning rate, 1e-4 to 1e-2 around the source's 1e-3,
  chosen on WLASL's own validation split.
- The ResNet is frozen and stays in eval mode; only the temporal head trains, so a trial
  is small: gpu 0.25 packs four on one GPU.
- Pretrained: ImageNet ResNet-18 (torchvision's resnet18-f37072fd.pth) from the torch hub
  cache; a missing file stops the run before it starts. A frozen random CNN would make the
  comparison meaningless, so there is no silent fallback.
"""

from dataclasses import replace

from ray import tune

from search_spaces.experiment import Experiment, Resources
from search_spaces.sources import ATTENTION_TRAINING_WRITEUP, WLASL, with_role

BASE = {
    "data": {
        "name": "wlasl",
        "root": None,
        "glosses": 10,
        "frames": 8,
        "frame_stride": 2,
        "use_bbox": True,
        "height": 128,
        "width": 128,
        "crop": 112,
        "flip": False,
    },
    "model": {
        "name": "frame_temporal",
        "pooling": tune.grid_search(["mean", "tcn", "attention"]),
        "backbone": "resnet18",
        "pretrained": True,
        "freeze_backbone": True,
    },
    "train": {
        "epochs": 20,
        "batch_size": 4,
        "eval_batch_size": 32,
        "optimizer": "adam",
        "lr": 1e-3,
        "patience": 5,
        "monitor": "val_acc",
        "restore_best": True,
    },
}

EXPERIMENT = Experiment(
    name="wlasl_temporal",
    source=replace(ATTENTION_TRAINING_WRITEUP, part="Part II (WLASL video, 10 glosses)",
                   builds_on=(with_role(WLASL, "dataset"),)),
    trainable="video",
    modality="video",
    description=__doc__,
    param_space=BASE,
    variant_keys=("model.pooling",),
    baseline_variant="mean",
    reported={"tcn": {"val_acc": 0.30}},
    reported_note="about 0.30 val acc at best (TCN), one run, a very small validation set",
    seeds=3,
    scheduler="halving-per-variant",
    search="random",
    resources=Resources(cpu=2, gpu=0.25),
    smoke={"train.epochs": 2, "train.max_batches": 4, "data.height": 64, "data.width": 64,
           "data.crop": 56, "model.pretrained": False},
    search_space={"train.lr": tune.loguniform(1e-4, 1e-2)},
    search_space_note="the source fixed lr 1e-3; a decade either side",
    profiles={"from-scratch-backbone": {"model.pretrained": False,
                                        "model.freeze_backbone": False}},
)
