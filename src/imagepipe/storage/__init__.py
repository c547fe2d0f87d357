"""Where originals and variants live: objects under keys, on local files or S3.

``open_storage(settings)`` is the one place that turns ``IMAGEPIPE_STORAGE_URL`` into a
backend; ``keys`` is the one place that spells the key layout.
"""

from __future__ import annotations

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

__all__ = [
    "LocalStorage",
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
]


def open_storage(settings: Settings) -> Storage:
    """The backend named by the settings' storage URL (``file://`` or ``s3://``)."""
    url = urlsplit(settings.resolved_storage_url)
    if url.scheme == "file":
        return LocalStorage(settings.resolved_storage_root)
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
