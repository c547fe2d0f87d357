"""Listing tasks a page at a time (services/tasks.py): newest first, a cursor that
survives new tasks, the caller's visibility, the status filter."""

from __future__ import annotations

import base64
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import ColumnElement
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.db.models import Task, TaskStatus, utcnow
from imagepipe.errors import InvalidRequest
from imagepipe.services import tasks
from tests.services.conftest import AddTask


def _page(
    session: Session,
    *,
    visible: ColumnElement[bool] | None = None,
    status: TaskStatus | None = None,
    limit: int = 20,
    cursor: str | None = None,
) -> tasks.Page:
    return tasks.list_page(session, visible=visible, status=status, limit=limit, cursor=cursor)


def _all_pages(session: Session) -> list[uuid.UUID]:
    seen: list[uuid.UUID] = []
    cursor = None
    while True:
        page = _page(session, limit=2, cursor=cursor)
        seen += [task.id for task in page.tasks]
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


def test_pages_run_newest_first_and_end_with_no_cursor(
    sessions: sessionmaker[Session], add_task: AddTask
) -> None:
    start = utcnow()
    made = [add_task(created_at=start + timedelta(seconds=i)) for i in range(5)]
    add_task(created_at=start + timedelta(seconds=9), deleted_at=start)  # not listed
    with sessions() as session:
        assert _all_pages(session) == made[::-1]
        first = _page(session, limit=2)
        # A task added after the first page does not shift the next one.
        add_task(created_at=start + timedelta(seconds=10))
        after = _page(session, limit=2, cursor=first.next_cursor)
    assert [task.id for task in after.tasks] == [made[2], made[1]]


def test_tasks_created_at_the_same_moment_are_each_listed_once(
    sessions: sessionmaker[Session], add_task: AddTask
) -> None:
    moment = utcnow()
    made = {add_task(created_at=moment) for _ in range(5)}
    with sessions() as session:
        listed = _all_pages(session)
    assert sorted(listed) == sorted(made) and len(listed) == 5


def test_visibility_and_status_narrow_the_list(
    sessions: sessionmaker[Session], add_task: AddTask
) -> None:
    mine = add_task(owner_scope="me", status=TaskStatus.succeeded)
    add_task(owner_scope="me", status=TaskStatus.failed)
    add_task(owner_scope="other", status=TaskStatus.succeeded)
    with sessions() as session:
        page = _page(session, visible=Task.owner_scope == "me", status=TaskStatus.succeeded)
    assert [task.id for task in page.tasks] == [mine]


@pytest.mark.parametrize(
    "cursor",
    [
        "!!!",
        base64.urlsafe_b64encode(b"not a time|x").decode(),
        base64.urlsafe_b64encode(f"2026-01-01T00:00:00|{'z' * 8}".encode()).decode(),
        base64.urlsafe_b64encode(f"9999-12-31T23:59-23:59|{uuid.UUID(int=1)}".encode()).decode(),
    ],
    ids=["not base64", "not a time", "not an id", "off the calendar"],
)
def test_a_cursor_it_did_not_make_is_refused(sessions: sessionmaker[Session], cursor: str) -> None:
    with sessions() as session, pytest.raises(InvalidRequest):
        _page(session, cursor=cursor)
