"""Upload → real Celery worker process → previews, on SQLite and on PostgreSQL."""

from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image

from tests.harness.processes import WorkerProcess
from tests.harness.wait import wait_finished
from tests.images import photo

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def test_upload_to_previews(
    any_db_client: httpx.AsyncClient, any_db_worker: WorkerProcess
) -> None:
    uploads = {
        "photo.jpg": (photo(4000, 3000), "image/jpeg"),
        "alpha.png": (photo(900, 300, "PNG", "RGBA"), "image/png"),
        "tiny.jpg": (photo(100, 80), "image/jpeg"),
    }
    ids = {}
    for name, (data, ctype) in uploads.items():
        response = await any_db_client.post("/upload", files={"file": (name, data, ctype)})
        assert response.status_code == 202, response.text
        ids[name] = response.json()["task_id"]

    expected = {
        "photo.jpg": (
            "image/jpeg",
            {"small": (150, 113), "medium": (600, 450), "large": (1200, 900)},
        ),
        "alpha.png": ("image/png", {"small": (150, 50), "medium": (600, 200), "large": (900, 300)}),
        "tiny.jpg": ("image/jpeg", {"small": (100, 80), "medium": (100, 80), "large": (100, 80)}),
    }
    for name, task_id in ids.items():
        status = await wait_finished(any_db_client, task_id, logs=any_db_worker.output)
        assert status["status"] == "succeeded", status
        content_type, sizes = expected[name]
        assert {k: (v["width"], v["height"]) for k, v in status["variants"].items()} == sizes
        for variant_name, variant in status["variants"].items():
            response = await any_db_client.get(variant["url"])
            assert response.status_code == 200
            assert response.headers["content-type"] == content_type == variant["content_type"]
            with Image.open(io.BytesIO(response.content)) as image:
                assert image.size == sizes[variant_name]
                assert not image.getexif()


async def test_big_jpeg_is_acknowledged_before_its_previews_exist(
    client: httpx.AsyncClient, worker: WorkerProcess
) -> None:
    big = photo(4000, 3000)  # 12 MP
    response = await client.post("/upload", files={"file": ("big.jpg", big, "image/jpeg")})
    assert response.status_code == 202
    task_id = response.json()["task_id"]
    first = (await client.get(f"/tasks/{task_id}")).json()
    assert first["status"] in ("queued", "processing")
    assert first["variants"] == {}
    final = await wait_finished(client, task_id, logs=worker.output)
    assert final["status"] == "succeeded"


async def test_undecodable_image_fails_without_retry(
    client: httpx.AsyncClient, worker: WorkerProcess
) -> None:
    data = photo(2000, 1500)
    truncated = data[: len(data) // 3]  # header intact: accepted, fails in the worker
    response = await client.post("/upload", files={"file": ("cut.jpg", truncated, "image/jpeg")})
    assert response.status_code == 202, response.text
    status = await wait_finished(client, response.json()["task_id"], logs=worker.output)
    assert status["status"] == "failed"
    assert status["error"]["code"] == "invalid_image"
    assert status["variants"] == {}
