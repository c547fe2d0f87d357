"""What a failed publish leaves (services/publishing.py): a proxied upload's row and
original are removed, a direct upload's row stays queued for the reconciler; both
answer 503."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.db.models import Task, TaskStatus, utcnow
from imagepipe.errors import ServiceUnavailable
from imagepipe.queue import PROCESS_TASK, MemoryQueue
from imagepipe.services.publishing import Retry, publish
from imagepipe.storage import MemoryStorage, keys
from tests.services.conftest import AddTask

pytestmark = pytest.mark.anyio


async def _queued(
    add_task: AddTask, api_session: AsyncSession, storage: MemoryStorage, owner: str = "k"
) -> Task:
    task_id = add_task(status=TaskStatus.queued, owner_scope=owner, enqueued_at=utcnow())
    storage.put_bytes(keys.original(task_id), b"original")
    task = await api_session.get(Task, task_id)
    assert task is not None
    return task


def _row(sessions: sessionmaker[Session], task_id: uuid.UUID) -> Task | None:
    with sessions() as session:
        return session.get(Task, task_id)


async def test_a_publish_goes_at_the_owners_level_read_now(
    add_task: AddTask, api_session: AsyncSession, storage: MemoryStorage
) -> None:
    add_task(status=TaskStatus.queued, owner_scope="k")  # one other waiting task: level 1
    task = await _queued(add_task, api_session, storage)
    queue = MemoryQueue()
    await publish(api_session, storage, queue, task, retry=Retry.COMPLETE)
    [message] = queue.published
    assert (message.task, message.args, message.priority) == (PROCESS_TASK, (str(task.id),), 1)


@pytest.mark.parametrize(
    ("outage", "raised"),
    [(ConnectionError("broker down"), ServiceUnavailable), (RuntimeError("a bug"), RuntimeError)],
    ids=["outage-503", "bug-500"],
)
@pytest.mark.parametrize("retry", [Retry.NEW_UPLOAD, Retry.COMPLETE])
async def test_a_failed_publish_leaves_what_the_clients_retry_expects(
    sessions: sessionmaker[Session],
    add_task: AddTask,
    api_session: AsyncSession,
    storage: MemoryStorage,
    outage: Exception,
    raised: type[Exception],
    retry: Retry,
) -> None:
    """A new upload's retry is another upload: its row and original are removed. A
    completion's retry is ``complete`` again: its row stays queued and stamped (the
    reconciler publishes it after its grace period), its original kept. An outage
    answers 503; a bug is raised as it is (500)."""
    task = await _queued(add_task, api_session, storage)
    queue = MemoryQueue()
    queue.outage = outage
    with pytest.raises(raised):
        await publish(api_session, storage, queue, task, retry=retry, priority=0)
    row = _row(sessions, task.id)
    if retry is Retry.NEW_UPLOAD:
        assert row is None
        assert list(storage.list("")) == []
    else:
        assert row is not None and row.status == TaskStatus.queued and row.enqueued_at is not None
        assert storage.stat(keys.original(task.id)).size == len(b"original")
