"""Runs in a bucket are first-class: locations keep a URI's query, `report s3://...` reads the
run through the storage layer and writes report.html into it, and a wrong bucket or an
unreachable endpoint is one line. Against a real S3 server (moto's, tests/s3_server.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_analysis import TRIALS, _meta, make_run

from orchestrator.storage import base_name, join, normalise, parent
from tests.s3_server import free_port

ROOT = Path(__file__).resolve().parents[1]
QUERY = "endpoint_override=127.0.0.1:9000&scheme=http"


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
        ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=180, env=env)


def test_locations_keep_a_uris_query_at_the_end():
    base = f"s3://b/runs/?{QUERY}"
    assert join(base, "preset", "run") == f"s3://b/runs/preset/run?{QUERY}"
    assert normalise(base) == f"s3://b/runs?{QUERY}"
    assert parent(f"s3://b/runs/preset/run?{QUERY}") == f"s3://b/runs/preset?{QUERY}"
    assert base_name(f"s3://b/runs/preset/run?{QUERY}") == "run"
    assert join("gs://b/runs/", "p") == "gs://b/runs/p"
    assert join("/tmp/runs/", "p", "r") == "/tmp/runs/p/r"  # a local path has no query


def test_a_run_target_in_a_bucket_with_an_endpoint_query():
    from orchestrator.runner import RunTarget, normalise_storage

    target = RunTarget(storage=normalise_storage(f"s3://b/runs/?{QUERY}"), preset="p",
                       run_id="r")
    assert target.experiment_dir == f"s3://b/runs/p?{QUERY}"
    assert target.location == f"s3://b/runs/p/r?{QUERY}"


@pytest.fixture
def bucket_run(s3_env, tmp_path):
    """A finished hand-made run (test_analysis.make_run) copied into a bucket, with maps."""
    local = make_run(tmp_path / "local", TRIALS, _meta())  # <root>/exp/run1
    bucket = s3_env.new_bucket("report")
    s3_env.upload_tree(local, bucket, "runs/preset/run1")
    return s3_env, bucket, local


@pytest.mark.parametrize("form", ["env", "query"])
def test_report_of_a_bucket_run_is_written_into_the_run(bucket_run, tmp_path, form):
    server, bucket, local = bucket_run
    location = f"s3://{bucket}/runs/preset/run1"
    if form == "query":  # Ray's own form: the endpoint in the URI, not the environment
        location += f"?{server.query()}"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = None
    if form == "query":
        import os

        env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}
    out = cli("report", location, env=env, cwd=elsewhere)
    assert out.returncode == 0, out.stderr
    expected = f"s3://{bucket}/runs/preset/run1/report.html"
    assert out.stdout.strip().splitlines()[-1].startswith(f"report: {expected}")
    html = server.client().get_object(Bucket=bucket, Key="runs/preset/run1/report.html")
    text = html["Body"].read().decode()
    # The same page a local report of the same run gives (the run dir's name is its title).
    local_out = cli("report", str(local), "-q")
    assert local_out.returncode == 0, local_out.stderr
    assert text == (local / "report.html").read_text()
    assert not list(elsewhere.iterdir())
    assert "runs/preset/run1/.report.html.tmp" not in server.keys(bucket)


def test_comparing_bucket_runs_writes_the_page_beside_the_first(bucket_run):
    server, bucket, local = bucket_run
    server.upload_tree(local, bucket, "runs/preset/run2")
    out = cli("report", f"s3://{bucket}/runs/preset/run1", f"s3://{bucket}/runs/preset/run2")
    assert out.returncode == 0, out.stderr
    assert f"comparison: s3://{bucket}/runs/preset/compare-run1-run2.html" in out.stdout
    assert "runs/preset/compare-run1-run2.html" in server.keys(bucket)


def test_a_missing_bucket_run_is_one_line(s3_env):
    bucket = s3_env.new_bucket("empty")
    out = cli("report", f"s3://{bucket}/runs/preset/nothing")
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()
    assert f"run dir not found: s3://{bucket}/runs/preset/nothing" in line


def test_an_unreachable_endpoint_is_one_line(s3_env):
    closed = free_port()  # nothing listens there
    out = cli("report", f"s3://b/runs/p/r?endpoint_override=127.0.0.1:{closed}&scheme=http")
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()
    assert "cannot read run s3://b/runs/p/r" in line and "endpoint" in line


@pytest.mark.parametrize("where", ["missing bucket", "closed port"])
def test_storage_that_cannot_be_written_is_one_line_before_ray_starts(s3_env, where):
    storage = "s3://no-such-bucket-here/runs"
    if where == "closed port":
        storage = f"s3://b/runs?endpoint_override=127.0.0.1:{free_port()}&scheme=http"
    out = cli("run", "mnist_attention", "--smoke", "--storage", storage)
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()
    if where == "closed port":
        assert line.startswith(f"error: storage {storage!r} cannot be read (")
        assert "Could not connect" in line and "AWS_ENDPOINT_URL" in line
    else:
        assert line.startswith(f"error: storage '{storage}/mnist_attention' is not writable (")
        assert "Bucket 'no-such-bucket-here' not found" in line
        assert "pass --storage with a writable directory or bucket" in line
