"""Shared fixtures: real Redis, real databases, the app, a real worker process; and the
fast family (``fast_settings``, ``fast_client``…): the app in-process on a SQLite file
with the doubles of ``api.parts`` instead of Redis.

Two tiers: ``make test`` runs everything; ``make test-fast`` runs what is not marked
``servers``, with IMAGEPIPE_TESTS_FAST=1. The mark is set here (``SERVER_FIXTURES``,
``SERVER_DIRECTORIES``) or by hand on a test that starts processes itself; under the
fast tier a fixture or harness process that would start a server fails the test
instead (``tests.harness.server.refuse_in_fast_tier``), so a test missing its mark
cannot slip a server into the fast tier.

The helpers behind them live in tests/harness/; tests import from there, never from here.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import redis as redis_lib

from imagepipe.api.app import create_app
from imagepipe.api.parts import Parts
from imagepipe.config import Settings
from imagepipe.db.migrate import upgrade
from tests.harness.app import (
    CROP_VARIANTS,
    NO_REDIS,
    SettingsWith,
    make_settings,
    open_client,
)
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
from tests.harness.server import refuse_in_fast_tier

# A test whose fixtures include one of these needs a server (or a real worker).
SERVER_FIXTURES = frozenset(
    {
        "shared_redis",
        "redis_url",
        "private_redis",
        "postgres_server",
        "postgres_url",
        "seaweed",
        "s3_env",
        "dev_server",
        "secured_dev_server",
        "worker",
        "any_db_worker",
        "s3_worker",
        "make_stack",
        "playwright",
        "browser",
        "page",
        "phone",
    }
)
# Whole directories of tests that run processes (a stack, a browser, compose files).
SERVER_DIRECTORIES = ("reliability", "integration", "deploy", "web")
_TESTS = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("servers") is not None:
            continue
        relative = item.path.relative_to(_TESTS) if item.path.is_relative_to(_TESTS) else None
        in_directory = relative is not None and relative.parts[0] in SERVER_DIRECTORIES
        fixtures = set(getattr(item, "fixturenames", ()))
        if in_directory or fixtures & SERVER_FIXTURES:
            item.add_marker(pytest.mark.servers)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PrivatePostgres]:
    """The run's own PostgreSQL, started the first time a test needs it."""
    refuse_in_fast_tier("postgres_server")
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
    refuse_in_fast_tier("dev_server")
    with run_dev_server(tmp_path_factory.mktemp("dev-open")) as server:
        yield server


@pytest.fixture(scope="session")
def secured_dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """A second one that requires TEST_API_KEY, started only if a test asks for it."""
    refuse_in_fast_tier("secured_dev_server")
    with run_dev_server(tmp_path_factory.mktemp("dev-secured"), api_key=TEST_API_KEY) as server:
        yield server


@pytest.fixture(scope="session")
def shared_redis() -> Iterator[RedisServer]:
    refuse_in_fast_tier("shared_redis")
    with redis_server() as server:
        yield server


@pytest.fixture
def redis_url(shared_redis: RedisServer) -> str:
    # Each test starts with an empty broker: no message of another test can reach it.
    client = redis_lib.Redis.from_url(shared_redis.url)
    client.flushall()
    client.close()
    return shared_redis.url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.servers)])
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
    refuse_in_fast_tier("seaweed")
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


# --- the fast family: the app in-process, no server ---------------------------------


@pytest.fixture
def parts() -> Parts:
    """The doubles the fast app runs on; a test reads them (``parts.queue.published``)."""
    return Parts()


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once for the run: copying it costs a fraction of a
    millisecond, migrating a fresh one about 0.4 s (most of a fast test's time)."""
    path = tmp_path_factory.mktemp("migrated") / "imagepipe.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
def fast_settings_with(tmp_path: Path, sqlite_url: str, migrated_sqlite: Path) -> SettingsWith:
    """Fast settings with ``overrides``: SQLite, and a Redis URL that answers nothing
    (``NO_REDIS``), on a copy of the migrated file (make_settings's own upgrade then
    finds nothing to do). Once per test: the file is the test's."""

    def make(**overrides: object) -> Settings:
        shutil.copyfile(migrated_sqlite, tmp_path / "imagepipe.db")
        return make_settings(tmp_path, sqlite_url, NO_REDIS, **overrides)

    return make


@pytest.fixture
def fast_settings(fast_settings_with: SettingsWith) -> Settings:
    return fast_settings_with()


@pytest.fixture
async def fast_client(fast_settings: Settings, parts: Parts) -> AsyncIterator[httpx.AsyncClient]:
    async with open_client(create_app(fast_settings, parts=parts)) as c:
        yield c


@pytest.fixture
def fast_any_db_settings(tmp_path: Path, database_url: str) -> Settings:
    """Fast settings on SQLite and on PostgreSQL: the PostgreSQL half is marked
    ``servers`` (its ``database_url`` parameter), the SQLite half runs in the fast tier."""
    return make_settings(tmp_path, database_url, NO_REDIS)


@pytest.fixture
async def fast_any_db_client(
    fast_any_db_settings: Settings, parts: Parts
) -> AsyncIterator[httpx.AsyncClient]:
    async with open_client(create_app(fast_any_db_settings, parts=parts)) as c:
        yield c


# The crop variants (CROP_VARIANTS) on the doubles: the focal point and cover boxes.
@pytest.fixture
def fast_crop_settings(fast_settings_with: SettingsWith) -> Settings:
    return fast_settings_with(variants=CROP_VARIANTS)


@pytest.fixture
async def fast_crop_client(
    fast_crop_settings: Settings, parts: Parts
) -> AsyncIterator[httpx.AsyncClient]:
    async with open_client(create_app(fast_crop_settings, parts=parts)) as c:
        yield c
