"""A bucket's listing as a local tree of empty placeholder files: checks without downloads.

Why: before a sweep starts, the driver checks that its data is usable (``plan._check_data``,
``orchestrator.preflight``) and should not download a dataset to do so. The loaders' own
presence checks (``find_cifar``, ``recordings_dir``, ``find_mnist_idx``, ``find_hmdb51``,
``folder_available``...) look at names only, so run on a tree of empty files named like the
bucket's objects they give the answer, and the message, they give on a real copy, from the
listing alone (one request per 1000 objects). A content check that reads a few files (one
WAV, a split list, a handful of videos) fetches just those first (``SparseView.fetch``).
Messages name the URI, never the placeholder folder (``SparseView.shown``).

The tree lives in a temporary folder for the life of the process; each URI is listed once.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from trainables.data.remote import fetch_object
from trainables.data.stores import (
    CHECK,
    RemoteObject,
    Store,
    StoreError,
    list_objects,
    open_store,
)


@dataclass
class SparseView:
    """Placeholders for every object under ``store``; ``fetch`` fills one in for real."""

    store: Store
    root: Path
    objects: dict[str, RemoteObject]
    fetched: set[str] = field(default_factory=set)

    def fetch(self, path: Path | str) -> Path:
        """Give the placeholder at ``path`` the object's bytes (once); return the path."""
        rel = Path(os.path.relpath(path, self.root)).as_posix()
        if rel not in self.fetched and rel in self.objects:
            fetch_object(self.store, self.objects[rel], self.root / rel,
                         self.root.parent / "scratch")
            self.fetched.add(rel)
        return Path(path)

    def shown(self, text: str) -> str:
        """``text`` with the placeholder folder replaced by the URI it stands for."""
        return text.replace(str(self.root), self.store.shown.split("?", 1)[0])


def sparse_view(uri: str) -> SparseView:
    """The placeholder tree of ``uri`` (listed with the driver's short timeouts); StoreError
    when the store cannot be reached or read. Both answers are kept for the process: a
    command that checks several presets against one unreachable URI waits once."""
    view = _view_or_error(uri)
    if isinstance(view, StoreError):
        raise StoreError(str(view))
    return view


def clear_views() -> None:
    """Forget every listing (tests; a long-lived driver that wants a fresh look)."""
    _view_or_error.cache_clear()


@functools.lru_cache(maxsize=8)
def _view_or_error(uri: str) -> SparseView | StoreError:
    store = open_store(uri, connect_timeout=CHECK["connect_timeout"],
                       request_timeout=CHECK["request_timeout"], attempts=int(CHECK["attempts"]))
    try:
        objects = list_objects(store)
    except StoreError as err:
        return err
    base = Path(tempfile.mkdtemp(prefix="orchestrator-view-"))
    atexit.register(shutil.rmtree, base, ignore_errors=True)
    root = base / "tree"
    root.mkdir()
    (base / "scratch").mkdir()
    for obj in objects:
        if not obj.rel:
            continue  # the URI names one object, not a folder: nothing to lay out
        target = root / obj.rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch()
    return SparseView(store, root, {obj.rel: obj for obj in objects})
