"""``--gpus-per-trial auto``: how many trials share one GPU, from a measured footprint.

Ray's fractional GPUs are a scheduling promise, not a memory limit: four trials at 0.25
GPU each will all allocate whatever they need, and the fourth may run out of memory. So
the fraction is chosen from a measurement: before the sweep, a short probe (a Ray task
that asks for one whole GPU, so it lands on, or makes an autoscaler start, the GPU node
type the trials will use, even from a GPU-less head) trains a few steps of every arm with
the trial's own code and records the largest footprint. The trials then fill at most
``MEMORY_SHARE`` of the GPU's memory, and no more of them share a GPU than the node's CPUs
can feed at the preset's CPUs per trial.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

from orchestrator.errors import UserError

MEMORY_SHARE = 0.85      # of the GPU's memory the packed trials may fill together
PROBE_STEPS = 5          # training steps per arm (the first ones include cuDNN autotuning)
MIB = 2**20


@dataclass(frozen=True)
class Footprint:
    """What the probe measured on one GPU, for the heaviest arm."""

    gpu_name: str
    total_mib: float          # the GPU's memory
    trial_mib: float          # one trial's peak: allocator's reserve + CUDA context
    context_mib: float        # of which the context and other processes' use at the end
    step_s: float             # the heaviest arm's mean training step (after the first)
    arm: str                  # which arm that was
    arms: dict[str, float]    # every arm's peak reserve, MiB


@dataclass(frozen=True)
class Packing:
    fraction: float           # --gpus-per-trial the run uses
    per_gpu: int              # trials that share one GPU
    limited_by: str           # "memory" or "cpus"
    by_memory: int
    by_cpus: int | None
    footprint: Footprint

    def describe(self) -> str:
        fp = self.footprint
        cpus = f", the node's CPUs allow {self.by_cpus}" if self.by_cpus is not None else ""
        return (f"--gpus-per-trial auto: {self.per_gpu} trial(s) per {fp.gpu_name} "
                f"(gpus-per-trial {self.fraction:g}): the heaviest arm, {fp.arm}, peaked at "
                f"{fp.trial_mib:,.0f} MiB of {fp.total_mib:,.0f} MiB, so {self.by_memory} fit "
                f"in {MEMORY_SHARE:.0%}{cpus}; limited by {self.limited_by}")

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "memory_share": MEMORY_SHARE, "probe_steps": PROBE_STEPS}


def ray_fraction(per_gpu: int) -> float:
    """1/per_gpu rounded down to Ray's resource precision (1e-4), so per_gpu trials fit."""
    return math.floor(10_000 / per_gpu) / 10_000


def choose_packing(footprint: Footprint, *, cpus_per_trial: float, node_cpus: float | None,
                   gpus_per_node: float) -> Packing:
    """The most trials per GPU that fit ``MEMORY_SHARE`` of its memory and the node's CPUs."""
    by_memory = math.floor(MEMORY_SHARE * footprint.total_mib / footprint.trial_mib)
    if by_memory < 1:
        raise UserError(
            f"--gpus-per-trial auto: one {footprint.arm} trial needs {footprint.trial_mib:,.0f} "
            f"MiB, over {MEMORY_SHARE:.0%} of the {footprint.gpu_name}'s "
            f"{footprint.total_mib:,.0f} MiB; lower train.batch_size or use a larger GPU")
    by_cpus = None
    if node_cpus and cpus_per_trial > 0 and gpus_per_node > 0:
        by_cpus = max(1, math.floor(node_cpus / cpus_per_trial / gpus_per_node))
    per_gpu = min(by_memory, by_cpus) if by_cpus is not None else by_memory
    limited_by = "cpus" if by_cpus is not None and by_cpus < by_memory else "memory"
    return Packing(fraction=ray_fraction(per_gpu), per_gpu=per_gpu, limited_by=limited_by,
                   by_memory=by_memory, by_cpus=by_cpus, footprint=footprint)


