"""A dataset in a bucket, copied once per node into the node's cache; trials read the copy.

Why: every loader in this package reads a local directory (the clip store memory-maps frames
decoded from local files, the FSDD features hash local files), and on a cluster the nodes an
autoscaler adds later have nothing on their disks. So a ``data.root`` of ``s3://...`` or
``gs://...`` becomes, on each node, ``<cache>/data/<name>-<key>/``, and everything
downstream works on that path exactly as on a local dataset. ``local_root`` is the one place
where a config's ``root`` becomes a local Path.

The copy is:

- once per node: the first trial takes an exclusive lock (``node_cache.exclusive``) and
  copies; trials that start meanwhile wait on the lock and then reuse the finished copy;
- keyed by the listing (relative names, sizes, ETags; see ``stores``), never by local
  mtimes, so every node derives the same key and a changed or added object makes a new copy;
- resumable: objects go to a per-process scratch folder and are renamed into
  ``.<name>-<key>.partial/`` when complete, so a copy killed midway continues where it
  stopped and fetches no complete file twice; the partial folder becomes the copy by one
  rename, so a reader never sees half a dataset;
- safe in a shared cache directory (an NFS home) where the lock may not reach across nodes:
  a process that loses the final rename discards its partial copy and uses the winner's.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from trainables.data.node_cache import cache_key, default_cache_dir, exclusive
from trainables.data.stores import (
    RemoteObject,
    Store,
    StoreError,
    classify,
    is_uri,
    list_objects,
    open_store,
)

log = logging.getLogger(__name__)

COPY_VERSION = 1
CHUNK = 1 << 20
THREADS = 8          # objects fetched at once: many small files are latency-bound
PARTIAL = ".partial"


@dataclass(frozen=True)
class LocalCopy:
    """A dataset's local directory, and what this call did to get it there."""

    path: Path
    uri: str                 # as shown to users (no credentials)
    files: int
    nbytes: int
    fetched_files: int       # 0: the node's copy was reused
    fetched_bytes: int
    resumed_files: int       # complete files an interrupted copy had left
    seconds: float
    waited: bool = False     # found the copy after waiting for another trial's lock

    @property
    def reused(self) -> bool:
        return self.fetched_files == 0 and self.resumed_files == 0

    def note(self) -> str:
        """The part of a trial's data note that says where its data came from."""
        if self.reused:
            waited = (f"; waited {self.seconds:.1f} s for another trial's copy"
                      if self.waited else "")
            return (f"data: node copy reused ({self.files} files, {_mb(self.nbytes)} from "
                    f"{self.uri}{waited})")
        resumed = (f", resuming a copy that had {self.resumed_files}"
                   if self.resumed_files else "")
        return (f"data: copied {self.fetched_files} files ({_mb(self.fetched_bytes)}) from "
                f"{self.uri} in {self.seconds:.1f} s{resumed}")


def _mb(nbytes: int) -> str:
    return f"{nbytes / 1e6:.1f} MB" if nbytes < 1e8 else f"{nbytes / 1e9:.2f} GB"


def local_root(root: str, cache_dir: Path | None = None) -> Path:
    """The local directory a dataset config's ``root`` names: a path as it is (``~``
    expanded), a bucket URI as this node's copy of it (made now if needed)."""
    if not is_uri(root):
        return Path(root).expanduser()
    return node_copy(root, cache_dir).path


def node_copy(uri: str, cache_dir: Path | None = None, *, threads: int = THREADS) -> LocalCopy:
    """This node's copy of everything under ``uri``, copying (or finishing a copy) once."""
    started = time.perf_counter()
    store = open_store(uri)
    objects = list_objects(store)
    if not objects:
        raise StoreError(f"{store.shown}: no objects under it; upload the dataset there, "
                         "or check the prefix")
    base = (cache_dir or default_cache_dir()) / "data"
    name = f"{_slug(store.path)}-{copy_key(store, objects)}"
    final = base / name
    total = sum(o.size for o in objects)

    def result(fetched: int, fetched_bytes: int, resumed: int, waited: bool = False
               ) -> LocalCopy:
        return LocalCopy(final, store.shown, len(objects), total, fetched, fetched_bytes,
                         resumed, time.perf_counter() - started, waited)

    if final.is_dir():  # the common case: no lock needed to read a finished copy
        return result(0, 0, 0)
    base.mkdir(parents=True, exist_ok=True)
    with exclusive(base / f".{name}.lock"):
        if final.is_dir():  # another trial finished it while this one waited
            return result(0, 0, 0, waited=True)
        partial = base / f".{name}{PARTIAL}"
        todo, resumed = _missing(partial, objects)
        _check_space(base, sum(o.size for o in todo), store.shown)
        _fetch_all(store, todo, partial, base / f".{name}.tmp-{_me()}", threads)
        _publish(partial, final, objects)
    return result(len(todo), sum(o.size for o in todo), resumed)


