"""Expired idempotency keys are purged by a periodic beat task."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.config import Settings
from imagepipe.db.engine import make_sync_engine, sync_session_factory
from imagepipe.db.models import IdempotencyKey, utcnow
from imagepipe.queue import PURGE_IDEMPOTENCY_KEYS
from imagepipe.services import idempotency
from imagepipe.worker.celery_app import create_celery
from tests.harness.processes import WorkerProcess
from tests.harness.wait import wait_until


def add_keys(sessions: sessionmaker[Session], **ages_hours: float) -> None:
    now = utcnow()
    with sessions.begin() as session:
        for key, age in ages_hours.items():
            created = now - timedelta(hours=age)
            session.add(
                IdempotencyKey(
                    scope="anonymous",
                    key=key,
                    fingerprint="f" * 64,
                    created_at=created,
                    expires_at=created + timedelta(hours=24),
                    response_status=202,
                    response_body="{}",
                )
            )


def remaining(sessions: sessionmaker[Session]) -> set[str]:
    with sessions() as session:
        return set(session.scalars(select(IdempotencyKey.key)))


def test_only_keys_past_their_24_hours_are_purged(sessions: sessionmaker[Session]) -> None:
    add_keys(sessions, old=25, older=300, fresh=1, nearly=23.9)
    assert idempotency.drop_expired(sessions) == 2
    assert remaining(sessions) == {"fresh", "nearly"}
    assert idempotency.drop_expired(sessions) == 0


def test_beat_schedules_the_purge(fast_settings: Settings) -> None:
    schedule = create_celery(fast_settings).conf.beat_schedule
    assert schedule["purge-idempotency-keys"]["task"] == PURGE_IDEMPOTENCY_KEYS


@pytest.mark.integration
def test_a_real_worker_runs_the_purge(settings: Settings, worker: WorkerProcess) -> None:
    engine = make_sync_engine(settings.resolved_database_url)
    try:
        sessions = sync_session_factory(engine)
        add_keys(sessions, old=30, fresh=2)
        create_celery(settings).send_task(PURGE_IDEMPOTENCY_KEYS)
        wait_until(
            lambda: remaining(sessions) == {"fresh"} or None,
            within=30,
            what="the expired key purged",
            logs=worker.output,
        )
    finally:
        engine.dispose()
