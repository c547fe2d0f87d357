"""Uploads whose frames are built to outgrow the caps: a clear 422, nothing kept."""

from __future__ import annotations

import httpx
import pytest

from imagepipe.config import Settings
from tests.api.test_direct_upload import create, put
from tests.imaging import images
from tests.observe import queue_length, stored_files

pytestmark = pytest.mark.anyio

# A 100x100 screen and a 9000x9000 second frame: 70 KB, 81 MP once Pillow grows the canvas.
GROWING_GIF = images.gif_with_frames((100, 100), [(0, 0, 100, 100), (0, 0, 9000, 9000)])


async def _complete(client: httpx.AsyncClient, data: bytes) -> tuple[httpx.Response, str]:
    body = await create(client, len(data), name="upload.bin", ctype="application/octet-stream")
    assert (await put(client, body, data)).status_code == 204
    return await client.post(str(body["complete_url"])), str(body["task_id"])


async def _assert_refused(
    client: httpx.AsyncClient, settings: Settings, response: httpx.Response, task_id: str, code: str
) -> None:
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code
    assert stored_files(settings) == []
    assert queue_length(settings.redis_url) == 0
    task = (await client.get(f"/tasks/{task_id}")).json()
    assert task["status"] == "failed" and task["error"]["code"] == code


async def test_a_gif_frame_growing_the_canvas_is_refused_at_upload(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    response = await client.post("/upload", files={"file": ("a.gif", GROWING_GIF)})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "image_too_large"
    assert stored_files(settings) == []
    assert queue_length(settings.redis_url) == 0


async def test_a_gif_frame_growing_the_canvas_is_refused_at_completion(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    response, task_id = await _complete(client, GROWING_GIF)
    await _assert_refused(client, settings, response, task_id, "image_too_large")
