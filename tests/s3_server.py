"""A real S3 server on localhost (moto's), for the tests of bucket storage and bucket data.

Why a server and not moto's in-process mock: the product talks to S3 through pyarrow's C++
client, from Ray workers in other processes, so only a server on a port is seen by all of
them. Each test session gets one server on a free port; a test makes its own bucket.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# What every client (boto3, pyarrow, a Ray worker) needs to reach the server: moto accepts
# any credentials; pyarrow honours AWS_ENDPOINT_URL, so plain s3:// URIs reach it.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}


@dataclass(frozen=True)
class S3Server:
    host: str
    port: int

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """Environment for a process that should use this server for every s3:// URI."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint_url}

    def query(self) -> str:
        """Ray's and pyarrow's URI form of the same endpoint, for URIs that carry it."""
        return f"endpoint_override={self.host}:{self.port}&scheme=http"

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def new_bucket(self, prefix: str = "test") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.client().create_bucket(Bucket=name)
        return name

    def upload_tree(self, local: Path, bucket: str, key_prefix: str) -> int:
        """Copy every file under ``local`` to ``s3://bucket/key_prefix/...``; return the count."""
        client, count = self.client(), 0
        for path in sorted(p for p in Path(local).rglob("*") if p.is_file()):
            key = f"{key_prefix.strip('/')}/{path.relative_to(local).as_posix()}"
            client.upload_file(str(path), bucket, key)
            count += 1
        return count

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        paginator = self.client().get_paginator("list_objects_v2")
        return [obj["Key"] for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
                for obj in page.get("Contents", [])]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_s3_server(log_dir: Path) -> Iterator[S3Server]:
    """Start moto's server on a free port, wait until it answers, stop it (by PID) after."""
    port = free_port()
    with open(log_dir / "moto.log", "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **CREDENTIALS})
        try:
            _wait_until_listening(process, port, log_dir)
            yield S3Server("127.0.0.1", port)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def _wait_until_listening(process: subprocess.Popen, port: int, log_dir: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"moto server exited: {(log_dir / 'moto.log').read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("moto server did not start within 60 s") from None
            time.sleep(0.2)
