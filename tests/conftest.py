"""Shared fixtures: real Redis, real databases, the app, a real worker process."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import redis as redis_lib
from fastapi import FastAPI

from imagepipe.api.app import create_app
from imagepipe.config import Settings
from imagepipe.db.migrate import upgrade
from tests.devserver import TEST_API_KEY, DevServer, run_dev_server
from tests.services import RedisServer, WorkerProcess, postgres_database, redis_server


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


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
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'imagepipe.db'}"
    else:
        with postgres_database() as url:
            yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'imagepipe.db'}"


def make_settings(
    tmp_path: Path, database_url: str, redis_url: str, **overrides: object
) -> Settings:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        redis_url=redis_url,
        log_format="text",
        **overrides,  # type: ignore[arg-type]
    )
    upgrade(settings.resolved_database_url)
    return settings


@pytest.fixture
def settings(tmp_path: Path, sqlite_url: str, redis_url: str) -> Settings:
    """SQLite settings; tests that must run on both databases use ``any_db_settings``."""
    return make_settings(tmp_path, sqlite_url, redis_url)


@pytest.fixture
def any_db_settings(tmp_path: Path, database_url: str, redis_url: str) -> Settings:
    return make_settings(tmp_path, database_url, redis_url)


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a subprocess the same settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEPIPE_")}
    env.update(
        IMAGEPIPE_DATA_DIR=str(settings.data_dir),
        IMAGEPIPE_DATABASE_URL=settings.resolved_database_url,
        IMAGEPIPE_REDIS_URL=settings.redis_url,
        IMAGEPIPE_STORAGE_ROOT=str(settings.resolved_storage_root),
        IMAGEPIPE_LOG_FORMAT="text",
        IMAGEPIPE_TASK_SOFT_TIME_LIMIT=str(settings.task_soft_time_limit),
        IMAGEPIPE_TASK_HARD_TIME_LIMIT=str(settings.task_hard_time_limit),
        IMAGEPIPE_VISIBILITY_TIMEOUT=str(settings.visibility_timeout),
        IMAGEPIPE_LEASE_MARGIN_SECONDS=str(settings.lease_margin_seconds),
        IMAGEPIPE_QUEUED_GRACE_SECONDS=str(settings.queued_grace_seconds),
        IMAGEPIPE_RECONCILE_INTERVAL_SECONDS=str(settings.reconcile_interval_seconds),
        IMAGEPIPE_MAX_ATTEMPTS=str(settings.max_attempts),
        IMAGEPIPE_MAX_PIXELS=str(settings.max_pixels),
        IMAGEPIPE_MAX_UPLOAD_BYTES=str(settings.max_upload_bytes),
        IMAGEPIPE_WORKER_METRICS_PORT="0",
        MALLOC_ARENA_MAX="2",
    )
    return env


@asynccontextmanager
async def open_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with open_client(create_app(settings)) as c:
        yield c


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
