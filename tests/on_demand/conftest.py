"""Settings of the on-demand tests: signing keys on; first requests do not wait (the
in-process tests render the published messages themselves)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from imagepipe.api.app import create_app
from imagepipe.config import Settings
from tests.harness.app import make_settings, open_client
from tests.on_demand.inline import SIGNING_KEY, SettingsWith


@pytest.fixture
def od_settings(tmp_path: Path, database_url: str, redis_url: str) -> Settings:
    """On SQLite and on PostgreSQL (the derived rows, their races and the eviction)."""
    return make_settings(
        tmp_path, database_url, redis_url, url_signing_keys=(SIGNING_KEY,), on_demand_wait_seconds=0
    )


@pytest.fixture
async def od_client(od_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with open_client(create_app(od_settings)) as client:
        yield client


@pytest.fixture
def settings_with(tmp_path: Path, sqlite_url: str, redis_url: str) -> SettingsWith:
    """SQLite settings for a test of its own: signing on, no waiting, then ``overrides``."""

    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "url_signing_keys": (SIGNING_KEY,),
            "on_demand_wait_seconds": 0,
            **overrides,
        }
        return make_settings(tmp_path, sqlite_url, redis_url, **values)

    return make
