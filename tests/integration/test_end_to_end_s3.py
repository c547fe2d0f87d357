"""Upload → real Celery worker → previews → download, with S3 storage on a real
SeaweedFS: no disk shared between the API and the worker, both delivery modes."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from imagepipe.config import Settings
from imagepipe.storage import open_storage
from tests.harness import s3
from tests.harness.processes import WorkerProcess
from tests.harness.wait import wait_complete
from tests.images import photo

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@pytest.fixture(params=["proxy", "redirect"])
def s3_settings(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_url: str, redis_url: str,
    s3_env: dict[str, str],
) -> Settings:  # fmt: skip
    return s3.s3_settings(tmp_path, sqlite_url, redis_url, s3_env, variant_delivery=request.param)


async def test_upload_previews_download_delete_on_s3(
    s3_client: httpx.AsyncClient, s3_worker: WorkerProcess, s3_settings: Settings
) -> None:
    response = await s3_client.post(
        "/upload", files={"file": ("photo.jpg", photo(1600, 1200), "image/jpeg")}
    )
    assert response.status_code == 202, response.text
    task_id = response.json()["task_id"]
    status = await wait_complete(s3_client, task_id, logs=s3_worker.output)
    assert status["status"] == "succeeded", status

    storage = open_storage(s3_settings)
    try:
        stored = sorted(info.key for info in storage.list(""))
        # The original and one set of previews (JPEG and WebP) under the claim's attempt.
        assert stored == sorted(
            [f"originals/{task_id}"]
            + [
                f"variants/{task_id}/1/{name}.{extension}"
                for name in ("large", "medium", "small")
                for extension in ("jpg", "webp")
            ]
        )
        assert not (s3_settings.data_dir / "storage").exists()  # no local storage used

        for variant in status["variants"].values():
            for accept, content_type in [("*/*", "image/jpeg"), (CHROMIUM, "image/webp")]:
                await check_download(s3_client, s3_settings, variant, accept, content_type)

        assert (await s3_client.delete(f"/tasks/{task_id}")).status_code == 204
        assert list(storage.list("")) == []
    finally:
        storage.close()


CHROMIUM = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"


async def check_download(
    client: httpx.AsyncClient,
    settings: Settings,
    variant: dict[str, Any],
    accept: str,
    content_type: str,
) -> None:
    """The variant URL with this Accept gives this format, in either delivery mode."""
    size = variant["formats"][content_type]["size_bytes"]
    headers = {"Accept": accept}
    response = await client.get(variant["url"], headers=headers)
    assert response.headers["vary"] == "Accept"
    if settings.variant_delivery == "redirect":
        assert response.status_code == 307
        assert response.headers["cache-control"] == "no-store"
        # A presigned URL to the object itself, fetched as a browser would.
        async with httpx.AsyncClient(timeout=10) as browser:
            response = await browser.get(response.headers["location"])
        assert response.status_code == 200
    else:
        assert response.status_code == 200
        assert response.headers["content-length"] == str(size)
        assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-type"] == content_type
    assert len(response.content) == size
    with Image.open(io.BytesIO(response.content)) as image:
        assert image.size == (variant["width"], variant["height"])
        assert image.get_format_mimetype() == content_type

    # Conditional and HEAD requests are answered by the API in both modes.
    first = await client.get(variant["url"], headers=headers)
    etag = first.headers["etag"]
    assert etag.endswith(f'{hashlib.sha256(response.content).hexdigest()[:32]}"')
    again = await client.get(variant["url"], headers={**headers, "If-None-Match": etag})
    assert again.status_code == 304 and again.headers["vary"] == "Accept"
    if settings.variant_delivery == "proxy":
        head = await client.head(variant["url"], headers=headers)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(size)
