"""The soft time limit fails a task only for its image: when it strikes while the task
waits on storage or the database, the claim is given back uncounted and retried."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.config import Settings
from imagepipe.db.models import Task, TaskStatus
from imagepipe.services import rendering, renditions
from imagepipe.storage import MemoryStorage
from tests.harness.app import queue_upload, worker_sessions
from tests.images import photo


class SoftLimit(Exception):
    """Stands in for Celery's SoftTimeLimitExceeded, raised into the task."""


def _strike(*_: object, **__: object) -> Any:
    raise SoftLimit


def _state(sessions: sessionmaker[Session], task_id: uuid.UUID) -> tuple[Any, ...]:
    with sessions() as session:
        task = session.get_one(Task, task_id)
        return task.status, task.attempts - task.transient_releases, task.error_code


@contextmanager
def _queued(settings: Settings) -> Iterator[tuple[sessionmaker[Session], MemoryStorage, uuid.UUID]]:
    storage = MemoryStorage()
    with worker_sessions(settings) as sessions:
        yield sessions, storage, queue_upload(sessions, storage, photo(64, 48), (64, 48))


@pytest.mark.parametrize("where", ["download", "writes"])
def test_striking_while_waiting_on_storage_gives_the_claim_back(
    fast_settings: Settings, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    if where == "download":
        monkeypatch.setattr(MemoryStorage, "open_seekable", _strike)
    else:
        monkeypatch.setattr(renditions.Writer, "rows", _strike)
    with _queued(fast_settings) as (sessions, storage, task_id):
        with pytest.raises(TimeoutError):
            rendering.process(sessions, storage, fast_settings, task_id, time_limit=(SoftLimit,))
        assert _state(sessions, task_id) == (TaskStatus.queued, 0, None)
        assert not list(storage.list(f"variants/{task_id}/"))  # nothing left behind


def test_striking_during_the_imaging_fails_the_task(
    fast_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rendering, "render_variants", _strike)
    with _queued(fast_settings) as (sessions, storage, task_id):
        outcome = rendering.process(
            sessions, storage, fast_settings, task_id, time_limit=(SoftLimit,)
        )
        assert outcome == rendering.Outcome.failed
        assert _state(sessions, task_id) == (TaskStatus.failed, 1, "processing_timeout")
