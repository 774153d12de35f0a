"""Sweeps that heal themselves: a lost worker or node is retried from its checkpoint, an
error of the trial's own code is not, and what a person sees about either is one line.

Everything here runs the CLI in a subprocess, as a user would. The lost workers are real:
the test kills the trial's worker process, or a whole node's raylet on a local two-node
Ray cluster (``ray.cluster_utils.Cluster``: its own ports and session; its nodes are
stopped by their own PIDs, leaving any other Ray on the machine alone).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from orchestrator.errors import UserError
from orchestrator.ray_connect import address_to_probe, check_reachable

ROOT = Path(__file__).resolve().parents[1]
INJECT = "ORCHESTRATOR_INJECT_ERROR_AT_EPOCH"

# One small trial per arm: about a second per epoch here, checkpointed every epoch so a
# retry has something to continue from.
EPOCHS = 8


def sweep(*arms: str) -> list[str]:
    return ["mnist_attention", "--seeds", "1", "--set", f"model.attention=[{','.join(arms)}]",
            "--set", f"train.epochs={EPOCHS}", "--set", "train.max_batches=30",
            "--set", "train.checkpoint_every=1"]


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300
        ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout, env=env)


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "orchestrator", *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def trials(run_dir: Path) -> pl.DataFrame:
    return pl.read_parquet(run_dir / "trials.parquet")


def epochs(run_dir: Path) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(p) for p in sorted((run_dir / "epochs").glob("*.parquet"))])


def live_results(run_dir: Path) -> list[dict]:
    """Every result line Tune has written so far (result.json of each trial directory)."""
    rows = []
    for path in run_dir.glob("*/result.json"):
        for line in path.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):  # the line being written
                rows.append(json.loads(line))
    return rows


def wait_for_epoch(run_dir: Path, epoch: int, proc: subprocess.Popen, *, exclude=(),
                   timeout: float = 240) -> dict:
    """The first live result at ``epoch`` or later of a trial not in ``exclude``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the sweep ended before the test could interrupt it"
        for row in live_results(run_dir):
            if row.get("epoch", 0) >= epoch and row["trial_id"] not in exclude:
                return row
        time.sleep(0.05)
    raise AssertionError(f"no trial reached epoch {epoch} in {timeout} s")


def assert_complete(run_dir: Path, n_trials: int) -> pl.DataFrame:
    """Every trial ok with no ending field left over, every epoch exactly once."""
    table = trials(run_dir)
    assert table.height == n_trials
    assert set(table["status"]) == {"ok"}, table.select("status", "error")
    assert table["error"].is_null().all() and table["stopped_by"].is_null().all()
    rows = epochs(run_dir)
    assert rows.height == n_trials * EPOCHS
    assert not rows.select("trial_id", "epoch").is_duplicated().any()
    return rows


def assert_same_training(rows: pl.DataFrame, reference: pl.DataFrame) -> None:
    """A retried trial trains exactly as an uninterrupted one (timings aside)."""
    columns = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc"]
    got = rows.sort("epoch").select(columns)
    want = reference.sort("epoch").select(columns)
    assert got.equals(want), (got, want)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TestAddress:
    def test_address_forms(self):
        assert address_to_probe("10.1.2.3:6379") == ("10.1.2.3", 6379)
        assert address_to_probe("ray://head.local:10001") == ("head.local", 10001)
        assert address_to_probe("[::1]:6379") == ("::1", 6379)
        for bad in ("head.local", "head:port", ":6379"):
            with pytest.raises(UserError, match="expected HOST:PORT"):
                address_to_probe(bad)

    def test_nobody_listening_is_an_error_naming_the_address(self):
        port = free_port()
        with pytest.raises(UserError, match=f"cannot reach a Ray cluster at 127.0.0.1:{port}"):
            check_reachable(f"127.0.0.1:{port}")

    def test_listening_address_passes(self):
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen()
            check_reachable(f"127.0.0.1:{server.getsockname()[1]}")

    @pytest.mark.slow
    def test_run_against_an_unreachable_address_is_one_line_in_seconds(self, tmp_path):
        port = free_port()
        # Before the probe, Ray retried such an address for minutes: a hang fails on the
        # subprocess timeout.
        out = cli("run", "mnist_attention", "--smoke", "--storage", str(tmp_path),
                  "--address", f"127.0.0.1:{port}", timeout=120)
        assert out.returncode == 2, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: --address 127.0.0.1:"), lines
        assert "Traceback" not in out.stderr


