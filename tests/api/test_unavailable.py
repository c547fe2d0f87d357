"""503 + Retry-After when the database or the broker is down, nothing left behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from imagepipe.api.app import create_app
from imagepipe.config import Settings
from imagepipe.db.engine import sync_url
from imagepipe.db.models import Task
from tests.harness.app import make_settings, open_client
from tests.harness.redis import redis_server
from tests.harness.server import free_port
from tests.images import photo
from tests.observe import stored_files

pytestmark = pytest.mark.anyio


@pytest.mark.servers  # starts and stops a Redis of its own
async def test_broker_down_is_503_and_leaves_nothing(tmp_path: Path, sqlite_url: str) -> None:
    with redis_server() as broker:
        settings = make_settings(tmp_path, sqlite_url, broker.url, broker_timeout_seconds=1)
        async with open_client(create_app(settings)) as client:
            assert (await client.get("/readyz")).status_code == 200
            broker.stop()
            response = await client.post("/upload", files={"file": ("a.jpg", photo(64, 48))})
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "service_unavailable"
            assert int(response.headers["retry-after"]) > 0

            broker.start()  # same port: the next upload gets through again
            response = await client.post("/upload", files={"file": ("a.jpg", photo(64, 48))})
            assert response.status_code == 202, response.text

    engine = create_engine(sync_url(sqlite_url))
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(Task)) == 1
    engine.dispose()
    assert len(stored_files(settings)) == 1


async def test_database_down_is_503_and_leaves_no_file(tmp_path: Path, redis_url: str) -> None:
    dead = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere"
    settings = Settings(data_dir=tmp_path, database_url=dead, redis_url=redis_url)
    async with open_client(create_app(settings)) as client:
        response = await client.post("/upload", files={"file": ("a.jpg", photo(64, 48))})
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "service_unavailable"
    assert response.headers["retry-after"]
    assert stored_files(settings) == []


async def test_reading_while_database_down_is_503(tmp_path: Path, redis_url: str) -> None:
    dead = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere"
    settings = Settings(data_dir=tmp_path, database_url=dead, redis_url=redis_url)
    async with open_client(create_app(settings)) as client:
        for path in ("/tasks/7b0cb6a4-4a1d-4b8e-9a39-0c4b1c1f0e2a", "/tasks"):
            response = await client.get(path)
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "service_unavailable"
            assert response.headers["retry-after"]
