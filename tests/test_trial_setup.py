"""What every trial kind shares before training: config, device and model checks."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from trainables.config import ConfigError
from trainables.trial_setup import build_model, parse_trial, resolve_device


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU answers")
def test_device_auto_is_cpu_and_cuda_is_refused_without_a_gpu():
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="device=cuda was requested but no CUDA device"):
        resolve_device("cuda")


def test_a_trial_runs_where_its_config_says_else_on_the_gpu_ray_gave_it():
    from trainables.tune_adapter import trial_device

    assert trial_device("auto", [0]) == "cuda" and trial_device("auto", []) == "cpu"
    assert trial_device("cpu", [0]) == "cpu"        # device=cpu: on purpose, on CPU
    assert trial_device("cuda", []) == "cuda"       # and resolve_device refuses it without CUDA
    if not torch.cuda.is_available():
        # A trial Ray gave a GPU that sees no CUDA device fails; it never trains on CPU.
        with pytest.raises(ConfigError, match="no CUDA device is visible"):
            resolve_device(trial_device("auto", [0]))


def test_model_keys_are_checked_against_the_builder_and_the_data_fills_the_rest():
    model = build_model({"name": "mnist_cnn", "attention": "se"}, in_channels=1, num_classes=7,
                        input_size=(28, 28))
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 7)
    pinned = build_model({"name": "mnist_cnn", "num_classes": 3}, in_channels=1, num_classes=7,
                         input_size=(28, 28))
    assert pinned(torch.zeros(1, 1, 28, 28)).shape == (1, 3)    # the config may pin it
    with pytest.raises(ConfigError, match=r"unknown config key model\.colour .*valid keys"):
        build_model({"name": "mnist_cnn", "colour": 1})
    with pytest.raises(ConfigError, match=r"model\.name is missing"):
        build_model({"attention": "se"})
    with pytest.raises(ConfigError, match="no_such_net"):
        build_model({"name": "no_such_net"})


def test_parse_trial_refuses_unknown_sections():
    with pytest.raises(ConfigError, match="bogus"):
        parse_trial({"bogus": {}})


def test_the_video_trial_does_not_import_the_image_trial():
    code = "import sys, trainables.video; print('trainables.image' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
