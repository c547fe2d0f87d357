"""Shared fixtures: real Redis, real databases, the app, a real worker process.

The helpers behind them live in tests/harness/; tests import from there, never from here.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import redis as redis_lib

from imagepipe.api.app import create_app
from imagepipe.config import Settings
from tests.harness.app import CROP_VARIANTS, make_settings, open_client
from tests.harness.postgres import PrivatePostgres, private_postgres
from tests.harness.processes import (
    TEST_API_KEY,
    DevServer,
    WorkerProcess,
    run_dev_server,
    settings_env,
)
from tests.harness.redis import RedisServer, redis_server
from tests.harness.seaweedfs import SeaweedFS, seaweedfs


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PrivatePostgres]:
    """The run's own PostgreSQL, started the first time a test needs it."""
    with private_postgres() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PrivatePostgres) -> Iterator[str]:
    """A throwaway database on the run's PostgreSQL (production's database)."""
    with postgres_server.database() as url:
        yield url


@pytest.fixture(scope="session")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """One real `imagepipe dev` for the page and CLI tests of the whole run."""
    with run_dev_server(tmp_path_factory.mktemp("dev-open")) as server:
        yield server


@pytest.fixture(scope="session")
def secured_dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """A second one that requires TEST_API_KEY, started only if a test asks for it."""
    with run_dev_server(tmp_path_factory.mktemp("dev-secured"), api_key=TEST_API_KEY) as server:
        yield server


@pytest.fixture(scope="session")
def shared_redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture
def redis_url(shared_redis: RedisServer) -> str:
    # Each test starts with an empty broker: no message of another test can reach it.
    client = redis_lib.Redis.from_url(shared_redis.url)
    client.flushall()
    client.close()
    return shared_redis.url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'imagepipe.db'}"
    # Only the PostgreSQL half asks for the server: a SQLite-only run never starts one.
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'imagepipe.db'}"


@pytest.fixture
def settings(tmp_path: Path, sqlite_url: str, redis_url: str) -> Settings:
    """SQLite settings; tests that must run on both databases use ``any_db_settings``."""
    return make_settings(tmp_path, sqlite_url, redis_url)


@pytest.fixture
def any_db_settings(tmp_path: Path, database_url: str, redis_url: str) -> Settings:
    return make_settings(tmp_path, database_url, redis_url)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with open_client(create_app(settings)) as c:
        yield c


# SQLite settings and an in-process client whose tasks get AVIF and WebP as extras.
@pytest.fixture
def avif_settings(tmp_path: Path, sqlite_url: str, redis_url: str) -> Settings:
    return make_settings(tmp_path, sqlite_url, redis_url, extra_formats=("AVIF", "WEBP"))


@pytest.fixture
async def avif_client(avif_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with open_client(create_app(avif_settings)) as client:
        yield client


# SQLite settings and a client whose variants include cover crops (CROP_VARIANTS).
@pytest.fixture
def crop_settings(tmp_path: Path, sqlite_url: str, redis_url: str) -> Settings:
    return make_settings(tmp_path, sqlite_url, redis_url, variants=CROP_VARIANTS)


@pytest.fixture
async def crop_client(crop_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with open_client(create_app(crop_settings)) as client:
        yield client


@pytest.fixture
async def any_db_client(any_db_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with open_client(create_app(any_db_settings)) as c:
        yield c


@pytest.fixture
def worker(settings: Settings) -> Iterator[WorkerProcess]:
    process = WorkerProcess(settings_env(settings))
    process.start()
    yield process
    process.stop()


@pytest.fixture
def any_db_worker(any_db_settings: Settings) -> Iterator[WorkerProcess]:
    process = WorkerProcess(settings_env(any_db_settings))
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """One real SeaweedFS for the run; each test uses its own key prefix in it."""
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture
def s3_env(seaweed: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This process (and the subprocesses given the result) use ``seaweed`` under a
    prefix of the test's own."""
    env = seaweed.client_env(prefix=f"t-{uuid.uuid4().hex[:12]}")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env
