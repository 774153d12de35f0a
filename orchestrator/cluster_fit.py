"""Fit a sweep's per-trial resources to the cluster it runs on, including nodes not yet up.

Why the autoscaler's node types and not only the nodes alive now: a cloud cluster starts
with its head alone (``min_workers: 0``) and launches GPU workers when trials ask for GPUs.
Judged by the nodes alive at start, every GPU request would look impossible; judged by
the node types, a request is possible exactly when some type can hold it, and a request
no type can hold is the user's mistake, said before anything starts.

Where the node types come from: the cluster config in the GCS (autoscaler v2, KubeRay),
else the config file of the autoscaler monitor serving this cluster (the launcher's
``~/ray_bootstrap_config.yaml``), found through the monitor's command line on this machine:
``run --address auto`` is meant to be run on the head, where the monitor runs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import UserError
from orchestrator.plan import Plan


@dataclass(frozen=True)
class NodeType:
    """A worker node type the autoscaler can launch: its resources and how many at most."""

    name: str
    resources: dict[str, float]
    max_workers: int

    def holds(self, cpus: float, gpus: float) -> bool:
        return (self.max_workers > 0 and self.resources.get("CPU", 0) >= cpus
                and self.resources.get("GPU", 0) >= gpus)

    def describe(self) -> str:
        cpu, gpu = self.resources.get("CPU", 0), self.resources.get("GPU", 0)
        return f"{self.name} ({cpu:g} CPU, {gpu:g} GPU, up to {self.max_workers})"


def fit_to_cluster(plan: Plan, *, explicit_gpus: bool, explicit_cpus: bool = False,
                   address: str | None = None) -> tuple[Plan, str | None]:
    """The plan with requests the cluster can serve, and a line to print while the
    autoscaler starts the nodes they need (None when nothing has to start)."""
    types = autoscaler_node_types() if address else None
    if types:
        return _fit_node_types(plan, types, explicit_gpus=explicit_gpus,
                               explicit_cpus=explicit_cpus)
    return _fit_alive_nodes(plan, explicit_gpus=explicit_gpus, explicit_cpus=explicit_cpus), None


def _fit_alive_nodes(plan: Plan, *, explicit_gpus: bool, explicit_cpus: bool) -> Plan:
    """No autoscaler: drop a preset's GPU request on a cluster without GPUs, so its trials
    are not left pending forever; a GPU request the user typed is an error instead."""
    import ray

    plan = _fit_cpus(plan, explicit=explicit_cpus)
    if plan.gpus <= 0:
        return plan
    if ray.cluster_resources().get("GPU", 0) > 0:
        return plan
    if explicit_gpus:
        raise UserError(f"--gpus-per-trial {_asked_gpus(plan)} but the Ray cluster has no GPU; "
                        "drop the flag to run on CPU or connect with --address to a GPU cluster")
    note = (f"the preset asks for {plan.gpus:g} GPU per trial but this cluster has none: "
            "running on CPU")
    return dataclasses.replace(plan, gpus=0.0, notes=(*plan.notes, note))


def _fit_cpus(plan: Plan, *, explicit: bool) -> Plan:
    """Cap a preset's CPU request at the largest node's CPUs (a 4-CPU video trial on a
    2-core laptop would wait forever); a request the user typed is an error instead."""
    import ray

    largest = max((node.get("Resources", {}).get("CPU", 0) for node in ray.nodes()
                   if node.get("Alive")), default=0)
    if largest <= 0 or plan.cpus <= largest:
        return plan
    if explicit:
        raise UserError(f"--cpus-per-trial {plan.cpus:g} but the largest Ray node has "
                        f"{largest:g} CPUs; ask for at most {largest:g}")
    note = (f"the preset asks for {plan.cpus:g} CPUs per trial but the largest node has "
            f"{largest:g}: using {largest:g}")
    return dataclasses.replace(plan, cpus=float(largest), notes=(*plan.notes, note))


def _asked_gpus(plan: Plan) -> str:
    return "auto" if plan.gpus_auto else f"{plan.gpus:g}"


def _fit_node_types(plan: Plan, types: list[NodeType], *, explicit_gpus: bool,
                    explicit_cpus: bool) -> tuple[Plan, str | None]:
    listed = ", ".join(t.describe() for t in types)
    gpu_types = [t for t in types if t.resources.get("GPU", 0) > 0 and t.max_workers > 0]
    if plan.gpus > 0 and not gpu_types and not _alive_holds(0, plan.gpus):
        if explicit_gpus:
            raise UserError(f"--gpus-per-trial {_asked_gpus(plan)}: no node type of this "
                            f"cluster has a GPU (node types: {listed}); add a GPU node type "
                            "to the cluster config or drop the flag to run on CPU")
        note = (f"the preset asks for {plan.gpus:g} GPU per trial but no node type of this "
                "cluster has one: running on CPU")
        plan = dataclasses.replace(plan, gpus=0.0, notes=(*plan.notes, note))
    able = [t for t in types if t.holds(0, plan.gpus)]
    if not able and not _alive_holds(0, plan.gpus):
        raise UserError(f"{plan.gpus:g} GPU per trial: no node type can hold it (node types: "
                        f"{listed}); lower --gpus-per-trial or add a node type with more GPUs")
    largest = max((t.resources.get("CPU", 0) for t in able), default=0)
    if plan.cpus > largest > 0 and not _alive_holds(plan.cpus, plan.gpus):
        if explicit_cpus:
            raise UserError(f"--cpus-per-trial {plan.cpus:g}: the node types that can run "
                            f"the trials have at most {largest:g} CPUs (node types: {listed}); "
                            f"ask for at most {largest:g}")
        note = (f"the preset asks for {plan.cpus:g} CPUs per trial but the node types that "
                f"can run it have at most {largest:g}: using {largest:g}")
        plan = dataclasses.replace(plan, cpus=float(largest), notes=(*plan.notes, note))
    if _alive_holds(plan.cpus, plan.gpus):
        return plan, None
    return plan, waiting_line(plan, [t for t in types if t.holds(plan.cpus, plan.gpus)])


def waiting_line(plan: Plan, able: list[NodeType]) -> str:
    """What the sweep waits for before its first trial: how many nodes of which type."""
    best = max(able, key=lambda t: _per_node(t, plan.cpus, plan.gpus))
    concurrent = min(plan.max_concurrent or plan.n_trials, plan.n_trials) or 1
    nodes = min(best.max_workers, math.ceil(concurrent / _per_node(best, plan.cpus, plan.gpus)))
    kind = "GPU worker(s)" if plan.gpus > 0 else "worker(s)"
    return (f"waiting for {nodes} {kind} to start: the autoscaler launches node type "
            f"{best.describe()} on demand (minutes on a cloud)")


def _per_node(node: NodeType, cpus: float, gpus: float) -> int:
    fits = [math.floor(node.resources.get("CPU", 0) / cpus)] if cpus > 0 else []
    if gpus > 0:
        fits.append(math.floor(node.resources.get("GPU", 0) / gpus))
    return max(1, min(fits, default=1))


def _alive_holds(cpus: float, gpus: float) -> bool:
    """True if a node alive now could run one trial (the head counts when it has room)."""
    return _nodes_holding(cpus, gpus) > 0


def autoscaler_node_types() -> list[NodeType] | None:
    """The worker node types this cluster's autoscaler can launch; None without one."""
    return _gcs_node_types() or _monitor_node_types()