@pytest.mark.slow
class TestLocalRetries:
    def test_a_trial_whose_code_raises_is_not_retried_and_resumes_once_fixed(self, tmp_path):
        run_dir = tmp_path / "mnist_attention" / "raise"
        env = {**os.environ, INJECT: "3"}
        out = cli("run", *sweep("none"), "--storage", str(tmp_path), "--name", "raise",
                  "--max-failures", "2", env=env)
        assert out.returncode == 1, out.stderr[-2000:]
        assert "retrying" not in out.stdout
        row = trials(run_dir).row(0, named=True)
        assert row["status"] == "error" and row["stopped_by"] == "error"
        assert row["error"].startswith("RuntimeError: injected error at epoch 3")
        # Tune saw one failure and gave up at once (max-failures 2 would allow three).
        tune_errors = list(run_dir.glob("*/error.txt"))
        assert len(tune_errors) == 1 and "Failure # 2" not in tune_errors[0].read_text()
        traceback = (run_dir / "artifacts" / row["trial_id"] / "error.txt").read_text()
        assert traceback.startswith("Traceback") and "injected error" in traceback
        # The run's last line: which trial, why, and the exact command to continue.
        last = out.stderr.strip().splitlines()[-1]
        assert last.startswith("1 trial(s) ended in error: none seed=0: RuntimeError")
        command = (f"python -m orchestrator run mnist_attention --storage {tmp_path} "
                   "--name raise --resume")
        assert last.endswith(command)
        assert json.loads((run_dir / "meta.json").read_text())["max_failures"] == 2

        # The cause fixed (no injection), the printed command finishes the trial from its
        # epoch-2 checkpoint: status, error and stopped_by describe that last attempt.
        resumed = cli(*command.split()[3:])
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        rows = assert_complete(run_dir, 1)
        assert rows.filter(pl.col("epoch") <= 2)["epoch"].to_list() == [1, 2]

    def test_a_killed_worker_is_retried_from_its_checkpoint(self, tmp_path):
        run_dir = tmp_path / "mnist_attention" / "lost"
        proc = start("run", *sweep("none"), "--storage", str(tmp_path), "--name", "lost",
                     "--max-failures", "1")
        result = wait_for_epoch(run_dir, 3, proc)
        os.kill(result["pid"], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-2000:]
        retry = [line for line in stdout.splitlines() if "lost its worker" in line]
        assert len(retry) == 1, stdout
        assert "(worker died); retrying from epoch" in retry[0] and retry[0].endswith("attempt 2/2")
        # No raylet dump in normal mode.
        assert "Worker exit type" not in stdout + stderr, stdout + stderr
        rows = assert_complete(run_dir, 1)
        # The trial finished: its checkpoints and best weights went with the run's end.
        assert not list(run_dir.glob("*/checkpoint_*"))
        assert not list(run_dir.glob("artifacts/*/best_weights_epoch*.pt"))
        assert "checkpoints: removed 2 checkpoint(s) and " in stdout  # num_to_keep 2

        reference_dir = tmp_path / "mnist_attention" / "straight"
        out = cli("run", *sweep("none"), "--storage", str(tmp_path), "--name", "straight",
                  "--keep-checkpoints", "--keep-best")
        assert out.returncode == 0, out.stderr[-2000:]
        assert_same_training(rows, epochs(reference_dir))
        assert len(list(reference_dir.glob("*/checkpoint_*"))) == 2  # num_to_keep
        assert len(list(reference_dir.glob("artifacts/*/best_weights_epoch*.pt"))) >= 1

    def test_a_worker_lost_with_no_retries_left_is_told_with_the_resume_command(self, tmp_path):
        run_dir = tmp_path / "mnist_attention" / "noretry"
        proc = start("run", *sweep("none"), "--storage", str(tmp_path), "--name", "noretry")
        result = wait_for_epoch(run_dir, 2, proc)
        os.kill(result["pid"], signal.SIGKILL)
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 1, stderr[-2000:]
        row = trials(run_dir).row(0, named=True)
        assert row["status"] == "error" and row["stopped_by"] == "lost"
        assert row["error"] == "lost its worker (worker died) 1 time(s); no retries left"
        last = stderr.strip().splitlines()[-1]
        assert last.startswith("1 trial(s) ended in error: none seed=0: lost its worker")
        assert "rerun them from their checkpoints with: python -m orchestrator run" in last
        assert json.loads((run_dir / "meta.json").read_text())["max_failures"] == 0

        resumed = cli("run", "mnist_attention", "--storage", str(tmp_path), "--name", "noretry",
                      "--resume")
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert_complete(run_dir, 1)


