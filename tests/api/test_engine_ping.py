"""The API's engine pings a pooled connection on every checkout, as pool_pre_ping did,
in one simple query instead of SQLAlchemy's BEGIN; SELECT; ROLLBACK: a live connection
is handed out again, a dead one is replaced before anyone sees it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from imagepipe.db import engine as engines
from tests.harness.app import NO_REDIS, make_settings

pytestmark = [pytest.mark.anyio, pytest.mark.servers]


@pytest.fixture
async def engine(postgres_url: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    settings = make_settings(tmp_path, postgres_url, NO_REDIS)
    engine = engines.make_async_engine(settings.resolved_database_url)
    yield engine
    await engine.dispose()


async def _backend(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(text("SELECT pg_backend_pid()")))


def _driver_queries(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The simple queries the driver sends (the ping, BEGIN, ROLLBACK), in order."""
    sent: list[str] = []
    execute = asyncpg.Connection.execute

    async def recorded(self: asyncpg.Connection, query: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(query)
        return await execute(self, query, *args, **kwargs)

    monkeypatch.setattr(asyncpg.Connection, "execute", recorded)
    return sent


async def test_a_live_connection_is_pinged_once_and_handed_out_again(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await _backend(engine)  # a new connection: not pinged
    sent = _driver_queries(monkeypatch)
    assert await _backend(engine) == first
    assert await _backend(engine) == first
    pings = [query for query in sent if query == "SELECT 1"]
    assert len(pings) == 2  # one per checkout, outside any transaction
    assert sent.count("BEGIN;") == 2  # the statements' own transactions only


async def test_a_pooled_connection_that_died_is_replaced_unseen(engine: AsyncEngine) -> None:
    first = await _backend(engine)
    killer = await asyncpg.connect(
        engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    )
    try:
        await killer.execute(f"SELECT pg_terminate_backend({first})")
    finally:
        await killer.close()
    assert await _backend(engine) != first  # the ping failed: a new connection answered
