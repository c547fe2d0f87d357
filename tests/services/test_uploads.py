"""POST /upload's use case once the body is received and checked (services/uploads.py):
the original stored, the row committed queued with the idempotency answer, the render
published; a failure at any step leaves neither row nor original."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.db.models import Task, TaskStatus
from imagepipe.errors import ServiceUnavailable
from imagepipe.imaging import ImageInfo
from imagepipe.queue import MemoryQueue
from imagepipe.services import uploads
from imagepipe.storage import MemoryStorage, StorageUnavailable, keys
from tests.services.conftest import AddTask

pytestmark = pytest.mark.anyio

DATA = b"\xff\xd8 pretend jpeg"


def _original(tmp_path: Path) -> uploads.Original:
    path = tmp_path / "received"
    path.write_bytes(DATA)
    info = ImageInfo(format="JPEG", width=64, height=48, frames=1)
    return uploads.Original(path, "cat.jpg", len(DATA), "ab" * 32, info)


async def _accept(
    api_session: AsyncSession,
    storage: MemoryStorage,
    queue: MemoryQueue,
    original: uploads.Original,
    backlog: int | None = None,
) -> uuid.UUID:
    return await uploads.accept(
        api_session,
        storage,
        queue,
        original,
        owner_scope="k",
        callback_url=None,
        backlog=backlog,
        reservation=None,
        answer=str,
    )


def _count(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(Task)) or 0


async def test_an_accepted_upload_is_stored_committed_and_published(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    add_task: AddTask,
    api_session: AsyncSession,
    storage: MemoryStorage,
) -> None:
    add_task(status=TaskStatus.queued, owner_scope="k")
    queue = MemoryQueue()
    task_id = await _accept(api_session, storage, queue, _original(tmp_path))
    with sessions() as session:
        task = session.get(Task, task_id)
        assert task is not None
        assert (task.status, task.owner_scope, task.original_format) == (
            TaskStatus.queued,
            "k",
            "JPEG",
        )
        assert task.enqueued_at is not None
    assert storage.stat(keys.original(task_id)).size == len(DATA)
    assert storage.content_type(keys.original(task_id)) == "image/jpeg"
    # Published at the owner's level: one other task waits.
    assert [(m.args, m.priority) for m in queue.published] == [((str(task_id),), 1)]


async def test_the_quotas_count_sets_the_level_without_a_query(
    tmp_path: Path, api_session: AsyncSession, storage: MemoryStorage
) -> None:
    queue = MemoryQueue()
    await _accept(api_session, storage, queue, _original(tmp_path), backlog=4)
    assert [m.priority for m in queue.published] == [3]


async def test_a_storage_outage_leaves_no_row(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    api_session: AsyncSession,
    storage: MemoryStorage,
) -> None:
    storage.outage = StorageUnavailable("storage down")
    queue = MemoryQueue()
    with pytest.raises(ServiceUnavailable):
        await _accept(api_session, storage, queue, _original(tmp_path))
    assert _count(sessions) == 0
    assert queue.published == []


async def test_a_broker_outage_leaves_neither_row_nor_original(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    api_session: AsyncSession,
    storage: MemoryStorage,
) -> None:
    queue = MemoryQueue()
    queue.outage = ConnectionError("broker down")
    with pytest.raises(ServiceUnavailable):
        await _accept(api_session, storage, queue, _original(tmp_path))
    assert _count(sessions) == 0
    assert list(storage.list("")) == []
