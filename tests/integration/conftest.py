"""S3 fixtures of the integration tests. A module may override ``s3_settings`` (the
end-to-end tests run it in both delivery modes); the client and worker follow it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from imagepipe.api.app import create_app
from imagepipe.config import Settings
from tests.harness import s3
from tests.harness.app import open_client
from tests.harness.processes import WorkerProcess


@pytest.fixture
def s3_settings(
    tmp_path: Path, sqlite_url: str, redis_url: str, s3_env: dict[str, str]
) -> Settings:
    return s3.s3_settings(tmp_path, sqlite_url, redis_url, s3_env)


@pytest.fixture
async def s3_client(s3_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with open_client(create_app(s3_settings)) as client:
        yield client


@pytest.fixture
def s3_worker(s3_settings: Settings) -> Iterator[WorkerProcess]:
    with s3.remote_worker(s3_settings) as process:
        yield process
