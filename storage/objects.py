"""The object store: raw documents, packets and manifests, by content hash under the case.

One interface, two backends:

- :class:`LocalObjectStore` — a folder (``file://./var/objects``), the embedded default.
  Writes go to a temporary file, flushed to disk (``fsync``) and renamed into place, so a
  crash never leaves half an object under its final name. ``fsync=False`` skips the flush
  for a folder that is scratch (a simulation's run): a crashed process still leaves whole
  objects, but an OS crash or power cut may leave the newest ones empty or partial.
- :class:`S3ObjectStore` — a bucket and prefix (``s3://bucket/prefix``) on AWS S3, MinIO or moto;
  server-side encryption is on by default.

Keys are content-addressed (``cases/<case_id>/<kind>/<sha256>.<ext>``): writing the same bytes
twice is harmless, and what was delivered can be verified against its manifest forever.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse


class ObjectStoreError(Exception):
    """An object could not be written or read. The message names the URI."""


class ObjectNotFound(ObjectStoreError):
    pass


class ObjectStore(Protocol):
    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Store ``data`` under ``key``; returns the object's URI."""
        ...

    def get(self, uri: str) -> bytes:
        """Read an object by the URI ``put`` returned. Raises ObjectNotFound."""
        ...

    def local_path(self, uri: str) -> Path | None:
        """The file behind ``uri`` when the store is a local folder, else None."""
        ...


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_key(case_id: str, kind: str, data: bytes, ext: str) -> str:
    """``cases/<case_id>/<kind>/<sha256>.<ext>``."""
    return f"cases/{case_id}/{kind}/{sha256_hex(data)}.{ext}"


class LocalObjectStore:
    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root.resolve()
        self.fsync = fsync  # flush each object to disk before it is renamed into place

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise ObjectStoreError(f"key escapes the store: {key!r}")
        return path

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                if self.fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path.as_uri()

    def get(self, uri: str) -> bytes:
        path = self.local_path(uri)
        if path is None:
            raise ObjectStoreError(f"not a file:// URI: {uri}")
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise ObjectNotFound(uri) from exc

    def local_path(self, uri: str) -> Path | None:
        return file_uri_path(uri)


class S3ObjectStore:
    def __init__(self, client: Any, bucket: str, prefix: str = "", sse: str | None = "AES256"):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.sse = sse

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        full = self._key(key)
        extra: dict[str, Any] = {"ContentType": content_type}
        if self.sse:
            extra["ServerSideEncryption"] = self.sse
        try:
            self.client.put_object(Bucket=self.bucket, Key=full, Body=data, **extra)
        except Exception as exc:  # botocore's errors: translate at the boundary
            raise ObjectStoreError(f"could not write s3://{self.bucket}/{full}: {exc}") from exc
        return f"s3://{self.bucket}/{full}"

    def get(self, uri: str) -> bytes:
        return read_s3(self.client, uri)

    def local_path(self, uri: str) -> Path | None:
        return None


def file_uri_path(uri: str) -> Path | None:
    """The path of a ``file://`` URI; ``file://./rel`` is relative to the working folder."""
    if not uri.startswith("file://"):
        return None
    rest = uri[len("file://") :]
    if rest.startswith("./") or rest.startswith("../"):
        return Path(rest).resolve()
    return Path(urlparse(uri).path)


def read_s3(client: Any, uri: str) -> bytes:
    parsed = urlparse(uri)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    try:
        obj = client.get_object(Bucket=bucket, Key=key)
        data: bytes = obj["Body"].read()
        return data
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        if code in ("NoSuchKey", "404", "NoSuchBucket"):
            raise ObjectNotFound(uri) from exc
        raise ObjectStoreError(f"could not read {uri}: {exc}") from exc


def make_s3_client(
    endpoint_url: str | None,
    region: str,
    *,
    max_pool_connections: int = 10,
    retry_mode: str = "standard",
    max_attempts: int = 5,
) -> Any:
    """The process's S3 client (boto3 clients are thread-safe: one serves every thread). Its
    pool holds ``max_pool_connections`` HTTP connections: fewer than the threads using it and
    the extra threads open and discard a connection on each call. Retries are explicit:
    ``retry_mode`` "standard" or "adaptive", ``max_attempts`` tries in all."""
    import boto3
    from botocore.config import Config

    config = Config(
        max_pool_connections=max_pool_connections,
        retries={"mode": retry_mode, "total_max_attempts": max_attempts},  # first one included
    )
    return boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


def open_store(
    url: str, *, s3_client: Any = None, sse: str | None = "AES256", fsync: bool = True
) -> ObjectStore:
    """The store named by ``url`` (``file://...`` or ``s3://bucket/prefix``); ``fsync``: a
    folder's writes are flushed to disk (S3 is durable on its own)."""
    if url.startswith("file://"):
        path = file_uri_path(url)
        assert path is not None
        return LocalObjectStore(path, fsync=fsync)
    if url.startswith("s3://"):
        parsed = urlparse(url)
        if s3_client is None:
            raise ObjectStoreError("an s3:// store needs an S3 client (see worker/wiring.py)")
        return S3ObjectStore(s3_client, parsed.netloc, parsed.path, sse)
    raise ObjectStoreError(
        f"unknown object store URL {url!r}: use file://... or s3://bucket/prefix"
    )


class UriReader:
    """Reads ``file://`` and ``s3://`` URIs (EOCs, authorizations, our own objects)."""

    def __init__(self, s3_client: Any = None) -> None:
        self.s3_client = s3_client

    def read(self, uri: str) -> bytes:
        if uri.startswith("file://"):
            path = file_uri_path(uri)
            assert path is not None
            try:
                return path.read_bytes()
            except FileNotFoundError as exc:
                raise ObjectNotFound(uri) from exc
        if uri.startswith("s3://"):
            if self.s3_client is None:
                raise ObjectStoreError(f"no S3 client configured to read {uri}")
            return read_s3(self.s3_client, uri)
        raise ObjectStoreError(f"unsupported URI scheme: {uri!r} (use file:// or s3://)")

    def exists(self, uri: str) -> bool:
        try:
            self.read(uri)
        except ObjectNotFound:
            return False
        return True
