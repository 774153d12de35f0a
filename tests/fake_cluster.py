"""A real autoscaling Ray cluster on this machine: Ray's ``fake_multinode`` node provider.

The head runs Ray's autoscaler (the same monitor process a cloud head runs); the provider
"launches" a worker node by starting another raylet on this machine, with the resources of
its node type, and removes it when idle. So the tests see what a cloud cluster does:
demand, launch, trials on new nodes, scale-down.

Started and stopped by this module only, by PID: never ``AutoscalingCluster.start()``
(it first stops every Ray instance on the machine) and never the CLI's stop command. The
cluster has its own GCS port and temp dir, and teardown kills exactly the processes whose
command line names that temp dir or port, children first.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.s3_server import free_port


def autoscaler_config(gcs_port: int, worker_types: dict[str, dict[str, Any]],
                      head_resources: dict[str, float] | None = None) -> dict[str, Any]:
    """A complete launcher config for the fake provider (Ray's wheel ships no example.yaml)."""
    types = {"ray.head.default": {"resources": head_resources or {"CPU": 0},
                                  "node_config": {}, "max_workers": 0}}
    types.update(worker_types)
    return {
        "cluster_name": "fake-multinode-test",
        "max_workers": sum(t.get("max_workers", 1) for t in worker_types.values()),
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 0.5,
        "provider": {"type": "fake_multinode", "gcs_address": f"127.0.0.1:{gcs_port}",
                     "use_node_id_as_ip": True, "disable_node_updaters": True,
                     "disable_launch_config_check": True},
        "auth": {"ssh_user": "ubuntu"},
        "available_node_types": types,
        "head_node_type": "ray.head.default",
        "docker": {},
        "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
        "rsync_exclude": [], "rsync_filter": [],
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [], "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


@dataclass
class FakeCluster:
    address: str
    temp_dir: Path
    gcs_port: int
    env: dict[str, str]

    def ray_status(self) -> str:
        """`ray status` of this cluster: node types up, pending, resource use."""
        result = subprocess.run([_ray_cli(), "status", "--address", self.address],
                                capture_output=True, text=True, timeout=60, env=self.env)
        return result.stdout + result.stderr


def _ray_cli() -> str:
    return str(Path(sys.executable).with_name("ray"))


@contextmanager
def fake_autoscaling_cluster(worker_types: dict[str, dict[str, Any]], *,
                             env: dict[str, str] | None = None) -> Iterator[FakeCluster]:
    """Start the head (with the autoscaler) and yield; the autoscaler adds worker nodes."""
    temp_dir = Path(tempfile.mkdtemp(prefix="rayfake-", dir="/tmp"))
    gcs_port = free_port()
    config_path = temp_dir / "autoscaler.json"
    config_path.write_text(json.dumps(autoscaler_config(gcs_port, worker_types)))
    # Token auth off on both sides: `ray start` turns it on whenever ~/.ray/auth_token exists.
    full_env = {**os.environ, **(env or {}), "RAY_FAKE_CLUSTER": "1", "RAY_AUTH_MODE": "disabled",
                "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
    command = [_ray_cli(), "start", "--head", f"--port={gcs_port}", "--num-cpus=0",
               f"--temp-dir={temp_dir}", f"--autoscaling-config={config_path}",
               "--include-dashboard=false",
               "--disable-usage-stats"]
    cluster = FakeCluster(f"127.0.0.1:{gcs_port}", temp_dir, gcs_port, full_env)
    try:
        started = subprocess.run(command, env=full_env, capture_output=True, text=True,
                                 timeout=120)
        if started.returncode != 0:
            raise RuntimeError(f"ray start --head failed: {started.stdout}{started.stderr}")
        yield cluster
    finally:
        stop_cluster(temp_dir, gcs_port)
        shutil.rmtree(temp_dir, ignore_errors=True)


def cluster_processes(temp_dir: Path, gcs_port: int) -> list[int]:
    """PIDs of this cluster's processes: their command line names its temp dir or GCS port
    (raylets, GCS, monitor, workers of every node, including the ones the autoscaler added)."""
    marks = (str(temp_dir), f"127.0.0.1:{gcs_port}")
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if any(mark in line for mark in marks):
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def stop_cluster(temp_dir: Path, gcs_port: int) -> None:
    """SIGTERM then SIGKILL every process of this cluster, and nothing else."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = cluster_processes(temp_dir, gcs_port)
        if not pids:
            return
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.2)
