"""The use cases called directly, on a migrated SQLite file and the doubles (storage in
memory, the recording notifier): no server, so the whole directory is in the fast tier."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.config import Settings
from imagepipe.db.engine import async_session_factory, make_async_engine
from imagepipe.db.models import Task
from imagepipe.services import events
from imagepipe.services.hooks import Hooks
from imagepipe.storage import MemoryStorage
from tests.harness.app import worker_sessions

AddTask = Callable[..., uuid.UUID]


@pytest.fixture
def sessions(
    fast_settings: Settings, notified: events.RecordingNotifier
) -> Iterator[sessionmaker[Session]]:
    """Sessions whose changes are announced to ``notified`` (and to no broker)."""
    with worker_sessions(fast_settings, Hooks(notifier=notified)) as made:
        yield made


@pytest.fixture
async def api_session(fast_settings: Settings) -> AsyncIterator[AsyncSession]:
    """A session on the API's (async) engine, as a route hands the services one."""
    engine = make_async_engine(fast_settings.resolved_database_url)
    try:
        async with async_session_factory(engine)() as session:
            yield session
    finally:
        await engine.dispose()


@pytest.fixture
def storage() -> MemoryStorage:
    return MemoryStorage()


@pytest.fixture
def notified() -> events.RecordingNotifier:
    """The status notifier the services tell, recording what they told."""
    return events.RecordingNotifier()


@pytest.fixture
def add_task(sessions: sessionmaker[Session]) -> AddTask:
    """A task row with ``values`` over a small JPEG's facts; returns its id."""

    def add(**values: object) -> uuid.UUID:
        task_id = uuid.uuid4()
        task = Task(
            id=task_id, filename="a.jpg", original_key=f"originals/{task_id}",
            original_format="JPEG", original_width=10, original_height=10,
            original_size_bytes=1, original_sha256="0" * 64, **values,
        )  # fmt: skip
        with sessions.begin() as session:
            session.add(task)
        return task_id

    return add
