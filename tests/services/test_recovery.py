"""Recovery (services/recovery.py): tasks failed by a transient cause queued again, and
direct uploads that never came failed at their expiry."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from imagepipe.db.models import Task, TaskStatus, utcnow
from imagepipe.services import events, recovery
from tests.services.conftest import AddTask


def test_only_transient_failures_that_were_queued_are_requeued_oldest_first(
    sessions: sessionmaker[Session], add_task: AddTask, notified: events.RecordingNotifier
) -> None:
    now = utcnow()
    failed = {"status": TaskStatus.failed, "enqueued_at": now - timedelta(hours=1)}
    newer = add_task(**failed, error_code="service_unavailable", finished_at=now, attempts=2)
    older = add_task(
        **failed, error_code="service_unavailable", finished_at=now - timedelta(minutes=5)
    )
    add_task(**failed, error_code="invalid_image", finished_at=now)  # the same again
    # A refused direct upload was never queued: nothing to queue again.
    add_task(status=TaskStatus.failed, error_code="service_unavailable", finished_at=now)
    add_task(**failed, error_code="service_unavailable", deleted_at=now)  # a tombstone
    assert recovery.requeueable(sessions) == [older, newer]
    assert recovery.requeue(sessions, limit=1) == [older]
    assert recovery.requeue(sessions) == [newer]
    assert recovery.requeue(sessions) == []
    assert notified.notified == [older, newer]
    with sessions() as session:
        task = session.get(Task, newer)
        assert task is not None
        assert task.status == TaskStatus.queued
        assert task.error_code is None and task.finished_at is None
        assert task.attempts == 2  # the budget still stops a poison image


def test_uploads_past_their_expiry_fail_and_name_their_keys(
    sessions: sessionmaker[Session], add_task: AddTask, notified: events.RecordingNotifier
) -> None:
    now = utcnow()
    waiting = {"status": TaskStatus.awaiting_upload}
    late = add_task(**waiting, upload_expires_at=now - timedelta(seconds=1))
    add_task(**waiting, upload_expires_at=now + timedelta(minutes=5))
    add_task(status=TaskStatus.queued, upload_expires_at=now - timedelta(minutes=5))
    assert recovery.expire_uploads(sessions, now) == [f"originals/{late}"]
    assert recovery.expire_uploads(sessions, now) == []
    assert notified.notified == [late]
    with sessions() as session:
        task = session.get(Task, late)
        assert task is not None and task.status == TaskStatus.failed
        assert task.error_code == "upload_expired" and task.finished_at is not None
