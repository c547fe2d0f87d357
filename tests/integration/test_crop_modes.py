"""With a real worker process: a task with cover variants gets their exact box sizes
in every format, and PATCH /tasks/{id} with a new focal point has the follow-up
workers re-render its cover/focal variant (new bytes, new ETag)."""

from __future__ import annotations

import io
from collections.abc import Iterator

import anyio
import httpx
import pytest
from PIL import Image

from imagepipe.config import Settings
from tests.harness.processes import WorkerProcess, settings_env
from tests.harness.wait import Deadline, wait_complete

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@pytest.fixture
def crop_worker(crop_settings: Settings) -> Iterator[WorkerProcess]:
    process = WorkerProcess(settings_env(crop_settings), concurrency=1)
    process.start()
    yield process
    process.stop()


def two_colours() -> bytes:
    """Red at the left end, blue elsewhere: where a crop sits shows in its colour."""
    image = Image.new("RGB", (1200, 400), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 300, 400))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


async def test_cover_variants_are_exact_and_a_new_point_re_renders_them(
    crop_client: httpx.AsyncClient, crop_worker: WorkerProcess
) -> None:
    response = await crop_client.post("/upload", files={"file": ("a.jpg", two_colours())})
    assert response.status_code == 202, response.text
    task_id = response.json()["task_id"]
    task = await wait_complete(crop_client, task_id, logs=crop_worker.output)
    assert task["status"] == "succeeded", task
    expected = {"small": (150, 50), "avatar": (200, 200), "banner": (300, 100)}
    for name, variant in task["variants"].items():
        assert (variant["width"], variant["height"]) == expected[name]
        for url in (variant["url"], variant["formats"]["image/webp"]["url"]):
            assert opened((await crop_client.get(url)).content).size == expected[name]
    avatar_url = task["variants"]["avatar"]["url"]
    before = await crop_client.get(avatar_url)
    assert opened(before.content).convert("RGB").getpixel((100, 100))[2] > 200  # the centre

    patched = await crop_client.patch(
        f"/tasks/{task_id}", json={"focal_point": {"x": 0.02, "y": 0.5}}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["focal_point"] == {"x": 0.02, "y": 0.5}

    # The follow-up worker re-renders it: a new ETag (bytes and spec), the left end.
    deadline = Deadline(60, "the avatar re-rendered", crop_worker.output)
    while (after := await crop_client.get(avatar_url)).headers["etag"] == before.headers["etag"]:
        deadline.expire()
        await anyio.sleep(0.1)
    assert after.content != before.content
    assert opened(after.content).size == (200, 200)
    assert opened(after.content).convert("RGB").getpixel((100, 100))[0] > 200
    task = (await crop_client.get(f"/tasks/{task_id}")).json()
    assert task["status"] == "succeeded" and task["focal_point"] == {"x": 0.02, "y": 0.5}
    # Every format of it was made again with the point, the WebP too.
    webp = await crop_client.get(task["variants"]["avatar"]["formats"]["image/webp"]["url"])
    assert opened(webp.content).convert("RGB").getpixel((100, 100))[0] > 200
