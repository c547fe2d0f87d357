"""Publishing a queued task's render, and what a failed publish leaves behind.

A task is committed ``queued`` with ``enqueued_at`` set before its message is
published, so a process that dies in between leaves a row the reconciler publishes
after its grace period. What a publish that fails leaves depends on how the client
retries; ``publish`` holds that rule for both kinds of upload.
"""

from __future__ import annotations

import enum
import logging
import uuid

import anyio
from anyio import to_thread
from sqlalchemy.ext.asyncio import AsyncSession

from imagepipe.db.models import Task
from imagepipe.errors import ServiceUnavailable
from imagepipe.queue import TaskQueue
from imagepipe.services import fairness, lifecycle, tidy
from imagepipe.services.transient import MAYBE_TRANSIENT, is_transient
from imagepipe.storage import Storage

log = logging.getLogger(__name__)

QUEUE_UNAVAILABLE = "The task queue is unavailable; try again shortly."


class Retry(enum.Enum):
    """How the client retries after a 503 on its task's publish."""

    NEW_UPLOAD = "a new upload"  # POST /upload again: another task
    COMPLETE = "complete"  # POST /tasks/{id}/complete again: the same task


async def publish(
    session: AsyncSession,
    storage: Storage,
    queue: TaskQueue,
    task: Task,
    *,
    retry: Retry,
    priority: int | None = None,
) -> None:
    """Publish the render of ``task`` (committed ``queued``) at ``priority``, or at its
    owner's level read now when None.

    A failed publish answers 503 and leaves the task in the state the client's retry
    expects: a proxied upload's retry is a new upload, so its row and original are
    removed; a direct upload's retry is ``complete`` on the same id, so its row stays
    queued and the reconciler publishes it if the client never comes back.

    If removing a proxied upload's row fails too (the database is down as well), the
    row stays queued and the reconciler publishes it: a task nobody was told of is
    rendered, which costs a render, not a lost upload. A failure that is not transient
    is a bug, raised (500) after the same clean-up, as everywhere else.
    """
    try:
        if priority is None:
            priority = await session.run_sync(fairness.priority, task.owner_scope)
        await to_thread.run_sync(queue.enqueue, task.id, priority)
    except Exception as error:
        if retry is Retry.NEW_UPLOAD:
            # Shielded: a client that disconnects cancels the request, not the removal.
            with anyio.CancelScope(shield=True):
                await _forget(session, storage, task.id, task.original_key)
        if not is_transient(error):
            raise
        log.warning("broker unavailable, retry is %s: %r", retry.value, error, extra=_ids(task.id))
        raise ServiceUnavailable(QUEUE_UNAVAILABLE) from None


async def _forget(session: AsyncSession, storage: Storage, task_id: uuid.UUID, key: str) -> None:
    try:
        await session.run_sync(lifecycle.forget, task_id)
        await session.commit()
    except MAYBE_TRANSIENT as error:
        log.error("could not remove task after a failed publish: %r", error, extra=_ids(task_id))
        return
    await tidy.delete_quietly(storage, key)


def _ids(task_id: uuid.UUID) -> dict[str, str]:
    return {"task_id": str(task_id)}
