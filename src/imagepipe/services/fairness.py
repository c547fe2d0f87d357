"""A fair share of the render workers between owners.

Each render is published at a priority level taken from its owner's backlog at that
moment: the number of the owner's other tasks queued or processing, as a bit length
(0 → level 0, 1 → 1, 2-3 → 2, 4-7 → 3, … capped at the last level). The broker pops
level 0 first. So an owner with one task waiting goes ahead of an owner with a hundred:
the hundred-task burst put most of its tasks at levels 5-7, and a newcomer's task at
level 0 waits only for the renders already running and those at level 0, never for the
burst. One owner's own tasks keep their order (its levels only grow with its backlog).

Why priorities rather than a queue per owner: Celery consumes a fixed set of queues,
while owners come and go; priority lists are ten fixed Redis lists that kombu already
pops in order, and they keep every guarantee of the render queue (acks late, the
visibility timeout restores a message to its own level, the reconciler republishes).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from imagepipe.db.models import Task, TaskStatus
from imagepipe.queue import PRIORITY_LEVELS

LAST_LEVEL = PRIORITY_LEVELS - 1
# Counting past this changes no level: the count stops here.
BACKLOG_CAP = 1 << (LAST_LEVEL - 1)
WAITING = (TaskStatus.queued, TaskStatus.processing)


def level(backlog: int) -> int:
    """The priority level (0 first) of a render whose owner has ``backlog`` others."""
    return min(LAST_LEVEL, max(backlog, 0).bit_length())


def _owned_by(owner: str | None) -> ColumnElement[bool]:
    return Task.owner_scope.is_(None) if owner is None else Task.owner_scope == owner


def priority(session: Session, owner: str | None) -> int:
    """The level for publishing a task of ``owner`` (queued, in this session or committed) now:
    from its owner's other waiting tasks, counted up to BACKLOG_CAP. One count that the
    ``(owner_scope, status)`` index answers alone, bounded whatever the backlog."""
    waiting = (
        select(Task.owner_scope)
        .where(_owned_by(owner), Task.status.in_(WAITING))
        .limit(BACKLOG_CAP + 1)
        .subquery()
    )
    counted = session.scalar(select(func.count()).select_from(waiting)) or 0
    return level(counted - 1)  # the task itself is one of them


def priorities(session: Session, task_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Levels for republishing several tasks at once (the reconciler's batch): each
    from its owner's waiting tasks, in two queries whatever the batch's size."""
    ids = list(task_ids)
    if not ids:
        return {}
    owners = dict(session.execute(select(Task.id, Task.owner_scope).where(Task.id.in_(ids))).all())
    counts = dict(
        session.execute(
            select(Task.owner_scope, func.count())
            .where(Task.owner_scope.in_({o for o in owners.values() if o is not None}))
            .where(Task.status.in_(WAITING))
            .group_by(Task.owner_scope)
        ).all()
    )
    # Each task is one of its owner's waiting tasks: the others are one fewer.
    return {task_id: level(counts.get(owners.get(task_id), 1) - 1) for task_id in ids}
