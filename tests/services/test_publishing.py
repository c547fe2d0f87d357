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


async def test_a_failed_publish_of_a_new_upload_removes_its_row_and_original(
    sessions: sessionmaker[Session],
    add_task: AddTask,
    api_session: AsyncSession,
    storage: MemoryStorage,
) -> None:
    task = await _queued(add_task, api_session, storage)
    queue = MemoryQueue()
    queue.outage = ConnectionError("broker down")
    with pytest.raises(ServiceUnavailable):
        await publish(api_session, storage, queue, task, retry=Retry.NEW_UPLOAD, priority=0)
    assert _row(sessions, task.id) is None
    assert list(storage.list("")) == []


async def test_a_failed_publish_of_a_completion_keeps_the_row_queued(
    sessions: sessionmaker[Session],
    add_task: AddTask,
    api_session: AsyncSession,
    storage: MemoryStorage,
) -> None:
    task = await _queued(add_task, api_session, storage)
    queue = MemoryQueue()
    queue.outage = ConnectionError("broker down")
    with pytest.raises(ServiceUnavailable):
        await publish(api_session, storage, queue, task, retry=Retry.COMPLETE)
    row = _row(sessions, task.id)
    # Queued and stamped: the reconciler publishes it after its grace period.
    assert row is not None and row.status == TaskStatus.queued and row.enqueued_at is not None
    assert storage.stat(keys.original(task.id)).size == len(b"original")


async def test_a_bug_in_a_new_uploads_publish_is_raised_once_its_row_is_gone(
    sessions: sessionmaker[Session],
    add_task: AddTask,
    api_session: AsyncSession,
    storage: MemoryStorage,
) -> None:
    task = await _queued(add_task, api_session, storage)
    queue = MemoryQueue()
    queue.outage = RuntimeError("a bug")
    with pytest.raises(RuntimeError):
        await publish(api_session, storage, queue, task, retry=Retry.NEW_UPLOAD, priority=0)
    assert _row(sessions, task.id) is None


async def test_a_bug_in_a_completions_publish_is_raised_with_the_row_kept_queued(
    sessions: sessionmaker[Session],
    add_task: AddTask,
    api_session: AsyncSession,
    storage: MemoryStorage,
) -> None:
    task = await _queued(add_task, api_session, storage)
    queue = MemoryQueue()
    queue.outage = RuntimeError("a bug")
    with pytest.raises(RuntimeError):
        await publish(api_session, storage, queue, task, retry=Retry.COMPLETE, priority=0)
    row = _row(sessions, task.id)
    assert row is not None and row.status == TaskStatus.queued
