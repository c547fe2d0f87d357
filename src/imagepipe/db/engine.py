"""Engines: async for the API, sync for the worker and migrations, from one URL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

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
        return create_async_engine(url, pool_pre_ping=True, connect_args=_connect_args(url))
    # SQLite has one writer at a time, and a writer that finds the lock taken sleeps
    # in steps of up to 100 ms. One pooled connection queues the API's statements in
    # the pool instead, which is fairer and faster under concurrent uploads.
    engine = create_async_engine(
        url, pool_size=1, max_overflow=0, pool_timeout=30, connect_args=_connect_args(url)
    )
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def make_sync_engine(url: str) -> Engine:
    url = sync_url(url)
    engine = create_engine(url, pool_pre_ping=True, connect_args=_connect_args(url))
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
