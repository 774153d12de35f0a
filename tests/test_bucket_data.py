"""Datasets and weights in a bucket: copied once per node, checked on the driver without a
download, and every bad URI one line with exit 2.

A real S3 server (moto's, ``tests/s3_server.py``) holds the bundled spoken digits in FSDD's
real layout (two of the six voices: 200 WAV files, 1.5 MB); each test makes its own bucket
or prefix where it changes objects. Copies go to a per-test ``$ORCHESTRATOR_CACHE``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.s3_server import free_port
from trainables.data import remote
from trainables.data.remote import node_copy
from trainables.data.spoken_digits import BUNDLED_ROOT
from trainables.data.stores import StoreError

ROOT = Path(__file__).resolve().parents[1]
VOICES = ("fiona", "kai")


@pytest.fixture(scope="module")
def fsdd_tree(tmp_path_factory) -> Path:
    """Two voices of the bundled recordings, in FSDD's layout: ``recordings/*.wav``."""
    root = tmp_path_factory.mktemp("fsdd")
    (root / "recordings").mkdir()
    for path in sorted((BUNDLED_ROOT / "recordings").glob("*.wav")):
        if path.name.split("_")[1] in VOICES:
            (root / "recordings" / path.name).write_bytes(path.read_bytes())
    return root


@pytest.fixture(scope="module")
def fsdd_bucket(s3_server, fsdd_tree) -> str:
    """A bucket holding ``fsdd/recordings/*.wav``; tests must not change it."""
    bucket = s3_server.new_bucket("fsdd")
    s3_server.upload_tree(fsdd_tree, bucket, "fsdd")
    return bucket


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ORCHESTRATOR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return tmp_path / "cache"


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _mtimes(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns
            for p in root.rglob("*") if p.is_file()}


def _counting(monkeypatch) -> list[str]:
    """Record every object the copy fetches (the one function that reads objects)."""
    fetched: list[str] = []
    real = remote.fetch_object

    def counted(store, obj, target, scratch):
        fetched.append(obj.rel)
        return real(store, obj, target, scratch)

    monkeypatch.setattr(remote, "fetch_object", counted)
    return fetched


def _copy_prefix(s3_server, source_bucket: str, bucket: str, prefix: str) -> None:
    client = s3_server.client()
    for key in s3_server.keys(source_bucket, "fsdd/"):
        client.copy_object(Bucket=bucket, Key=f"{prefix}/{key.removeprefix('fsdd/')}",
                           CopySource={"Bucket": source_bucket, "Key": key})


# --------------------------------------------------------------------------- node copy


def test_copy_equals_the_bucket_and_a_second_call_reuses_it(s3_env, fsdd_bucket, fsdd_tree,
                                                            cache, monkeypatch):
    uri = f"s3://{fsdd_bucket}/fsdd"
    fetched = _counting(monkeypatch)
    first = node_copy(uri)
    assert first.path.parent == cache / "data"
    assert _tree(first.path) == _tree(fsdd_tree)
    assert sorted(fetched) == sorted(k.removeprefix("fsdd/")
                                     for k in s3_env.keys(fsdd_bucket, "fsdd/"))
    assert (first.files, first.fetched_files, first.nbytes) == (200, 200, first.fetched_bytes)
    assert first.note().startswith(f"data: copied 200 files (1.5 MB) from {uri} in ")
    before = _mtimes(first.path)

    fetched.clear()
    again = node_copy(uri)
    assert again.path == first.path and again.reused and fetched == []
    assert _mtimes(again.path) == before
    assert again.note() == f"data: node copy reused (200 files, 1.5 MB from {uri})"
    # Ray's URI form of the same endpoint reaches the same objects: the same copy.
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    same = node_copy(f"{uri}?{s3_env.query()}")
    assert same.path == first.path and same.reused and fetched == []
    assert not list((cache / "data").glob(".*partial")) and not list(
        (cache / "data").glob(".*tmp-*"))


