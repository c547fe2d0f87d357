"""Listing tasks, newest first, a page at a time.

A page ends with an opaque cursor: the last task's creation time and id, so the next
page starts strictly after it even while new tasks arrive (keyset paging, never an
offset that shifts under inserts).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from imagepipe.db.models import Task, TaskStatus, live
from imagepipe.errors import InvalidRequest


@dataclass(frozen=True)
class Page:
    tasks: list[Task]
    # Where the next page starts; None on the last page.
    next_cursor: str | None


def list_page(
    session: Session,
    *,
    visible: ColumnElement[bool] | None,
    status: TaskStatus | None,
    limit: int,
    cursor: str | None,
) -> Page:
    """Up to ``limit`` live tasks matching ``visible`` (None: every task) and
    ``status``, after ``cursor``. InvalidRequest for a cursor this did not make."""
    query = (
        select(Task).where(live()).order_by(Task.created_at.desc(), Task.id.desc()).limit(limit + 1)
    )
    if status is not None:
        query = query.where(Task.status == status)
    if visible is not None:
        query = query.where(visible)
    if cursor:
        created, task_id = _decode_cursor(cursor)
        query = query.where(
            or_(Task.created_at < created, and_(Task.created_at == created, Task.id < task_id))
        )
    rows = list(session.scalars(query).all())
    page, more = rows[:limit], len(rows) > limit
    return Page(tasks=page, next_cursor=_encode_cursor(page[-1]) if more else None)


def _encode_cursor(task: Task) -> str:
    raw = f"{task.created_at.isoformat()}|{task.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, _, task_id = raw.partition("|")
        moment = datetime.fromisoformat(created)
        # Stored times are UTC; a naive or shifted time is normalised (or refused if
        # shifting it leaves the calendar, e.g. 9999-12-31T23:59-23:59).
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        return moment, uuid.UUID(task_id)
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise InvalidRequest("Malformed cursor.") from None


async def find_live(
    session: AsyncSession, task_id: uuid.UUID, *, fresh: bool = False
) -> Task | None:
    """The task if it exists and is not deleted (the API's path parameter's look-up).
    ``fresh``: read again what the session already holds (rows another process changed
    since)."""
    query = select(Task).where(Task.id == task_id, live())
    if fresh:
        query = query.execution_options(populate_existing=True)
    found: Task | None = await session.scalar(query)
    return found
