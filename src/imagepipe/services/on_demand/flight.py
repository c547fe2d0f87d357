"""Single flight: concurrent first requests for one rendition cause one render.

One Redis key per (task, cache key), taken with ``SET NX PX``: whoever takes it
publishes the render; the others only wait for the row. The renderer deletes it once
the row is written (or the render failed). It expires by itself
(``IMAGEPIPE_ON_DEMAND_LOCK_SECONDS``, at most half the broker's visibility timeout):
a render whose worker was killed holds it that long at most, and the first request
after that publishes again. Redis down: no lock can be taken, nothing is published
(the request answers 503 as every request that needs the broker does).
"""

from __future__ import annotations

import math
import uuid

import redis
import redis.asyncio as aioredis

PREFIX = "imagepipe:on-demand:"


def lock_key(task_id: uuid.UUID, cache_key: str) -> str:
    return f"{PREFIX}{task_id}:{cache_key}"


class Flights:
    """The API's side: one client per process."""

    def __init__(self, redis_url: str, *, lock_seconds: float, timeout: float = 1.0) -> None:
        self._redis = aioredis.Redis.from_url(
            redis_url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._lock_ms = math.ceil(lock_seconds * 1000)

    async def take(self, task_id: uuid.UUID, cache_key: str) -> bool:
        """True if this request is the one to publish the render."""
        taken = await self._redis.set(lock_key(task_id, cache_key), b"1", nx=True, px=self._lock_ms)
        return bool(taken)

    async def give_back(self, task_id: uuid.UUID, cache_key: str) -> None:
        """The render was not published after all (rate limit, broker down)."""
        await self._redis.delete(lock_key(task_id, cache_key))

    async def close(self) -> None:
        await self._redis.aclose()


def release(client: redis.Redis, task_id: uuid.UUID, cache_key: str) -> None:
    """The worker's side, once the row is written or the render failed: the next
    request need not wait for the expiry."""
    client.delete(lock_key(task_id, cache_key))
