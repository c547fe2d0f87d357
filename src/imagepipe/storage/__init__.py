"""Where originals and variants live: objects under keys, on local files or S3.

``open_storage(settings)`` is the one place that turns ``IMAGEPIPE_STORAGE_URL`` into a
backend; ``keys`` is the one place that spells the key layout. ``memory://`` (through
``open_storage_url``) is the in-process double that tests use.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from imagepipe.config import Settings
from imagepipe.storage import keys
from imagepipe.storage.base import (
    ObjectChanged,
    ObjectInfo,
    ObjectNotFound,
    ObjectReader,
    PresignedRequest,
    Storage,
    StorageError,
    StorageUnavailable,
)
from imagepipe.storage.local import LocalStorage
from imagepipe.storage.memory import MemoryStorage

__all__ = [
    "LocalStorage",
    "MemoryStorage",
    "ObjectChanged",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectReader",
    "PresignedRequest",
    "Storage",
    "StorageError",
    "StorageUnavailable",
    "keys",
    "open_storage",
    "open_storage_url",
]


def open_storage(settings: Settings) -> Storage:
    """The backend named by the settings' storage URL (``file://`` or ``s3://``)."""
    return open_storage_url(settings.resolved_storage_url, settings)


def open_storage_url(storage_url: str, settings: Settings) -> Storage:
    """The backend named by ``storage_url``, with the settings' S3 options. Besides
    the settings' schemes: ``memory://``, a fresh empty in-process store (tests)."""
    url = urlsplit(storage_url)
    if url.scheme == "memory":
        return MemoryStorage()
    if url.scheme == "file":
        return LocalStorage(Path(unquote(url.path)))
    if url.scheme == "s3":
        # Imported here: boto3 takes a noticeable time to import, and local-only
        # processes (imagepipe dev) never need it.
        from imagepipe.storage.s3 import S3Options, S3Storage

        return S3Storage(
            S3Options(
                bucket=url.netloc,
                prefix=unquote(url.path),
                endpoint_url=settings.s3_endpoint_url,
                public_endpoint_url=settings.s3_public_endpoint_url,
                connect_timeout=settings.s3_connect_timeout_seconds,
                read_timeout=settings.s3_read_timeout_seconds,
                max_attempts=settings.s3_max_attempts,
            )
        )
    raise ValueError(f"unsupported storage URL scheme: {url.scheme!r}")
