"""Extra formats due after a render (services/extras.py, services/due.py): what is due,
and which lost follow-ups the reconciler publishes again."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

from sqlalchemy.orm import Session, sessionmaker

from imagepipe.config import Settings
from imagepipe.db.models import Task, TaskStatus, utcnow
from imagepipe.services import due, extras
from tests.services.conftest import AddTask


def _variant(*formats: str) -> SimpleNamespace:
    return SimpleNamespace(renditions=[SimpleNamespace(format=f) for f in formats])


def test_due_are_the_expected_formats_some_variant_lacks_in_order() -> None:
    variants = [_variant("JPEG", "WEBP"), _variant("JPEG")]
    assert extras.due_after_render(["AVIF", "WEBP"], variants) == ["AVIF", "WEBP"]  # type: ignore[arg-type]
    every = [_variant("JPEG", "WEBP", "AVIF")] * 2
    assert extras.due_after_render(["AVIF", "WEBP"], every) == []  # type: ignore[arg-type]


def test_lost_follow_ups_are_taken_once_past_the_grace(
    sessions: sessionmaker[Session], add_task: AddTask, fast_settings: Settings
) -> None:
    now = utcnow()
    grace = due.grace_start(fast_settings, now)
    done = {"status": TaskStatus.succeeded, "extras_due": "WEBP"}
    never = add_task(**done, finished_at=now - timedelta(minutes=2))
    lost = add_task(
        **done,
        finished_at=now - timedelta(minutes=1),
        extras_enqueued_at=grace - timedelta(seconds=1),
    )
    add_task(**done, finished_at=now, extras_enqueued_at=now)  # still in the queue
    add_task(**done, finished_at=now, extras_attempts=fast_settings.max_attempts)  # gave up
    add_task(status=TaskStatus.succeeded, finished_at=now)  # nothing due
    add_task(**{**done, "status": TaskStatus.failed}, finished_at=now)
    add_task(**done, finished_at=now, deleted_at=now)  # a tombstone
    assert extras.due_pending(sessions, fast_settings, now, limit=1) == [never]
    assert extras.due_pending(sessions, fast_settings, now) == [lost]
    # Marked as published: the next run (within the grace) takes neither again.
    assert extras.due_pending(sessions, fast_settings, now) == []
    with sessions() as session:
        task = session.get(Task, never)
        assert task is not None and task.extras_enqueued_at is not None
