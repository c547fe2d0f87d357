"""Uploads whose frames are built to outgrow the caps or to make the completion probe
read the stored object over and over: a clear 422, nothing kept, bounded reads."""

from __future__ import annotations

import math

import httpx
import pytest

from imagepipe.api.parts import Parts
from imagepipe.config import Settings
from imagepipe.storage import LocalStorage
from imagepipe.storage.ranged import RANGE_BYTES
from tests.api.test_direct_upload import create, put
from tests.imaging import images
from tests.observe import stored_files

pytestmark = pytest.mark.anyio

# A 100x100 screen and a 9000x9000 second frame: 70 KB, 81 MP once Pillow grows the canvas.
GROWING_GIF = images.gif_with_frames((100, 100), [(0, 0, 100, 100), (0, 0, 9000, 9000)])
SLACK = 1024 * 1024  # what a check may fetch beyond the object (ranged.READ_SLACK_BYTES)


@pytest.fixture
def ranges(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Every range request the API makes of the local storage."""
    asked: list[tuple[int, int]] = []
    real = LocalStorage.read_range

    def counted(self: LocalStorage, key: str, start: int, length: int) -> bytes:
        asked.append((start, length))
        return real(self, key, start, length)

    monkeypatch.setattr(LocalStorage, "read_range", counted)
    return asked


async def _complete(client: httpx.AsyncClient, data: bytes) -> tuple[httpx.Response, str]:
    body = await create(client, len(data), name="upload.bin", ctype="application/octet-stream")
    assert (await put(client, body, data)).status_code == 204
    return await client.post(str(body["complete_url"])), str(body["task_id"])


async def _assert_refused(
    client: httpx.AsyncClient,
    settings: Settings,
    parts: Parts,
    response: httpx.Response,
    task_id: str,
    code: str,
) -> None:
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code
    assert stored_files(settings) == []
    assert parts.queue.depth() == 0
    task = (await client.get(f"/tasks/{task_id}")).json()
    assert task["status"] == "failed" and task["error"]["code"] == code


async def test_a_gif_frame_growing_the_canvas_is_refused_at_upload(
    parts: Parts, fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    response = await fast_client.post("/upload", files={"file": ("a.gif", GROWING_GIF)})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "image_too_large"
    assert stored_files(fast_settings) == []
    assert parts.queue.depth() == 0


async def test_a_gif_frame_growing_the_canvas_is_refused_at_completion(
    parts: Parts, fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    response, task_id = await _complete(fast_client, GROWING_GIF)
    await _assert_refused(fast_client, fast_settings, parts, response, task_id, "image_too_large")


async def test_a_tiff_page_chain_hopping_between_its_ends_is_read_once_at_completion(
    fast_client: httpx.AsyncClient, fast_settings: Settings, ranges: list[tuple[int, int]]
) -> None:
    # 655 KiB, 1000 pages: a view keeping one block made 1003 requests (139 MiB).
    data = images.hopping_page_tiff(1000, regions=2, region_bytes=335_360)
    response, task_id = await _complete(fast_client, data)
    assert response.status_code == 202, response.text
    assert len(ranges) <= math.ceil(len(data) / RANGE_BYTES)
    assert (await fast_client.get(f"/tasks/{task_id}")).json()["status"] == "queued"


async def test_a_tiff_page_chain_outrunning_the_block_cache_is_refused_at_completion(
    parts: Parts,
    fast_client: httpx.AsyncClient,
    fast_settings: Settings,
    ranges: list[tuple[int, int]],
) -> None:
    data = images.hopping_page_tiff(200, regions=16, region_bytes=RANGE_BYTES)
    response, task_id = await _complete(fast_client, data)
    assert sum(length for _, length in ranges) <= len(data) + SLACK
    await _assert_refused(fast_client, fast_settings, parts, response, task_id, "invalid_image")
    assert "cannot be checked within" in response.json()["error"]["message"]
