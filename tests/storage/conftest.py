"""The storage backends under test: every contract test runs on each, the in-memory
double included (it is only worth its name while it passes the same suite)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from imagepipe.config import Settings
from imagepipe.storage import Storage, open_storage, open_storage_url


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.servers), "memory"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    if request.param == "memory":
        backend = open_storage_url("memory://", Settings(data_dir=tmp_path))
    elif request.param == "local":
        backend = open_storage(Settings(data_dir=tmp_path))
    else:
        env = request.getfixturevalue("s3_env")
        settings = Settings(
            data_dir=tmp_path,
            storage_url=env["IMAGEPIPE_STORAGE_URL"],
            s3_endpoint_url=env["IMAGEPIPE_S3_ENDPOINT_URL"],
        )
        backend = open_storage(settings)
    try:
        yield backend
    finally:
        backend.close()
