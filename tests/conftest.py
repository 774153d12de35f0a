"""Shared fixtures: small real data, and a guard against network access in tests."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch

from trainables.data.mnist import bundled_digits, stratified_split
from trainables.data.splits import ArraySplits


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Tests must never download: refuse connections to anything but this machine."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (host.startswith("127.") or host in ("localhost", "::1")
                                          or host.startswith("/")):
            raise RuntimeError(f"test tried to reach {address}: no downloads in tests")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(scope="session")
def small_mnist() -> ArraySplits:
    """1500 real digits: 1200 train / 150 val / 150 test, stratified."""
    x, y = bundled_digits()
    keep, _ = stratified_split(y, 0.7, seed=0)
    x, y = x[keep], y[keep]
    tr, held = stratified_split(y, 0.2, seed=1)
    va, te = stratified_split(y[held], 0.5, seed=2)
    va, te = held[va], held[te]
    return ArraySplits(x[tr], y[tr], x[va], y[va], x[te], y[te], num_classes=10,
                       description="test subset")


@pytest.fixture
def cpu() -> torch.device:
    torch.set_num_threads(2)
    return torch.device("cpu")


def labels_per_class(y: np.ndarray) -> list[int]:
    return np.bincount(y, minlength=10).tolist()


def needs_video_codecs() -> None:
    """Skip unless decord and PyAV are installed; decord is loaded the way the project loads it
    (its FFmpeg kept private), never by a bare ``import decord`` that would leak it."""
    from trainables.data.video.codecs import import_av, import_decord

    try:
        import_decord()
        import_av()
    except ImportError as err:
        pytest.skip(f"video codecs missing: {err}", allow_module_level=True)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """One real S3 server (moto) for the session; tests make their own buckets on it."""
    pytest.importorskip("moto.server", reason="install the test extra: moto[server]")
    from tests.s3_server import running_s3_server

    with running_s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """This process (and the subprocesses it starts) sends every s3:// URI to the server."""
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    return s3_server
