"""Claiming: who may take a task, on both databases."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.config import Settings
from imagepipe.db.clock import db_now, db_now_plus
from imagepipe.db.models import Base, Task, TaskStatus, utcnow
from imagepipe.errors import InvalidImage, UploadExpired
from imagepipe.services import lifecycle, recovery, rendering
from imagepipe.services.holder import current_holder, holder_is_dead
from imagepipe.storage import LocalStorage


def add_task(sessions: sessionmaker[Session], **values: object) -> uuid.UUID:
    task = Task(
        filename="a.jpg", original_key="originals/x", original_format="JPEG",
        original_width=10, original_height=10, original_size_bytes=1, original_sha256="0" * 64,
        **values,
    )  # fmt: skip
    with sessions.begin() as session:
        session.add(task)
    return task.id


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_migrations_match_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


def test_queued_task_is_claimed_once(
    sessions: sessionmaker[Session], any_db_settings: Settings
) -> None:
    task_id = add_task(sessions)
    first = lifecycle.claim(sessions, task_id, any_db_settings)
    assert first is not None and first.attempt == 1
    assert lifecycle.claim(sessions, task_id, any_db_settings) is None  # live lease
    with sessions() as session:
        assert session.get_one(Task, task_id).claimed_by == current_holder()


def test_dead_holder_on_this_host_is_taken_over_at_once(
    sessions: sessionmaker[Session], any_db_settings: Settings
) -> None:
    lease = utcnow() + timedelta(hours=1)
    dead = f"{current_holder().rpartition(':')[0]}:{dead_pid()}"
    assert holder_is_dead(dead)
    task_id = add_task(
        sessions, status=TaskStatus.processing, attempts=1, lease_expires_at=lease,
        claimed_by=dead,
    )  # fmt: skip
    taken = lifecycle.claim(sessions, task_id, any_db_settings)
    assert taken is not None and taken.attempt == 2


@pytest.mark.parametrize(
    "holder",
    ["elsewhere:1", None, "garbage"],
)
def test_live_or_unknown_holders_keep_their_lease(
    sessions: sessionmaker[Session], any_db_settings: Settings, holder: str | None
) -> None:
    lease = utcnow() + timedelta(hours=1)
    task_id = add_task(
        sessions, status=TaskStatus.processing, attempts=1, lease_expires_at=lease,
        claimed_by=holder,
    )  # fmt: skip
    assert lifecycle.claim(sessions, task_id, any_db_settings) is None
    # Once the lease has expired, anyone may take it.
    with sessions.begin() as session:
        session.execute(
            update(Task).where(Task.id == task_id).values(lease_expires_at=utcnow() - timedelta(1))
        )
    assert lifecycle.claim(sessions, task_id, any_db_settings) is not None


def test_own_process_is_never_dead() -> None:
    assert not holder_is_dead(current_holder())


def test_a_render_bug_fails_at_once_not_after_every_attempt(
    sessions: sessionmaker[Session], any_db_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No real image triggers a bug on purpose, so the renderer is replaced here: the
    point is how process() classifies an unexpected exception."""

    def broken(*_: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(rendering, "render_variants", broken)
    task_id = add_task(sessions)
    storage = LocalStorage(any_db_settings.resolved_storage_root)
    storage.put_bytes("originals/x", b"the renderer never looks")
    outcome = rendering.process(sessions, storage, any_db_settings, task_id)
    assert outcome == rendering.Outcome.failed
    with sessions() as session:
        task = session.get_one(Task, task_id)
        assert (task.status, task.error_code, task.attempts) == (
            TaskStatus.failed, "internal_error", 1,
        )  # fmt: skip


def test_a_missing_original_fails_with_its_own_code(
    sessions: sessionmaker[Session], any_db_settings: Settings
) -> None:
    task_id = add_task(sessions)  # its original was never stored
    storage = LocalStorage(any_db_settings.resolved_storage_root)
    outcome = rendering.process(sessions, storage, any_db_settings, task_id)
    assert outcome == rendering.Outcome.failed
    with sessions() as session:
        task = session.get_one(Task, task_id)
        assert (task.status, task.error_code, task.attempts) == (
            TaskStatus.failed, "original_missing", 1,
        )  # fmt: skip


def test_leases_are_set_and_judged_by_the_database_clock(
    sessions: sessionmaker[Session], any_db_settings: Settings
) -> None:
    """Workers' clocks disagree; the database's is one. The lease is the database's
    now() plus the lease length, and a lease is expired when the database says so."""
    task_id = add_task(sessions)
    assert lifecycle.claim(sessions, task_id, any_db_settings) is not None
    with sessions() as session:
        lease, now = session.execute(
            select(Task.lease_expires_at, db_now()).where(Task.id == task_id)
        ).one()
    assert lease is not None
    ahead = (lease.replace(tzinfo=None) - now.replace(tzinfo=None)).total_seconds()
    assert 0 < ahead <= any_db_settings.lease_seconds
    # One second short of expiry by the database's clock: not claimable; one past: it is.
    with sessions.begin() as session:
        session.execute(
            update(Task).where(Task.id == task_id).values(lease_expires_at=db_now_plus(1))
        )
    assert lifecycle.claim(sessions, task_id, any_db_settings) is None
    with sessions.begin() as session:
        session.execute(
            update(Task).where(Task.id == task_id).values(lease_expires_at=db_now_plus(-1))
        )
    taken = lifecycle.claim(sessions, task_id, any_db_settings)
    assert taken is not None and taken.attempt == 2


def test_transient_releases_do_not_spend_the_budget(
    sessions: sessionmaker[Session], any_db_settings: Settings
) -> None:
    """With one attempt allowed, a claim given back because storage or the database
    failed leaves the task claimable; one given back for any other cause does not.
    The fencing token still grows with every claim."""
    settings = any_db_settings.model_copy(update={"max_attempts": 1})
    task_id = add_task(sessions)
    for attempt in (1, 2, 3):
        held = lifecycle.claim(sessions, task_id, settings)
        assert held is not None and held.attempt == attempt
        lifecycle.release(sessions, held, transient=True)
    held = lifecycle.claim(sessions, task_id, settings)
    assert held is not None and held.attempt == 4
    lifecycle.release(sessions, held, transient=False)
    assert lifecycle.claim(sessions, task_id, settings) is None  # the one attempt is spent
    with sessions() as session:
        task = session.get_one(Task, task_id)
        assert (task.status, task.attempts, task.transient_releases) == (TaskStatus.queued, 4, 3)


def test_requeue_takes_only_tasks_failed_by_transient_causes(
    sessions: sessionmaker[Session], any_db_settings: Settings
) -> None:
    transient = add_task(sessions, enqueued_at=utcnow())
    bad_image = add_task(sessions, enqueued_at=utcnow())
    refused_upload = add_task(sessions, status=TaskStatus.awaiting_upload)
    assert lifecycle.fail(sessions, transient, recovery.gave_up())
    assert lifecycle.fail(sessions, bad_image, InvalidImage())
    with sessions.begin() as session:
        assert lifecycle.refuse_upload(session, refused_upload, UploadExpired()) == []
    assert recovery.requeueable(sessions) == [transient]
    assert recovery.requeue(sessions) == [transient]
    assert recovery.requeue(sessions) == []  # moved: no longer matches
    with sessions() as session:
        task = session.get_one(Task, transient)
        assert (task.status, task.error_code, task.error_message, task.finished_at) == (
            TaskStatus.queued, None, None, None,
        )  # fmt: skip
        assert session.get_one(Task, bad_image).status == TaskStatus.failed
    assert lifecycle.claim(sessions, transient, any_db_settings) is not None
