"""A seekable, read-only view of a stored object that fetches byte ranges on demand.

Checking a direct upload reads its header: a few kilobytes of a JPEG, more only for
formats whose frames must be counted. Through this view the API reads those ranges
(one ranged GET each on S3) instead of downloading the whole object, so the upload's
bytes stay off the API.
"""

from __future__ import annotations

import io

from imagepipe.storage.base import Storage, StorageError

# Bytes fetched per range request: a whole header in one request for common formats.
RANGE_BYTES = 256 * 1024


class _Ranges(io.RawIOBase):
    def __init__(self, storage: Storage, key: str, size: int) -> None:
        self._storage = storage
        self._key = key
        self._size = size
        self._position = 0
        self.failure: StorageError | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        wanted = min(len(buffer), self._size - self._position)
        if wanted <= 0:
            return 0
        try:
            data = self._storage.read_range(self._key, self._position, wanted)
        except StorageError as error:
            # Kept: a decoder that reads through this file sees an OSError like any
            # damaged file and may call the image invalid; the caller asks ``failure``.
            self.failure = error
            raise
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)


class RangedFile(io.BufferedReader):
    """A stored object as a seekable file read by ranges (``open_ranged``)."""

    raw: _Ranges

    @property
    def failure(self) -> StorageError | None:
        """The storage error a read met, if any: whatever a reader concluded about the
        bytes after it (say, a probe calling the image invalid) is then not to be
        trusted."""
        return self.raw.failure


def open_ranged(storage: Storage, key: str, size: int) -> RangedFile:
    """``key`` (of ``size`` bytes, from ``stat``) as a seekable file that reads through
    ``storage.read_range`` in blocks of ``RANGE_BYTES``. Blocking: call from a thread."""
    return RangedFile(_Ranges(storage, key, size), buffer_size=RANGE_BYTES)
