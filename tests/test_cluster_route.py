"""The cluster route end to end, on this machine: an autoscaling Ray cluster (Ray's
``fake_multinode`` provider, the same autoscaler a cloud head runs) and an S3 server.

What a user of ``cluster.yaml`` gets, checked as they would see it: the sweep's GPU request
is kept although no GPU node is up, the sweep says it waits for one, the autoscaler launches
it (and a CPU worker for a CPU sweep), the dataset comes from the bucket, every result and
the report land in the bucket, ``report s3://...`` works from anywhere, and an interrupted
sweep resumes from the bucket. The fake "GPU" node advertises a GPU it does not have, so the
trials that ask for it set ``device=cpu`` explicitly; a trial that holds a GPU and sees no
CUDA device is an error (tests/test_trial_setup.py), never a silent CPU run.

Every process here is the test's own (the cluster stops by PID; see tests/fake_cluster.py).
"""

from __future__ import annotations

import io
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from tests.fake_cluster import fake_autoscaling_cluster

ROOT = Path(__file__).resolve().parents[1]
FSDD = ROOT / "trainables" / "data" / "bundled" / "spoken_digits"

pytestmark = pytest.mark.cluster

# One worker of each kind at most: enough to show the autoscaler picks the type a trial
# needs, small enough for two cores.
WORKER_TYPES = {
    "cpu_worker": {"resources": {"CPU": 1}, "node_config": {}, "min_workers": 0,
                   "max_workers": 1},
    "gpu_worker": {"resources": {"CPU": 1, "GPU": 1}, "node_config": {}, "min_workers": 0,
                   "max_workers": 1},
}

# A smoke sweep cut further: two arms, one seed, two epochs of a few batches.
SWEEP = ["--smoke", "--seeds", "1", "--set", "train.epochs=2", "--set", "train.max_batches=4"]


@pytest.fixture(scope="module")
def bucket_cluster(s3_server, tmp_path_factory):
    """The S3 server with the dataset in a bucket, and an autoscaling cluster whose nodes
    (started by the autoscaler with the head's environment) reach that server."""
    bucket = s3_server.new_bucket("cluster")
    env = {**s3_server.env, "RAY_AUTH_MODE": "disabled",
           "ORCHESTRATOR_CACHE": str(tmp_path_factory.mktemp("node-cache"))}
    with fake_autoscaling_cluster(WORKER_TYPES, env=env) as cluster:
        yield s3_server, bucket, cluster


def cli(*args: str, env: dict[str, str], cwd: Path = ROOT, timeout: float = 600
        ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=timeout, env=env)


def read_parquet(server, bucket: str, key: str) -> pl.DataFrame:
    body = server.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    return pl.read_parquet(io.BytesIO(body))


