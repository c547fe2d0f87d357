"""Deleting a task: one way, for ``DELETE /tasks/{id}``, retention and the reconciler.

Tombstone, files, row, in that order. The tombstone (``deleted_at``) makes the task
invisible to every reader; no worker claims or finishes it again. Its files go next
(``services.tidy``), the row last. A crash or a storage outage at any point leaves
either a live task with all its files or a tombstone that the reconciler finishes
(``finish_deletes``); never a row naming files that are gone, nor files nothing names.
"""

from __future__ import annotations

import uuid

from sqlalchemy import ColumnElement, delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.db.clock import db_now
from imagepipe.db.models import Task, live
from imagepipe.services import hooks, tidy
from imagepipe.storage import Storage

# Tombstones finished per reconciler step; the rest wait for its next run.
FINISH_BATCH = 500


def mark_deleted(
    session: Session, task_id: uuid.UUID, still: ColumnElement[bool] | None = None
) -> bool:
    """Step 1, in the caller's transaction: the row becomes a tombstone. ``still``: a
    condition the row must still meet (retention: still finished and still old). False
    if the task is not live (or no longer meets it)."""
    condition = live() if still is None else live() & still
    moved = session.execute(
        update(Task)
        .where(Task.id == task_id, condition)
        .values(deleted_at=db_now(), lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    return bool(moved.rowcount == 1)  # type: ignore[attr-defined]


def remove_files(storage: Storage, task_id: uuid.UUID) -> bool:
    """Step 2: every object of the task; False if the storage failed (the tombstone
    stays, and the reconciler tries again)."""
    return tidy.quietly(tidy.task_objects, storage, task_id)


def remove_row(session: Session, task_id: uuid.UUID) -> None:
    """Step 3, once the files are gone: the tombstone itself."""
    session.execute(delete(Task).where(Task.id == task_id, Task.deleted_at.is_not(None)))


def delete_task(
    sessions: sessionmaker[Session],
    storage: Storage,
    task_id: uuid.UUID,
    still: ColumnElement[bool] | None = None,
) -> bool:
    """The three steps, each committed before the next (a worker's or a command's
    delete; the API runs the same steps on its async session). False if the task was
    not live or no longer met ``still``. A storage error is raised once the tombstone
    is committed: the reconciler finishes that delete."""
    with sessions.begin() as session:
        if not mark_deleted(session, task_id, still):
            return False
    # Followers of the task stop now, not at their next re-read.
    hooks.of(sessions).notify(task_id)
    tidy.task_objects(storage, task_id)
    with sessions.begin() as session:
        remove_row(session, task_id)
    return True


def tombstones(sessions: sessionmaker[Session], limit: int = FINISH_BATCH) -> list[uuid.UUID]:
    """Deletes a crash (or a storage outage) interrupted, oldest first."""
    with sessions() as session:
        return list(
            session.scalars(
                select(Task.id)
                .where(Task.deleted_at.is_not(None))
                .order_by(Task.deleted_at)
                .limit(limit)
            )
        )


def finish_deletes(sessions: sessionmaker[Session], storage: Storage) -> int:
    """Deletes interrupted between the tombstone and the row: files, then the row."""
    finished = 0
    for task_id in tombstones(sessions):
        if not remove_files(storage, task_id):
            break  # the storage is failing: the next run tries again
        with sessions.begin() as session:
            remove_row(session, task_id)
        finished += 1
    return finished
