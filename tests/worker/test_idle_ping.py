"""The worker's engine (``idle_pings``) pings a pooled connection only after it sat
idle: a busy worker pays no ping per transaction, an idle one still never hands out a
dead connection, and one that dies while busy fails as the transient error the worker
retries."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from imagepipe.db import engine as engines
from imagepipe.services.transient import is_transient
from tests.harness.app import NO_REDIS, SettingsWith, make_settings


def _pings(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the engine's pings (they run on the DBAPI connection, below its events)."""
    pings: list[int] = []
    ping = engine.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pings.append(1)
        return ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    return pings


@pytest.fixture
def sqlite_engine(fast_settings_with: SettingsWith) -> Iterator[Engine]:
    engine = engines.make_sync_engine(fast_settings_with().resolved_database_url, idle_pings=True)
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_engine(postgres_url: str, tmp_path: Any) -> Iterator[Engine]:
    settings = make_settings(tmp_path, postgres_url, NO_REDIS)
    engine = engines.make_sync_engine(settings.resolved_database_url, idle_pings=True)
    yield engine
    engine.dispose()


def _select_one(engine: Engine) -> None:
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT 1")) == 1


def test_a_connection_in_use_is_not_pinged_an_idle_one_is(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    pings = _pings(sqlite_engine, monkeypatch)
    for _ in range(3):  # a new connection, then one back from the pool at once
        _select_one(sqlite_engine)
    assert pings == []
    monkeypatch.setattr(engines, "PING_AFTER_IDLE", 0.0)  # every connection is idle now
    _select_one(sqlite_engine)
    assert pings == [1]


def _kill_pooled(engine: Engine) -> None:
    """End the sessions of the engine's pooled connections, as a database restart would
    (from a connection of its own, outside the pool)."""
    killer = create_engine(engine.url, poolclass=NullPool)
    try:
        with killer.begin() as connection:
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
    finally:
        killer.dispose()


@pytest.mark.servers
def test_an_idle_connection_that_died_is_replaced_unseen(
    postgres_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _select_one(postgres_engine)
    _kill_pooled(postgres_engine)
    monkeypatch.setattr(engines, "PING_AFTER_IDLE", 0.0)
    _select_one(postgres_engine)  # the dead one fails its ping and is replaced


@pytest.mark.servers
def test_a_busy_connection_that_died_fails_transiently_once(postgres_engine: Engine) -> None:
    _select_one(postgres_engine)
    _kill_pooled(postgres_engine)
    with pytest.raises(Exception) as raised:
        _select_one(postgres_engine)
    assert is_transient(raised.value)
    _select_one(postgres_engine)  # the pool replaced its connections
