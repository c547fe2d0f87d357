"""Direct uploads on file:// storage: POST /uploads → the API's own PUT → complete.

The upload URL writes to a staging key; completing moves the object to the original's
key, and the URL cannot change it after that (tests/integration/test_direct_upload_s3.py
does the same with presigned URLs on a real S3)."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import redis
from sqlalchemy import select, update

from imagepipe.api.app import create_app
from imagepipe.api.parts import Parts
from imagepipe.api.routes import direct
from imagepipe.config import Settings
from imagepipe.db.engine import make_sync_engine, sync_session_factory
from imagepipe.db.models import Task, TaskStatus, WebhookDelivery, utcnow
from imagepipe.queue import DELIVER_WEBHOOK, FOLLOW_UP_QUEUE, CeleryQueue
from imagepipe.services import deletion, events, reconciler, recovery, rendering, webhooks
from imagepipe.storage import LocalStorage, Storage
from imagepipe.worker.celery_app import create_celery
from tests.harness.app import make_settings, open_client, run_inline, worker_parts
from tests.images import original_of, photo
from tests.observe import queue_length, stored_files

pytestmark = pytest.mark.anyio

SECRET = webhooks.new_secret()


async def create(
    client: httpx.AsyncClient, size: int, name: str = "cat.jpg", ctype: str = "image/jpeg"
) -> dict[str, object]:
    response = await client.post(
        "/uploads", json={"filename": name, "size_bytes": size, "content_type": ctype}
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def upload_path(body: dict[str, object]) -> str:
    upload = body["upload"]
    assert isinstance(upload, dict)
    parts = urlsplit(upload["url"])
    return f"{parts.path}?{parts.query}"


async def put(client: httpx.AsyncClient, body: dict[str, object], data: bytes) -> httpx.Response:
    upload = body["upload"]
    assert isinstance(upload, dict)
    return await client.put(upload_path(body), content=data, headers=upload["headers"])


async def test_whole_flow_then_render(
    any_db_client: httpx.AsyncClient, any_db_settings: Settings
) -> None:
    data = photo(800, 600)
    body = await create(any_db_client, len(data), name="../dir/cat.jpg")
    task_id = uuid.UUID(str(body["task_id"]))
    assert body["status"] == "awaiting_upload"
    assert body["complete_url"] == f"/tasks/{task_id}/complete"
    upload = body["upload"]
    assert isinstance(upload, dict)
    assert upload["method"] == "PUT"
    assert upload["headers"] == {"Content-Type": "image/jpeg"}
    assert upload["url"].startswith(f"http://test/tasks/{task_id}/original?token=")
    assert str(upload["expires_at"]).endswith("Z")

    waiting = (await any_db_client.get(f"/tasks/{task_id}")).json()
    assert waiting["status"] == "awaiting_upload" and waiting["variants"] == {}
    listed = (await any_db_client.get("/tasks", params={"status": "awaiting_upload"})).json()
    assert [t["task_id"] for t in listed["tasks"]] == [str(task_id)]
    assert queue_length(any_db_settings.redis_url) == 0

    assert (await put(any_db_client, body, data)).status_code == 204
    response = await any_db_client.post(f"/tasks/{task_id}/complete")
    assert response.status_code == 202, response.text
    accepted = {"task_id": str(task_id), "status": "queued", "status_url": f"/tasks/{task_id}"}
    assert response.json() == accepted
    assert queue_length(any_db_settings.redis_url) == 1

    status = (await any_db_client.get(f"/tasks/{task_id}")).json()
    assert status["status"] == "queued"
    # The API read the header only; the digest is taken by the worker, which reads it all.
    assert status["original"] == {**original_of(data, "cat.jpg", 800, 600), "sha256": ""}
    # Completing twice: the same answer, no second message.
    again = await any_db_client.post(f"/tasks/{task_id}/complete")
    assert (again.status_code, again.json()) == (202, accepted)
    assert queue_length(any_db_settings.redis_url) == 1
    # The upload is closed: its token's holder is told so.
    closed = await put(any_db_client, body, data)
    assert (closed.status_code, closed.json()["error"]["code"]) == (409, "upload_closed")

    assert run_inline(any_db_settings, str(task_id)) == rendering.Outcome.succeeded
    done = (await any_db_client.get(f"/tasks/{task_id}")).json()
    assert done["status"] == "succeeded" and set(done["variants"]) == {"small", "medium", "large"}
    assert done["original"] == original_of(data, "cat.jpg", 800, 600)
    # Recorded, the digest finds the same bytes uploaded again: a copy, not a render.
    again_id = (await any_db_client.post("/upload", files={"file": ("b.jpg", data)})).json()
    assert run_inline(any_db_settings, again_id["task_id"]) == rendering.Outcome.succeeded
    copy = (await any_db_client.get(f"/tasks/{again_id['task_id']}")).json()
    assert copy["report"]["deduplicated_from"] == str(task_id)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"size_bytes": 10, "content_type": "image/jpeg"}, "filename"),
        ({"filename": "a.jpg", "content_type": "image/jpeg"}, "size_bytes"),
        ({"filename": "a.jpg", "size_bytes": "10", "content_type": "image/jpeg"}, "size_bytes"),
        ({"filename": "a.jpg", "size_bytes": 1.5, "content_type": "image/jpeg"}, "size_bytes"),
        ({"filename": "a.jpg", "size_bytes": True, "content_type": "image/jpeg"}, "size_bytes"),
        ({"filename": "a.jpg", "size_bytes": 0, "content_type": "image/jpeg"}, "size_bytes"),
        ({"filename": "a.jpg", "size_bytes": 10}, "content_type"),
    ],
)
async def test_bad_fields_are_422(
    fast_client: httpx.AsyncClient, fast_settings: Settings, payload: dict[str, object], field: str
) -> None:
    response = await fast_client.post("/uploads", json=payload)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and field in error["message"]
    assert (await fast_client.get("/tasks")).json()["tasks"] == []


async def test_not_json_is_422(fast_client: httpx.AsyncClient) -> None:
    for content in (b"{", b"[1]", b""):
        response = await fast_client.post("/uploads", content=content)
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "invalid_request"


async def test_declared_size_over_the_limit_is_413_at_once(
    fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    body = {"filename": "a.jpg", "size_bytes": fast_settings.max_upload_bytes + 1}
    response = await fast_client.post("/uploads", json={**body, "content_type": "image/jpeg"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "file_too_large"
    assert (await fast_client.get("/tasks")).json()["tasks"] == []


async def test_complete_before_put_is_409(fast_client: httpx.AsyncClient) -> None:
    body = await create(fast_client, 1000)
    response = await fast_client.post(f"{body['complete_url']}")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "upload_incomplete"
    status = (await fast_client.get(f"/tasks/{body['task_id']}")).json()
    assert status["status"] == "awaiting_upload"


async def test_put_longer_than_declared_is_refused_while_streaming(
    fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    data = photo(400, 300)
    body = await create(fast_client, len(data) - 1)
    response = await put(fast_client, body, data)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "file_too_large"
    assert stored_files(fast_settings) == []


async def test_shorter_than_declared_is_incomplete_then_can_be_sent_again(
    fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    data = photo(400, 300)
    body = await create(fast_client, len(data))
    assert (await put(fast_client, body, data[:-100])).status_code == 204
    response = await fast_client.post(f"{body['complete_url']}")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "upload_incomplete"
    assert (await put(fast_client, body, data)).status_code == 204
    assert (await fast_client.post(f"{body['complete_url']}")).status_code == 202


async def test_object_longer_than_declared_fails_the_task(
    fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    # Another writer (or a backend without a pinned length) stored more than declared.
    data = photo(400, 300)
    body = await create(fast_client, len(data) - 10)
    LocalStorage(fast_settings.resolved_storage_root).put_bytes(
        f"originals/{body['task_id']}", data
    )
    response = await fast_client.post(f"{body['complete_url']}")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "file_too_large"
    assert stored_files(fast_settings) == []
    status = (await fast_client.get(f"/tasks/{body['task_id']}")).json()
    assert status["status"] == "failed" and status["error"]["code"] == "file_too_large"
    # Completing again answers the same refusal.
    again = await fast_client.post(f"{body['complete_url']}")
    assert (again.status_code, again.json()["error"]["code"]) == (409, "file_too_large")


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"<html>not an image</html>" * 20, 415, "unsupported_media_type"),
        (photo(400, 300)[:600], 422, "invalid_image"),
    ],
)
async def test_non_image_is_refused_and_nothing_left(
    fast_client: httpx.AsyncClient,
    fast_settings: Settings,
    parts: Parts,
    data: bytes,
    status: int,
    code: str,
) -> None:
    body = await create(fast_client, len(data))
    assert (await put(fast_client, body, data)).status_code == 204
    assert stored_files(fast_settings) == [f"staging/{body['task_id']}"]
    response = await fast_client.post(f"{body['complete_url']}")
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert stored_files(fast_settings) == []
    task = (await fast_client.get(f"/tasks/{body['task_id']}")).json()
    assert task["status"] == "failed" and task["error"]["code"] == code
    assert parts.queue.depth() == 0


async def test_wrong_token_is_403_and_unknown_task_404(
    fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    data = photo(100, 100)
    body = await create(fast_client, len(data))
    task_id = body["task_id"]
    real = upload_path(body).rsplit("=", 1)[1]
    altered = real[:-1] + ("B" if real.endswith("A") else "A")
    for token in ("x", altered, ""):
        response = await fast_client.put(f"/tasks/{task_id}/original?token={token}", content=data)
        assert response.status_code == 403, token
        assert response.json()["error"]["code"] == "invalid_upload_token"
    # The token is bound to its task.
    other = await create(fast_client, len(data))
    response = await fast_client.put(
        upload_path(body).replace(str(task_id), str(other["task_id"])), content=data
    )
    assert response.status_code == 403
    response = await fast_client.put(f"/tasks/{uuid.uuid4()}/original?token=x", content=data)
    assert (response.status_code, response.json()["error"]["code"]) == (404, "task_not_found")
    assert stored_files(fast_settings) == []


def _age(settings: Settings, task_id: object) -> None:
    """Move a task's upload expiry into the past (rather than waiting for it)."""
    engine = make_sync_engine(settings.resolved_database_url)
    try:
        with sync_session_factory(engine).begin() as session:
            session.execute(
                update(Task)
                .where(Task.id == uuid.UUID(str(task_id)))
                .values(upload_expires_at=utcnow() - timedelta(seconds=1))
            )
    finally:
        engine.dispose()