def copy_key(store: Store, objects: list[RemoteObject]) -> str:
    """A hash of the bucket path and every object's (name, size, ETag): equal on every node."""
    return cache_key({"location": store.path, "version": COPY_VERSION,
                      "objects": [(o.rel, o.size, o.version) for o in objects]})


def _slug(path: str) -> str:
    """A readable, filesystem-safe name for ``bucket/prefix``: who looks in the cache sees
    which dataset a folder holds."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", path).strip("._")[-60:] or "bucket"


def _me() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _missing(partial: Path, objects: list[RemoteObject]) -> tuple[list[RemoteObject], int]:
    """(objects still to fetch, complete files a previous copy left in ``partial``).

    A file in ``partial`` is complete: it got its name by a rename after its last byte.
    The size check catches a partial folder left by an older layout or a full disk.
    """
    todo: list[RemoteObject] = []
    for obj in objects:
        target = partial / obj.rel
        try:
            done = target.stat().st_size == obj.size
        except OSError:
            done = False
        if not done:
            todo.append(obj)
    return todo, len(objects) - len(todo)


def _check_space(base: Path, needed: int, shown: str) -> None:
    free = shutil.disk_usage(base).free
    if needed > free:
        raise StoreError(f"{shown}: the node copy needs {_mb(needed)} but {base} has "
                         f"{_mb(free)} free; set $ORCHESTRATOR_CACHE (or data.cache_dir) to a "
                         "bigger disk")


def _fetch_all(store: Store, todo: list[RemoteObject], partial: Path, scratch: Path,
               threads: int) -> None:
    """Fetch ``todo`` into ``partial``, each object via a scratch file renamed when complete."""
    _remove_dead_scratch(scratch)
    partial.mkdir(parents=True, exist_ok=True)
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        if threads <= 1 or len(todo) <= 1:
            for obj in todo:
                fetch_object(store, obj, partial / obj.rel, scratch)
            return
        with ThreadPoolExecutor(min(threads, len(todo))) as pool:
            futures = [pool.submit(fetch_object, store, obj, partial / obj.rel, scratch)
                       for obj in todo]
            try:
                for future in as_completed(futures):
                    future.result()
            except BaseException:
                # The first failure ends the copy: queued objects would each wait out the
                # timeouts of a store that just failed (hours for thousands of files).
                for future in futures:
                    future.cancel()
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def fetch_object(store: Store, obj: RemoteObject, target: Path, scratch: Path) -> None:
    """Copy one object to ``target``: written under ``scratch``, renamed when its last byte
    is on disk, so ``target`` is either absent or complete. Store errors become one line;
    local disk errors (a full disk) keep their own message."""
    temp = scratch / uuid.uuid4().hex
    try:
        written = 0
        with open(temp, "wb") as sink:
            try:
                # compression=None: the bytes as stored (pyarrow would gunzip a .gz name)
                source = store.fs.open_input_stream(store.object_path(obj.rel),
                                                    compression=None)
            except OSError as err:
                raise classify(err, store.uri, endpoint=store.endpoint) from None
            with source:
                while True:
                    try:
                        chunk = source.read(CHUNK)
                    except OSError as err:
                        raise classify(err, store.uri, endpoint=store.endpoint) from None
                    if not chunk:
                        break
                    sink.write(chunk)
                    written += len(chunk)
        if written != obj.size:
            raise StoreError(f"{store.shown}/{obj.rel}: read {written} bytes where the listing "
                             f"said {obj.size}; the object changed during the copy: run again")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp, target)
    finally:
        with contextlib.suppress(OSError):
            temp.unlink()


def _remove_dead_scratch(mine: Path) -> None:
    """Scratch folders of this copy left by processes on this host that are gone (killed
    mid-copy: no ``finally`` ran). ``mine`` is ``.<name>.tmp-<host>-<pid>``."""
    prefix = mine.name.rsplit("-", 1)[0]
    for folder in mine.parent.glob(f"{prefix}-*"):
        pid = folder.name.rsplit("-", 1)[-1]
        if folder != mine and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _publish(partial: Path, final: Path, objects: list[RemoteObject]) -> None:
    """Rename the complete partial folder to the copy's name. In a shared cache another node
    may have won (its lock did not reach this one): then drop this copy and use that one."""
    if final.is_dir():
        shutil.rmtree(partial, ignore_errors=True)
        return
    todo, _ = _missing(partial, objects)
    if todo:
        raise StoreError(f"the node copy in {partial} lacks {len(todo)} files after fetching "
                         f"(first: {todo[0].rel}); run again to finish it")
    try:
        os.rename(partial, final)
    except OSError as err:
        if err.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT) or not final.is_dir():
            raise
        log.info("node copy %s was published by another process; using it", final)
        shutil.rmtree(partial, ignore_errors=True)
