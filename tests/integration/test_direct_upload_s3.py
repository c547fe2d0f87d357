"""Direct uploads on S3 (a real SeaweedFS): the client PUTs to a presigned URL, the API
never sees the bytes, a real worker renders the task. The URL names a staging key and
cannot be revoked: used again after completion (or a delete), it changes nothing."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from imagepipe.api.app import create_app
from imagepipe.config import Settings
from imagepipe.queue import CeleryQueue
from imagepipe.services import reconciler, rendering
from imagepipe.storage import Storage, open_storage
from imagepipe.worker.celery_app import create_celery
from tests.harness import s3
from tests.harness.app import open_client, worker_sessions
from tests.harness.processes import WorkerProcess
from tests.harness.seaweedfs import SeaweedFS
from tests.harness.wait import wait_finished
from tests.images import photo

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def create(client: httpx.AsyncClient, size: int) -> dict[str, object]:
    response = await client.post(
        "/uploads", json={"filename": "p.jpg", "size_bytes": size, "content_type": "image/jpeg"}
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def put(body: dict[str, object], data: bytes) -> httpx.Response:
    upload = body["upload"]
    assert isinstance(upload, dict)
    headers = {k: v for k, v in upload["headers"].items() if k.lower() != "content-length"}
    # Straight to SeaweedFS, not through the app.
    return httpx.put(upload["url"], content=data, headers=headers, timeout=10)


async def test_direct_upload_rendered_by_a_real_worker(
    s3_client: httpx.AsyncClient, s3_worker: WorkerProcess, s3_settings: Settings
) -> None:
    data = photo(1200, 900)
    body = await create(s3_client, len(data))
    upload = body["upload"]
    assert isinstance(upload, dict)
    assert upload["url"].startswith(s3_settings.s3_endpoint_url or "")
    assert upload["headers"]["Content-Length"] == str(len(data))
    assert put(body, data).status_code == 200
    response = await s3_client.post(f"{body['complete_url']}")
    assert response.status_code == 202, response.text
    again = await s3_client.post(f"{body['complete_url']}")
    assert (again.status_code, again.json()) == (202, response.json())
    task_id = str(body["task_id"])
    status = await wait_finished(s3_client, task_id, logs=s3_worker.output)
    assert status["status"] == "succeeded", status
    assert status["original"]["size_bytes"] == len(data)
    assert f"originals/{task_id}" in s3.object_keys(s3_settings)
    assert not (s3_settings.data_dir / "storage").exists()


async def test_presigned_put_pins_the_length(
    s3_client: httpx.AsyncClient, s3_settings: Settings
) -> None:
    data = photo(300, 200)
    body = await create(s3_client, len(data) - 10)
    # A longer body than signed: S3 refuses the PUT itself.
    assert put(body, data).status_code >= 400
    response = await s3_client.post(f"{body['complete_url']}")
    assert (response.status_code, response.json()["error"]["code"]) == (409, "upload_incomplete")
    assert s3.object_keys(s3_settings) == []


async def test_non_image_on_s3_is_refused_and_removed(
    s3_client: httpx.AsyncClient, s3_settings: Settings
) -> None:
    data = b"%PDF-1.4 not an image at all" * 10
    body = await create(s3_client, len(data))
    assert put(body, data).status_code == 200
    response = await s3_client.post(f"{body['complete_url']}")
    assert (response.status_code, response.json()["error"]["code"]) == (
        415,
        "unsupported_media_type",
    )
    assert s3.object_keys(s3_settings) == []


async def test_shorter_object_on_s3_is_incomplete(
    s3_client: httpx.AsyncClient, s3_settings: Settings
) -> None:
    data = photo(300, 200)
    body = await create(s3_client, len(data))
    # A writer without the signed length (another tool, a bug) stored too few bytes.
    storage = open_storage(s3_settings)
    try:
        storage.put_bytes(f"originals/{body['task_id']}", data[:-50])
    finally:
        storage.close()
    response = await s3_client.post(f"{body['complete_url']}")
    assert (response.status_code, response.json()["error"]["code"]) == (409, "upload_incomplete")
    assert put(body, data).status_code == 200
    assert (await s3_client.post(f"{body['complete_url']}")).status_code == 202


async def test_presigned_urls_name_the_public_endpoint(
    tmp_path: Path, sqlite_url: str, redis_url: str, s3_env: dict[str, str], seaweed: SeaweedFS
) -> None:
    # The services reach the server as 127.0.0.1, clients by another name (as compose's
    # containers reach seaweedfs:8333 and the host localhost:8333).
    public = f"http://localhost:{seaweed.port}"
    settings = s3.s3_settings(
        tmp_path, sqlite_url, redis_url, s3_env, s3_public_endpoint_url=public
    )
    data = photo(300, 200)
    async with open_client(create_app(settings)) as client:
        body = await create(client, len(data))
        upload = body["upload"]
        assert isinstance(upload, dict) and upload["url"].startswith(f"{public}/")
        # Signed for the name the client uses: the server accepts it.
        assert put(body, data).status_code == 200
        assert (await client.post(f"{body['complete_url']}")).status_code == 202
    storage = open_storage(settings)
    try:
        url = storage.presign_get(f"originals/{body['task_id']}", expires_seconds=60)
    finally:
        storage.close()
    assert url is not None and url.startswith(f"{public}/")
    async with httpx.AsyncClient(timeout=10) as browser:
        assert (await browser.get(url)).content == data


# --- the presigned URL once its task has moved on ----------------------------------


@pytest.fixture
def storage(s3_settings: Settings) -> Iterator[Storage]:
    backend = open_storage(s3_settings)
    try:
        yield backend
    finally:
        backend.close()


def read(storage: Storage, key: str) -> bytes:
    reader = storage.open(key)
    try:
        return reader.read()
    finally:
        reader.close()


def reconcile(settings: Settings, storage: Storage) -> None:
    queue = CeleryQueue(create_celery(settings))
    try:
        with worker_sessions(settings) as sessions:
            reconciler.run(sessions, storage, queue, settings)
    finally:
        queue.close()


def render(settings: Settings, storage: Storage, task_id: str) -> rendering.Outcome:
    with worker_sessions(settings) as sessions:
        return rendering.process(sessions, storage, settings, uuid.UUID(task_id))


def same_length_other_bytes(jpeg: bytes) -> bytes:
    """The same JPEG with another pixel density in its JFIF header: other bytes (so
    another object) of the length the URL was signed for."""
    assert jpeg[6:11] == b"JFIF\x00"
    other = jpeg[:13] + bytes([1, 0, 72, 0, 72]) + jpeg[18:]
    assert len(other) == len(jpeg) and other != jpeg
    return other


async def test_the_presigned_url_changes_nothing_once_the_upload_is_completed(
    s3_client: httpx.AsyncClient, s3_settings: Settings, storage: Storage
) -> None:
    data = photo(600, 400)
    body = await create(s3_client, len(data))
    task_id = str(body["task_id"])
    assert put(body, data).status_code == 200
    assert (await s3_client.post(f"{body['complete_url']}")).status_code == 202
    assert s3.object_keys(s3_settings) == [f"originals/{task_id}"]

    # S3 still takes a PUT to the URL until it expires, but not as the original: it
    # lands on the staging key, which the reconciler sweeps.
    assert put(body, same_length_other_bytes(data)).status_code == 200
    assert read(storage, f"originals/{task_id}") == data
    assert s3.object_keys(s3_settings, "staging/") == [f"staging/{task_id}"]
    reconcile(s3_settings, storage)
    assert s3.object_keys(s3_settings) == [f"originals/{task_id}"]
    assert render(s3_settings, storage, task_id) == rendering.Outcome.succeeded
    done = (await s3_client.get(f"/tasks/{task_id}")).json()
    assert done["original"]["sha256"] == hashlib.sha256(data).hexdigest()


async def test_a_presigned_put_after_a_delete_leaves_nothing(
    s3_client: httpx.AsyncClient, s3_settings: Settings, storage: Storage
) -> None:
    data = photo(300, 200)
    body = await create(s3_client, len(data))
    assert put(body, data).status_code == 200
    assert (await s3_client.delete(f"/tasks/{body['task_id']}")).status_code == 204
    assert put(body, data).status_code == 200  # the URL outlives its task
    reconcile(s3_settings, storage)
    assert s3.object_keys(s3_settings) == []


async def test_the_worker_renders_only_the_object_checked_at_completion_on_s3(
    s3_client: httpx.AsyncClient, s3_settings: Settings, storage: Storage
) -> None:
    data = photo(300, 200)
    body = await create(s3_client, len(data))
    task_id = str(body["task_id"])
    assert put(body, data).status_code == 200
    assert (await s3_client.post(f"{body['complete_url']}")).status_code == 202
    storage.put_bytes(f"originals/{task_id}", same_length_other_bytes(data))
    assert render(s3_settings, storage, task_id) == rendering.Outcome.failed
    failed = (await s3_client.get(f"/tasks/{task_id}")).json()
    assert (failed["status"], failed["error"]["code"]) == ("failed", "original_changed")


async def test_an_upload_stored_where_earlier_releases_put_it_completes_on_s3(
    s3_client: httpx.AsyncClient, s3_settings: Settings, storage: Storage
) -> None:
    # Their presigned URL named the original's own key.
    data = photo(300, 200)
    body = await create(s3_client, len(data))
    task_id = str(body["task_id"])
    storage.put_bytes(f"originals/{task_id}", data)
    assert (await s3_client.post(f"{body['complete_url']}")).status_code == 202
    assert render(s3_settings, storage, task_id) == rendering.Outcome.succeeded
    assert s3.object_keys(s3_settings, "originals/") == [f"originals/{task_id}"]