def measure_footprint(configs: dict[str, dict[str, Any]], kind: str,
                      steps: int = PROBE_STEPS) -> Footprint:
    """Train ``steps`` steps of each arm's config on this process's GPU; the largest peak.

    Runs inside the probe task (or on a GPU machine directly). The trial's own builder
    loads the data onto the device as the trial will, so the peak includes it.
    """
    import torch

    from trainables.tune_adapter import _run

    if not torch.cuda.is_available():
        raise RuntimeError("the GPU probe ran where CUDA is not available")
    device = torch.device("cuda")
    peaks: dict[str, float] = {}
    steps_s: dict[str, float] = {}
    for label, config in configs.items():
        probe = _probe_config(config, steps)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        times: list[float] = []

        def report(metrics: dict[str, Any], state: Any, times: list[float] = times) -> None:
            if "epoch_time_s" in metrics:
                times.append(float(metrics["epoch_time_s"]))

        started = time.perf_counter()
        _run(kind)(probe, report=report, resume=None, device="cuda", artifacts=None)
        torch.cuda.synchronize(device)
        peaks[label] = torch.cuda.max_memory_reserved(device) / MIB
        steps_s[label] = (times[0] if times else time.perf_counter() - started) / steps
    free, total = torch.cuda.mem_get_info(device)
    context = max(0.0, (total - free) / MIB - torch.cuda.memory_reserved(device) / MIB)
    heaviest = max(peaks, key=peaks.__getitem__)
    return Footprint(gpu_name=torch.cuda.get_device_name(device), total_mib=total / MIB,
                     trial_mib=peaks[heaviest] + context, context_mib=context,
                     step_s=steps_s[heaviest], arm=heaviest, arms=peaks)


def _probe_config(config: dict[str, Any], steps: int) -> dict[str, Any]:
    """The arm's config cut to one epoch of ``steps`` batches, with nothing written."""
    return {**config, "train": {**config.get("train", {}), "epochs": 1, "max_batches": steps,
                                "patience": None, "restore_best": False}}


def arm_configs(space: dict[str, Any], variant_keys: tuple[str, ...]) -> dict[str, dict]:
    """One concrete config per arm (its first seed): what the probe trains."""
    from orchestrator.space import concrete_configs, variant_label

    configs: dict[str, dict[str, Any]] = {}
    for config in concrete_configs(space):
        configs.setdefault(variant_label(config, variant_keys), config)
    return configs


def probe_cluster(space: dict[str, Any], variant_keys: tuple[str, ...], kind: str,
                  timeout_s: float = 900.0) -> Footprint:
    """Run ``measure_footprint`` as a one-GPU Ray task (a GPU node, started if need be)."""
    import ray

    task = ray.remote(num_gpus=1, num_cpus=1, max_retries=0)(measure_footprint)
    ref = task.remote(arm_configs(space, variant_keys), kind)
    try:
        return ray.get(ref, timeout=timeout_s)
    except ray.exceptions.GetTimeoutError:
        ray.cancel(ref, force=True)
        raise UserError(f"--gpus-per-trial auto: no GPU took the memory probe within "
                        f"{timeout_s:.0f} s; check the cluster's GPU node types, or give a "
                        "fraction (e.g. --gpus-per-trial 0.25)") from None
    except ray.exceptions.RayTaskError as err:
        cause = str(err.as_instanceof_cause()).strip().splitlines()[-1][:300]
        raise UserError(f"--gpus-per-trial auto: the memory probe failed: {cause}; give a "
                        "fraction instead (e.g. --gpus-per-trial 0.25)") from None


def gpu_node_cpus() -> tuple[float | None, float]:
    """(CPUs, GPUs) of the largest alive GPU node; (None, 1) when none is up yet."""
    import ray

    best: tuple[float | None, float] = (None, 1.0)
    for node in ray.nodes():
        resources = node.get("Resources", {}) if node.get("Alive") else {}
        if resources.get("GPU", 0) > 0 and (best[0] is None or resources.get("CPU", 0) > best[0]):
            best = (resources.get("CPU", 0.0), resources["GPU"])
    return best
