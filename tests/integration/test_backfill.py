"""An operator changes a preview size and runs ``imagepipe backfill``: a real worker
brings every old task up to date through the queue, and a second run finds nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from imagepipe.api.app import create_app
from imagepipe.config import Settings
from tests.harness.app import make_settings, open_client
from tests.harness.processes import WorkerProcess, imagepipe, settings_env
from tests.harness.wait import wait_complete, wait_for_task
from tests.images import photo

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


def backfill_cli(settings: Settings, *args: str) -> str:
    done = subprocess.run(
        imagepipe("backfill", *args),
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def medium_is(size: int) -> Any:
    def check(task: dict[str, Any]) -> dict[str, Any] | None:
        medium = task["variants"]["medium"]
        return task if max(medium["width"], medium["height"]) == size else None

    return check


async def test_backfill_after_a_size_change(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    # On production's database only: the backfill's queries and the re-render run on
    # SQLite in tests/worker/test_backfill.py; this run proves the processes together.
    old = make_settings(tmp_path, postgres_url, redis_url)
    async with open_client(create_app(old)) as client:
        worker = WorkerProcess(settings_env(old))
        worker.start()
        try:
            ids = []
            for data in (photo(1600, 1200), photo(900, 300, "PNG", "RGBA")):
                response = await client.post("/upload", files={"file": ("a", data)})
                ids.append(response.json()["task_id"])
            for task_id in ids:
                status = await wait_complete(client, task_id, logs=worker.output)
                assert status["status"] == "succeeded", status
        finally:
            worker.stop()
        assert "0 would re-render" in backfill_cli(old, "--dry-run")
        etags = {}
        for task_id in ids:
            medium = (await client.get(f"/tasks/{task_id}")).json()["variants"]["medium"]
            for stored in medium["formats"].values():
                etags[stored["url"]] = (await client.head(stored["url"])).headers["etag"]

    # The operator makes "medium" smaller and restarts everything with it.
    new = old.model_copy(update={"variants": {"small": 150, "medium": 400, "large": 1200}})
    assert "2 tasks checked, 2 would re-render" in backfill_cli(new, "--dry-run")
    async with open_client(create_app(new)) as client:
        worker = WorkerProcess(settings_env(new))
        worker.start()
        try:
            assert "2 queued for re-rendering" in backfill_cli(new, "--batch-size", "1")
            for task_id in ids:
                await wait_for_task(
                    client, task_id, medium_is(400), what="re-render", logs=worker.output
                )
            # Safe to run twice: nothing is out of date any more.
            assert "2 tasks checked, 0 queued" in backfill_cli(new)
        finally:
            worker.stop()
        for task_id in ids:
            task = (await client.get(f"/tasks/{task_id}")).json()
            assert task["status"] == "succeeded"
            assert list(task["variants"]) == ["small", "medium", "large"]
            for content_type, stored in task["variants"]["medium"]["formats"].items():
                response = await client.get(stored["url"])
                assert response.status_code == 200
                assert response.headers["content-type"] == content_type
                # The same URL as before the change, with a new ETag.
                assert response.headers["etag"] != etags[stored["url"]]
