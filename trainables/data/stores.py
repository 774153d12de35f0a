"""Opening a bucket URI (``s3://``, ``gs://``, S3-compatible stores) with bounded waits.

Why a module of its own: the trials copy datasets and weights out of buckets on every node
and the driver checks the same URIs before a sweep starts, so both must resolve a URI to the
same endpoint, bucket and credentials, wait a bounded time, and fail with one line a user can
act on. ``pyarrow.fs.FileSystem.from_uri`` resolves the endpoint but takes no timeouts; the
AWS SDK's defaults retry an endpoint that does not answer for a long time. So the filesystem
is built here from the URI with explicit connect/request timeouts and a retry limit:

- the endpoint is the URI's ``?endpoint_override=HOST:PORT&scheme=http`` (Ray's and pyarrow's
  form), else ``$AWS_ENDPOINT_URL_S3`` / ``$AWS_ENDPOINT_URL`` (MinIO, Ceph, a test server),
  else AWS itself, whose region comes from ``?region=``, ``$AWS_REGION`` /
  ``$AWS_DEFAULT_REGION``, or the bucket (``pyarrow.fs.resolve_s3_region``);
- credentials are the SDKs' usual chain (environment, ``~/.aws``, instance role; on GCS the
  application-default credentials); ``?anonymous=true`` reads a public bucket.

The object listing carries what identifies each object's content: its relative name, size
and ETag. pyarrow's listing has no ETag, so on S3 the listing is read with boto3 (the same
one request per 1000 objects, ETags included) when boto3 is installed (the ``cluster`` extra
has it); otherwise, and on GCS, the store's own modification time of each object stands in
for the ETag. Either is the store's value, identical on every node, never a local mtime.
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pyarrow.fs as pafs

from trainables.data.errors import DatasetMissingError

SCHEMES = ("s3", "gs", "gcs")
# Driver checks: answer within seconds or say why. Node copies: patient with a slow store
# (the request timeout is "no byte for this long", not a cap on a whole download).
CHECK = {"connect_timeout": 3.0, "request_timeout": 4.0, "attempts": 2}
COPY = {"connect_timeout": 5.0, "request_timeout": 30.0, "attempts": 4}
_QUERY_KEYS = {"endpoint_override", "scheme", "region", "anonymous"}


class StoreError(DatasetMissingError):
    """A bucket URI cannot be read: one line naming the URI, the reason and what to do."""


def is_uri(root: str | os.PathLike[str] | None) -> bool:
    """True for a URI (``s3://``, ``gs://``; any ``scheme://``); False for a local path."""
    return root is not None and "://" in str(root)


def display(uri: str) -> str:
    """The URI without any ``user:secret@`` part, for messages and data notes."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return uri.replace(parts.netloc, parts.netloc.rsplit("@", 1)[1], 1)


@dataclass(frozen=True)
class RemoteObject:
    """One object under a URI: its path relative to the URI, size, and content version."""

    rel: str
    size: int
    version: str     # the ETag (quoted as the store gives it), or "mtime:<ns>" without one


@dataclass(frozen=True)
class Store:
    """An opened URI: the filesystem, the ``bucket/prefix`` path in it, and how it was reached."""

    uri: str
    fs: pafs.FileSystem
    path: str                      # "bucket/prefix" (no trailing slash)
    scheme: str                    # "s3" or "gs"
    endpoint: str | None           # "http://host:port" when not the provider's own
    region: str | None
    anonymous: bool
    access_key: str | None = None  # from a "key:secret@bucket" URI only
    secret_key: str | None = None
    connect_timeout: float = COPY["connect_timeout"]
    request_timeout: float = COPY["request_timeout"]
    attempts: int = int(COPY["attempts"])

    @property
    def bucket(self) -> str:
        return self.path.split("/", 1)[0]

    @property
    def prefix(self) -> str:
        return self.path.split("/", 1)[1] if "/" in self.path else ""

    @property
    def shown(self) -> str:
        return display(self.uri)

    def object_path(self, rel: str) -> str:
        return f"{self.path}/{rel}" if rel else self.path


def open_store(uri: str, *, connect_timeout: float = COPY["connect_timeout"],
               request_timeout: float = COPY["request_timeout"],
               attempts: int = int(COPY["attempts"])) -> Store:
    """The filesystem for ``uri``, with the waits bounded; StoreError for a URI it cannot use."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise StoreError(f"{display(uri)}: unsupported URI scheme {parts.scheme!r}; use "
                         "s3://bucket/prefix, gs://bucket/prefix or a local path")
    query = dict(parse_qsl(parts.query))
    unknown = sorted(set(query) - _QUERY_KEYS)
    if unknown:
        raise StoreError(f"{display(uri)}: unknown URI option {unknown[0]!r}; the options "
                         f"read are {', '.join(sorted(_QUERY_KEYS))}")
    bucket = parts.hostname or ""
    if parts.netloc and "@" in parts.netloc:
        bucket = parts.netloc.rsplit("@", 1)[1]
    if not bucket:
        raise StoreError(f"{display(uri)}: no bucket in the URI; expected "
                         f"{scheme}://bucket/prefix")
    path = "/".join(p for p in [bucket, *parts.path.split("/")] if p)
    anonymous = query.get("anonymous", "").lower() in ("1", "true", "yes")
    if scheme == "s3":
        return _open_s3(uri, path, query, anonymous, parts.username, parts.password,
                        connect_timeout, request_timeout, attempts)
    endpoint = query.get("endpoint_override")
    fs = pafs.GcsFileSystem(
        anonymous=anonymous, endpoint_override=endpoint, scheme=query.get("scheme"),
        retry_time_limit=datetime.timedelta(seconds=max(1, int(request_timeout * attempts))))
    shown = f"{query.get('scheme', 'https')}://{endpoint}" if endpoint else None
    return Store(uri, fs, path, "gs", shown, None, anonymous, None, None, connect_timeout,
                 request_timeout, attempts)


