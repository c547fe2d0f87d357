"""Re-renders for a new focal point, found again when their message is lost.

``PATCH /tasks/{id}`` records a re-render as due (``tasks.rerender_enqueued_at``) in
the commit that stores the point, so nothing depends on a message arriving: for a
succeeded task it publishes the re-render (``services.refresh``, the fenced one
``imagepipe backfill`` uses); a task not rendered yet will be rendered with the point,
unless its worker claimed it before the PATCH. The commit that stores variants made
with the task's current point settles the record (``settled``). The reconciler
publishes again those still due after the grace period, at most ``max_attempts``
times (then ``imagepipe backfill`` still finds the task stale).

The re-render itself (a focal point's or ``imagepipe backfill``'s, ``services.refresh``)
leaves the task ``succeeded`` and is fenced as a claim is: ``take_for_rerender`` bumps
the attempt, ``swap_variants`` replaces the previews only while it is the latest.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from anyio import to_thread
from sqlalchemy import ColumnElement, case, delete, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.config import Settings
from imagepipe.db.models import Task, TaskStatus, Variant, live, utcnow
from imagepipe.imaging import shapes
from imagepipe.imaging.crop import FocalPoint
from imagepipe.services import due
from imagepipe.services.lifecycle import Claim, focal_of

log = logging.getLogger(__name__)

# Tasks whose re-render the reconciler republishes per run.
REPUBLISH_BATCH = 500


async def set_focal_point(
    session: AsyncSession,
    settings: Settings,
    task: Task,
    focal: FocalPoint | None,
    publish: Callable[[uuid.UUID], None],
) -> None:
    """Store ``focal`` (None: clear it) as the task's point, on ``task`` too. If it
    moves any variant's pixels, its re-render is recorded as due in the same commit
    and, for a succeeded task, published with ``publish`` (blocking: run in a thread)."""
    x, y = (focal.x, focal.y) if focal is not None else (None, None)
    values: dict[str, Any] = {"focal_x": x, "focal_y": y}
    # Only cover/focal variants follow the point. Recorded as due in the commit that
    # stores it, whatever the status: a worker may have claimed the task (with the old
    # point) just before; the commit storing variants made with this point settles it,
    # and the reconciler publishes it again if not.
    follows = task.status != TaskStatus.failed and shapes.any_follow_focal_point(
        shapes.boxes(settings.variants).values()
    )
    if follows:
        values |= {"rerender_enqueued_at": utcnow(), "rerender_attempts": 0}
    await session.execute(
        update(Task)
        .where(Task.id == task.id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    await session.commit()
    task.focal_x, task.focal_y = x, y
    if follows and task.status == TaskStatus.succeeded:
        # The worker re-renders only if the stored variants differ from what the point
        # gives: the same point again costs a message, not a render.
        try:
            await to_thread.run_sync(publish, task.id)
        except Exception as error:  # recorded as due: the reconciler publishes it
            log.warning("could not publish re-render: %r", error, extra={"task_id": str(task.id)})


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


# --- the fenced re-render of a succeeded task (services.refresh) ----------------------


def take_for_rerender(
    sessions: sessionmaker[Session], task_id: uuid.UUID, is_stale: Callable[[Task], bool]
) -> Claim | None:
    """A fencing token on a succeeded task that ``is_stale`` says is out of date, or
    None (gone, not succeeded, already up to date, or another re-render just took it).
    The task stays ``succeeded``: bumping ``attempts`` (which a finished task no longer
    spends) is the token, as a claim's is."""
    with sessions.begin() as session:
        task = session.get(Task, task_id)
        if task is None or task.deleted_at is not None or task.status != TaskStatus.succeeded:
            return None
        if not is_stale(task):
            return None  # a second backfill, or a duplicate message: done already
        taken = session.execute(
            update(Task)
            .where(Task.id == task_id)
            .where(Task.status == TaskStatus.succeeded)
            .where(Task.attempts == task.attempts)
            .values(attempts=Task.attempts + 1)
            .returning(
                Task.attempts,
                Task.original_key,
                Task.original_sha256,
                Task.focal_x,
                Task.focal_y,
            )
            .execution_options(synchronize_session=False)
        ).one_or_none()
    if taken is None:
        return None
    focal = focal_of(taken.focal_x, taken.focal_y)
    return Claim(task_id, taken.attempts, taken.original_key, taken.original_sha256, focal=focal)


def swap_variants(
    sessions: sessionmaker[Session],
    claim: Claim,
    variants: list[Variant],
    described: Mapping[str, Any] | None = None,
) -> bool:
    """Replace a succeeded task's variants with a re-render's, in one commit, only while
    the re-render's token is still the latest. False: deleted meanwhile, or a newer
    re-render took over (the caller removes what it wrote). ``described``: the columns
    that say what was made (report, placeholder, render spec), swapped in the same
    commit so they never describe the previews that were replaced."""
    with sessions.begin() as session:
        still_ours = session.execute(
            update(Task)
            .where(Task.id == claim.task_id, live())
            .where(Task.status == TaskStatus.succeeded)
            .where(Task.attempts == claim.attempt)
            # A re-render makes every format: nothing stays due (the fencing token
            # is unchanged, so this also takes the row lock for the swap).
            .values(attempts=claim.attempt, extras_due=None, extras_attempts=0, **(described or {}))
            .execution_options(synchronize_session=False)
        )
        if still_ours.rowcount != 1:  # type: ignore[attr-defined]
            return False
        session.execute(delete(Variant).where(Variant.task_id == claim.task_id))
        session.add_all(variants)
    return True
