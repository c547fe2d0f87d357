"""Webhooks end to end: a real worker (with its sweep), a real receiver process, the
Standard Webhooks verifier, retries, a hanging receiver, a lost publish, and SSRF."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from imagepipe.api.app import create_app
from imagepipe.config import Settings
from imagepipe.db.engine import make_sync_engine, sync_session_factory
from imagepipe.errors import InternalError
from imagepipe.services import lifecycle, webhooks
from tests.harness.app import make_settings, open_client
from tests.harness.processes import WorkerProcess, settings_env
from tests.harness.server import free_port, wait_for_port
from tests.images import photo

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

SECRET = webhooks.new_secret()


@contextmanager
def receiver(
    tmp_path: Path, mode: str, secret: str, port: int | None = None
) -> Iterator[tuple[str, Path]]:
    """A real receiver process; its URL and its log of what it received."""
    port = port or free_port()
    log = tmp_path / f"received-{port}.jsonl"
    log.touch()
    argv = [sys.executable, "-m", "tests.webhooks.receiver", str(port), str(log), secret, mode]
    process = subprocess.Popen(argv)
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}/hook", log
    finally:
        process.kill()
        process.wait(10)


def received(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line]


def hook_settings(tmp_path: Path, sqlite_url: str, redis_url: str, **extra: Any) -> Settings:
    extra.setdefault("webhook_allow_private", True)
    return make_settings(
        tmp_path,
        sqlite_url,
        redis_url,
        webhook_secret=SECRET,
        reconcile_interval_seconds=1,
        **extra,
    )


def worker_for(settings: Settings) -> WorkerProcess:
    return WorkerProcess(settings_env(settings), beat=True)


async def eventually(
    check: Callable[[], Awaitable[Any]], within: float, what: str, worker: WorkerProcess
) -> Any:
    deadline = time.monotonic() + within
    while not (value := await check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {within}s\n{worker.output()[-3000:]}")
        await anyio.sleep(0.2)
    return value


async def attempts(client: httpx.AsyncClient, task_id: str, count: int) -> list[dict[str, Any]]:
    response = await client.get(f"/tasks/{task_id}/deliveries")
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["deliveries"]
    return entries if len(entries) >= count else []


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_subscriptions_are_created_listed_and_deleted(
    tmp_path: Path, sqlite_url: str, redis_url: str
) -> None:
    settings = hook_settings(tmp_path, sqlite_url, redis_url)
    async with open_client(create_app(settings)) as client:
        created = await client.post("/webhooks", json={"url": "http://127.0.0.1:9/x"})
        assert created.status_code == 201, created.text
        hook = created.json()
        assert hook["secret"].startswith("whsec_") and webhooks.valid_secret(hook["secret"])
        assert hook["events"] == ["task.succeeded", "task.failed"]
        listed = (await client.get("/webhooks")).json()["webhooks"]
        assert [h["id"] for h in listed] == [hook["id"]] and "secret" not in listed[0]
        assert (await client.delete(f"/webhooks/{hook['id']}")).status_code == 204
        assert (await client.get("/webhooks")).json() == {"webhooks": []}
        gone = await client.delete(f"/webhooks/{hook['id']}")
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "webhook_not_found"
        bad = await client.post("/webhooks", json={"url": "http://x/", "events": ["nope"]})
        assert bad.status_code == 422


async def test_retried_after_two_500s_signed_and_logged(
    tmp_path: Path, sqlite_url: str, redis_url: str
) -> None:
    # A short schedule: the waits are the setting's, not the default 5 s then 30 s.
    settings = hook_settings(tmp_path, sqlite_url, redis_url, webhook_retry_schedule=(1, 2))
    worker = worker_for(settings)
    async with open_client(create_app(settings)) as client:
        port = free_port()
        url = f"http://127.0.0.1:{port}/hook"
        made = await client.post("/webhooks", json={"url": url, "events": ["task.succeeded"]})
        assert made.status_code == 201, made.text
        # The receiver verifies with the subscription's own secret.
        with receiver(tmp_path, "fail-twice", made.json()["secret"], port) as (_, log):
            upload = await client.post("/upload", files={"file": ("a.jpg", photo(400, 300))})
            task_id = upload.json()["task_id"]
            worker.start()
            try:
                entries = await eventually(
                    lambda: attempts(client, task_id, 3), 90, "three attempts", worker
                )
            finally:
                worker.stop()
    calls = received(log)
    assert [c["n"] for c in calls] == [1, 2, 3]
    assert all(c["verified"] and not c["tampered_verified"] for c in calls)
    assert len({c["headers"]["webhook-id"] for c in calls}) == 1  # one message, retried
    assert len({c["body"] for c in calls}) == 1
    body = json.loads(calls[0]["body"])
    assert body["type"] == "task.succeeded"
    assert body["data"]["task_id"] == task_id and body["data"]["status"] == "succeeded"
    assert calls[0]["headers"]["webhook-signature"].startswith("v1,")
    assert [(e["attempt"], e["status_code"]) for e in entries] == [(1, 500), (2, 500), (3, 200)]
    assert entries[0]["webhook_id"] == made.json()["id"]
    first_retry = _at(entries[0]["next_attempt_at"]) - _at(entries[0]["at"])
    second_retry = _at(entries[1]["next_attempt_at"]) - _at(entries[1]["at"])
    # The schedule's 1 s and 2 s (jittered by a fifth), not the default 5 s and 30 s;
    # the log gives whole seconds.
    assert first_retry.total_seconds() <= 2
    assert second_retry.total_seconds() <= 3
    assert entries[2]["next_attempt_at"] is None and entries[2]["error"] is None


async def test_callback_url_hanging_receiver_times_out_then_replay(
    tmp_path: Path, sqlite_url: str, redis_url: str
) -> None:
    settings = hook_settings(tmp_path, sqlite_url, redis_url, webhook_timeout_seconds=1)
    worker = worker_for(settings)
    async with open_client(create_app(settings)) as client:
        with receiver(tmp_path, "hang", SECRET) as (url, log):
            upload = await client.post(
                "/upload", files={"file": ("a.jpg", photo(300, 200))}, data={"callback_url": url}
            )
            assert upload.status_code == 202, upload.text
            task_id = upload.json()["task_id"]
            worker.start()
            try:
                entries = await eventually(
                    lambda: attempts(client, task_id, 1), 60, "an attempt", worker
                )
                assert entries[0]["error"] == "timeout" and entries[0]["status_code"] is None
                assert entries[0]["webhook_id"] is None  # the upload's own callback_url
                assert entries[0]["next_attempt_at"] is not None
                assert received(log)[0]["verified"]  # signed with IMAGEPIPE_WEBHOOK_SECRET
                replay = await client.post(f"/deliveries/{entries[0]['id']}/replay")
                assert replay.status_code == 202
                replayed = replay.json()["id"]
                await eventually(
                    lambda: _has_delivery(client, task_id, replayed), 60, "the replay", worker
                )
            finally:
                worker.stop()
        missing = await client.post(f"/deliveries/{uuid.uuid4()}/replay")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "delivery_not_found"


async def _has_delivery(client: httpx.AsyncClient, task_id: str, delivery_id: str) -> bool:
    entries = (await client.get(f"/tasks/{task_id}/deliveries")).json()["deliveries"]
    return any(e["id"] == delivery_id for e in entries)


async def test_status_committed_but_never_published_is_still_delivered(
    tmp_path: Path, sqlite_url: str, redis_url: str
) -> None:
    """As if the worker died right after its commit: the outbox row exists, nothing was
    published. The worker's sweep reads the outbox again and delivers it."""
    settings = hook_settings(tmp_path, sqlite_url, redis_url)
    async with open_client(create_app(settings)) as client:
        with receiver(tmp_path, "ok", SECRET) as (url, log):
            upload = await client.post(
                "/upload", files={"file": ("a.jpg", photo(300, 200))}, data={"callback_url": url}
            )
            task_id = upload.json()["task_id"]
            sessions = sync_session_factory(make_sync_engine(settings.resolved_database_url))
            # This process has no dispatcher: the status and its outbox row are
            # committed, and no delivery is ever published.
            assert lifecycle.fail(sessions, uuid.UUID(task_id), InternalError("Stopped."))
            assert received(log) == []
            worker = worker_for(settings)
            worker.start()
            try:
                entries = await eventually(
                    lambda: attempts(client, task_id, 1), 60, "the delivery", worker
                )
            finally:
                worker.stop()
    assert entries[0]["status_code"] == 200 and entries[0]["event"] == "task.failed"
    calls = received(log)
    assert len(calls) == 1 and calls[0]["verified"]
    assert json.loads(calls[0]["body"])["data"]["error"]["code"] == "internal_error"


