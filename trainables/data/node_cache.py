"""Compute-once-per-node array caches on local disk, safe when several trials start at once.

Why: every trial of a sweep needs the same derived data (spectrograms of 3000 WAVs, decoded
video clips). Computing it in every trial multiplies the cost by the number of trials, and
an in-process cache only helps trials that share a worker process. A file on the node's disk
serves every worker of that node. Two trials that start together must not both compute it
(wasted minutes) nor read a half-written file (a torn cache poisons every later trial), so
the first takes an exclusive lock and computes, the others wait on the lock and then read,
and the file appears under its final name only when complete (write to a temp name, then
``os.replace``, which is atomic on one filesystem).

The key is a hash of everything the content depends on, so a changed input file, feature
setting or loader version makes a new entry instead of returning stale data.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

CACHE_ENV = "ORCHESTRATOR_CACHE"


def default_cache_dir() -> Path:
    """``$ORCHESTRATOR_CACHE``, else ``$XDG_CACHE_HOME`` or ``~/.cache``, + the tool's folder."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "attention-orchestrator"


def cache_key(parts: Mapping[str, Any]) -> str:
    """A short stable hash of a JSON-serialisable description of the content."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def file_fingerprint(paths: list[Path], root: Path) -> list[tuple[str, int, int]]:
    """(relative name, size, mtime in ns) per file: changes when any input file changes."""
    out = []
    for path in paths:
        stat = path.stat()
        out.append((str(path.relative_to(root)), stat.st_size, stat.st_mtime_ns))
    return out


@dataclass(frozen=True)
class CacheResult:
    """The cached arrays, their metadata, where they live and whether this call computed them."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]
    path: Path
    hit: bool


@contextmanager
def exclusive(lock_path: Path):
    """Hold an exclusive fcntl lock on ``lock_path`` (created if absent) for the block."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files if name != "__meta__"}
        meta = json.loads(bytes(archive["__meta__"]).decode()) if "__meta__" in archive.files else {}
    return arrays, meta


def cached_arrays(
    directory: Path,
    key: str,
    build: Callable[[], tuple[dict[str, np.ndarray], dict[str, Any]]],
) -> CacheResult:
    """``build()``'s arrays and JSON metadata, computed at most once per ``directory`` and key.

    ``build`` returns ``(arrays, meta)``; arrays must be plain (no object dtype) so the file
    loads without pickle. A file that cannot be read (say, a disk filled up mid-write on an
    older version) is rebuilt rather than trusted.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{key}.npz"
    if path.exists():  # the common case after the first trial: no lock needed to read
        try:
            arrays, meta = _read(path)
            return CacheResult(arrays, meta, path, hit=True)
        except (OSError, ValueError, KeyError) as err:
            log.warning("cache file %s is unreadable (%s); rebuilding it", path, err)
    with exclusive(directory / f".{key}.lock"):
        if path.exists():  # another process built it while we waited for the lock
            try:
                arrays, meta = _read(path)
                return CacheResult(arrays, meta, path, hit=True)
            except (OSError, ValueError, KeyError):
                pass
        arrays, meta = build()
        payload = dict(arrays)
        payload["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        handle, temp = tempfile.mkstemp(dir=directory, prefix=f".{key}.", suffix=".npz.tmp")
        try:
            with os.fdopen(handle, "wb") as stream:
                np.savez(stream, **payload)
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return CacheResult(arrays, meta, path, hit=False)