def _open_s3(uri: str, path: str, query: dict[str, str], anonymous: bool,
             access_key: str | None, secret_key: str | None, connect_timeout: float,
             request_timeout: float, attempts: int) -> Store:
    endpoint, scheme = query.get("endpoint_override"), query.get("scheme")
    if endpoint is None:
        from_env = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if from_env:
            env_parts = urlsplit(from_env if "://" in from_env else f"https://{from_env}")
            endpoint, scheme = env_parts.netloc, scheme or env_parts.scheme
    region = (query.get("region") or os.environ.get("AWS_REGION")
              or os.environ.get("AWS_DEFAULT_REGION"))
    if region is None and endpoint is not None:
        region = "us-east-1"   # S3-compatible stores accept any; the SDK needs one to sign
    if region is None:
        try:
            region = pafs.resolve_s3_region(path.split("/", 1)[0])
        except OSError as err:
            raise classify(err, uri, endpoint=None) from None
    fs = pafs.S3FileSystem(
        access_key=access_key, secret_key=secret_key, anonymous=anonymous, region=region,
        endpoint_override=endpoint, scheme=scheme or "https",
        connect_timeout=connect_timeout, request_timeout=request_timeout,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=attempts))
    shown = f"{scheme or 'https'}://{endpoint}" if endpoint else None
    return Store(uri, fs, path, "s3", shown, region, anonymous, access_key, secret_key,
                 connect_timeout, request_timeout, attempts)


# ------------------------------------------------------------------------------- listing


def list_objects(store: Store) -> list[RemoteObject]:
    """Every object under the URI, sorted by relative name (directory markers left out)."""
    try:
        if store.scheme == "s3" and _has_boto3():
            objects = list(_boto3_listing(store))
        else:
            objects = list(_pyarrow_listing(store))
    except StoreError:
        raise
    except Exception as err:  # pyarrow raises OSError; boto3 its own ClientError family
        raise classify(err, store.uri, endpoint=store.endpoint) from None
    return sorted(objects, key=lambda o: o.rel)