async def test_private_addresses_are_refused_unless_allowed(
    tmp_path: Path, sqlite_url: str, redis_url: str
) -> None:
    settings = hook_settings(tmp_path, sqlite_url, redis_url, webhook_allow_private=False)
    async with open_client(create_app(settings)) as client:
        for url in (
            "http://127.0.0.1/x",
            "http://localhost:8080/x",  # a name: its resolved address is what counts
            "http://10.1.2.3/x",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/x",
            "ftp://example.com/x",
        ):
            refused = await client.post("/webhooks", json={"url": url})
            assert refused.status_code == 422, url
            assert refused.json()["error"]["code"] == "invalid_callback_url"
        upload = await client.post(
            "/upload",
            files={"file": ("a.jpg", photo(300, 200))},
            data={"callback_url": "http://localhost/x"},
        )
        assert upload.status_code == 422
        assert upload.json()["error"]["code"] == "invalid_callback_url"


async def test_connect_time_check_refuses_a_private_address(
    tmp_path: Path, sqlite_url: str, redis_url: str
) -> None:
    """Accepted while private addresses were allowed; delivered after that changed:
    the address is checked again at connect time and the attempt is refused."""
    allowed = hook_settings(tmp_path, sqlite_url, redis_url)
    async with open_client(create_app(allowed)) as client:
        with receiver(tmp_path, "ok", SECRET) as (url, log):
            upload = await client.post(
                "/upload", files={"file": ("a.jpg", photo(300, 200))}, data={"callback_url": url}
            )
            task_id = uuid.UUID(upload.json()["task_id"])
            sessions = sync_session_factory(make_sync_engine(allowed.resolved_database_url))
            lifecycle.fail(sessions, task_id, InternalError("Stopped."))
            [delivery_id] = webhooks.due(sessions)
            options = webhooks.DeliverySettings(
                default_secret=SECRET, allow_private=False, timeout_seconds=5
            )
            state = await anyio.to_thread.run_sync(
                lambda: webhooks.deliver(
                    sessions, delivery_id, options, payload_for=lambda *_: "{}"
                )
            )
            entries = (await client.get(f"/tasks/{task_id}/deliveries")).json()["deliveries"]
    assert state == "pending"
    assert received(log) == []
    assert "private" in entries[0]["error"]
