"""Writing run files to a local directory or a cloud URI, atomically where the store allows.

Every file goes to a dot-temp name first and is then renamed, so a reader (the report, a
user's notebook, a resumed run) never sees a half-written Parquet file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from orchestrator.errors import UserError


def is_uri(location: str) -> bool:
    return "://" in location


def join(location: str, *parts: str) -> str:
    """``location/part/...``; a URI's query (``?endpoint_override=host:port&scheme=http``,
    Ray's and pyarrow's way to name an S3-compatible server) stays at the end."""
    base, mark, query = location.partition("?") if is_uri(location) else (location, "", "")
    segments = [base.rstrip("/"), *(part.strip("/") for part in parts if part)]
    return "/".join(segments) + mark + query


def base_name(location: str) -> str:
    """The last path segment of a directory or URI (without the query)."""
    return location.partition("?")[0].rstrip("/").rsplit("/", 1)[-1]


def parent(location: str) -> str:
    """The location one level up, with a URI's query kept."""
    base, mark, query = location.partition("?") if is_uri(location) else (location, "", "")
    return base.rstrip("/").rsplit("/", 1)[0] + mark + query


def normalise(location: str) -> str:
    """An absolute local path, or the URI without a trailing slash (query kept)."""
    if not is_uri(location):
        return str(Path(location).expanduser().resolve())
    return join(location)


def first_line(err: BaseException) -> str:
    """The first line of an exception's text (pyarrow's S3 errors run to several)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def resolve(location: str, *, quick: bool = False) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the path within it, for ``/local/dir`` or ``s3://b/p``.

    Buckets are opened as the datasets are (``trainables.data.stores``): the same endpoint
    rules and bounded waits, where pyarrow's ``from_uri`` would retry an endpoint that never
    answers for minutes. ``quick``: the driver's checks, which must answer within seconds.
    """
    if not is_uri(location):
        return pafs.LocalFileSystem(), str(Path(location).expanduser().resolve())
    from trainables.data.stores import CHECK, SCHEMES, StoreError, open_store

    try:
        if location.split("://", 1)[0].lower() in SCHEMES:
            store = open_store(location, **CHECK) if quick else open_store(location)
            return store.fs, store.path
        return pafs.FileSystem.from_uri(location)
    except StoreError as err:
        raise UserError(str(err)) from None
    except Exception as err:  # pyarrow raises several types for bad or unsupported URIs
        raise UserError(f"cannot open storage {location!r}: {first_line(err)}") from None


def check_readable(location: str) -> None:
    """Fail with one line if a bucket's endpoint cannot be reached or refuses us (a local
    path is left alone: nothing is created before the sweep's own checks pass)."""
    if not is_uri(location):
        return
    fs, path = resolve(location, quick=True)
    try:
        fs.get_file_info(path)
    except Exception as err:
        raise UserError(f"storage {location!r} cannot be read ({first_line(err)}); check the "
                        "URI, the credentials and the endpoint (AWS_ENDPOINT_URL)") from None


def check_writable(location: str) -> None:
    """Fail before any trial starts if results could not be written."""
    fs, path = resolve(location, quick=True)
    probe = f"{path}/.write-probe-{os.getpid()}"
    try:
        fs.create_dir(path, recursive=True)
        with fs.open_output_stream(probe) as stream:
            stream.write(b"ok")
        fs.delete_file(probe)
    except Exception as err:
        raise UserError(f"storage {location!r} is not writable ({first_line(err)}); "
                        "pass --storage with a writable directory or bucket") from None


class RunFiles:
    """The files of one run directory, on whichever filesystem holds it."""

    def __init__(self, location: str, *, quick: bool = False) -> None:
        self.location = location
        self.fs, self.root = resolve(location, quick=quick)

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def exists(self, *parts: str) -> bool:
        return self.fs.get_file_info(self.path(*parts)).type != pafs.FileType.NotFound

    def _atomic(self, parts: tuple[str, ...], write) -> None:
        final = self.path(*parts)
        parent, name = final.rsplit("/", 1)
        self.fs.create_dir(parent, recursive=True)
        temp = f"{parent}/.{name}.tmp"
        write(temp)
        self.fs.move(temp, final)

    def write_parquet(self, frame: pl.DataFrame, *parts: str) -> None:
        self._atomic(parts, lambda p: pq.write_table(frame.to_arrow(), p, filesystem=self.fs))

    def read_parquet(self, *parts: str) -> pl.DataFrame:
        return pl.from_arrow(pq.read_table(self.path(*parts), filesystem=self.fs))

    def write_json(self, data: dict[str, Any], *parts: str) -> None:
        self.write_bytes(json.dumps(data, indent=2, default=str).encode(), *parts)

    def write_bytes(self, payload: bytes, *parts: str) -> None:
        def write(p: str) -> None:
            with self.fs.open_output_stream(p) as stream:
                stream.write(payload)

        self._atomic(parts, write)

    def read_json(self, *parts: str) -> dict[str, Any]:
        with self.fs.open_input_stream(self.path(*parts)) as stream:
            return json.loads(stream.read())

    def list_dir(self, *parts: str) -> list[str]:
        selector = pafs.FileSelector(self.path(*parts), allow_not_found=True)
        return [info.base_name for info in self.fs.get_file_info(selector)]
