"""Whether this API process takes one more upload body now: a cap on uploads being
received at once, and enough free disk for the bytes announced. Both are checked
before a byte of the body is read or a temp file exists, so a refusal leaves nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from anyio import to_thread
from starlette.requests import Request

from imagepipe.config import MiB, Settings
from imagepipe.errors import InsufficientStorage, TooManyUploads
from imagepipe.storage import Storage


@dataclass(frozen=True)
class UploadDeadlines:
    """How long a body may pause (idle) and take in all (total), in seconds."""

    idle: float
    total: float

    @classmethod
    def from_settings(cls, settings: Settings) -> UploadDeadlines:
        return cls(idle=settings.upload_idle_timeout_seconds, total=settings.upload_timeout_seconds)


class UploadGate:
    """One per API process. The event loop is single-threaded, so a plain counter is
    exact: nothing awaits between the test and the increment."""

    def __init__(self, settings: Settings, storage: Storage) -> None:
        self.limit = settings.max_concurrent_uploads
        self.min_free_bytes = settings.min_free_disk_mb * MiB
        self.max_upload_bytes = settings.max_upload_bytes
        self.deadlines = UploadDeadlines.from_settings(settings)
        self._storage = storage
        self.in_flight = 0

    @asynccontextmanager
    async def admit(self, request: Request, max_bytes: int | None = None) -> AsyncIterator[None]:
        """Hold one upload slot while the body is received; ``max_bytes`` is the most the
        body may be (the upload limit by default)."""
        if self.in_flight >= self.limit:
            raise TooManyUploads()
        self.in_flight += 1
        try:
            await self._check_disk(_expected_bytes(request, max_bytes or self.max_upload_bytes))
            yield
        finally:
            self.in_flight -= 1

    async def _check_disk(self, expected: int) -> None:
        if self.min_free_bytes == 0:
            return
        free = await to_thread.run_sync(self._storage.temp_free_bytes)
        if free - expected < self.min_free_bytes:
            raise InsufficientStorage()


def _expected_bytes(request: Request, max_bytes: int) -> int:
    """What the body will take on disk at most: Content-Length when it is given and not
    above the limit (the receive loop refuses more), else the limit."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit():
        return min(int(declared), max_bytes)
    return max_bytes