def test_interrupted_copy_resumes_without_fetching_complete_files(s3_env, fsdd_bucket,
                                                                  fsdd_tree, cache,
                                                                  monkeypatch):
    uri = f"s3://{fsdd_bucket}/fsdd"
    real = remote.fetch_object
    done: list[str] = []

    def dies_after_50(store, obj, target, scratch):
        if len(done) == 50:
            raise StoreError("connection reset (injected)")
        real(store, obj, target, scratch)
        done.append(obj.rel)

    monkeypatch.setattr(remote, "fetch_object", dies_after_50)
    with pytest.raises(StoreError, match="injected"):
        node_copy(uri, threads=1)
    assert not any(p.is_dir() and not p.name.endswith(".partial")
                   for p in (cache / "data").iterdir()), "no copy published"
    monkeypatch.setattr(remote, "fetch_object", real)

    fetched = _counting(monkeypatch)
    finished = node_copy(uri)
    assert (finished.resumed_files, finished.fetched_files) == (50, 150)
    assert set(fetched) == {rel for rel in _tree(fsdd_tree)} - set(done)
    assert _tree(finished.path) == _tree(fsdd_tree)
    assert "resuming a copy that had 50" in finished.note()


def test_a_failed_fetch_ends_the_copy_without_waiting_out_the_rest(s3_env, fsdd_bucket,
                                                                   cache, monkeypatch):
    """A store that fails midway (each request then waits out its timeouts) must not keep
    the trial busy with every queued object: the copy stops at the first failure."""
    real, calls = remote.fetch_object, []

    def store_dies_after_20(store, obj, target, scratch):
        calls.append(obj.rel)
        if len(calls) > 20:
            time.sleep(0.2)  # a request that times out
            raise StoreError("read timeout (injected)")
        real(store, obj, target, scratch)

    monkeypatch.setattr(remote, "fetch_object", store_dies_after_20)
    with pytest.raises(StoreError, match="injected"):
        node_copy(f"s3://{fsdd_bucket}/fsdd", threads=8)
    assert len(calls) < 20 + 3 * 8, len(calls)  # the ones in flight, not all 200


KILLED_COPY = """
import os, signal, sys
from trainables.data import remote
real, count = remote.fetch_object, [0]
def fetch(*args):
    if count[0] == 30:
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup runs, as for a lost node
    real(*args)
    count[0] += 1
remote.fetch_object = fetch
remote.node_copy(sys.argv[1], threads=1)
"""


def test_copy_killed_midway_resumes_and_clears_its_scratch(s3_env, fsdd_bucket, fsdd_tree,
                                                           cache, monkeypatch):
    uri = f"s3://{fsdd_bucket}/fsdd"
    out = subprocess.run([sys.executable, "-c", KILLED_COPY, uri], cwd=ROOT, timeout=120,
                         capture_output=True, text=True, env=dict(os.environ))
    assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
    assert list((cache / "data").glob(".*.tmp-*")), "the killed copy left its scratch folder"
    fetched = _counting(monkeypatch)
    finished = node_copy(uri)
    assert (finished.resumed_files, len(fetched)) == (30, 170)
    assert _tree(finished.path) == _tree(fsdd_tree)
    assert not list((cache / "data").glob(".*.tmp-*"))


@pytest.mark.parametrize("change", ["size", "etag"])
def test_a_changed_object_makes_a_new_copy(s3_env, fsdd_bucket, cache, change):
    bucket = s3_env.new_bucket("changed")
    _copy_prefix(s3_env, fsdd_bucket, bucket, "fsdd")
    uri = f"s3://{bucket}/fsdd"
    old = node_copy(uri)
    key = "fsdd/recordings/3_kai_7.wav"
    body = (old.path / "recordings/3_kai_7.wav").read_bytes()
    new_body = body + b"\0\0" if change == "size" else body[:-2] + bytes(
        [body[-2] ^ 0xFF, body[-1] ^ 0xFF])
    s3_env.client().put_object(Bucket=bucket, Key=key, Body=new_body)

    new = node_copy(uri)
    assert new.path != old.path and new.fetched_files == 200
    assert (new.path / "recordings/3_kai_7.wav").read_bytes() == new_body
    assert (old.path / "recordings/3_kai_7.wav").read_bytes() == body


