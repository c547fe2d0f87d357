"""Objects in this process's memory: the storage double for tests (``memory://``).

It keeps the contract the real backends keep (tests/storage/test_contract.py runs on
it too): the same errors for a missing key or a refused key, whole-object writes, a
version tag that changes with every write and survives a move, sorted listings. What
it cannot do, it does not pretend to: no presigned URLs (the API then streams bytes,
as for local files). Not for production: nothing survives the process, and each
instance is its own store, so processes that must see the same objects share one
instance, never a URL.

``outage`` makes every call fail as an unreachable backend would, for tests of what
callers do then.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from imagepipe.storage.base import (
    HandleReader,
    ObjectInfo,
    ObjectNotFound,
    Storage,
    StorageError,
    check_version,
    validate_prefix,
)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _Object:
    data: bytes
    info: ObjectInfo
    content_type: str


class MemoryStorage(Storage):
    scheme = "memory"

    def __init__(self, *, clock: Callable[[], datetime] = _now) -> None:
        # ``clock`` stamps ``modified``: a test of age-based work moves it.
        self._clock = clock
        self._objects: dict[str, _Object] = {}
        self._versions = itertools.count(1)
        # Writers and readers come from threads (async code calls storage through
        # anyio.to_thread): every look at or change to the dict holds this.
        self._lock = threading.Lock()
        self.outage: StorageError | None = None

    def __repr__(self) -> str:
        return f"MemoryStorage({len(self._objects)} objects)"

    def _checked(self, key: str) -> str:
        self._answer()
        # The S3 backend's rule, which local files also refuse: no empty key, no
        # folder, nothing absolute.
        if not key or key.endswith("/") or key.startswith("/"):
            raise ValueError(f"invalid storage key: {key!r}")
        return key

    def _answer(self) -> None:
        if self.outage is not None:
            raise self.outage

    def _get(self, key: str) -> _Object:
        with self._lock:
            stored = self._objects.get(self._checked(key))
        if stored is None:
            raise ObjectNotFound(f"no object {key!r}")
        return stored

    def _store(self, key: str, data: bytes, content_type: str | None) -> ObjectInfo:
        with self._lock:
            info = ObjectInfo(
                key=key,
                size=len(data),
                # A fresh tag per write (as a new mtime locally): never a content hash.
                etag=f"{len(data):x}-{next(self._versions):x}",
                modified=self._clock(),
            )
            self._objects[key] = _Object(data, info, content_type or "application/octet-stream")
        return info

    # --- writing -----------------------------------------------------------------

    def put_file(self, key: str, path: Path, *, content_type: str | None = None) -> None:
        self._checked(key)
        self._store(key, path.read_bytes(), content_type)

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        self._checked(key)
        self._store(key, bytes(data), content_type)

    # --- reading -----------------------------------------------------------------

    def open(self, key: str) -> HandleReader:
        # The bytes as of opening: a write after this does not change what is read.
        stored = self._get(key)
        return HandleReader(io.BytesIO(stored.data), stored.info)

    def open_seekable(
        self, key: str, *, etag: str | None = None
    ) -> contextlib.AbstractContextManager[BinaryIO]:
        stored = self._get(key)
        check_version(stored.info, etag)
        return contextlib.closing(io.BytesIO(stored.data))

    def read_range(self, key: str, start: int, length: int) -> bytes:
        if start < 0:
            raise ValueError(f"a range starts at 0 or later: {start}")
        data = self._get(key).data
        return data[start : start + length] if length > 0 else b""

    def stat(self, key: str) -> ObjectInfo:
        return self._get(key).info

    def content_type(self, key: str) -> str:
        """The type it was stored with (tests of what a write declared)."""
        return self._get(key).content_type

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        self._answer()
        with self._lock:
            found = [o.info for k, o in self._objects.items() if k.startswith(prefix)]
        yield from sorted(found, key=lambda info: info.key)

    # --- copying and moving -------------------------------------------------------

    def copy(self, source: str, target: str) -> ObjectInfo:
        stored = self._get(source)
        self._checked(target)
        return self._store(target, stored.data, stored.content_type)

    def move(self, source: str, target: str) -> ObjectInfo:
        """A rename, as on local files: the object keeps its version tag."""
        self._checked(source)
        self._checked(target)
        with self._lock:
            stored = self._objects.pop(source, None)
            if stored is None:
                raise ObjectNotFound(f"no object {source!r}")
            moved = replace(stored, info=replace(stored.info, key=target))
            self._objects[target] = moved
        return moved.info

    # --- deleting ----------------------------------------------------------------

    def delete(self, key: str) -> None:
        self._checked(key)
        with self._lock:
            self._objects.pop(key, None)

    def delete_prefix(self, prefix: str) -> int:
        validate_prefix(prefix)
        if not prefix:
            raise ValueError("refusing to delete every object")
        self._answer()
        with self._lock:
            doomed = [key for key in self._objects if key.startswith(prefix)]
            for key in doomed:
                del self._objects[key]
        return len(doomed)

    # --- housekeeping ------------------------------------------------------------

    def check(self) -> None:
        self._answer()
