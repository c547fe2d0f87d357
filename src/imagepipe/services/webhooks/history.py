"""What a task's deliveries did, and sending one of them again (a replay).

The attempts are read as recorded (``outbox.finish`` writes one row per attempt); a
replay is a new delivery row (``outbox.replay``) published after its commit.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable

from anyio import to_thread
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from imagepipe.db.models import DeliveryAttempt, Task, WebhookDelivery
from imagepipe.errors import DeliveryNotFound
from imagepipe.services.webhooks import outbox


async def attempts(
    session: AsyncSession, task_id: uuid.UUID
) -> list[tuple[WebhookDelivery, DeliveryAttempt]]:
    """Every attempt of every delivery of the task, with its delivery, in the order
    they were made."""
    rows = await session.execute(
        select(WebhookDelivery, DeliveryAttempt)
        .join(DeliveryAttempt, DeliveryAttempt.delivery_id == WebhookDelivery.id)
        .where(WebhookDelivery.task_id == task_id)
        .order_by(DeliveryAttempt.at, DeliveryAttempt.id)
    )
    return [(delivery, attempt) for delivery, attempt in rows.all()]


async def replay(
    session: AsyncSession,
    publish: Callable[[uuid.UUID], None],
    delivery_id: uuid.UUID,
    *,
    may_see: Callable[[Task], bool],
    max_pending: int,
) -> uuid.UUID:
    """The id of a new replay of the delivery, published with ``publish`` (blocking: run
    in a thread), or of the earlier replay of it still waiting. DeliveryNotFound unless
    the delivery exists and ``may_see`` its task: only those who may see the task may
    replay its events. TooManyReplays as ``outbox.replay``."""
    original = await session.get(WebhookDelivery, delivery_id)
    if original is None:
        raise DeliveryNotFound()
    task = await session.get(Task, original.task_id)
    if task is None or not may_see(task):
        raise DeliveryNotFound()
    again, new = await outbox.replay(session, original, task.owner_scope, max_pending=max_pending)
    if new:
        # A lost publish is picked up by the worker's sweep.
        with contextlib.suppress(Exception):
            await to_thread.run_sync(publish, again)
    return again
