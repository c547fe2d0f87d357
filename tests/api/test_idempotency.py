"""Idempotency-Key on POST /upload and POST /uploads: replay, reuse with another body, in
flight, scope, expiry; concurrent requests on SQLite and PostgreSQL."""

from __future__ import annotations

import anyio
import httpx
import pytest
from sqlalchemy import create_engine, func, select, update

from imagepipe.api.app import create_app
from imagepipe.api.parts import Parts
from imagepipe.config import Settings
from imagepipe.db.engine import async_session_factory, make_async_engine, sync_url
from imagepipe.db.models import IdempotencyKey, Task, utcnow
from imagepipe.services.idempotency import Reservation, fingerprint
from tests.harness.app import SettingsWith, open_client
from tests.images import photo

pytestmark = pytest.mark.anyio

IMAGE = photo(320, 240)
OTHER = photo(321, 240)


async def post(
    client: httpx.AsyncClient, data: bytes, key: str | None, name: str = "a.jpg", **headers: str
) -> httpx.Response:
    if key is not None:
        headers["Idempotency-Key"] = key
    return await client.post("/upload", files={"file": (name, data)}, headers=headers)


def task_count(settings: Settings) -> int:
    engine = create_engine(sync_url(settings.resolved_database_url))
    try:
        with engine.connect() as connection:
            return int(connection.scalar(select(func.count()).select_from(Task)) or 0)
    finally:
        engine.dispose()


