"""Back-pressure: new uploads are refused (503 ``queue_full`` + Retry-After) while more
tasks wait in the render queue than ``IMAGEPIPE_MAX_QUEUE_DEPTH``.

Accepting work the workers cannot reach for a long time only moves the wait into
Redis, whose memory is bounded (``maxmemory`` + ``noeviction``): past it, every
publish fails. The depth (an ``LLEN`` of each list of the render queue, in one round
trip) is read at most once per ``IMAGEPIPE_QUEUE_DEPTH_CACHE_SECONDS`` per API process,
so a burst of uploads costs Redis one round trip, not one per request.
"""

from __future__ import annotations

import logging
import time

from anyio import to_thread

from imagepipe.config import Settings
from imagepipe.errors import QueueFull
from imagepipe.queue import TaskQueue
from imagepipe.services.transient import MAYBE_TRANSIENT, is_transient

log = logging.getLogger(__name__)


class QueueDepthGate:
    """One per API process."""

    def __init__(self, settings: Settings, queue: TaskQueue) -> None:
        self.limit = settings.max_queue_depth
        self.cache_seconds = settings.queue_depth_cache_seconds
        self._queue = queue
        self._depth: int | None = None
        self._read_at = -float("inf")

    async def check(self) -> None:
        """Raise QueueFull while the render queue is longer than the limit."""
        depth = await self.depth()
        if depth is not None and depth > self.limit:
            raise QueueFull()

    async def depth(self) -> int | None:
        """The render queue's length as of at most ``cache_seconds`` ago; None when the
        broker does not answer (the upload's own publish then answers 503)."""
        now = time.monotonic()
        if now - self._read_at >= self.cache_seconds:
            self._read_at = now  # before the read: concurrent requests do not pile on
            try:
                self._depth = await to_thread.run_sync(self._queue.depth)
            except MAYBE_TRANSIENT as error:
                if not is_transient(error):
                    raise
                log.warning("queue depth unknown: %r", error)
                self._depth = None
        return self._depth
