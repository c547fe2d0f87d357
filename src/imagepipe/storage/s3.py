"""Objects in an S3-compatible bucket (AWS, SeaweedFS, MinIO, Ceph, R2…), through boto3.

Why boto3 (measured in docs/scaling.md, "Storage client"): presigned GET and PUT, typed
stubs, and a retry/timeout policy the operator can reason about. Every call is bounded:
a connect timeout, a read timeout per socket read, and a fixed number of attempts with
backoff ("standard" retry mode), so a slow or absent S3 turns into StorageUnavailable
within a known time instead of a hung request or worker.

A single PUT is atomic in S3 (a reader sees the old object or the new one), so no temp
objects exist and nothing needs sweeping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from urllib3.exceptions import HTTPError as Urllib3Error

from imagepipe.storage.base import (
    ObjectInfo,
    ObjectNotFound,
    PresignedRequest,
    Storage,
    StorageError,
    StorageUnavailable,
    validate_prefix,
)

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

_MISSING = {"404", "NoSuchKey", "NotFound"}
_DELETE_BATCH = 1000  # DeleteObjects takes at most this many keys


@dataclass(frozen=True)
class S3Options:
    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    # Where clients reach the same server; presigned URLs name it (None: endpoint_url).
    public_endpoint_url: str | None = None
    region: str | None = None
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    max_attempts: int = 3
    max_connections: int = 32


def _raise(error: Exception, key: str) -> NoReturn:
    """Map a client error to the storage error tree (see base)."""
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _MISSING or status == 404:
            raise ObjectNotFound(f"no object {key!r}") from None
        if status >= 500 or code in {"SlowDown", "RequestTimeout", "ServiceUnavailable"}:
            raise StorageUnavailable(f"S3 answered {status} {code} for {key!r}") from error
        raise StorageError(f"S3 refused {key!r}: {status} {code}") from error
    # Connection refused, DNS, timeouts, a connection cut mid-body.
    raise StorageUnavailable(f"S3 unreachable for {key!r}: {type(error).__name__}") from error


_CLIENT_ERRORS = (BotoCoreError, ClientError, Urllib3Error)


class _BodyReader:
    def __init__(self, body: Any, info: ObjectInfo) -> None:
        self._body = body
        self._info = info

    @property
    def info(self) -> ObjectInfo:
        return self._info

    def read(self, size: int = -1) -> bytes:
        try:
            data: bytes = self._body.read(None if size < 0 else size)
        except _CLIENT_ERRORS as error:
            _raise(error, self._info.key)
        return data

    def close(self) -> None:
        self._body.close()


class S3Storage(Storage):
    scheme = "s3"

    def __init__(self, options: S3Options) -> None:
        self.options = options
        self.bucket = options.bucket
        self._prefix = f"{options.prefix.strip('/')}/" if options.prefix.strip("/") else ""
        region = options.region or os.environ.get("AWS_REGION") or "us-east-1"
        config = Config(
            connect_timeout=options.connect_timeout,
            read_timeout=options.read_timeout,
            retries={"mode": "standard", "total_max_attempts": options.max_attempts},
            max_pool_connections=options.max_connections,
            signature_version="s3v4",
            # Path-style works on every S3-compatible server; virtual hosts need DNS.
            s3={"addressing_style": "path"},
            # Checksums only where S3 requires them: servers other than AWS differ on
            # the newer trailing-checksum encodings.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        # A session per storage: boto3's default session is not thread-safe to create
        # clients from; the client itself is.
        session = boto3.session.Session(region_name=region)
        self.client: S3Client = session.client(
            "s3", endpoint_url=options.endpoint_url or None, config=config
        )
        # Presigning is local (no request is sent), but the URL's host is signed: a
        # URL for clients must be made by a client of the endpoint they reach.
        public = options.public_endpoint_url or None
        self._presigner: S3Client = (
            session.client("s3", endpoint_url=public, config=config) if public else self.client
        )

    def __repr__(self) -> str:
        return f"S3Storage(s3://{self.bucket}/{self._prefix})"

    def _key(self, key: str) -> str:
        if not key or key.endswith("/") or key.startswith("/"):
            raise ValueError(f"invalid storage key: {key!r}")
        return self._prefix + key

    def _info(self, key: str, response: Any, size_field: str = "ContentLength") -> ObjectInfo:
        return ObjectInfo(
            key=key,
            size=int(response[size_field]),
            etag=str(response.get("ETag", "")).strip('"'),
            modified=response["LastModified"],
        )

    # --- writing -----------------------------------------------------------------

    def put_file(self, key: str, path: Path, *, content_type: str | None = None) -> None:
        with path.open("rb") as body:
            self._put(key, body, path.stat().st_size, content_type)

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        self._put(key, data, len(data), content_type)

    def _put(self, key: str, body: Any, size: int, content_type: str | None) -> None:
        try:
            # One PUT (no multipart): atomic, and our objects stay far below 5 GB.
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=body,
                ContentLength=size,
                ContentType=content_type or "application/octet-stream",
            )
        except _CLIENT_ERRORS as error:
            _raise(error, key)

    # --- reading -----------------------------------------------------------------

    def open(self, key: str) -> _BodyReader:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except _CLIENT_ERRORS as error:
            _raise(error, key)
        return _BodyReader(response["Body"], self._info(key, response))

    def read_range(self, key: str, start: int, length: int) -> bytes:
        if length <= 0:
            self.stat(key)
            return b""
        try:
            response = self.client.get_object(
                Bucket=self.bucket, Key=self._key(key), Range=f"bytes={start}-{start + length - 1}"
            )
            data: bytes = response["Body"].read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "InvalidRange":
                self.stat(key)  # past the end of an existing object, or missing
                return b""
            _raise(error, key)
        except _CLIENT_ERRORS as error:
            _raise(error, key)
        return data

    def stat(self, key: str) -> ObjectInfo:
        try:
            response = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except _CLIENT_ERRORS as error:
            _raise(error, key)
        return self._info(key, response)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._prefix + prefix):
                for item in page.get("Contents", []):
                    key = item["Key"][len(self._prefix) :]
                    yield self._info(key, item, size_field="Size")
        except _CLIENT_ERRORS as error:
            _raise(error, prefix)

    # --- copying and moving -------------------------------------------------------

    def copy(self, source: str, target: str) -> ObjectInfo:
        # On the server (CopyObject): the bytes never pass through this process. One
        # request, as one PUT: atomic, and our objects stay far below its 5 GB limit.
        try:
            self.client.copy_object(
                Bucket=self.bucket,
                Key=self._key(target),
                CopySource={"Bucket": self.bucket, "Key": self._key(source)},
            )
        except _CLIENT_ERRORS as error:
            _raise(error, source)
        return self.stat(target)

    # --- deleting ----------------------------------------------------------------

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except _CLIENT_ERRORS as error:
            try:
                _raise(error, key)
            except ObjectNotFound:
                return

    def delete_prefix(self, prefix: str) -> int:
        validate_prefix(prefix)
        if not prefix:
            raise ValueError("refusing to delete every object")
        found = [self._key(info.key) for info in self.list(prefix)]
        for start in range(0, len(found), _DELETE_BATCH):
            batch = found[start : start + _DELETE_BATCH]
            try:
                response = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )
            except _CLIENT_ERRORS as error:
                _raise(error, prefix)
            if errors := response.get("Errors"):
                raise StorageError(f"could not delete {len(errors)} objects under {prefix!r}")
        return len(found)

    # --- handing out URLs --------------------------------------------------------

    def presign_get(self, key: str, *, expires_seconds: int) -> str | None:
        url: str = self._presigner.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self._key(key)},
            ExpiresIn=expires_seconds,
        )
        return url

    def presign_put(
        self, key: str, *, content_type: str, content_length: int, expires_seconds: int
    ) -> PresignedRequest | None:
        # Content-Type and Content-Length are signed: a client cannot send more bytes
        # or another type than were declared.
        url = self._presigner.generate_presigned_url(
            "put_object",
            Params={
                "Bucket": self.bucket,
                "Key": self._key(key),
                "ContentType": content_type,
                "ContentLength": content_length,
            },
            ExpiresIn=expires_seconds,
        )
        headers = {"Content-Type": content_type, "Content-Length": str(content_length)}
        return PresignedRequest(method="PUT", url=url, headers=headers)

    # --- housekeeping ------------------------------------------------------------

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except _CLIENT_ERRORS as error:
            _raise(error, f"bucket {self.bucket}")

    def close(self) -> None:
        self.client.close()
        if self._presigner is not self.client:
            self._presigner.close()
