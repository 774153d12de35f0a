"""--gpus-per-trial auto: the packing rule on known footprints, the probe's plumbing through a
real Ray task, the CLI's answers without a GPU, and the probe itself where CUDA exists."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from orchestrator.errors import UserError
from orchestrator.gpu_packing import (
    Footprint,
    arm_configs,
    choose_packing,
    measure_footprint,
    probe_cluster,
    ray_fraction,
)
from trainables.tune_adapter import own_error_report

ROOT = Path(__file__).resolve().parents[1]


def footprint(trial_mib: float, total_mib: float = 81_559.0) -> Footprint:
    return Footprint(gpu_name="NVIDIA H100 80GB HBM3", total_mib=total_mib, trial_mib=trial_mib,
                     context_mib=500.0, step_s=0.01, arm="cbam", arms={"cbam": trial_mib - 500})


def test_memory_decides_when_the_node_has_cpus_to_spare():
    packing = choose_packing(footprint(9_000.0), cpus_per_trial=1, node_cpus=16, gpus_per_node=1)
    # floor(0.85 * 81559 / 9000) = 7 trials; 16 CPUs could feed 16.
    assert (packing.per_gpu, packing.by_memory, packing.by_cpus) == (7, 7, 16)
    assert packing.limited_by == "memory" and packing.fraction == 0.1428
    line = packing.describe()
    assert "7 trial(s) per NVIDIA H100 80GB HBM3" in line and "cbam, peaked at 9,000 MiB" in line
    assert packing.record()["footprint"]["trial_mib"] == 9_000.0


def test_cpus_decide_when_they_run_out_first():
    # 64 CPUs over 8 GPUs at 4 CPUs per trial: 2 trials per GPU, though memory allows 7.
    packing = choose_packing(footprint(9_000.0), cpus_per_trial=4, node_cpus=64, gpus_per_node=8)
    assert (packing.per_gpu, packing.limited_by, packing.fraction) == (2, "cpus", 0.5)
    # Without a GPU node up yet (an autoscaler starts it), memory alone decides.
    alone = choose_packing(footprint(9_000.0), cpus_per_trial=4, node_cpus=None, gpus_per_node=1)
    assert (alone.per_gpu, alone.by_cpus) == (7, None)


def test_a_trial_too_big_for_the_gpu_is_an_error_naming_it():
    with pytest.raises(UserError, match=r"one cbam trial needs 70,000 MiB, over 85% of the "
                                        r"NVIDIA H100 80GB HBM3's 81,559 MiB"):
        choose_packing(footprint(70_000.0), cpus_per_trial=1, node_cpus=16, gpus_per_node=1)
    fits_once = choose_packing(footprint(69_000.0), cpus_per_trial=1, node_cpus=16,
                               gpus_per_node=1)
    assert (fits_once.per_gpu, fits_once.fraction) == (1, 1.0)


def test_fractions_are_ray_resource_steps_that_really_fit():
    for per_gpu in range(1, 33):
        fraction = ray_fraction(per_gpu)
        steps = fraction * 10_000
        assert abs(steps - round(steps)) < 1e-6                     # Ray's 1e-4 precision
        assert per_gpu * fraction <= 1.0 < (per_gpu + 1) * fraction  # exactly per_gpu fit


def test_the_probe_trains_one_config_per_arm():
    from orchestrator.plan import SweepOptions, make_plan
    from search_spaces.registry import load_experiment

    plan = make_plan(load_experiment("mnist_attention"), SweepOptions(seeds=3))
    configs = arm_configs(plan.space, plan.variant_keys)
    assert list(configs) == ["none", "spatial", "self", "cbam", "se"]
    assert {c["model"]["attention"] for c in configs.values()} == set(configs)
    assert all(c["seed"] == 0 for c in configs.values())


def test_out_of_gpu_memory_when_packed_names_the_fraction():
    err = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    line = own_error_report(err, "val_acc", None, gpus=0.25)["error"]
    assert line.startswith("CUDA out of memory at 0.25 GPU per trial (up to 4 trials share a "
                           "GPU, and Ray does not split its memory)")
    assert line.endswith("OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
    alone = own_error_report(err, "val_acc", None, gpus=1.0)["error"]
    assert alone == "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"


def test_the_probe_runs_as_a_one_gpu_ray_task_and_its_failure_is_one_line():
    """A node that advertises a GPU it does not have: the task lands there (the scheduling
    a GPU-less head relies on), and the probe's own error comes back as one line."""
    import ray

    from orchestrator.plan import SweepOptions, make_plan
    from search_spaces.registry import load_experiment

    plan = make_plan(load_experiment("mnist_attention"),
                     SweepOptions(overrides=("model.attention=none",), seeds=1, smoke=True))
    ray.init(address="local", num_cpus=1, num_gpus=1, include_dashboard=False,
             log_to_driver=False)
    try:
        with pytest.raises(UserError, match=r"the memory probe failed: RuntimeError: the GPU "
                                            r"probe ran where CUDA is not available; give a "
                                            r"fraction instead"):
            probe_cluster(plan.space, plan.variant_keys, "image", timeout_s=120)
    finally:
        ray.shutdown()


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=120)


def test_cli_auto_without_a_gpu_is_one_line_and_show_says_auto(tmp_path):
    out = cli("run", "mnist_attention", "--smoke", "--gpus-per-trial", "auto", "--storage",
              str(tmp_path))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == (
        "error: --gpus-per-trial auto but the Ray cluster has no GPU; drop the flag to run on "
        "CPU or connect with --address to a GPU cluster")
    shown = cli("show", "mnist_attention", "--gpus-per-trial", "auto")
    assert shown.returncode == 0 and "1 CPU, auto (measured before the sweep) GPU per trial" in (
        shown.stdout)
    bad = cli("show", "mnist_attention", "--gpus-per-trial", "lots")
    assert bad.returncode == 2 and "'lots': a number (e.g. 0.25) or auto" in bad.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_probe_measures_every_arm_on_a_real_gpu():
    from orchestrator.plan import SweepOptions, make_plan
    from search_spaces.registry import load_experiment

    plan = make_plan(load_experiment("mnist_attention"), SweepOptions(seeds=1, smoke=True))
    measured = measure_footprint(arm_configs(plan.space, plan.variant_keys), "image")
    assert set(measured.arms) == {"none", "spatial", "self", "cbam", "se"}
    assert measured.arm == max(measured.arms, key=measured.arms.__getitem__)
    assert 0 < measured.arms[measured.arm] < measured.trial_mib < measured.total_mib
    assert measured.step_s > 0
