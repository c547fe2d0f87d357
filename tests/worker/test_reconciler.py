"""The reconciler's recovery pass: bounded batches, oldest first, SKIP LOCKED on
PostgreSQL, no re-publishing while the render queue is long, and its own queue."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import redis as redis_lib
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.config import Settings
from imagepipe.db.engine import make_sync_engine, sync_session_factory
from imagepipe.db.models import Task, TaskStatus, utcnow
from imagepipe.queue import MAINTENANCE_QUEUE, RECONCILE, RENDER_QUEUE, CeleryQueue
from imagepipe.services import reconciler, recovery
from imagepipe.storage import LocalStorage
from imagepipe.worker.celery_app import create_celery
from tests.harness.app import make_settings


def lost_tasks(sessions: sessionmaker[Session], count: int) -> list[uuid.UUID]:
    """Queued rows whose message was lost: created (and enqueued) a minute ago and
    more, oldest first."""
    ids = []
    with sessions.begin() as session:
        for n in range(count):
            created = utcnow() - timedelta(seconds=600 - n)
            task = Task(
                id=uuid.uuid4(), filename="a.jpg", original_key=f"originals/{n}",
                original_format="JPEG",
                original_width=10, original_height=10, original_size_bytes=1,
                original_sha256="0" * 64, status=TaskStatus.queued, created_at=created,
                enqueued_at=created,
            )  # fmt: skip
            session.add(task)
            ids.append(task.id)
    return ids


def test_recovery_is_batched_oldest_first(
    sessions: sessionmaker[Session], any_db_settings: Settings
) -> None:
    ids = lost_tasks(sessions, 5)
    assert recovery.recover(sessions, any_db_settings, limit=2).requeued == ids[:2]
    assert recovery.recover(sessions, any_db_settings, limit=2).requeued == ids[2:4]
    assert recovery.recover(sessions, any_db_settings, limit=2).requeued == ids[4:]
    assert recovery.recover(sessions, any_db_settings, limit=2).requeued == []


def test_recovery_skips_rows_another_transaction_holds(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str, redis_url: str
) -> None:
    """PostgreSQL: a row another reconciler (or a slow worker) has locked is skipped,
    not waited for."""
    settings = make_settings(tmp_path_factory.mktemp("pg"), postgres_url, redis_url)
    engine = make_sync_engine(settings.resolved_database_url)
    sessions = sync_session_factory(engine)
    try:
        ids = lost_tasks(sessions, 3)
        with engine.connect() as holder:
            holder.execute(
                select(Task.id).where(Task.id == ids[0]).with_for_update()
            ).one()  # held until this block ends
            assert recovery.recover(sessions, settings).requeued == ids[1:]
            holder.rollback()
        assert recovery.recover(sessions, settings).requeued == [ids[0]]
    finally:
        engine.dispose()


def test_no_republishing_while_the_render_queue_is_long(
    sessions: sessionmaker[Session], any_db_settings: Settings, redis_url: str
) -> None:
    broker = redis_lib.Redis.from_url(redis_url)
    queue = CeleryQueue(create_celery(any_db_settings))
    storage = LocalStorage(any_db_settings.resolved_storage_root)
    try:
        ids = lost_tasks(sessions, 3)
        # A backlog: the rows are most likely waiting in it, not lost.
        broker.rpush(RENDER_QUEUE, *[b"waiting"] * recovery.RECOVER_BATCH)
        report = reconciler.run(sessions, storage, queue, any_db_settings)
        assert report["requeued"] == 0
        assert broker.llen(RENDER_QUEUE) == recovery.RECOVER_BATCH
        # The backlog drained: now they are lost, and published once each.
        broker.delete(RENDER_QUEUE)
        assert reconciler.run(sessions, storage, queue, any_db_settings)["requeued"] == 3
        assert broker.llen(RENDER_QUEUE) == 3
        with sessions() as session:
            assert {t.status for t in session.scalars(select(Task))} == {TaskStatus.queued}
        assert len(ids) == 3
    finally:
        queue.close()
        broker.close()


def test_the_reconciler_runs_on_its_own_queue(any_db_settings: Settings, redis_url: str) -> None:
    broker = redis_lib.Redis.from_url(redis_url)
    app = create_celery(any_db_settings)
    try:
        app.send_task(RECONCILE)
        assert broker.llen(MAINTENANCE_QUEUE) == 1
        assert broker.llen(RENDER_QUEUE) == 0
    finally:
        app.close()
        broker.close()
