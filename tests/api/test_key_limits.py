"""Per-key limits: unfinished tasks, the request rate (shared through Redis by every
API process), followers; each refused with 429 + Retry-After before the body is read.
Event streams end after a bounded time."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest
from sqlalchemy import event

from imagepipe.api.app import create_app
from imagepipe.config import Settings
from tests.harness.app import make_settings, open_client, run_inline
from tests.harness.server import free_port
from tests.images import photo

pytestmark = pytest.mark.anyio

ALICE, BOB = "alice-key-0123456789abcdef", "bob-key-0123456789abcdefgh"
HOOK = {"url": "http://127.0.0.1:9/hook"}


def as_key(key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


async def upload(client: httpx.AsyncClient, key: str, **headers: str) -> httpx.Response:
    return await client.post(
        "/upload", files={"file": ("a.jpg", photo(200, 150))}, headers=as_key(key, **headers)
    )


async def direct(client: httpx.AsyncClient, key: str) -> httpx.Response:
    body = {"filename": "a.jpg", "size_bytes": 100, "content_type": "image/jpeg"}
    return await client.post("/uploads", json=body, headers=as_key(key))


def limited(tmp_path: Path, sqlite_url: str, redis_url: str, **overrides: object) -> Settings:
    return make_settings(
        tmp_path, sqlite_url, redis_url, api_keys=(ALICE, BOB), webhook_allow_private=True,
        **overrides,
    )  # fmt: skip


@pytest.fixture
async def quota(
    tmp_path: Path, sqlite_url: str, redis_url: str
) -> AsyncIterator[tuple[httpx.AsyncClient, Settings]]:
    settings = limited(tmp_path, sqlite_url, redis_url, key_max_active_tasks=2)
    async with open_client(create_app(settings)) as client:
        yield client, settings


def assert_refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert int(response.headers["retry-after"]) >= 1


async def test_active_tasks_over_the_quota_are_429(
    quota: tuple[httpx.AsyncClient, Settings],
) -> None:
    client, settings = quota
    first = await upload(client, ALICE, **{"Idempotency-Key": "first"})
    assert first.status_code == 202
    assert (await direct(client, ALICE)).status_code == 201  # awaiting_upload counts
    assert_refused(await upload(client, ALICE), 429, "quota_exceeded")
    assert_refused(await direct(client, ALICE), 429, "quota_exceeded")
    # A replay creates nothing: never refused by the quota.
    replay = await upload(client, ALICE, **{"Idempotency-Key": "first"})
    assert replay.status_code == 202 and replay.headers["Idempotent-Replayed"] == "true"
    # Another tenant has its own count.
    assert (await upload(client, BOB)).status_code == 202
    # A task that ends frees its place.
    assert run_inline(settings, first.json()["task_id"]).value == "succeeded"
    assert (await upload(client, ALICE)).status_code == 202


async def test_the_quota_answers_before_the_body(
    quota: tuple[httpx.AsyncClient, Settings],
) -> None:
    client, _ = quota
    for _ in range(2):
        assert (await upload(client, ALICE)).status_code == 202
    read = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal read
        for _ in range(64):
            read += 1
            yield b"x" * 65536

    refused = await client.post(
        "/upload", content=body(), headers=as_key(ALICE, **{"Content-Type": "multipart/form-data"})
    )
    assert_refused(refused, 429, "quota_exceeded")
    assert refused.headers["connection"] == "close"
    assert read <= 1, f"{read} chunks of the body were read before the refusal"


async def test_the_rate_limit_is_shared_by_every_api_process(
    tmp_path: Path, sqlite_url: str, redis_url: str
) -> None:
    settings = limited(tmp_path, sqlite_url, redis_url, key_rate_limit="3/minute")
    async with (
        open_client(create_app(settings)) as one,
        open_client(create_app(settings)) as two,
    ):
        made = await one.post("/webhooks", json=HOOK, headers=as_key(ALICE))
        assert made.status_code == 201
        assert made.headers["ratelimit-policy"] == '"default";q=3;w=60'
        assert made.headers["ratelimit"] == '"default";r=2;t=20'
        assert (await upload(two, ALICE)).headers["ratelimit"].startswith('"default";r=1;')
        hook_id = made.json()["id"]
        assert (await one.delete(f"/webhooks/{hook_id}", headers=as_key(ALICE))).status_code == 204

        refused = await two.post("/webhooks", json=HOOK, headers=as_key(ALICE))
        assert_refused(refused, 429, "rate_limited")
        assert refused.headers["ratelimit-policy"] == '"default";q=3;w=60'
        assert refused.headers["ratelimit"].startswith('"default";r=0;t=')
        assert 1 <= int(refused.headers["retry-after"]) <= 20
        replay = "/deliveries/00000000-0000-0000-0000-000000000000/replay"
        for route in ("/upload", "/uploads", replay):
            response = await one.post(route, headers=as_key(ALICE))
            assert_refused(response, 429, "rate_limited")
        # Reading is never limited; another tenant has its own budget.
        for _ in range(5):
            assert (await one.get("/webhooks", headers=as_key(ALICE))).status_code == 200
        assert (await two.post("/webhooks", json=HOOK, headers=as_key(BOB))).status_code == 201


async def test_without_a_rate_limit_no_rate_headers(fast_client: httpx.AsyncClient) -> None:
    response = await fast_client.post("/uploads", json={"filename": "a.jpg"})
    assert response.status_code == 422
    assert "ratelimit" not in response.headers


async def test_the_rate_limit_fails_open_when_redis_is_down(
    tmp_path: Path, sqlite_url: str
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings = limited(tmp_path, sqlite_url, dead, key_rate_limit="1/minute")
    async with open_client(create_app(settings)) as client:
        for _ in range(3):
            made = await client.post("/webhooks", json=HOOK, headers=as_key(ALICE))
            assert made.status_code == 201, made.text
            assert "ratelimit" not in made.headers


async def test_followers_over_the_limit_are_429(
    tmp_path: Path, sqlite_url: str, redis_url: str
) -> None:
    settings = limited(tmp_path, sqlite_url, redis_url, key_max_followers=1)
    async with open_client(create_app(settings)) as client:
        task_id = (await upload(client, ALICE)).json()["task_id"]  # stays queued
        answers: list[httpx.Response] = []

        async def follow() -> None:
            answers.append(await client.get(f"/tasks/{task_id}?wait=2", headers=as_key(ALICE)))

        async with anyio.create_task_group() as group:
            group.start_soon(follow)
            await anyio.sleep(0.5)
            assert_refused(
                await client.get(f"/tasks/{task_id}?wait=1", headers=as_key(ALICE)),
                429,
                "too_many_followers",
            )
            events = await client.get(f"/tasks/{task_id}/events", headers=as_key(ALICE))
            assert_refused(events, 429, "too_many_followers")
            # Reading without waiting is not following; another tenant has its own.
            assert (await client.get(f"/tasks/{task_id}", headers=as_key(ALICE))).status_code == 200
            assert (await client.get("/tasks?wait=1", headers=as_key(BOB))).status_code == 200
        assert answers[0].status_code == 200
        # The slot is free again.
        again = await client.get(f"/tasks/{task_id}?wait=0.2", headers=as_key(ALICE))
        assert again.status_code == 200


async def test_an_event_stream_ends_after_its_lifetime_and_rereads_only_the_status(
    tmp_path: Path, sqlite_url: str, redis_url: str
) -> None:
    settings = limited(
        tmp_path, sqlite_url, redis_url, events_max_stream_seconds=1.5, events_reread_seconds=0.1
    )
    app = create_app(settings)
    async with open_client(app) as client:
        task_id = (await upload(client, ALICE)).json()["task_id"]  # stays queued
        statements: list[str] = []
        engine = app.state.imagepipe.services.engine.sync_engine

        def seen(*args: object) -> None:
            statements.append(str(args[2]))

        event.listen(engine, "before_cursor_execute", seen)
        try:
            with anyio.fail_after(10):
                stream = await client.get(f"/tasks/{task_id}/events", headers=as_key(ALICE))
        finally:
            event.remove(engine, "before_cursor_execute", seen)
    assert stream.status_code == 200
    events = [line for line in stream.text.splitlines() if line.startswith("data:")]
    assert len(events) == 1 and json.loads(events[0][5:])["status"] == "queued"
    # Over ~1.5 s at 0.1 s: about 15 re-reads, each one primary-key lookup of the
    # status; the variants were read by the route's own lookup and for the one event.
    assert len(statements) >= 5
    assert sum("FROM variants" in s for s in statements) <= 2, statements