TWO_NODES = """
import json, sys, time
from pathlib import Path
from trainables.data.remote import node_copy
go = Path(sys.argv[2])
Path(sys.argv[3]).touch()  # imported: ready
while not go.exists():
    time.sleep(0.005)
copy = node_copy(sys.argv[1])
print(json.dumps({"path": str(copy.path), "fetched": copy.fetched_files,
                  "waited": copy.waited}))
"""


def test_two_processes_at_once_copy_once(s3_env, fsdd_bucket, fsdd_tree, cache, tmp_path):
    uri, go = f"s3://{fsdd_bucket}/fsdd", tmp_path / "go"
    ready = [tmp_path / f"ready-{i}" for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-c", TWO_NODES, uri, str(go), str(flag)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=dict(os.environ)) for flag in ready]
    deadline = time.monotonic() + 120
    while not all(flag.exists() for flag in ready) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()  # both start copying at the same moment
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert results[0]["path"] == results[1]["path"]
    assert sorted(r["fetched"] for r in results) == [0, 200], results
    assert _tree(Path(results[0]["path"])) == _tree(fsdd_tree)


def test_losing_the_publish_race_in_a_shared_cache_uses_the_winners_copy(
        s3_env, fsdd_bucket, fsdd_tree, cache, monkeypatch):
    """An NFS cache whose lock does not reach the other node: that node publishes first."""
    import contextlib

    uri = f"s3://{fsdd_bucket}/fsdd"
    monkeypatch.setattr(remote, "exclusive", lambda path: contextlib.nullcontext())
    real_fetch_all = remote._fetch_all
    other: list = []

    def other_node_first(*args, **kwargs):
        if not other:  # the other node copies and publishes while this one copies
            other.append("copying")
            other[0] = node_copy(uri)
        real_fetch_all(*args, **kwargs)

    monkeypatch.setattr(remote, "_fetch_all", other_node_first)
    mine = node_copy(uri)
    assert mine.path == other[0].path
    assert _tree(mine.path) == _tree(fsdd_tree)
    assert not list((cache / "data").glob(".*partial"))


def test_missing_objects_and_bad_endpoints_are_one_line(s3_env, cache, monkeypatch):
    empty = s3_env.new_bucket("empty")
    with pytest.raises(StoreError, match=rf"s3://{empty}/x: no objects under it"):
        node_copy(f"s3://{empty}/x")
    with pytest.raises(StoreError, match="bucket 'no-such-bucket-q' does not exist"):
        node_copy("s3://no-such-bucket-q/x")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(StoreError, match=r"cannot reach http://127\.0\.0\.1:\d+ "):
        node_copy(f"s3://{empty}/x")


# The stores' own messages (seen from pyarrow, boto3 and GCS here) -> the one-line advice.
STORE_MESSAGES = [
    ("When getting information for bucket 'b': AWS Error ACCESS_DENIED during HeadBucket "
     "operation: No response body.", {"AWS_ACCESS_KEY_ID": "AKIA"},
     "s3://b/x: access denied with the credentials from $AWS_ACCESS_KEY_ID (ACCESS_DENIED "
     "during HeadBucket operation: No response body.); check them and the bucket's policy"),
    ("An error occurred (InvalidAccessKeyId) when calling the ListObjectsV2 operation: The AWS "
     "Access Key Id you provided does not exist in our records.", {"AWS_ACCESS_KEY_ID": "AKIA"},
     "s3://b/x: access denied with the credentials from $AWS_ACCESS_KEY_ID"),
    ("Unable to locate credentials", {}, "s3://b/x: no credentials found on this machine "
     "(Unable to locate credentials); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
    ("When getting information for bucket 'b': AWS Error UNKNOWN (HTTP status 500) during "
     "HeadBucket operation: No response body.", {}, "s3://b/x: no credentials found on this "
     "machine (UNKNOWN (HTTP status 500) during HeadBucket operation: No response body.)"),
    ("When listing objects under key 'x/' in bucket 'b': AWS Error NO_SUCH_BUCKET during "
     "ListObjectsV2 operation: The specified bucket does not exist", {"AWS_ACCESS_KEY_ID": "A"},
     "s3://b/x: bucket 'b' does not exist at http://h:1; check the name"),
    ("AWS Error NETWORK_CONNECTION during HeadObject operation: curlCode: 28, Timeout was "
     "reached; Details: Operation too slow. Less than 1 bytes/sec transferred the last 3 "
     "seconds", {}, "s3://b/x: cannot reach http://h:1 (Operation too slow. Less than 1 "
     "bytes/sec transferred the last 3 seconds); check $AWS_ENDPOINT_URL"),
]


@pytest.mark.parametrize(("message", "env", "expected"), STORE_MESSAGES)
def test_store_errors_become_advice(message, env, expected, tmp_path, monkeypatch):
    from trainables.data.stores import classify

    for name in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    line = str(classify(OSError(message), "s3://b/x", endpoint="http://h:1"))
    assert line.startswith(expected) and "\n" not in line, line


def test_gcs_without_a_token_is_missing_credentials(tmp_path, monkeypatch):
    from trainables.data.stores import classify

    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    line = str(classify(OSError(
        "google::cloud::Status(UNAVAILABLE: Retry policy exhausted, with a last message of Could "
        "not create a OAuth2 access token to authenticate the request."), "gs://b/x",
        endpoint=None))
    assert line.startswith("gs://b/x: no credentials found on this machine (")
    assert line.endswith("set GOOGLE_APPLICATION_CREDENTIALS or give the node a service "
                         "account (add ?anonymous=true for a public bucket)")


# ----------------------------------------------------------------------------- weights


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub" / "checkpoints"


def test_weights_root_fills_the_hub_cache_once_and_the_model_loads_them(s3_env, cache, hub,
                                                                        tmp_path):
    import torch
    from torchvision.models import resnet18

    from trainables.models import get_model
    from trainables.models.video.weight_copy import fetch_weights
    from trainables.models.video.weights import MissingWeightsError

    torch.manual_seed(3)
    source = resnet18().state_dict()
    torch.save(source, tmp_path / "resnet18-f37072fd.pth")
    bucket = s3_env.new_bucket("weights")
    client = s3_env.client()
    client.upload_file(str(tmp_path / "resnet18-f37072fd.pth"), bucket,
                       "torch/nested/resnet18-f37072fd.pth")
    client.put_object(Bucket=bucket, Key="torch/README.txt", Body=b"not a weight file")
    uri = f"s3://{bucket}/torch"

    model = get_model("frame_temporal", pretrained=True, pooling="mean", weights_root=uri)
    for key, tensor in model.backbone.state_dict().items():
        assert torch.equal(tensor, source[key]), key
    assert sorted(p.name for p in hub.iterdir() if not p.name.startswith(".")) == [
        "resnet18-f37072fd.pth"]
    mtime = (hub / "resnet18-f37072fd.pth").stat().st_mtime_ns
    assert fetch_weights(uri).fetched == ()
    assert (hub / "resnet18-f37072fd.pth").stat().st_mtime_ns == mtime

    client.put_object(Bucket=bucket, Key="torch/nested/resnet18-f37072fd.pth",
                      Body=(tmp_path / "resnet18-f37072fd.pth").read_bytes()[:-8] + b"X" * 8)
    assert fetch_weights(uri).fetched == ("resnet18-f37072fd.pth",)

    with pytest.raises(MissingWeightsError) as err:
        get_model("r2plus1d", pretrained=True, weights_root=uri)
    message = str(err.value)
    assert "\n" not in message and f"--weights-root {uri} does not hold" in message
    assert "r2plus1d_18-91a641e6.pth (it holds: resnet18-f37072fd.pth)" in message


# ------------------------------------------------------------------------- through the CLI


def cli(*args: str, env: dict[str, str], timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout, env=env)


def one_line_error(*args: str, env: dict[str, str]) -> tuple[str, float]:
    """The CLI's one-line error and exit 2, and how long it took (measured, not asserted:
    a hang fails on the subprocess timeout)."""
    started = time.perf_counter()
    out = cli(*args, env=env)
    elapsed = time.perf_counter() - started
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, (out.returncode, out.stderr[-3000:])
    assert "Traceback" not in out.stderr + out.stdout, out.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr[-3000:]
    print(f"{args[2:]}: {elapsed:.1f} s")  # the figure; see -s
    return lines[0], elapsed


@pytest.fixture
def cli_env(s3_env, cache, tmp_path) -> dict[str, str]:
    return {**os.environ, "AWS_EC2_METADATA_DISABLED": "true", "HOME": str(tmp_path / "home")}


def test_smoke_run_reads_the_bucket_through_each_nodes_copy(cli_env, fsdd_bucket, tmp_path):
    out = cli("run", "fsdd_attention", "--smoke", "--seeds", "1", "--profile", "fp32-only",
              "--set", "variant=[baseline,cbam]", "--data-root", f"s3://{fsdd_bucket}/fsdd",
              "--storage", str(tmp_path / "runs"), "--name", "bucket", env=cli_env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    import polars as pl

    trials = pl.read_parquet(tmp_path / "runs" / "fsdd_attention" / "bucket" / "trials.parquet")
    assert trials["status"].to_list() == ["ok", "ok"]
    notes = trials["data_note"].to_list()
    assert all(f"from s3://{fsdd_bucket}/fsdd" in note for note in notes), notes
    assert sum("data: copied 200 files (1.5 MB)" in note for note in notes) == 1, notes
    assert sum("data: node copy reused (200 files" in note for note in notes) == 1, notes
    assert all("FSDD 200 recordings (2 speakers)" in note for note in notes), notes


@pytest.fixture
def main_error(s3_env, cache, tmp_path, monkeypatch, capsys):
    """The CLI's entry point in this process (no interpreter start per case): its one-line
    error and exit 2. Only for cases a live server answers at once; the hang-prone ones
    (endpoints that refuse or never answer) run in a subprocess with a timeout."""
    from orchestrator.cli import main
    from trainables.data.remote_view import clear_views

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    clear_views()

    def run(*args: str) -> str:
        code = main(list(args))
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
        return lines[0]

    return run


def test_bad_bucket_data_is_one_line_before_anything_starts(main_error, fsdd_bucket, s3_env,
                                                            tmp_path, monkeypatch):
    run = ("run", "fsdd_attention", "--smoke", "--storage", str(tmp_path / "runs"))
    error = main_error(*run, "--data-root", "s3://missing-bucket-q/fsdd")
    assert error == (f"error: cannot use the data root s3://missing-bucket-q/fsdd: bucket "
                     f"'missing-bucket-q' does not exist at {s3_env.endpoint_url}; check the "
                     "name (and the endpoint), or create it and upload the data")

    error = main_error(*run, "--data-root", f"s3://{fsdd_bucket}/fsdd/recordings/x")
    assert error.startswith(f"error: dataset fsdd under s3://{fsdd_bucket}/fsdd/recordings/x "
                            "not found; the bucket has no objects under that prefix; missing: "
                            "recordings/{digit}_{speaker}_{index}.wav")

    wrong = s3_env.new_bucket("wrong")
    s3_env.client().put_object(Bucket=wrong, Key="data/train/0.png", Body=b"png")
    error = main_error(*run, "--data-root", f"s3://{wrong}/data")
    assert error.startswith(f"error: dataset fsdd under s3://{wrong}/data not found; missing: "
                            "recordings/{digit}_{speaker}_{index}.wav (FSDD: 8 kHz")

    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    error = main_error(*run, "--data-root", f"s3://{fsdd_bucket}/fsdd")
    assert error.startswith(f"error: cannot use the data root s3://{fsdd_bucket}/fsdd: no "
                            "credentials found on this machine")
    assert "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in error


def test_closed_endpoint_port_is_one_line(cli_env, fsdd_bucket, tmp_path):
    closed = {**cli_env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    error, _ = one_line_error("run", "fsdd_attention", "--smoke", "--storage",
                              str(tmp_path / "runs"), "--data-root", f"s3://{fsdd_bucket}/fsdd",
                              env=closed)
    assert error.startswith(f"error: cannot use the data root s3://{fsdd_bucket}/fsdd: cannot "
                            "reach http://127.0.0.1:")
    assert error.endswith("check $AWS_ENDPOINT_URL or the URI's "
                          "?endpoint_override=HOST:PORT&scheme=http, and that the server is up")


LIST_ONLY = """
import sys
from trainables.data.remote_view import sparse_view
from trainables.data.stores import StoreError
try:
    sparse_view(sys.argv[1])
except StoreError as err:
    print(err)
"""


def test_endpoint_that_never_answers_is_one_line(cli_env, fsdd_bucket):
    """A port that accepts connections and never replies: the driver's waits are bounded.
    The listing the driver's checks start with runs alone here (the CLI's own start-up is
    the closed-port case's); a hang fails on the subprocess timeout."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        port = silent.getsockname()[1]
        env = {**cli_env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", LIST_ONLY, f"s3://{fsdd_bucket}/fsdd"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        print(f"silent endpoint: {time.perf_counter() - started:.1f} s")
    assert out.returncode == 0 and not out.stderr, out.stderr[-2000:]
    line = out.stdout.strip()
    assert line.startswith(f"s3://{fsdd_bucket}/fsdd: cannot reach http://127.0.0.1:{port} (")
    assert "timeout" in line.lower() and "\n" not in line


def test_weights_root_without_the_file_is_one_line(main_error, s3_env, tmp_path):
    """hmdb51's presence check reads names only: a tree of empty files in its layout passes
    it, so the weights check that follows is what refuses the run."""
    data = tmp_path / "hmdb51"
    (data / "testTrainMulti_7030_splits").mkdir(parents=True)
    (data / "testTrainMulti_7030_splits" / "wave_test_split1.txt").write_text("v.avi 1\n")
    (data / "wave").mkdir()
    (data / "wave" / "v.avi").touch()
    bucket = s3_env.new_bucket("noweights")
    s3_env.client().put_object(Bucket=bucket, Key="torch/other.pth", Body=b"x")
    storage = ("--storage", str(tmp_path / "runs"))
    error = main_error("run", "hmdb51_ablation", "--data-root", str(data), "--weights-root",
                       f"s3://{bucket}/torch", *storage)
    assert error == (f"error: model r2plus1d_perceiver with pretrained=true needs "
                     f"r2plus1d_18-91a641e6.pth, which --weights-root s3://{bucket}/torch does "
                     "not hold (it holds: other.pth); upload torchvision's file there, or "
                     "--set model.pretrained=false")
    error = main_error("run", "hmdb51_ablation", "--data-root", str(data), "--weights-root",
                       "s3://missing-bucket-w/torch", *storage)
    assert error.startswith("error: cannot use the weights root s3://missing-bucket-w/torch: "
                            "bucket 'missing-bucket-w' does not exist at ")
    error = main_error("run", "fsdd_attention", "--weights-root", f"s3://{bucket}/torch",
                       *storage)
    assert "preset fsdd_attention has no pretrained model" in error