async def test_expired_token_is_403_and_complete_409(
    fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    data = photo(100, 100)
    body = await create(fast_client, len(data))
    assert (await put(fast_client, body, data[:50])).status_code == 204
    _age(fast_settings, body["task_id"])
    response = await put(fast_client, body, data)
    assert (response.status_code, response.json()["error"]["code"]) == (403, "upload_expired")
    response = await fast_client.post(f"{body['complete_url']}")
    assert (response.status_code, response.json()["error"]["code"]) == (409, "upload_expired")
    assert stored_files(fast_settings) == []
    task = (await fast_client.get(f"/tasks/{body['task_id']}")).json()
    assert task["status"] == "failed" and task["error"]["code"] == "upload_expired"


async def test_reconciler_expires_abandoned_uploads(
    client: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = photo(100, 100)
    abandoned = await create(client, len(data))
    assert (await put(client, abandoned, data[:50])).status_code == 204
    fresh = await create(client, len(data))
    _age(settings, abandoned["task_id"])

    # The reconciler's Celery task body, with this test's settings.
    from imagepipe.worker import tasks

    monkeypatch.setattr(tasks, "app_settings", settings)
    tasks.runtime.cache_clear()
    try:
        expected = {
            "requeued": 0, "failed": 0, "expired": 1, "purged": 0, "extras": 0, "rerenders": 0
        }  # fmt: skip
        assert tasks.reconcile() == expected
        assert tasks.reconcile()["expired"] == 0
    finally:
        tasks.runtime().sessions.kw["bind"].dispose()
        tasks.runtime.cache_clear()
    assert stored_files(settings) == []
    task = (await client.get(f"/tasks/{abandoned['task_id']}")).json()
    assert task["status"] == "failed" and task["error"]["code"] == "upload_expired"
    assert (await client.get(f"/tasks/{fresh['task_id']}")).json()["status"] == "awaiting_upload"


async def test_expiry_is_batched(fast_settings: Settings) -> None:
    engine = make_sync_engine(fast_settings.resolved_database_url)
    sessions = sync_session_factory(engine)
    past = utcnow() - timedelta(seconds=5)
    try:
        with sessions.begin() as session:
            for n in range(3):
                session.add(
                    Task(
                        status=TaskStatus.awaiting_upload,
                        filename="a.jpg",
                        original_key=f"originals/x{n}",
                        original_format="",
                        original_width=0,
                        original_height=0,
                        original_size_bytes=1,
                        original_sha256="",
                        upload_expires_at=past + timedelta(seconds=n),
                    )
                )
        first = recovery.expire_uploads(sessions, utcnow(), limit=2)
        assert first == ["originals/x0", "originals/x1"]
        assert recovery.expire_uploads(sessions, utcnow(), limit=2) == ["originals/x2"]
    finally:
        engine.dispose()


async def test_put_needs_no_api_key_but_the_rest_does(
    tmp_path: Path, fast_settings: Settings
) -> None:
    secured = fast_settings.model_copy(update={"api_keys": ("k" * 32,)})
    async with open_client(create_app(secured)) as fast_client:
        data = photo(100, 100)
        anonymous = await fast_client.post(
            "/uploads", json={"filename": "a", "size_bytes": len(data), "content_type": "x/y"}
        )
        assert anonymous.status_code == 401
        fast_client.headers["Authorization"] = "Bearer " + "k" * 32
        body = await create(fast_client, len(data))
        del fast_client.headers["Authorization"]
        assert (await put(fast_client, body, data)).status_code == 204
        assert (await fast_client.post(f"{body['complete_url']}")).status_code == 401


@pytest.fixture
async def hooked(
    tmp_path: Path, sqlite_url: str, redis_url: str
) -> AsyncIterator[tuple[httpx.AsyncClient, Settings, str]]:
    """A client whose (anonymous) key has a webhook subscription; the settings and the
    subscription's id."""
    settings = make_settings(
        tmp_path, sqlite_url, redis_url, webhook_allow_private=True, webhook_secret=SECRET
    )
    async with open_client(create_app(settings)) as client:
        made = await client.post("/webhooks", json={"url": "http://127.0.0.1:9/hook"})
        assert made.status_code == 201, made.text
        yield client, settings, made.json()["id"]


def deliveries(settings: Settings, task_id: object) -> list[tuple[str | None, str, str]]:
    """The task's outbox rows: (subscription id or None, URL, event), by URL."""
    engine = make_sync_engine(settings.resolved_database_url)
    try:
        with sync_session_factory(engine)() as session:
            rows = session.scalars(
                select(WebhookDelivery).where(WebhookDelivery.task_id == uuid.UUID(str(task_id)))
            ).all()
            return sorted(
                ((str(r.webhook_id) if r.webhook_id else None, r.url, r.event) for r in rows),
                key=lambda row: row[1],
            )
    finally:
        engine.dispose()


@contextmanager
def status_notifications(redis_url: str) -> Iterator[Callable[[], set[str]]]:
    """The task ids whose status change was announced while the block ran."""
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    pubsub.psubscribe(f"{events.CHANNEL_PREFIX}*")
    assert pubsub.get_message(timeout=5)["type"] == "psubscribe"  # subscribed before the block

    def seen() -> set[str]:
        ids = set()
        while message := pubsub.get_message(timeout=1.0):
            ids.add(message["channel"].decode().removeprefix(events.CHANNEL_PREFIX))
        return ids

    try:
        yield seen
    finally:
        pubsub.close()
        client.close()


def published_deliveries(redis_url: str) -> list[str]:
    """The ids of the webhook deliveries waiting in the broker."""
    client = redis.Redis.from_url(redis_url)
    try:
        messages = [json.loads(m) for m in client.lrange(FOLLOW_UP_QUEUE, 0, -1)]
    finally:
        client.close()
    return [
        json.loads(base64.b64decode(m["body"]))[0][0]
        for m in messages
        if m["headers"]["task"] == DELIVER_WEBHOOK
    ]


async def test_refused_at_completion_is_a_failure_like_any_other(
    hooked: tuple[httpx.AsyncClient, Settings, str],
) -> None:
    client, settings, hook_id = hooked
    data = b"<html>not an image</html>" * 20
    response = await client.post(
        "/uploads",
        json={
            "filename": "a.jpg",
            "size_bytes": len(data),
            "content_type": "image/jpeg",
            "callback_url": "http://127.0.0.1:9/own",
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (await put(client, body, data)).status_code == 204
    with status_notifications(settings.redis_url) as seen:
        assert (await client.post(f"{body['complete_url']}")).status_code == 415
        assert body["task_id"] in seen()
    assert deliveries(settings, body["task_id"]) == [
        (hook_id, "http://127.0.0.1:9/hook", "task.failed"),
        (None, "http://127.0.0.1:9/own", "task.failed"),
    ]
    assert len(published_deliveries(settings.redis_url)) == 2
    # Completing again answers the refusal again and writes nothing more.
    assert (await client.post(f"{body['complete_url']}")).status_code == 409
    assert len(deliveries(settings, body["task_id"])) == 2


async def test_expired_uploads_are_failures_like_any_other(
    hooked: tuple[httpx.AsyncClient, Settings, str],
) -> None:
    client, settings, hook_id = hooked
    at_completion = await create(client, 100)
    by_reconciler = await create(client, 100)
    for body in (at_completion, by_reconciler):
        _age(settings, body["task_id"])

    with status_notifications(settings.redis_url) as seen:
        assert (await client.post(f"{at_completion['complete_url']}")).status_code == 409
        # As the reconciler runs it: in a worker's runtime, whose changes followers hear.
        with worker_parts(settings) as (sessions, _):
            expired = recovery.expire_uploads(sessions, utcnow())
        assert expired == [f"originals/{by_reconciler['task_id']}"]
        assert {at_completion["task_id"], by_reconciler["task_id"]} <= seen()
    for body in (at_completion, by_reconciler):
        assert deliveries(settings, body["task_id"]) == [
            (hook_id, "http://127.0.0.1:9/hook", "task.failed")
        ]
        task = (await client.get(f"/tasks/{body['task_id']}")).json()
        assert task["error"]["code"] == "upload_expired"


async def test_callback_url_is_checked(fast_client: httpx.AsyncClient) -> None:
    for url, code in ((5, "invalid_request"), ("http://127.0.0.1:9/x", "invalid_callback_url")):
        response = await fast_client.post(
            "/uploads",
            json={"filename": "a", "size_bytes": 9, "content_type": "a/b", "callback_url": url},
        )
        assert (response.status_code, response.json()["error"]["code"]) == (422, code)
    assert (await fast_client.get("/tasks")).json()["tasks"] == []


# --- the upload URL once its task has moved on -------------------------------------


def reconcile(settings: Settings, storage: Storage | None = None) -> dict[str, int]:
    """One reconciler run (expiry, staging sweep, …) with this test's settings."""
    engine = make_sync_engine(settings.resolved_database_url)
    queue = CeleryQueue(create_celery(settings))
    try:
        return reconciler.run(
            sync_session_factory(engine),
            storage or LocalStorage(settings.resolved_storage_root),
            queue,
            settings,
        )
    finally:
        queue.close()
        engine.dispose()


def delete_rows(settings: Settings, task_id: object) -> None:
    """The database half of DELETE /tasks/{id} (tombstone, then row), from outside the
    request under test; the caller removes the files, or not."""
    ident = uuid.UUID(str(task_id))
    engine = make_sync_engine(settings.resolved_database_url)
    try:
        sessions = sync_session_factory(engine)
        with sessions.begin() as session:
            assert deletion.mark_deleted(session, ident)
        with sessions.begin() as session:
            deletion.remove_row(session, ident)
    finally:
        engine.dispose()


def stored_bytes(settings: Settings, key: str) -> bytes:
    return (settings.resolved_storage_root / key).read_bytes()


async def test_the_upload_url_changes_nothing_once_the_upload_is_completed(
    fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    data = photo(400, 300)
    body = await create(fast_client, len(data))
    task_id = body["task_id"]
    assert (await put(fast_client, body, data)).status_code == 204
    assert stored_files(fast_settings) == [f"staging/{task_id}"]
    assert (await fast_client.post(f"{body['complete_url']}")).status_code == 202
    # Moved, not copied: what the URL wrote is now the original.
    assert stored_files(fast_settings) == [f"originals/{task_id}"]

    other = photo(300, 200, "PNG")
    response = await put(fast_client, body, other)
    assert (response.status_code, response.json()["error"]["code"]) == (409, "upload_closed")
    # A write the URL makes all the same (a PUT whose body was still arriving, or a
    # presigned S3 URL, which cannot be revoked) lands on the staging key. The
    # reconciler removes it, and keeps what an upload in progress has staged.
    waiting = await create(fast_client, len(data))
    assert (await put(fast_client, waiting, data)).status_code == 204
    LocalStorage(fast_settings.resolved_storage_root).put_bytes(f"staging/{task_id}", other)
    reconcile(fast_settings)
    assert stored_files(fast_settings) == [f"originals/{task_id}", f"staging/{waiting['task_id']}"]
    assert stored_bytes(fast_settings, f"originals/{task_id}") == data

    assert run_inline(fast_settings, str(task_id)) == rendering.Outcome.succeeded
    done = (await fast_client.get(f"/tasks/{task_id}")).json()
    assert done["original"] == original_of(data, "cat.jpg", 400, 300)


async def test_a_put_still_arriving_when_its_task_is_deleted_leaves_nothing(
    fast_client: httpx.AsyncClient, fast_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = photo(400, 300)
    body = await create(fast_client, len(data))
    received = direct.receive_body

    async def deleted_meanwhile(*args: object, **kwargs: object) -> None:
        await received(*args, **kwargs)  # type: ignore[arg-type]
        delete_rows(fast_settings, body["task_id"])  # and it had no files yet

    monkeypatch.setattr(direct, "receive_body", deleted_meanwhile)
    assert (await put(fast_client, body, data)).status_code == 204
    monkeypatch.setattr(direct, "receive_body", received)
    reconcile(fast_settings)
    assert stored_files(fast_settings) == []
    response = await put(fast_client, body, data)
    assert (response.status_code, response.json()["error"]["code"]) == (404, "task_not_found")
    assert stored_files(fast_settings) == []


async def test_a_retried_completion_keeps_the_object_the_first_one_moved(
    fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    data = photo(400, 300)
    body = await create(fast_client, len(data))
    task_id = str(body["task_id"])
    assert (await put(fast_client, body, data)).status_code == 204
    # A completion that moved the object and went no further (its probe's storage
    # failed); then the URL stores other bytes of the declared length.
    storage = LocalStorage(fast_settings.resolved_storage_root)
    storage.move(f"staging/{task_id}", f"originals/{task_id}")
    other = data[:13] + bytes([1, 0, 72, 0, 72]) + data[18:]  # another JFIF density
    assert (await put(fast_client, body, other)).status_code == 204
    assert (await fast_client.post(f"{body['complete_url']}")).status_code == 202
    assert stored_bytes(fast_settings, f"originals/{task_id}") == data
    reconcile(fast_settings)
    assert stored_files(fast_settings) == [f"originals/{task_id}"]
    assert run_inline(fast_settings, task_id) == rendering.Outcome.succeeded
    done = (await fast_client.get(f"/tasks/{task_id}")).json()
    assert done["original"]["sha256"] == hashlib.sha256(data).hexdigest()


async def test_the_worker_renders_only_the_object_checked_at_completion(
    fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    data = photo(400, 300)
    body = await create(fast_client, len(data))
    task_id = str(body["task_id"])
    assert (await put(fast_client, body, data)).status_code == 204
    assert (await fast_client.post(f"{body['complete_url']}")).status_code == 202
    # Replaced after the check (by a second completion racing the first, or the URL
    # of an earlier release, which named this key): not the bytes probed and recorded.
    LocalStorage(fast_settings.resolved_storage_root).put_bytes(
        f"originals/{task_id}", photo(900, 900, "PNG")
    )
    assert run_inline(fast_settings, task_id) == rendering.Outcome.failed
    task = (await fast_client.get(f"/tasks/{task_id}")).json()
    assert (task["status"], task["error"]["code"]) == ("failed", "original_changed")
    assert task["variants"] == {} and task["original"]["sha256"] == ""


async def test_an_upload_stored_where_earlier_releases_put_it_still_completes(
    fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    # Their URL wrote the original's own key; such a task may still be awaiting its
    # completion when the new release starts.
    data = photo(400, 300)
    body = await create(fast_client, len(data))
    task_id = str(body["task_id"])
    LocalStorage(fast_settings.resolved_storage_root).put_bytes(f"originals/{task_id}", data)
    assert (await fast_client.post(f"{body['complete_url']}")).status_code == 202
    assert run_inline(fast_settings, task_id) == rendering.Outcome.succeeded
    done = (await fast_client.get(f"/tasks/{task_id}")).json()
    assert done["original"] == original_of(data, "cat.jpg", 400, 300)
    assert done["original"]["sha256"] == hashlib.sha256(data).hexdigest()


def _during_probe(
    monkeypatch: pytest.MonkeyPatch, meanwhile: Callable[[], None]
) -> Callable[[], None]:
    """Run ``meanwhile`` while the completion probes the object (after its look at the
    task, before its compare-and-swap); returns a function that restores the probe."""
    probe = direct.probe_header

    async def probing(*args: object) -> object:
        meanwhile()
        return await probe(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(direct, "probe_header", probing)
    return lambda: monkeypatch.setattr(direct, "probe_header", probe)


async def test_complete_answers_an_expiry_that_won_the_race(
    any_db_client: httpx.AsyncClient, any_db_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = photo(400, 300)
    body = await create(any_db_client, len(data))
    assert (await put(any_db_client, body, data)).status_code == 204

    def expire() -> None:
        _age(any_db_settings, body["task_id"])
        engine = make_sync_engine(any_db_settings.resolved_database_url)
        try:
            assert recovery.expire_uploads(sync_session_factory(engine), utcnow()) != []
        finally:
            engine.dispose()

    restore = _during_probe(monkeypatch, expire)
    response = await any_db_client.post(f"{body['complete_url']}")
    restore()
    assert (response.status_code, response.json()["error"]["code"]) == (409, "upload_expired")
    assert queue_length(any_db_settings.redis_url) == 0
    # What the completion moved belongs to nothing: gone with the expiry.
    assert stored_files(any_db_settings) == []
    task = (await any_db_client.get(f"/tasks/{body['task_id']}")).json()
    assert (task["status"], task["error"]["code"]) == ("failed", "upload_expired")
    again = await any_db_client.post(f"{body['complete_url']}")
    assert (again.status_code, again.json()["error"]["code"]) == (409, "upload_expired")


async def test_complete_answers_a_delete_that_won_the_race(
    fast_client: httpx.AsyncClient,
    fast_settings: Settings,
    parts: Parts,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = photo(400, 300)
    body = await create(fast_client, len(data))
    assert (await put(fast_client, body, data)).status_code == 204
    # The delete removed the task's files before the completion moved the object in.
    restore = _during_probe(monkeypatch, lambda: delete_rows(fast_settings, body["task_id"]))
    response = await fast_client.post(f"{body['complete_url']}")
    restore()
    assert (response.status_code, response.json()["error"]["code"]) == (404, "task_not_found")
    assert parts.queue.depth() == 0
    assert stored_files(fast_settings) == []


async def test_upload_tokens_open_only_their_own_upload(
    fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    data = photo(100, 100)
    first, second = await create(fast_client, len(data)), await create(fast_client, len(data))
    assert (await put(fast_client, first, data)).status_code == 204
    assert (await fast_client.post(f"{first['complete_url']}")).status_code == 202
    # The closed task's token says nothing about the open one, and a wrong token says
    # nothing about the closed one.
    swapped = upload_path(first).replace(str(first["task_id"]), str(second["task_id"]))
    response = await fast_client.put(swapped, content=data)
    assert (response.status_code, response.json()["error"]["code"]) == (
        403,
        "invalid_upload_token",
    )
    response = await fast_client.put(f"/tasks/{first['task_id']}/original?token=x", content=data)
    assert (response.status_code, response.json()["error"]["code"]) == (
        403,
        "invalid_upload_token",
    )
    assert stored_files(fast_settings) == [f"originals/{first['task_id']}"]