def _gcs_node_types() -> list[NodeType] | None:
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception:  # an older GCS without the key, or no access: try the monitor
        return None
    if config is None or not config.node_group_configs:
        return None
    return [NodeType(group.name, dict(group.resources),
                     group.max_count if group.max_count >= 0 else 1_000_000)
            for group in config.node_group_configs]


def _monitor_node_types() -> list[NodeType] | None:
    path = _monitor_config_path()
    if path is None:
        return None
    return node_types_from_config(_read_config(path))


def node_types_from_config(config: dict[str, Any]) -> list[NodeType]:
    """Worker node types of a cluster-launcher config (the head's type is not one)."""
    head = config.get("head_node_type")
    cluster_max = int(config.get("max_workers", 0) or 0)
    types = []
    for name, spec in (config.get("available_node_types") or {}).items():
        if name == head:
            continue
        limit = spec.get("max_workers", cluster_max)
        types.append(NodeType(name, {k: float(v) for k, v in (spec.get("resources") or {})
                                     .items()}, int(min(limit, cluster_max or limit))))
    return types


def _read_config(path: Path) -> dict[str, Any]:
    text = path.read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        import yaml

        return yaml.safe_load(text)


def _monitor_config_path() -> Path | None:
    """The --autoscaling-config of the monitor on this machine that serves our GCS."""
    import ray

    port = ray.get_runtime_context().gcs_address.rsplit(":", 1)[-1]
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if not any(a.endswith("autoscaler/_private/monitor.py") or
                   a.endswith("autoscaler/v2/monitor.py") for a in args):
            continue
        if not any(a.startswith("--gcs-address=") and a.endswith(f":{port}") for a in args):
            continue
        for arg in args:
            if arg.startswith("--autoscaling-config="):
                path = Path(arg.split("=", 1)[1]).expanduser()
                return path if path.is_file() else None
    return None


def node_wait_callback(plan: Plan, verbosity: int):
    """A Tune Callback that says when nodes able to run a trial come up (every 5 s at most)."""
    from ray.tune import Callback

    class NodeWait(Callback):
        def __init__(self) -> None:
            self.seen = -1
            self.next_look = 0.0

        def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
            if verbosity <= 0 or time.monotonic() < self.next_look:
                return
            self.next_look = time.monotonic() + 5.0
            up = _nodes_holding(plan.cpus, plan.gpus)
            if up > self.seen >= 0:
                kind = "GPU worker(s)" if plan.gpus > 0 else "worker(s)"
                print(f"{up} {kind} up that can run a trial", flush=True)
            self.seen = max(self.seen, up)

    return NodeWait()


def _nodes_holding(cpus: float, gpus: float) -> int:
    """Alive nodes with room for one trial (at least some CPU: a 0-CPU head runs none)."""
    import ray

    return sum(1 for node in ray.nodes() if node.get("Alive")
               and node.get("Resources", {}).get("CPU", 0) >= max(cpus, 1e-9)
               and node.get("Resources", {}).get("GPU", 0) >= gpus)
