"""A seekable, read-only view of a stored object that fetches byte ranges on demand.

Checking a direct upload reads its header: a few kilobytes of a JPEG, more only for
formats whose frames must be counted. Through this view the API reads those ranges
(one ranged GET each on S3) instead of downloading the whole object, so the upload's
bytes stay off the API.

What a check may cost is bounded, whatever the file: the view fetches aligned blocks
and keeps the last few, so a reader that goes back and forth (a TIFF page chain, tag
data far from its page) fetches each of them once; and it fetches at most the object's
size plus ``READ_SLACK_BYTES`` in all. A reader that needs more is walking a structure
built to be re-read block by block (a page chain cycling through more of the object
than the view keeps): the view refuses it as an invalid image (``ReadBudgetSpent``)
instead of reading on.
"""

from __future__ import annotations

import io
from collections import OrderedDict

from imagepipe.errors import InvalidImage
from imagepipe.storage.base import Storage, StorageError

# Bytes fetched per range request: a whole header in one request for common formats.
RANGE_BYTES = 256 * 1024
# Blocks kept: an object up to 2 MiB is never fetched twice, whatever the order of reads.
CACHED_BLOCKS = 8
# Fetched beyond the object's size before a reader is refused: re-reads of evicted
# blocks a real file may need (its header, then its page chain from the start).
READ_SLACK_BYTES = 4 * RANGE_BYTES
# What the buffered file asks of the blocks at a time (served from a cached block).
_BUFFER_BYTES = 64 * 1024


class ReadBudgetSpent(InvalidImage):
    """The reader wanted more of the object than a header check may fetch."""


class _Ranges(io.RawIOBase):
    def __init__(self, storage: Storage, key: str, size: int, max_bytes: int) -> None:
        self._storage = storage
        self._key = key
        self._size = size
        self._max_bytes = max_bytes
        self._position = 0
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
        self._fetched = 0  # bytes, over every range request
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
        index, offset = divmod(self._position, RANGE_BYTES)
        data = memoryview(self._block(index))[offset : offset + wanted]
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)

    def _block(self, index: int) -> bytes:
        block = self._blocks.get(index)
        if block is not None:
            self._blocks.move_to_end(index)
            return block
        start = index * RANGE_BYTES
        length = min(RANGE_BYTES, self._size - start)
        if self._fetched + length > self._max_bytes:
            raise ReadBudgetSpent(
                f"The image's frame or page structure cannot be checked within "
                f"{self._max_bytes} bytes read (the file has {self._size})."
            )
        try:
            block = self._storage.read_range(self._key, start, length)
        except StorageError as error:
            # Kept: a decoder that reads through this file sees an OSError like any
            # damaged file and may call the image invalid; the caller asks ``failure``.
            self.failure = error
            raise
        self._fetched += length
        self._blocks[index] = block
        if len(self._blocks) > CACHED_BLOCKS:
            self._blocks.popitem(last=False)
        return block


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
    ``storage.read_range`` in aligned blocks of ``RANGE_BYTES``. Blocking: call from a
    thread. At most ``size + READ_SLACK_BYTES`` are fetched; a read that needs more
    raises ReadBudgetSpent, an InvalidImage."""
    budget = size + READ_SLACK_BYTES
    return RangedFile(_Ranges(storage, key, size, budget), buffer_size=_BUFFER_BYTES)
