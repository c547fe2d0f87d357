"""The API's side of an on-demand rendition: find it, or have it made and wait.

1. One row lookup by (task, cache key): a hit is served from storage, nothing written.
2. A miss takes the single-flight lock (``flight``); the request that gets it is a
   *first render*: it costs the task owner's rate limit (``charge``) and publishes
   ``render_on_demand`` on the ``imagepipe.on_demand`` queue, served by render workers.
3. Every request that missed waits up to ``IMAGEPIPE_ON_DEMAND_WAIT_SECONDS`` for the
   row: woken by the task's status channel (the renderer notifies it) and re-reading
   on a short timer too (pub/sub is lossy). No connection is held while waiting, and
   waiting takes no follower slot. Still nothing: ``503 rendering`` + ``Retry-After``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio import to_thread
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from imagepipe.config import Settings
from imagepipe.db.models import DerivedRendition, Task, TaskStatus, live
from imagepipe.errors import Rendering, ServiceUnavailable, TaskNotFound
from imagepipe.services.events import Follower
from imagepipe.services.on_demand import records
from imagepipe.services.on_demand.flight import Flights
from imagepipe.services.on_demand.options import RenditionOptions
from imagepipe.services.on_demand.records import RenderJob, focal_of
from imagepipe.services.transient import MAYBE_TRANSIENT

log = logging.getLogger(__name__)

# Re-read the row at least this often while waiting (a notification may be lost).
REREAD_SECONDS = 0.5


async def linked_task(session: AsyncSession, task_id: uuid.UUID) -> Task:
    """The live task a signed link names, whoever owns it (the signature is the
    credential), or TaskNotFound."""
    task: Task | None = await session.scalar(select(Task).where(Task.id == task_id, live()))
    if task is None:
        raise TaskNotFound()
    return task


class OnDemand:
    """One per API process (built by the lifespan)."""

    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[Any],
        listener: Follower,
        publish: Callable[[RenderJob], None],
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.listener = listener
        self.publish = publish  # blocking (kombu): run in a thread
        self.flights = Flights(settings.redis_url, lock_seconds=settings.on_demand_lock_seconds)

    async def close(self) -> None:
        await self.flights.close()

    async def rendition(
        self,
        task: Task,
        options: RenditionOptions,
        asked_format: str,
        *,
        charge: Callable[[], Awaitable[None]],
    ) -> DerivedRendition:
        """The stored rendition, made first if need be. ``charge`` takes one unit of the
        owner's rate limit (raising to refuse) and is awaited only by a first render."""
        if task.status == TaskStatus.failed:
            raise TaskNotFound("The task failed: it has no renditions.")
        if task.status != TaskStatus.succeeded:
            raise Rendering("The task is not finished yet; try again shortly.")
        key = records.cache_key(options, asked_format, focal_of(task), self.settings)
        row = await self._read(task.id, key)
        if row is not None:
            return row
        job = RenderJob(task.id, options.canonical, asked_format, key)
        await self._publish_once(job, charge)
        return await self._wait(task.id, key)

    async def forget(self, row: DerivedRendition) -> None:
        """A row whose object is gone (lost, or evicted between read and open): the
        next request makes it again."""
        async with self.sessions() as session:
            stale = await session.get(DerivedRendition, row.id)
            if stale is not None:
                await session.delete(stale)
                await session.commit()

    async def _publish_once(self, job: RenderJob, charge: Callable[[], Awaitable[None]]) -> None:
        try:
            taken = await self.flights.take(job.task_id, job.cache_key)
        except MAYBE_TRANSIENT as error:
            log.warning("single-flight lock unavailable: %r", error)
            raise ServiceUnavailable("The broker is unavailable; try again shortly.") from None
        if not taken:
            return  # another request published it: wait with it
        try:
            await charge()
            await to_thread.run_sync(self.publish, job)
        except BaseException as error:
            with anyio.CancelScope(shield=True):
                await self._give_back(job)
            if isinstance(error, MAYBE_TRANSIENT):
                log.warning("on-demand render not published: %r", error)
                raise ServiceUnavailable("The broker is unavailable; try again shortly.") from None
            raise
        log.info(
            "on-demand render published",
            extra={"task_id": str(job.task_id), "options": job.options},
        )

    async def _give_back(self, job: RenderJob) -> None:
        try:
            await self.flights.give_back(job.task_id, job.cache_key)
        except MAYBE_TRANSIENT as error:  # it expires by itself
            log.warning("single-flight lock not given back: %r", error)

    async def _wait(self, task_id: uuid.UUID, key: str) -> DerivedRendition:
        deadline = anyio.current_time() + self.settings.on_demand_wait_seconds
        with self.listener.follow(task_id) as changed:
            while True:
                changed.clear()  # before the read: a notification after it is kept
                row = await self._read(task_id, key)
                if row is not None:
                    return row
                left = deadline - anyio.current_time()
                if left <= 0:
                    raise Rendering()
                with anyio.move_on_after(min(left, REREAD_SECONDS)):
                    await changed.wait()

    async def _read(self, task_id: uuid.UUID, key: str) -> DerivedRendition | None:
        # A session per read: none is held while a request waits.
        async with self.sessions() as session:
            return await records.lookup(session, task_id, key)