def test_gpu_sweep_waits_for_the_autoscaler_and_reports_from_the_bucket(bucket_cluster,
                                                                        tmp_path):
    server, bucket, cluster = bucket_cluster
    storage = f"s3://{bucket}/runs"
    out = cli("run", "mnist_attention", *SWEEP, "--gpus-per-trial", "1", "--set", "device=cpu",
              "--address", cluster.address, "--storage", storage, "--name", "gpu",
              env=cluster.env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "waiting for 1 GPU worker(s) to start" in out.stdout
    assert "gpu_worker (1 CPU, 1 GPU, up to 1)" in out.stdout
    assert "no GPU" not in out.stdout + out.stderr  # the request was kept, not dropped
    status = cluster.ray_status()
    assert "gpu_worker" in status, status
    prefix = "runs/mnist_attention/gpu"
    keys = server.keys(bucket, prefix)
    trials = read_parquet(server, bucket, f"{prefix}/trials.parquet")
    assert trials["status"].to_list() == ["ok"] * trials.height and trials.height >= 2
    assert all(f"{prefix}/epochs/{t}.parquet" in keys for t in trials["trial_id"])
    assert f"{prefix}/report.html" in keys and f"{prefix}/meta.json" in keys
    assert f"report:  s3://{bucket}/runs/mnist_attention/gpu/report.html" in out.stdout
    assert "resources" in server.client().get_object(
        Bucket=bucket, Key=f"{prefix}/meta.json")["Body"].read().decode()

    # The report from another directory, through the bucket alone.
    server.client().delete_object(Bucket=bucket, Key=f"{prefix}/report.html")
    report = cli("report", f"{storage}/mnist_attention/gpu", env=cluster.env, cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    html = server.client().get_object(Bucket=bucket, Key=f"{prefix}/report.html")["Body"].read()
    assert b"<html" in html.lower() and trials["variant"][0].encode() in html
    assert not list(tmp_path.iterdir())  # nothing left behind where it ran


def test_cpu_sweep_from_bucket_data_resumes_from_the_bucket(bucket_cluster):
    server, bucket, cluster = bucket_cluster
    server.upload_tree(FSDD, bucket, "datasets/fsdd")
    storage = f"s3://{bucket}/runs?{server.query()}"  # Ray's URI form of the endpoint
    # fp32 only: its fp16 arms can diverge in 8 steps (a recorded outcome, not this test's).
    args = ["run", "fsdd_attention", *SWEEP, "--profile", "fp32-only", "--gpus-per-trial", "0",
            "--data-root", f"s3://{bucket}/datasets/fsdd", "--address", cluster.address,
            "--storage", storage, "--name", "cpu"]
    first = subprocess.Popen([sys.executable, "-m", "orchestrator", *args], cwd=ROOT,
                             text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=cluster.env)
    prefix = "runs/fsdd_attention/cpu"
    deadline = time.monotonic() + 300
    while f"{prefix}/trials.parquet" not in server.keys(bucket, prefix):
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "no trial reported within 300 s"
        time.sleep(1)
    first.send_signal(signal.SIGINT)
    stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 130, stdout[-2000:] + stderr[-2000:]

    # The command the interrupted run printed, run as the user would.
    printed = stderr.strip().splitlines()[-1].split("resume with: ", 1)[1]
    command = shlex.split(printed)
    assert command[:3] == ["python", "-m", "orchestrator"] and storage in command
    resumed = subprocess.run([sys.executable, *command[1:]], cwd=ROOT, text=True,
                             capture_output=True, timeout=600, env=cluster.env)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    trials = read_parquet(server, bucket, f"{prefix}/trials.parquet")
    assert trials["status"].to_list() == ["ok"] * trials.height and trials.height >= 2
    assert trials["trial_id"].n_unique() == trials.height
    for trial_id in trials["trial_id"]:
        epochs = read_parquet(server, bucket, f"{prefix}/epochs/{trial_id}.parquet")
        assert epochs["epoch"].to_list() == sorted(set(epochs["epoch"].to_list()))
    status = cluster.ray_status()
    assert "cpu_worker" in status, status
    assert f"{prefix}/report.html" in server.keys(bucket, prefix)


def test_local_storage_that_other_nodes_cannot_see_is_refused(tmp_path):
    """A worker node in its own mount namespace sees an empty directory where the driver's
    --storage is: the run must stop before any trial with one line naming the node."""
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs unshare -m (mount namespaces) to hide a directory from one node")
    storage = tmp_path / "runs"
    storage.mkdir()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    with fake_autoscaling_cluster({}, env=env) as cluster:
        ray = str(Path(sys.executable).with_name("ray"))
        hidden = subprocess.Popen(
            ["unshare", "-m", "sh", "-c",
             f"mount -t tmpfs tmpfs {storage} && exec {ray} start --address={cluster.address}"
             f" --num-cpus=1 --block --disable-usage-stats"],
            env=cluster.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while "/1.0 CPU" not in cluster.ray_status():
                assert time.monotonic() < deadline, cluster.ray_status()
                time.sleep(1)
            out = cli("run", "mnist_attention", *SWEEP, "--address", cluster.address,
                      "--storage", str(storage), env=cluster.env, timeout=120)
        finally:
            hidden.terminate()
            hidden.wait(timeout=30)
    assert out.returncode == 2, out.stdout + out.stderr
    line = out.stderr.strip().splitlines()[-1]
    assert f"--storage {storage}" in line and "1 of 2 nodes cannot see" in line
    assert "s3://" in line
    assert not list((storage / "mnist_attention").glob("*/trials.parquet"))


def test_a_gpu_request_no_node_type_can_hold_is_one_line(bucket_cluster):
    server, _, cluster = bucket_cluster
    bucket = server.new_bucket("refused")  # its own: the other tests' runs are elsewhere
    out = cli("run", "mnist_attention", *SWEEP, "--gpus-per-trial", "2", "--address",
              cluster.address, "--storage", f"s3://{bucket}/runs", env=cluster.env,
              timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    line = out.stderr.strip()
    assert "\n" not in line
    assert "2 GPU per trial: no node type can hold it" in line
    assert "gpu_worker (1 CPU, 1 GPU, up to 1)" in line and "cpu_worker (1 CPU, 0 GPU" in line
    # Nothing started: at most the empty folder the writability probe made.
    assert server.keys(bucket, "runs/mnist_attention") in ([], ["runs/mnist_attention/"])


def test_node_types_are_read_from_a_launcher_config():
    from orchestrator.cluster_fit import NodeType, node_types_from_config

    config = {"max_workers": 3, "head_node_type": "head",
              "available_node_types": {
                  "head": {"resources": {"CPU": 0}, "max_workers": 0},
                  "gpu": {"resources": {"CPU": 8, "GPU": 1}, "max_workers": 4},
                  "cpu": {"resources": {"CPU": 4}}}}
    assert node_types_from_config(config) == [
        NodeType("gpu", {"CPU": 8.0, "GPU": 1.0}, 3),   # the cluster's cap wins
        NodeType("cpu", {"CPU": 4.0}, 3)]               # no cap of its own: the cluster's


def test_the_waiting_line_counts_the_nodes_the_concurrent_trials_need():
    import dataclasses

    from orchestrator.cluster_fit import NodeType, waiting_line
    from orchestrator.commands.common import load_preset
    from orchestrator.plan import SweepOptions, make_plan

    plan = make_plan(load_preset("mnist_attention"), SweepOptions(smoke=True))
    plan = dataclasses.replace(plan, cpus=2.0, gpus=0.5, max_concurrent=6)
    big = NodeType("g4", {"CPU": 8, "GPU": 1}, 10)     # two trials per node (GPU-bound)
    line = waiting_line(plan, [big])
    assert line.startswith(f"waiting for {min(3, -(-plan.n_trials // 2))} GPU worker(s)")
    assert "g4 (8 CPU, 1 GPU, up to 10)" in line
    few = NodeType("g1", {"CPU": 8, "GPU": 1}, 1)
    assert waiting_line(plan, [few]).startswith("waiting for 1 GPU worker(s)")
