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
    """1500 real digits: 1200 train / 300 val+test, stratified."""
    x, y = bundled_digits()
    keep, _ = stratified_split(y, 0.7, seed=0)
    x, y = x[keep], y[keep]
    tr, te = stratified_split(y, 0.2, seed=1)
    return ArraySplits(x[tr], y[tr], x[te], y[te], x[te], y[te], num_classes=10,
                       description="test subset", val_is_test=True)


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
