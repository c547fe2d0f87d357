"""What one key can make the service do is bounded: its subscriptions, its replays
waiting to be delivered, and how many of its due deliveries each sweep hands to the
broker."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.api.app import create_app
from imagepipe.services import webhooks
from tests.harness.app import make_settings, open_client, worker_sessions
from tests.webhooks.local import upload_with_callback

pytestmark = [pytest.mark.anyio]

ALICE, BOB = "alice-key-0123456789", "bob-key-0123456789ab"
SECRET = webhooks.new_secret()


def as_key(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_subscriptions_per_key_are_capped(
    tmp_path: Path, sqlite_url: str, redis_url: str
) -> None:
    settings = make_settings(
        tmp_path, sqlite_url, redis_url, api_keys=(ALICE, BOB), key_max_webhooks=2
    )
    hook = {"url": "http://[2606:4700:4700::1111]/hook"}
    async with open_client(create_app(settings)) as client:
        made = [await client.post("/webhooks", json=hook, headers=as_key(ALICE)) for _ in range(2)]
        assert [r.status_code for r in made] == [201, 201]
        over = await client.post("/webhooks", json=hook, headers=as_key(ALICE))
        assert over.status_code == 409, over.text
        assert over.json()["error"]["code"] == "webhook_limit"
        # Past the limit, the body is not even looked at.
        junk = await client.post("/webhooks", content=b"{", headers=as_key(ALICE))
        assert junk.status_code == 409
        assert (await client.post("/webhooks", json=hook, headers=as_key(BOB))).status_code == 201
        first = made[0].json()["id"]
        assert (await client.delete(f"/webhooks/{first}", headers=as_key(ALICE))).status_code == 204
        again = await client.post("/webhooks", json=hook, headers=as_key(ALICE))
        assert again.status_code == 201
        listed = (await client.get("/webhooks", headers=as_key(ALICE))).json()["webhooks"]
        assert len(listed) == 2


async def _outbox_rows(
    client: httpx.AsyncClient, sessions: sessionmaker[Session], key: str, count: int
) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """``count`` pending deliveries of one task of ``key``, oldest first."""
    task_id = await upload_with_callback(client, "http://127.0.0.1:9/hook", as_key(key))
    ids: list[uuid.UUID] = []
    for _ in range(count):
        with sessions.begin() as session:
            ids += webhooks.record(session, task_id, "task.failed")
    return task_id, ids


async def test_each_sweep_hands_the_broker_a_bounded_number_per_owner(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    """Alice has 60 due deliveries (a receiver that is down), Bob 3: a sweep hands the
    broker 20 of Alice's (her oldest) and all of Bob's; the next sweep Alice's next 20,
    none handed twice."""
    settings = make_settings(
        tmp_path,
        database_url,
        redis_url,
        api_keys=(ALICE, BOB),
        webhook_secret=SECRET,
        webhook_allow_private=True,
    )
    async with open_client(create_app(settings)) as client:
        with worker_sessions(settings) as sessions:
            _, alices = await _outbox_rows(client, sessions, ALICE, 60)
            _, bobs = await _outbox_rows(client, sessions, BOB, 3)
            swept = webhooks.due(sessions)
            assert set(bobs) <= set(swept)
            assert [d for d in swept if d in alices] == alices[:20]
            assert len(swept) == 23
            following = webhooks.due(sessions)
            assert following == alices[20:40]
            # Within a run's own bound, every owner's first comes before any second.
            await _outbox_rows(client, sessions, BOB, 5)
            bounded = webhooks.due(sessions, limit=4, per_owner=3)
            assert Counter(d in alices for d in bounded) == {True: 2, False: 2}


async def test_replays_wait_one_at_a_time_and_are_capped_per_key(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    settings = make_settings(
        tmp_path,
        database_url,
        redis_url,
        api_keys=(ALICE, BOB),
        webhook_secret=SECRET,
        webhook_allow_private=True,
        key_max_pending_replays=2,
    )
    async with open_client(create_app(settings)) as client:
        with worker_sessions(settings) as sessions:
            _, (d1, d2, d3) = await _outbox_rows(client, sessions, ALICE, 3)
            _, (b1,) = await _outbox_rows(client, sessions, BOB, 1)

            async def replay(delivery: uuid.UUID, key: str = ALICE) -> httpx.Response:
                return await client.post(f"/deliveries/{delivery}/replay", headers=as_key(key))

            first = await replay(d1)
            assert first.status_code == 202, first.text
            r1 = first.json()["id"]
            # Replaying again while that replay waits: the same replay, nothing new.
            assert (await replay(d1)).json() == {"id": r1, "replay_of": str(d1)}
            assert (await replay(uuid.UUID(r1))).json()["id"] == r1
            second = await replay(d2)
            assert second.status_code == 202 and second.json()["id"] != r1
            over = await replay(d3)
            assert over.status_code == 429, over.text
            assert over.json()["error"]["code"] == "too_many_replays"
            assert int(over.headers["retry-after"]) > 0
            # Another key's budget is its own.
            assert (await replay(b1, BOB)).status_code == 202
