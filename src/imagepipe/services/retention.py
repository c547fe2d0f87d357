"""Retention: originals removed after ``IMAGEPIPE_KEEP_ORIGINALS``, finished tasks after
``IMAGEPIPE_TASK_RETENTION``. Run by ``imagepipe purge`` and periodically by beat.

A task is removed the way ``DELETE /tasks/{id}`` removes it (``services.lifecycle``):
tombstone, files, row — a crash or a storage error in between leaves a tombstone the
reconciler finishes. An original goes before its ``original_removed_at`` mark: cut
short in between, the row still matches and the next run does the rest (removing a
missing object is not an error). Work is done in small batches,
oldest first, each its own short transaction.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import ColumnElement

from imagepipe.config import Settings
from imagepipe.db.models import Task, TaskStatus, live, utcnow
from imagepipe.services import deletion
from imagepipe.storage import Storage

log = logging.getLogger(__name__)

BATCH_SIZE = 200
FINISHED = (TaskStatus.succeeded, TaskStatus.failed)


@dataclass
class PurgeReport:
    tasks_removed: int = 0
    originals_removed: int = 0
    dry_run: bool = False
    # A storage or database error stopped a step; the next run carries on.
    interrupted: bool = False


def purge(
    sessions: sessionmaker[Session],
    storage: Storage,
    settings: Settings,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
) -> PurgeReport:
    """Apply both retention settings once; with ``dry_run``, only count."""
    now = now or utcnow()
    report = PurgeReport(dry_run=dry_run)
    if (keep := settings.task_retention_seconds) is not None:
        expired = _finished_before(now - timedelta(seconds=keep))
        if dry_run:
            report.tasks_removed = _count(sessions, expired)
        else:
            report.tasks_removed = _remove_tasks(sessions, storage, expired, batch_size, report)
    if (keep := settings.keep_originals_seconds) is not None:
        kept = _originals_due(now - timedelta(seconds=keep))
        if dry_run:
            report.originals_removed = _count(sessions, kept)
        else:
            report.originals_removed = _remove_originals(
                sessions, storage, kept, now, batch_size, report
            )
    if report.tasks_removed or report.originals_removed:
        log.info(
            "retention: %d tasks and %d originals %s",
            report.tasks_removed,
            report.originals_removed,
            "would be removed" if dry_run else "removed",
        )
    return report


def _finished_at() -> ColumnElement[datetime]:
    # A failed direct upload may have no finish time: its creation stands in.
    return func.coalesce(Task.finished_at, Task.created_at)


def _finished_before(cutoff: datetime) -> ColumnElement[bool]:
    return live() & Task.status.in_(FINISHED) & (_finished_at() < cutoff)


def _originals_due(cutoff: datetime) -> ColumnElement[bool]:
    return (
        live()
        & (Task.status == TaskStatus.succeeded)
        & Task.original_removed_at.is_(None)
        # Extra formats still due may need the original (another host, the spool
        # evicted, an animation's frames): it stays until they are made.
        & Task.extras_due.is_(None)
        & (_finished_at() < cutoff)
    )


def _count(sessions: sessionmaker[Session], where: ColumnElement[bool]) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Task).where(where)) or 0)


def _batch(
    sessions: sessionmaker[Session], where: ColumnElement[bool], size: int
) -> list[tuple[uuid.UUID, str]]:
    with sessions() as session:
        rows = session.execute(
            select(Task.id, Task.original_key).where(where).order_by(_finished_at()).limit(size)
        )
        return [(task_id, key) for task_id, key in rows]


def _remove_tasks(
    sessions: sessionmaker[Session],
    storage: Storage,
    where: ColumnElement[bool],
    batch_size: int,
    report: PurgeReport,
) -> int:
    def remove(task_id: uuid.UUID, key: str) -> bool:
        # Still finished and still old: a task re-queued meanwhile stays.
        return deletion.delete_task(sessions, storage, task_id, still=where)

    return _each(sessions, where, batch_size, report, remove)


def _remove_originals(
    sessions: sessionmaker[Session],
    storage: Storage,
    where: ColumnElement[bool],
    now: datetime,
    batch_size: int,
    report: PurgeReport,
) -> int:
    def remove(task_id: uuid.UUID, key: str) -> bool:
        storage.delete(key)
        with sessions() as session:
            session.execute(
                update(Task)
                .where(Task.id == task_id, Task.original_removed_at.is_(None))
                .values(original_removed_at=now)
            )
            session.commit()
        return True

    return _each(sessions, where, batch_size, report, remove)


def _each(
    sessions: sessionmaker[Session],
    where: ColumnElement[bool],
    batch_size: int,
    report: PurgeReport,
    remove: Callable[[uuid.UUID, str], bool],
) -> int:
    """``remove`` every matching task, a batch at a time, until none match; the first
    storage or database error ends the run (each removal no longer matches once done,
    so the next run resumes where this one stopped)."""
    removed = 0
    while batch := _batch(sessions, where, batch_size):
        for task_id, key in batch:
            try:
                removed += remove(task_id, key)
            except (OSError, SQLAlchemyError) as error:
                log.warning("retention stopped; the next run resumes: %s", error)
                report.interrupted = True
                return removed
    return removed
