"""Follow one task until it ends: its status is re-read when a notification says it
changed, and on a timer in case a notification was lost; the whole row (with its
variants) only when the status moved."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from imagepipe.db.models import Task, TaskStatus, live
from imagepipe.services.events import Follower

ENDED = frozenset({TaskStatus.succeeded, TaskStatus.failed})


async def read_task(sessions: async_sessionmaker[Any], task_id: uuid.UUID) -> Task | None:
    """One short read: the connection goes back to the pool before anyone waits."""
    async with sessions() as session:
        task: Task | None = await session.scalar(select(Task).where(Task.id == task_id, live()))
        return task


async def read_status(sessions: async_sessionmaker[Any], task_id: uuid.UUID) -> TaskStatus | None:
    """The task's status alone: one primary-key lookup, no variant rows."""
    async with sessions() as session:
        status: TaskStatus | None = await session.scalar(
            select(Task.status).where(Task.id == task_id, live())
        )
        return status


async def follow(
    sessions: async_sessionmaker[Any],
    listener: Follower,
    task_id: uuid.UUID,
    *,
    reread_seconds: float,
    deadline: float | None = None,
) -> AsyncIterator[Task]:
    """Yield the task now, then each time its status changes; stop once it has ended
    (or was deleted), or at ``deadline`` (``anyio.current_time()``) if given."""
    with listener.follow(task_id) as changed:
        last: TaskStatus | None = None
        while True:
            changed.clear()  # before the read: a change after it sets the flag again
            if last is not None:
                status = await read_status(sessions, task_id)
                if status is None:
                    return
            if last is None or status != last:
                task = await read_task(sessions, task_id)
                if task is None:
                    return
                if task.status != last:
                    last = task.status
                    yield task
            if last in ENDED:
                return
            wait = reread_seconds
            if deadline is not None:
                wait = min(wait, deadline - anyio.current_time())
                if wait <= 0:
                    return
            with anyio.move_on_after(wait):
                await changed.wait()


async def wait_until_ended(
    sessions: async_sessionmaker[Any],
    listener: Follower,
    task: Task,
    *,
    seconds: float,
    reread_seconds: float,
) -> Task:
    """The task once it has ended, or as it is after ``seconds``."""
    latest = task
    with anyio.move_on_after(seconds):
        async for current in follow(sessions, listener, task.id, reread_seconds=reread_seconds):
            latest = current
    return latest
