"""Deleting a task (services/deletion.py): tombstone, files, row; and the reconciler's
finish of a delete interrupted after the tombstone."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.db.models import Task, TaskStatus
from imagepipe.services import deletion, events
from imagepipe.storage import MemoryStorage, StorageUnavailable, keys
from tests.services.conftest import AddTask


def _store_everything(storage: MemoryStorage, task_id: uuid.UUID) -> None:
    storage.put_bytes(keys.original(task_id), b"original")
    storage.put_bytes(keys.staging(task_id), b"staged")
    storage.put_bytes(f"{keys.variants_prefix(task_id)}1/small.jpg", b"variant")
    storage.put_bytes(f"{keys.derived_prefix(task_id)}abc.webp", b"derived")


def _keys(storage: MemoryStorage) -> list[str]:
    return sorted(info.key for info in storage.list(""))


def test_delete_removes_every_object_then_the_row_and_tells_followers(
    sessions: sessionmaker[Session],
    storage: MemoryStorage,
    add_task: AddTask,
    notified: events.RecordingNotifier,
) -> None:
    task_id, other = add_task(status=TaskStatus.succeeded), add_task()
    _store_everything(storage, task_id)
    storage.put_bytes(keys.original(other), b"kept")
    assert deletion.delete_task(sessions, storage, task_id)
    assert _keys(storage) == [keys.original(other)]
    with sessions() as session:
        assert session.get(Task, task_id) is None
        assert session.get(Task, other) is not None
    assert notified.notified == [task_id]
    # Gone already: nothing to do, nobody told.
    assert not deletion.delete_task(sessions, storage, task_id)
    assert notified.notified == [task_id]


def test_a_condition_no_longer_met_leaves_the_task(
    sessions: sessionmaker[Session], storage: MemoryStorage, add_task: AddTask
) -> None:
    task_id = add_task(status=TaskStatus.queued)
    _store_everything(storage, task_id)
    still_finished = Task.status == TaskStatus.succeeded  # what retention asks
    assert not deletion.delete_task(sessions, storage, task_id, still_finished)
    assert len(_keys(storage)) == 4
    with sessions() as session:
        task = session.get(Task, task_id)
        assert task is not None and task.deleted_at is None


def test_a_storage_outage_leaves_a_tombstone_the_reconciler_finishes(
    sessions: sessionmaker[Session], storage: MemoryStorage, add_task: AddTask
) -> None:
    task_id = add_task(status=TaskStatus.succeeded)
    _store_everything(storage, task_id)
    storage.outage = StorageUnavailable("storage down")
    with pytest.raises(StorageUnavailable):
        deletion.delete_task(sessions, storage, task_id)
    # The tombstone is committed: invisible to readers, not yet gone.
    assert deletion.tombstones(sessions) == [task_id]
    # Still down: the reconciler's step stops at once and keeps it.
    assert deletion.finish_deletes(sessions, storage) == 0
    assert deletion.tombstones(sessions) == [task_id]
    storage.outage = None
    assert deletion.finish_deletes(sessions, storage) == 1
    assert deletion.tombstones(sessions) == []
    assert _keys(storage) == []
    with sessions() as session:
        assert session.get(Task, task_id) is None
