"""Re-renders for a new focal point, found again when their message is lost.

``PATCH /tasks/{id}`` records a re-render as due (``tasks.rerender_enqueued_at``) in
the commit that stores the point, so nothing depends on a message arriving: for a
succeeded task it publishes the re-render (``worker.refresh``, the fenced one
``imagepipe backfill`` uses); a task not rendered yet will be rendered with the point,
unless its worker claimed it before the PATCH. The commit that stores variants made
with the task's current point settles the record (``settled``). The reconciler
publishes again those still due after the grace period, at most ``max_attempts``
times (then ``imagepipe backfill`` still finds the task stale).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, case, update
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.config import Settings
from imagepipe.db.models import Task, TaskStatus, live, utcnow
from imagepipe.imaging.crop import FocalPoint
from imagepipe.services import due

# Tasks whose re-render the reconciler republishes per run.
REPUBLISH_BATCH = 500


def same_point(focal: FocalPoint | None) -> ColumnElement[bool]:
    """The task's point is ``focal`` (both unset when None)."""
    if focal is None:
        return Task.focal_x.is_(None) & Task.focal_y.is_(None)
    return (Task.focal_x == focal.x) & (Task.focal_y == focal.y)


def settled(focal: FocalPoint | None) -> dict[str, Any]:
    """Task columns for the commit that stores variants made with ``focal`` (a render's
    or a re-render's): a due re-render is settled by it, unless the point changed
    meanwhile (a PATCH while the task rendered: that re-render stays due)."""
    made_with = same_point(focal)
    return {
        "rerender_enqueued_at": case((made_with, None), else_=Task.rerender_enqueued_at),
        "rerender_attempts": case((made_with, 0), else_=Task.rerender_attempts),
    }


def done(sessions: sessionmaker[Session], task_id: uuid.UUID, focal: FocalPoint | None) -> None:
    """The task's variants were made with ``focal``: no re-render is due for it, unless
    its point changed meanwhile (the re-render of the new point stays due)."""
    with sessions.begin() as session:
        session.execute(
            update(Task)
            .where(Task.id == task_id, Task.rerender_enqueued_at.is_not(None), same_point(focal))
            .values(rerender_enqueued_at=None, rerender_attempts=0)
            .execution_options(synchronize_session=False)
        )


def due_pending(
    sessions: sessionmaker[Session],
    settings: Settings,
    now: datetime | None = None,
    limit: int = REPUBLISH_BATCH,
) -> list[uuid.UUID]:
    """Succeeded tasks whose re-render was published longer ago than the grace period
    and that have tries left, oldest first; marked as published now (the caller
    publishes them after this commit)."""
    now = now or utcnow()
    lost = (
        live()
        & (Task.status == TaskStatus.succeeded)
        & Task.rerender_enqueued_at.is_not(None)
        & (Task.rerender_enqueued_at < due.grace_start(settings, now))
        & (Task.rerender_attempts < settings.max_attempts)
    )
    published = {"rerender_enqueued_at": now, "rerender_attempts": Task.rerender_attempts + 1}
    return due.take(sessions, lost, Task.rerender_enqueued_at, published, limit)
