"""Engines: async for the API, sync for the worker and migrations, from one URL."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError, InvalidatePoolError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

# async driver -> sync driver of the same database
_SYNC_DRIVERS = {
    "sqlite+aiosqlite": "sqlite+pysqlite",
    "postgresql+asyncpg": "postgresql+psycopg",
}


def sync_url(url: str) -> str:
    parsed = make_url(url)
    driver = _SYNC_DRIVERS.get(parsed.drivername, parsed.drivername)
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def async_url(url: str) -> str:
    parsed = make_url(url)
    reverse = {v: k for k, v in _SYNC_DRIVERS.items()}
    reverse.update({"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"})
    driver = reverse.get(parsed.drivername, parsed.drivername)
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def _is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while the worker writes; busy_timeout waits for the
    # writer instead of failing with "database is locked"; FKs for ON DELETE CASCADE.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _connect_args(url: str) -> dict[str, Any]:
    if _is_sqlite(url):
        return {"timeout": 10}
    # Fail fast when PostgreSQL is down instead of hanging a request.
    if make_url(url).drivername.endswith("asyncpg"):
        return {"timeout": 5, "command_timeout": 30}
    return {"connect_timeout": 5}


def make_async_engine(url: str) -> AsyncEngine:
    url = async_url(url)
    if not _is_sqlite(url):
        engine = create_async_engine(url, connect_args=_connect_args(url))
        _ping_on_checkout(engine)
        return engine
    # SQLite has one writer at a time, and a writer that finds the lock taken sleeps
    # in steps of up to 100 ms. One pooled connection queues the API's statements in
    # the pool instead, which is fairer and faster under concurrent uploads.
    engine = create_async_engine(
        url, pool_size=1, max_overflow=0, pool_timeout=30, connect_args=_connect_args(url)
    )
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


# pool_pre_ping's check, kept on every checkout, in one round trip instead of three:
# SQLAlchemy's asyncpg ping wraps its query in BEGIN ... ROLLBACK (for pgbouncer's
# transaction mode, where a prepared statement may land on another server connection);
# a query without parameters goes as a simple query, which prepares nothing, so it
# needs no transaction around it. As with pool_pre_ping, a new connection is not
# pinged, and a failed ping means the database went away: every pooled connection is
# replaced, and the checkout gets a new one.
_FRESH = "imagepipe_fresh"


def _ping_on_checkout(engine: AsyncEngine) -> None:
    def connect(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_FRESH] = True

    def checkout(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        if record.info.pop(_FRESH, False):
            return
        try:
            # run_async: SQLAlchemy's way to await the driver inside a pool event.
            dbapi_connection.run_async(lambda driver: driver.execute("SELECT 1"))
        except Exception as error:
            raise InvalidatePoolError(f"pooled connection failed its ping: {error!r}") from error

    event.listen(engine.sync_engine.pool, "connect", connect)
    event.listen(engine.sync_engine.pool, "checkout", checkout)


# With ``idle_pings`` (the worker's runtime), a pooled connection used less than this
# long ago is handed out as it is; one idle longer is pinged first. SQLAlchemy's
# pool_pre_ping pings on every checkout: a round trip per transaction, two per task on
# a busy worker. A connection that died within the window (the database restarted
# mid-burst) fails its statement with a disconnect, which is transient on every worker
# path (services.transient): the claim is given back and retried, and SQLAlchemy
# replaces every connection the pool held before it.
PING_AFTER_IDLE = 2.0
_IDLE_SINCE = "imagepipe_idle_since"


def _ping_when_idle(engine: Engine) -> None:
    def checkin(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    def checkout(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        # A new connection (its info is cleared when one is replaced) has no mark.
        since = record.info.get(_IDLE_SINCE)
        if since is None or time.monotonic() - since < PING_AFTER_IDLE:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            # The pool discards this connection and checks out a new one.
            raise DisconnectionError(f"idle connection failed its ping: {error!r}") from error

    event.listen(engine.pool, "checkin", checkin)
    event.listen(engine.pool, "checkout", checkout)


def make_sync_engine(url: str, *, idle_pings: bool = False) -> Engine:
    """The sync engine. It pings a pooled connection before handing it out (a dead one
    is replaced unseen); with ``idle_pings``, only one idle for ``PING_AFTER_IDLE``: for
    callers that retry a disconnect as the transient error it is (the worker)."""
    url = sync_url(url)
    engine = create_engine(url, pool_pre_ping=not idle_pings, connect_args=_connect_args(url))
    if idle_pings:
        _ping_when_idle(engine)
    if _is_sqlite(url):
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def async_session_factory(
    engine: AsyncEngine, info: dict[str, Any] | None = None
) -> async_sessionmaker[Any]:
    """``info``: copied into every session (the runtime's hooks ride there)."""
    return async_sessionmaker(engine, expire_on_commit=False, info=info)


def sync_session_factory(
    engine: Engine, info: dict[str, Any] | None = None
) -> sessionmaker[Session]:
    """``info``: copied into every session (the runtime's hooks ride there)."""
    return sessionmaker(engine, expire_on_commit=False, info=info)
