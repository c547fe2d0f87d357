"""The storage interface: objects under string keys, read as streams, never as paths.

    OSError
    └── StorageError              anything the backend could not do
        ├── StorageUnavailable    unreachable, timed out, refused: transient, retry later
        └── ObjectNotFound        (also a FileNotFoundError) no object under that key
    ObjectChanged                 the key holds another version than the one expected

Errors are OSErrors on purpose: the API already answers an OSError with 503 and the
worker already retries one, so a backend that fails behaves like a disk that fails.
``ObjectNotFound`` is the exception: retrying cannot make a missing object appear.
Nor can it bring a replaced object back, so ``ObjectChanged`` is no OSError at all.

Every method blocks. Async code calls them through ``anyio.to_thread``.
"""

from __future__ import annotations

import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol, cast

COPY_CHUNK = 1024 * 1024
# Originals up to this size are downloaded into memory rather than a temp file.
IN_MEMORY_DOWNLOAD = 16 * 1024 * 1024


class StorageError(OSError):
    """The backend could not do what was asked."""


class StorageUnavailable(StorageError):
    """The backend did not answer in time, or refused: worth another try later."""


class ObjectNotFound(StorageError, FileNotFoundError):
    """No object under this key."""


class ObjectChanged(Exception):
    """The object under a key is not the version the caller expected (its version tag
    differs): it was replaced since that tag was read."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    # The backend's own version tag (S3 ETag; size + mtime locally): changes when the
    # bytes may have changed. Not a content hash.
    etag: str
    modified: datetime


@dataclass(frozen=True)
class PresignedRequest:
    """An HTTP request a client may make without our credentials, until it expires."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)


class ObjectReader(Protocol):
    """An open object: its metadata as of opening, then its bytes in order."""

    @property
    def info(self) -> ObjectInfo: ...

    def read(self, size: int = -1) -> bytes: ...

    def close(self) -> None: ...


class HandleReader:
    """An ObjectReader over a file-like handle the backend opened (a local file, bytes
    in memory): the handle stays reachable for backends that seek in it."""

    def __init__(self, handle: BinaryIO, info: ObjectInfo) -> None:
        self.handle = handle
        self._info = info

    @property
    def info(self) -> ObjectInfo:
        return self._info

    def read(self, size: int = -1) -> bytes:
        return self.handle.read(size)

    def close(self) -> None:
        self.handle.close()


class Storage(ABC):
    """Objects under keys (see ``keys``); blocking, call from a thread in async code."""

    scheme: str

    # --- writing -----------------------------------------------------------------

    @abstractmethod
    def put_file(self, key: str, path: Path, *, content_type: str | None = None) -> None:
        """Store the file at ``path`` under ``key``, atomically (a reader sees the old
        object or the new one, never a mix). ``path`` may be moved away: the caller
        removes it afterwards only if it still exists."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        """Store ``data`` under ``key``, atomically."""

    # --- reading -----------------------------------------------------------------

    @abstractmethod
    def open(self, key: str) -> ObjectReader:
        """Open ``key`` for streaming. Raises ObjectNotFound. The caller closes it."""

    @abstractmethod
    def read_range(self, key: str, start: int, length: int) -> bytes:
        """Up to ``length`` bytes from offset ``start`` (fewer at the end of the object)."""

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Size, version tag and modification time. Raises ObjectNotFound."""

    @abstractmethod
    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (``""`` or ending in ``/``)."""

    def open_seekable(
        self, key: str, *, etag: str | None = None
    ) -> AbstractContextManager[BinaryIO]:
        """The object as a seekable local file (decoders seek). With ``etag``, only the
        version with that tag: ObjectChanged if the key holds another one. The default
        copies it to an anonymous temp file; a backend with local files hands out its
        own."""
        return self._downloaded(key, etag)

    @contextmanager
    def _downloaded(self, key: str, etag: str | None = None) -> Iterator[BinaryIO]:
        reader = self.open(key)
        try:
            # The tag of the bytes being read (from the same response), not of a look
            # taken before: a replacement in between cannot slip through.
            check_version(reader.info, etag)
            # In memory up to a camera photo's size (no file written, then read back);
            # a larger original spills to an anonymous temp file.
            with tempfile.SpooledTemporaryFile(max_size=IN_MEMORY_DOWNLOAD) as local:
                shutil.copyfileobj(reader, local, COPY_CHUNK)
                local.seek(0)
                reader.close()
                yield cast(BinaryIO, local)
        finally:
            reader.close()

    # --- copying and moving -------------------------------------------------------

    def copy(self, source: str, target: str) -> ObjectInfo:
        """Store the bytes of ``source`` under ``target`` too (atomically, as ``put_file``)
        and return the target's info. Raises ObjectNotFound if ``source`` is missing.
        The default streams them through this process; a backend that can copy on the
        server side does."""
        temp = self.local_temp()
        try:
            reader = self.open(source)
            try:
                with temp.open("wb") as local:
                    shutil.copyfileobj(reader, local, COPY_CHUNK)
            finally:
                reader.close()
            self.put_file(target, temp)
        finally:
            temp.unlink(missing_ok=True)
        return self.stat(target)

    def move(self, source: str, target: str) -> ObjectInfo:
        """Move ``source`` to ``target`` and return the target's info: a copy, then the
        source deleted (a backend with renames renames). Raises ObjectNotFound if
        ``source`` is missing."""
        info = self.copy(source, target)
        self.delete(source)
        return info

    # --- deleting ----------------------------------------------------------------

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is fine."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Remove every object under ``prefix`` (ending in ``/``); returns how many."""

    # --- handing out URLs --------------------------------------------------------

    def presign_get(self, key: str, *, expires_seconds: int) -> str | None:
        """A URL anyone may GET ``key`` from until it expires; None if the backend
        cannot make one (the API then streams the bytes itself)."""
        return None

    def presign_put(
        self, key: str, *, content_type: str, content_length: int, expires_seconds: int
    ) -> PresignedRequest | None:
        """A request that stores exactly ``content_length`` bytes under ``key``; None if
        the backend cannot make one."""
        return None

    # --- housekeeping ------------------------------------------------------------

    def local_temp(self) -> Path:
        """A fresh local temp file to receive bytes into before ``put_file``. Local
        backends place it on their own filesystem, so ``put_file`` is a rename."""
        handle = tempfile.NamedTemporaryFile(prefix="imagepipe-", delete=False)  # noqa: SIM115
        handle.close()
        return Path(handle.name)

    def temp_free_bytes(self) -> int:
        """Free bytes where ``local_temp`` files are made (and, for a local backend,
        where objects are stored): an upload is refused before its bytes if too few."""
        return shutil.disk_usage(tempfile.gettempdir()).free

    def sweep_temp(self, older_than_seconds: float) -> int:
        """Remove the backend's own temp objects left by killed writers; returns how
        many. Backends whose writes cannot leave any do nothing."""
        return 0

    @abstractmethod
    def check(self) -> None:
        """Raise StorageError unless the backend answers now (readiness)."""

    def close(self) -> None:
        """Release connections (pools, sessions). The default holds none."""
        return


def validate_prefix(prefix: str) -> str:
    if prefix and not prefix.endswith("/"):
        raise ValueError(f"a prefix ends with '/': {prefix!r}")
    return prefix


def check_version(info: ObjectInfo, etag: str | None) -> None:
    """Raise ObjectChanged unless ``info`` is the version tagged ``etag`` (None: any)."""
    if etag is not None and info.etag != etag:
        raise ObjectChanged(f"{info.key!r} was replaced (expected version {etag!r})")
