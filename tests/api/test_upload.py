"""POST /upload through the ASGI app: on the in-process doubles (fast_client), and
against a real Redis and a real database where the broker is what is tested."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import httpx
import pytest

from imagepipe.api.parts import Parts
from imagepipe.config import Settings
from imagepipe.queue import PROCESS_TASK, RENDER_QUEUE, Published
from tests.harness.app import SettingsWith, open_client
from tests.images import MULTIPART_TYPE, multipart, original_of, photo
from tests.imaging.images import animated_gif
from tests.observe import stored_files

pytestmark = pytest.mark.anyio


def files(data: bytes, name: str = "cat.jpg", ctype: str = "image/jpeg") -> dict[str, object]:
    return {"file": (name, data, ctype)}


async def test_upload_answers_202_and_enqueues(
    fast_any_db_client: httpx.AsyncClient, fast_any_db_settings: Settings, parts: Parts
) -> None:
    data = photo(800, 600)
    response = await fast_any_db_client.post("/upload", files=files(data))
    assert response.status_code == 202, response.text
    body = response.json()
    task_id = uuid.UUID(body["task_id"])
    assert body == {"task_id": str(task_id), "status": "queued", "status_url": f"/tasks/{task_id}"}
    assert response.headers["location"] == f"/tasks/{task_id}"
    # One render at level 0 (the owner's first); that CeleryQueue puts such a message
    # in Redis where a worker pops it is tests/worker/test_queue_contract.py.
    assert parts.queue.published == [Published(PROCESS_TASK, (str(task_id),), RENDER_QUEUE, 0)]

    status = (await fast_any_db_client.get(f"/tasks/{task_id}")).json()
    assert status["status"] == "queued"
    assert status["variants"] == {} and status["error"] is None
    assert status["original"] == original_of(data, "cat.jpg", 800, 600)
    assert status["created_at"].endswith("Z")
    assert stored_files(fast_any_db_settings) == [f"originals/{task_id}"]


async def test_original_reports_its_frames(fast_client: httpx.AsyncClient, tmp_path: Path) -> None:
    gif = animated_gif(tmp_path / "a.gif", frames=5).read_bytes()
    response = await fast_client.post("/upload", files=files(gif, "a.gif"))
    assert response.status_code == 202, response.text
    status = (await fast_client.get(f"/tasks/{response.json()['task_id']}")).json()
    assert status["original"]["format"] == "GIF"
    assert status["original"]["frames"] == 5


async def test_client_filename_is_display_only(
    fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    name = "..\\..\\../etc/passwd\x01ü.jpg".encode()
    body = multipart([(b'form-data; name="file"; filename="' + name + b'"', photo(40, 30))])
    response = await fast_client.post(
        "/upload", content=body, headers={"content-type": MULTIPART_TYPE}
    )
    assert response.status_code == 202
    task_id = response.json()["task_id"]
    status = (await fast_client.get(f"/tasks/{task_id}")).json()
    assert status["original"]["filename"] == "passwdü.jpg"
    assert stored_files(fast_settings) == [f"originals/{task_id}"]


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"data": {"nofile": "x"}}, "invalid_request"),
        ({"content": b"hello", "headers": {"content-type": "text/plain"}}, "invalid_request"),
        ({"files": {"other": ("a.jpg", b"x", "image/jpeg")}}, "invalid_request"),
    ],
)
async def test_missing_file_part_is_400(
    fast_client: httpx.AsyncClient, fast_settings: Settings, kwargs: dict[str, object], code: str
) -> None:
    response = await fast_client.post("/upload", **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert stored_files(fast_settings) == []


@pytest.mark.parametrize(
    ("data", "detected"),
    [
        (b"", None),
        (b"just some text\n", None),
        (b"<!DOCTYPE html><html><script>alert(1)</script></html>", None),
        (b"%PDF-1.7\n1 0 obj<<>>endobj\n", "PDF"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', None),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", None),
    ],
)
async def test_non_images_are_415(
    parts: Parts,
    fast_client: httpx.AsyncClient,
    fast_settings: Settings,
    data: bytes,
    detected: str | None,
) -> None:
    response = await fast_client.post("/upload", files=files(data, "evil.jpg"))
    assert response.status_code == 415, response.text
    error = response.json()["error"]
    assert error["code"] == "unsupported_media_type"
    if detected:
        assert detected in error["message"]
    assert stored_files(fast_settings) == []
    assert parts.queue.depth() == 0


async def test_body_over_limit_is_413_while_streaming(fast_settings_with: SettingsWith) -> None:
    from imagepipe.api.app import create_app

    settings = fast_settings_with(max_upload_bytes=100_000)
    big = b"\x89PNG\r\n\x1a\n" + os.urandom(300_000)

    async def chunks() -> object:
        boundary = b"x" * 16
        yield (
            b"--"
            + boundary
            + b'\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
        )
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192]
        yield b"\r\n--" + boundary + b"--\r\n"

    async with open_client(create_app(settings, parts=Parts())) as client:
        # Chunked: no Content-Length at all.
        response = await client.post(
            "/upload",
            content=chunks(),  # type: ignore[arg-type]
            headers={"content-type": "multipart/form-data; boundary=" + "x" * 16},
        )
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "file_too_large"
        # Declared too large: refused before reading.
        response = await client.post("/upload", files=files(big, "a.png", "image/png"))
        assert response.status_code == 413
    assert stored_files(settings) == []


async def test_too_many_pixels_is_422(fast_settings_with: SettingsWith) -> None:
    from imagepipe.api.app import create_app

    settings = fast_settings_with(max_pixels=10_000)
    async with open_client(create_app(settings, parts=Parts())) as client:
        response = await client.post("/upload", files=files(photo(200, 100)))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "image_too_large"
    assert stored_files(settings) == []


async def test_unparseable_header_is_422(
    fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    broken_png = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + b"\xff" * 13 + b"\x00" * 4
    response = await fast_client.post("/upload", files=files(broken_png, "x.png", "image/png"))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_image"
    assert stored_files(fast_settings) == []
