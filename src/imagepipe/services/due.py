"""Follow-up work recorded as due on the task row, taken for publishing again.

Extra formats (``services.extras``) and focal re-renders (``services.rerender``) each
record when their follow-up was published; the reconciler publishes again those older
than the grace period. Both take their batch the same way: here.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from imagepipe.config import Settings
from imagepipe.db.models import Task


def grace_start(settings: Settings, now: datetime) -> datetime:
    """Published before this and not done: lost, not waiting (a message in the queue
    is taken within the grace period; one being worked on, within a lease)."""
    return now - timedelta(seconds=max(settings.queued_grace_seconds, settings.lease_seconds))


def take(
    sessions: sessionmaker[Session],
    lost: ColumnElement[bool],
    order_by: InstrumentedAttribute[Any],
    values: Mapping[str, Any],
    limit: int,
) -> list[uuid.UUID]:
    """Up to ``limit`` ids of tasks matching ``lost`` (first by ``order_by``), given
    ``values`` (marked as published) in the same commit; rows another run holds are
    skipped. The caller publishes them after this commit."""
    with sessions.begin() as session:
        ids = list(
            session.scalars(
                select(Task.id)
                .where(lost)
                .order_by(order_by)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        )
        if ids:
            session.execute(
                update(Task)
                .where(Task.id.in_(ids), lost)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
    return ids