async def test_same_key_same_body_replays_the_first_answer(
    fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    first = await post(fast_client, IMAGE, "order-42")
    assert first.status_code == 202, first.text
    assert "Idempotent-Replayed" not in first.headers
    again = await post(fast_client, IMAGE, "order-42")
    assert again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert again.headers["Location"] == first.headers["Location"]
    assert task_count(fast_settings) == 1
    # Without the header, the same bytes make a new task.
    fresh = await post(fast_client, IMAGE, None)
    assert fresh.json()["task_id"] != first.json()["task_id"]


async def test_same_key_other_body_is_422(
    fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    assert (await post(fast_client, IMAGE, "k1")).status_code == 202
    for data, name in ((OTHER, "a.jpg"), (IMAGE, "b.jpg")):
        refused = await post(fast_client, data, "k1", name)
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "idempotency_key_reused"
    assert task_count(fast_settings) == 1


async def test_key_still_in_flight_is_409(
    fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    engine = make_async_engine(fast_settings.resolved_database_url)
    try:
        first = Reservation(
            async_session_factory(engine), scope="anonymous", key="busy", ttl_seconds=60
        )
        # The first request has its body and is still working on it.
        assert await first.reserve(fingerprint("POST /upload", _sha(IMAGE), "a.jpg", None)) is None
        busy = await post(fast_client, IMAGE, "busy")
        assert busy.status_code == 409
        assert busy.json()["error"]["code"] == "idempotency_key_in_use"
        await first.release()  # it failed: the key is free again
    finally:
        await engine.dispose()
    assert (await post(fast_client, IMAGE, "busy")).status_code == 202


async def test_a_failed_request_frees_its_key(fast_client: httpx.AsyncClient) -> None:
    refused = await post(fast_client, b"not an image at all", "retry-me")
    assert refused.status_code == 415
    accepted = await post(fast_client, IMAGE, "retry-me")
    assert accepted.status_code == 202
    assert "Idempotent-Replayed" not in accepted.headers


@pytest.mark.parametrize("key", [b"", b"has space", b"x" * 256, "caf\u00e9".encode(), b"tab\t"])
async def test_malformed_keys_are_400(fast_client: httpx.AsyncClient, key: bytes) -> None:
    response = await fast_client.post(
        "/upload", files={"file": ("a.jpg", IMAGE)}, headers={b"Idempotency-Key": key}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"


async def test_keys_are_scoped_per_api_key(fast_settings_with: SettingsWith) -> None:
    settings = fast_settings_with(api_keys=("key-one", "key-two"))
    async with open_client(create_app(settings, parts=Parts())) as client:
        one = await post(client, IMAGE, "shared", Authorization="Bearer key-one")
        two = await post(client, IMAGE, "shared", Authorization="Bearer key-two")
        other_body = await post(client, OTHER, "shared", Authorization="Bearer key-two")
    assert one.status_code == two.status_code == 202
    assert one.json()["task_id"] != two.json()["task_id"]
    assert "Idempotent-Replayed" not in two.headers
    assert other_body.json()["error"]["code"] == "idempotency_key_reused"


async def test_keys_expire(fast_client: httpx.AsyncClient, fast_settings: Settings) -> None:
    first = await post(fast_client, IMAGE, "daily")
    engine = create_engine(sync_url(fast_settings.resolved_database_url))
    with engine.begin() as connection:  # a day has passed
        connection.execute(update(IdempotencyKey).values(expires_at=utcnow()))
    engine.dispose()
    later = await post(fast_client, IMAGE, "daily")
    assert later.status_code == 202
    assert "Idempotent-Replayed" not in later.headers
    assert later.json()["task_id"] != first.json()["task_id"]


async def test_concurrent_requests_with_one_key_make_one_task(
    fast_any_db_client: httpx.AsyncClient, fast_any_db_settings: Settings
) -> None:
    answers: list[httpx.Response] = []

    async def send() -> None:
        answers.append(await post(fast_any_db_client, IMAGE, "race"))

    async with anyio.create_task_group() as group:
        for _ in range(8):
            group.start_soon(send)
    assert task_count(fast_any_db_settings) == 1
    accepted = {r.json()["task_id"] for r in answers if r.status_code == 202}
    assert len(accepted) == 1
    for response in answers:
        assert response.status_code in (202, 409), response.text
        if response.status_code == 409:
            assert response.json()["error"]["code"] == "idempotency_key_in_use"
    # Once the winner has answered, every retry is a replay of it.
    replay = await post(fast_any_db_client, IMAGE, "race")
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["task_id"] in accepted


async def test_concurrent_reservations_have_one_winner(fast_any_db_settings: Settings) -> None:
    engine = make_async_engine(fast_any_db_settings.resolved_database_url)
    sessions = async_session_factory(engine)
    outcomes: list[str] = []

    async def reserve() -> None:
        reservation = Reservation(sessions, scope="s", key="k", ttl_seconds=60)
        try:
            outcomes.append("held" if await reservation.reserve("same") is None else "replay")
        except Exception as error:
            outcomes.append(getattr(error, "code", repr(error)))

    try:
        async with anyio.create_task_group() as group:
            for _ in range(10):
                group.start_soon(reserve)
    finally:
        await engine.dispose()
    assert sorted(outcomes) == ["held"] + ["idempotency_key_in_use"] * 9


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


# --- POST /uploads (direct uploads) ---------------------------------------------------


async def create(
    client: httpx.AsyncClient, key: str | None, size: int = len(IMAGE), name: str = "a.jpg"
) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    body = {"filename": name, "size_bytes": size, "content_type": "image/jpeg"}
    return await client.post("/uploads", json=body, headers=headers)


async def test_direct_upload_replays_the_first_answer(
    fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    first = await create(fast_client, "direct-1")
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    again = await create(fast_client, "direct-1")
    assert (again.status_code, again.json()) == (201, first.json())
    assert again.headers["Idempotent-Replayed"] == "true"
    assert task_count(fast_settings) == 1
    # The replayed upload URL is the live one: the upload goes on from it.
    upload = again.json()["upload"]
    path = upload["url"].removeprefix("http://test")
    put = await fast_client.put(path, content=IMAGE, headers=upload["headers"])
    assert put.status_code == 204
    assert (await fast_client.post(again.json()["complete_url"])).status_code == 202


async def test_direct_upload_with_another_body_is_422(
    fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    assert (await create(fast_client, "direct-2")).status_code == 201
    for refused in (
        await create(fast_client, "direct-2", size=len(IMAGE) + 1),
        await create(fast_client, "direct-2", name="b.jpg"),
        # One key, two routes: another request.
        await post(fast_client, IMAGE, "direct-2"),
    ):
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "idempotency_key_reused"
    assert task_count(fast_settings) == 1


async def test_direct_upload_refused_frees_its_key(
    fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    too_large = await create(fast_client, "direct-3", size=fast_settings.max_upload_bytes + 1)
    assert too_large.status_code == 413
    accepted = await create(fast_client, "direct-3")
    assert accepted.status_code == 201
    assert "Idempotent-Replayed" not in accepted.headers
    malformed = await fast_client.post(
        "/uploads", json={"filename": "a"}, headers={"Idempotency-Key": "bad key"}
    )
    assert (malformed.status_code, malformed.json()["error"]["code"]) == (400, "invalid_request")


async def test_concurrent_direct_uploads_with_one_key_make_one_task(
    fast_any_db_client: httpx.AsyncClient, fast_any_db_settings: Settings
) -> None:
    answers: list[httpx.Response] = []

    async def send() -> None:
        answers.append(await create(fast_any_db_client, "direct-race"))

    async with anyio.create_task_group() as group:
        for _ in range(8):
            group.start_soon(send)
    assert task_count(fast_any_db_settings) == 1
    created = [r.json() for r in answers if r.status_code == 201]
    assert created and all(body == created[0] for body in created)
    for response in answers:
        assert response.status_code in (201, 409), response.text
        if response.status_code == 409:
            assert response.json()["error"]["code"] == "idempotency_key_in_use"
    replay = await create(fast_any_db_client, "direct-race")
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == created[0]
