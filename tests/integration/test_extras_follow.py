"""With real worker processes: a task is succeeded with its base format alone while
no follow-up worker runs, and its WebP appears once one does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from imagepipe.config import Settings
from tests.harness.processes import WorkerProcess, settings_env
from tests.harness.wait import wait_finished, wait_for_task
from tests.images import photo

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@pytest.fixture
def render_worker(settings: Settings) -> Iterator[WorkerProcess]:
    """Render queues only: the follow-up work waits in the broker."""
    process = WorkerProcess(settings_env(settings), concurrency=1, queues="render,on_demand")
    process.start()
    yield process
    process.stop()


async def test_succeeded_with_the_base_then_webp_follows(
    client: httpx.AsyncClient, settings: Settings, render_worker: WorkerProcess
) -> None:
    response = await client.post("/upload", files={"file": ("a.jpg", photo(1600, 1200))})
    assert response.status_code == 202, response.text
    task_id = response.json()["task_id"]

    task = await wait_finished(client, task_id, logs=render_worker.output)
    assert task["status"] == "succeeded", task
    for variant in task["variants"].values():
        assert list(variant["formats"]) == ["image/jpeg"]
    large = task["variants"]["large"]
    not_ready = await client.get(f"{large['url']}.webp")
    assert not_ready.status_code == 404
    assert not_ready.json()["error"]["code"] == "format_not_ready"
    assert "retry-after" in not_ready.headers
    assert not_ready.headers["cache-control"] == "no-store"
    interim = await client.get(large["url"], headers={"Accept": "image/webp,*/*"})
    assert interim.headers["content-type"] == "image/jpeg"
    assert interim.headers["cache-control"] == "public, max-age=60"
    assert interim.headers["vary"] == "Accept"

    follow_up = WorkerProcess(settings_env(settings), concurrency=1, queues="follow_up,maintenance")
    follow_up.start()
    try:

        def every_webp(body: dict[str, Any]) -> dict[str, Any] | None:
            done = all("image/webp" in v["formats"] for v in body["variants"].values())
            return body if done else None

        task = await wait_for_task(
            client, task_id, every_webp, what="its WebP renditions", logs=follow_up.output
        )
    finally:
        follow_up.stop()
    webp = await client.get(large["url"], headers={"Accept": "image/webp,*/*"})
    assert webp.headers["content-type"] == "image/webp"
    assert "immutable" in webp.headers["cache-control"]
    assert (await client.get(f"{large['url']}.webp")).status_code == 200