def _has_boto3() -> bool:
    import importlib.util

    return importlib.util.find_spec("boto3") is not None


def _pyarrow_listing(store: Store) -> Iterator[RemoteObject]:
    selector = pafs.FileSelector(store.path, recursive=True, allow_not_found=True)
    for info in store.fs.get_file_info(selector):
        if info.type != pafs.FileType.File:
            continue
        rel = info.path[len(store.path):].lstrip("/")
        version = f"mtime:{info.mtime_ns}" if info.mtime_ns is not None else ""
        yield RemoteObject(rel, int(info.size or 0), version)


def boto3_client(store: Store) -> Any:
    """A boto3 S3 client for the same endpoint, region and credentials as ``store.fs``."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    config = Config(connect_timeout=store.connect_timeout, read_timeout=store.request_timeout,
                    retries={"total_max_attempts": store.attempts, "mode": "standard"},
                    signature_version=UNSIGNED if store.anonymous else None)
    # A fresh session: boto3's default one keeps the credentials it found first, and a
    # worker process outlives many trials (and a rotated key).
    return boto3.session.Session().client(
        "s3", endpoint_url=store.endpoint, region_name=store.region,
        aws_access_key_id=store.access_key, aws_secret_access_key=store.secret_key,
        config=config)


def _boto3_listing(store: Store) -> Iterator[RemoteObject]:
    prefix = f"{store.prefix}/" if store.prefix else ""
    pages = boto3_client(store).get_paginator("list_objects_v2").paginate(
        Bucket=store.bucket, Prefix=prefix)
    for page in pages:
        for item in page.get("Contents", []):
            key = item["Key"]
            if key.endswith("/"):
                continue  # a "folder" marker some tools write; not a file
            yield RemoteObject(key[len(prefix):], int(item["Size"]), item.get("ETag", ""))


# -------------------------------------------------------------------------------- errors


_NO_TOKEN = re.compile(r"OAuth2 access token|Unable to locate credentials|NoCredentialsError",
                       re.IGNORECASE)
_UNREACHABLE = re.compile(r"NETWORK_CONNECTION|curlCode|Could not (connect|resolve)|"
                          r"Timeout|timed out|EndpointConnectionError|Connection refused|"
                          r"ConnectTimeout|ReadTimeout", re.IGNORECASE)
_NO_BUCKET = re.compile(r"NO_SUCH_BUCKET|NoSuchBucket|bucket does not exist|"
                        r"Bucket '[^']*' not found", re.IGNORECASE)
_DENIED = re.compile(r"ACCESS_DENIED|AccessDenied|INVALID_ACCESS_KEY_ID|InvalidAccessKeyId|"
                     r"SIGNATURE_DOES_NOT_MATCH|SignatureDoesNotMatch|HTTP status 40[13]|"
                     r"Forbidden|PERMISSION_DENIED|Unauthenticated", re.IGNORECASE)


def classify(err: BaseException, uri: str, *, endpoint: str | None) -> StoreError:
    """The one-line error for a failed request: unreachable endpoint, missing bucket,
    missing or refused credentials, or (otherwise) the store's first line."""
    text = " ".join(str(err).split()) or type(err).__name__
    shown = display(uri)
    scheme = urlsplit(uri).scheme.lower()
    where = endpoint or ("Google Cloud Storage" if scheme != "s3" else "AWS S3")
    if _NO_TOKEN.search(text):  # the SDK found no credentials to sign with
        return StoreError(f"{shown}: no credentials found on this machine ({_gist(text)}); "
                          f"{_credential_fix(scheme)}")
    if _UNREACHABLE.search(text):
        env = "$AWS_ENDPOINT_URL or " if scheme == "s3" else ""
        fix = (f"check {env}the URI's ?endpoint_override=HOST:PORT&scheme=http, and that the "
               "server is up" if endpoint else "check this machine's network")
        return StoreError(f"{shown}: cannot reach {where} ({_gist(text)}); {fix}")
    if _NO_BUCKET.search(text):
        bucket = urlsplit(uri).netloc.rsplit("@", 1)[-1]
        return StoreError(f"{shown}: bucket {bucket!r} does not exist at {where}; check the "
                          "name (and the endpoint), or create it and upload the data")
    # Refused or failed otherwise: whether this machine has credentials at all decides the
    # advice (an unsigned request to a private bucket fails in store-specific ways).
    found = "anonymous access" if _anonymous(uri) else credentials_source(scheme)
    if found is None:
        return StoreError(f"{shown}: no credentials found on this machine ({_gist(text)}); "
                          f"{_credential_fix(scheme)}")
    if _DENIED.search(text):
        return StoreError(f"{shown}: access denied with the credentials from {found} "
                          f"({_gist(text)}); check them and the bucket's policy")
    return StoreError(f"{shown}: cannot read it ({_gist(text)})")


