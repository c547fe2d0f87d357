"""`imagepipe dev` serves the API and processes an upload, with no Docker."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.devserver import run_dev_server
from tests.images import photo

pytestmark = pytest.mark.integration


def test_dev_runs_the_whole_service(tmp_path: Path) -> None:
    # No IMAGEPIPE_REDIS_URL: dev starts a private redis-server; SQLite in the data dir.
    with run_dev_server(tmp_path) as server:
        response = server.upload("a.jpg", photo(1000, 800))
        assert response.status_code == 202
        status = server.wait(response.json()["task_id"])
        assert status["status"] == "succeeded", status
        assert {v["width"] for v in status["variants"].values()} == {150, 600, 1000}
        assert (server.data_dir / "imagepipe.db").exists()
