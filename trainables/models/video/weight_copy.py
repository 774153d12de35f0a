"""Pretrained weight files from ``--weights-root`` (a bucket or a shared folder) into this
node's torch hub cache, once per node, before a pretrained model is built.

Why: the video networks load torchvision's weights from ``<torch hub dir>/checkpoints``
only and never download (see ``weights``); a node an autoscaler adds has an empty cache.
With ``model.weights_root`` set, the first trial on a node copies every ``*.pth`` found under
it into that folder, under the same lock discipline as the dataset copies: an exclusive lock
(a second trial waits, then finds the files), each file written under a scratch name and
renamed when complete. A file is fetched again only when the source's size or ETag differs
from what was copied (a ``.<file>.source`` note beside it records that); a file a user
placed there by hand, of the same size, is left alone.
"""

from __future__ import annotations

import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs
import torch

from trainables.data.node_cache import exclusive
from trainables.data.remote import fetch_object
from trainables.data.stores import (
    CHECK,
    RemoteObject,
    Store,
    StoreError,
    display,
    is_uri,
    list_objects,
    open_store,
)

SUFFIX = ".pth"


@dataclass(frozen=True)
class WeightsCopy:
    """What ``fetch_weights`` found under the root, and which files it copied now."""

    available: tuple[str, ...]     # file names under the root
    fetched: tuple[str, ...]       # copied by this call (empty: all were here already)


def checkpoints_dir() -> Path:
    """torchvision's download folder: ``<torch.hub.get_dir()>/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def weight_files(weights_root: str, *, check: bool = False) -> tuple[Store, dict[str, RemoteObject]]:
    """The ``*.pth`` files under ``weights_root`` (any depth), by file name.

    ``check``: the driver's short timeouts. StoreError when the root cannot be read or two
    files share a name (the hub cache is one flat folder).
    """
    if is_uri(weights_root):
        waits = ({"connect_timeout": CHECK["connect_timeout"], "attempts": int(CHECK["attempts"]),
                  "request_timeout": CHECK["request_timeout"]} if check else {})
        store = open_store(weights_root, **waits)
        objects = list_objects(store)
    else:
        folder = Path(weights_root).expanduser()
        if not folder.is_dir():
            raise StoreError(f"{weights_root}: no such folder; pass --weights-root with a "
                             "bucket URI or a folder holding the .pth files")
        store = Store(str(folder), pafs.LocalFileSystem(), str(folder.resolve()), "file",
                      None, None, False)
        objects = [RemoteObject(p.relative_to(folder).as_posix(), p.stat().st_size, "")
                   for p in sorted(folder.rglob(f"*{SUFFIX}")) if p.is_file()]
    found: dict[str, RemoteObject] = {}
    for obj in objects:
        name = obj.rel.rsplit("/", 1)[-1]
        if not name.endswith(SUFFIX):
            continue
        if name in found:
            raise StoreError(f"{display(weights_root)}: two weight files are named {name} "
                             f"({found[name].rel} and {obj.rel}); keep one")
        found[name] = obj
    return store, found


def fetch_weights(weights_root: str) -> WeightsCopy:
    """Copy the ``*.pth`` files under ``weights_root`` that this node lacks (or holds in an
    older version) into the hub's checkpoints folder."""
    store, found = weight_files(weights_root)
    target = checkpoints_dir()
    stale = [name for name, obj in found.items() if not _current(target, name, obj, store)]
    if not stale:
        return WeightsCopy(tuple(found), ())
    target.mkdir(parents=True, exist_ok=True)
    with exclusive(target / ".weights-root.lock"):
        stale = [name for name in stale if not _current(target, name, found[name], store)]
        scratch = target / f".scratch-{socket.gethostname()}-{os.getpid()}"
        scratch.mkdir(exist_ok=True)
        try:
            for name in stale:
                fetch_object(store, found[name], target / name, scratch)
                _source_note(target, name).write_text(_source(store, found[name]))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return WeightsCopy(tuple(found), tuple(stale))


def _source(store: Store, obj: RemoteObject) -> str:
    return f"{display(store.uri).split('?', 1)[0]}/{obj.rel} {obj.size} {obj.version}"


def _source_note(target: Path, name: str) -> Path:
    return target / f".{name}.source"


def _current(target: Path, name: str, obj: RemoteObject, store: Store) -> bool:
    """The local file matches the source: same size, and the same ETag when it was copied
    from there (a hand-placed file of the right size counts as current)."""
    path = target / name
    try:
        if path.stat().st_size != obj.size:
            return False
    except OSError:
        return False
    note = _source_note(target, name)
    return not note.is_file() or note.read_text() == _source(store, obj)