def _gist(text: str, limit: int = 160) -> str:
    """The informative end of pyarrow's and boto3's long messages."""
    for marker in ("Details: ", "AWS Error "):
        if marker in text:
            text = text.split(marker, 1)[1]
            break
    text = re.sub(r"\s*\(Request ID: [^)]*\)", "", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _anonymous(uri: str) -> bool:
    return dict(parse_qsl(urlsplit(uri).query)).get("anonymous", "").lower() in (
        "1", "true", "yes")


def _credential_fix(scheme: str) -> str:
    if scheme == "s3":
        return ("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or give the "
                "node an instance role (add ?anonymous=true for a public bucket)")
    return ("set GOOGLE_APPLICATION_CREDENTIALS or give the node a service account (add "
            "?anonymous=true for a public bucket)")


def credentials_source(scheme: str = "s3") -> str | None:
    """Where this machine's credentials for ``scheme`` come from, or None when it has none.

    Asked only after a request failed, to tell "no credentials" from "wrong credentials".
    """
    checks: list[tuple[str, Callable[[], bool]]]
    if scheme == "s3":
        home = Path.home() / ".aws"
        checks = [
            ("$AWS_ACCESS_KEY_ID", lambda: bool(os.environ.get("AWS_ACCESS_KEY_ID"))),
            ("$AWS_PROFILE", lambda: bool(os.environ.get("AWS_PROFILE"))),
            ("$AWS_WEB_IDENTITY_TOKEN_FILE",
             lambda: bool(os.environ.get("AWS_WEB_IDENTITY_TOKEN_FILE"))),
            ("the container's credentials endpoint", lambda: bool(
                os.environ.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
                or os.environ.get("AWS_CONTAINER_CREDENTIALS_FULL_URI"))),
            ("~/.aws/credentials", lambda: Path(os.environ.get(
                "AWS_SHARED_CREDENTIALS_FILE", home / "credentials")).is_file()),
            ("~/.aws/config", lambda: Path(os.environ.get(
                "AWS_CONFIG_FILE", home / "config")).is_file()),
            ("the instance role", _instance_role),
        ]
    else:
        checks = [
            ("$GOOGLE_APPLICATION_CREDENTIALS",
             lambda: bool(os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"))),
            ("gcloud's application-default credentials", lambda: (
                Path.home() / ".config/gcloud/application_default_credentials.json").is_file()),
        ]
    for name, present in checks:
        if present():
            return name
    return None


def _instance_role() -> bool:
    """Whether EC2's metadata service hands this machine a role (boto3 asks with 1 s waits)."""
    if os.environ.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true" or not _has_boto3():
        return False
    import boto3

    try:
        return boto3.Session().get_credentials() is not None
    except Exception:
        return False