@pytest.fixture(scope="module")
def two_node_cluster():
    """A head that runs no trials and two one-CPU worker nodes, each its own raylet.

    Fast health checks: the cluster notices a dead raylet in about three seconds, not the
    default thirty.
    """
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0,
        "_system_config": {"health_check_initial_delay_ms": 0, "health_check_period_ms": 1000,
                           "health_check_failure_threshold": 3}})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    try:
        yield cluster, workers
    finally:
        cluster.shutdown()


def parent_pid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def raylet_pid(node) -> int:
    from ray._private import ray_constants

    return node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid


@pytest.mark.slow
class TestChaos:
    def test_a_node_lost_mid_training_is_retried_on_the_other_node(self, two_node_cluster,
                                                                    tmp_path):
        cluster, workers = two_node_cluster
        run_dir = tmp_path / "mnist_attention" / "chaos"
        proc = start("run", *sweep("none", "se"), "--storage", str(tmp_path), "--name", "chaos",
                     "--address", cluster.address)
        result = wait_for_epoch(run_dir, 2, proc)
        # The trial's worker process is a child of its node's raylet: kill that raylet.
        raylet = parent_pid(result["pid"])
        [victim] = [node for node in workers if raylet_pid(node) == raylet]
        victim.kill_raylet()
        try:
            stdout, stderr = proc.communicate(timeout=420)
        finally:
            # The cluster gets a fresh second worker node for the next test.
            cluster.remove_node(victim, allow_graceful=False)
            workers.remove(victim)
            workers.append(cluster.add_node(num_cpus=1))
            cluster.wait_for_nodes()
        assert proc.returncode == 0, stderr[-3000:]
        retry = [line for line in stdout.splitlines() if "lost its worker" in line]
        assert len(retry) == 1 and "retrying from epoch" in retry[0], stdout
        assert retry[0].endswith("attempt 2/3")  # the cluster default: 2 retries
        rows = assert_complete(run_dir, 2)
        meta = json.loads((run_dir / "meta.json").read_text())
        assert meta["max_failures"] == 2

        # The surviving node ran both trials to the end; the retried one trained exactly
        # as a trial that never lost its node.
        reference_dir = tmp_path / "mnist_attention" / "straight"
        out = cli("run", *sweep("none", "se"), "--storage", str(tmp_path), "--name", "straight",
                  "--max-concurrent", "2")
        assert out.returncode == 0, out.stderr[-2000:]
        reference = epochs(reference_dir)
        lost = trials(run_dir).filter(pl.col("trial_id") == result["trial_id"])["variant"][0]
        ref_id = trials(reference_dir).filter(pl.col("variant") == lost)["trial_id"][0]
        assert_same_training(rows.filter(pl.col("trial_id") == result["trial_id"]),
                             reference.filter(pl.col("trial_id") == ref_id))

    def test_driver_killed_mid_sweep_resumes_complete(self, two_node_cluster, tmp_path):
        cluster, _ = two_node_cluster
        run_dir = tmp_path / "mnist_attention" / "driver"
        proc = start("run", *sweep("none", "se"), "--storage", str(tmp_path), "--name", "driver",
                     "--address", cluster.address)
        wait_for_epoch(run_dir, 2, proc)
        proc.kill()
        proc.communicate(timeout=60)
        before = epochs(run_dir)
        assert 2 <= before.height < 2 * EPOCHS

        out = cli("run", "mnist_attention", "--storage", str(tmp_path), "--name", "driver",
                  "--resume", "--address", cluster.address, timeout=420)
        assert out.returncode == 0, out.stderr[-3000:]
        rows = assert_complete(run_dir, 2)
        kept = before.join(rows, on=["trial_id", "epoch"], suffix="_after")
        assert kept.height == before.height
        assert (kept["val_acc"] == kept["val_acc_after"]).all()
