"""What one render costs beside its imaging: the SQL statements, transactions and
connection checkouts, and the status notifications, of a first-attempt task that
succeeds. Each is a round trip the worker pays per task; the counts are pinned so a
change that adds one fails here and is a decision, not an accident."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.config import Settings
from imagepipe.db.engine import make_sync_engine, sync_session_factory
from imagepipe.db.models import Task
from imagepipe.services import events, rendering
from imagepipe.services.hooks import Hooks
from imagepipe.storage import MemoryStorage
from tests.harness.app import NO_REDIS, SettingsWith, make_settings, queue_upload
from tests.images import photo


@dataclass
class Counted:
    statements: list[str] = field(default_factory=list)
    transactions: int = 0
    checkouts: int = 0
    pings: int = 0

    def summary(self) -> dict[str, object]:
        return {
            "statements": [s.split(None, 1)[0].upper() for s in self.statements],
            "transactions": self.transactions,
            "checkouts": self.checkouts,
            "pings": self.pings,
        }


@dataclass
class Fixture:
    sessions: sessionmaker[Session]
    storage: MemoryStorage
    settings: Settings


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.servers)])
def jpeg_only(
    request: pytest.FixtureRequest, fast_settings_with: SettingsWith, tmp_path: Path
) -> Iterator[Fixture]:
    """JPEG-only settings on SQLite (fast tier) or PostgreSQL (production's database)."""
    if request.param == "sqlite":
        settings = fast_settings_with(extra_formats=[])
    else:
        url = request.getfixturevalue("postgres_url")
        settings = make_settings(tmp_path, url, NO_REDIS, extra_formats=[])
    # The engine as the worker's runtime builds it.
    engine = make_sync_engine(settings.resolved_database_url, idle_pings=True)
    try:
        yield Fixture(sync_session_factory(engine), MemoryStorage(), settings)
    finally:
        engine.dispose()


def _count(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Counted:
    counted = Counted()

    def statement(_conn: object, _cursor: object, sql: str, *_: object) -> None:
        counted.statements.append(" ".join(sql.split()))

    def begin(_conn: object) -> None:
        counted.transactions += 1

    def checkout(*_: object) -> None:
        counted.checkouts += 1

    # A pre-ping runs on the DBAPI connection, below the statement events.
    ping = engine.dialect.do_ping

    def counted_ping(dbapi_connection: Any) -> bool:
        counted.pings += 1
        return ping(dbapi_connection)

    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "begin", begin)
    event.listen(engine.pool, "checkout", checkout)
    monkeypatch.setattr(engine.dialect, "do_ping", counted_ping)
    return counted


# Statement verbs in order: the claim with the dedup look-up in its transaction, then
# the finishing transaction (the task's UPDATE, the rows, and the webhook outbox's one
# look-up of the task and its owner's subscriptions). The rows are two INSERTs whatever
# the number of variants and formats.
FIRST_ATTEMPT = {
    "statements": ["UPDATE", "SELECT", "UPDATE", "INSERT", "INSERT", "SELECT"],
    "transactions": 2,
    "checkouts": 2,
    "pings": 0,  # the connection was in use a moment ago (db.engine.PING_AFTER_IDLE)
}


def test_a_first_attempt_render_costs(jpeg_only: Fixture, monkeypatch: pytest.MonkeyPatch) -> None:
    task_id = queue_upload(jpeg_only.sessions, jpeg_only.storage, photo(64, 48), (64, 48))
    engine = jpeg_only.sessions.kw["bind"]
    notifier = events.RecordingNotifier()
    # The runtime's hooks, on a recording notifier: what the render announces is kept.
    sessions = sync_session_factory(engine, Hooks(notifier=notifier).session_info())
    published: list[uuid.UUID] = []
    counted = _count(engine, monkeypatch)
    outcome = rendering.process(
        sessions, jpeg_only.storage, jpeg_only.settings, task_id,
        publish_extras=published.append,
    )  # fmt: skip
    assert outcome == rendering.Outcome.succeeded
    assert counted.summary() == FIRST_ATTEMPT, "\n".join(counted.statements)
    # One notification per status change (processing, succeeded); no extras to hand on.
    assert notifier.notified == [task_id, task_id]
    assert published == []
    with jpeg_only.sessions() as session:
        variants = session.get_one(Task, task_id).variants
        assert {v.name for v in variants} == set(jpeg_only.settings.variants)
        for variant in variants:
            assert [r.storage_key for r in variant.renditions] == [variant.storage_key]
            assert jpeg_only.storage.stat(variant.storage_key).size == variant.size_bytes
