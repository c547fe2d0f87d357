"""The app on its in-process doubles (``create_app(settings, parts=Parts())``): the
limiter double refuses as the Redis one does, across apps sharing it as API processes
share Redis, and a status change wakes a follower through ``LocalEvents``."""

from __future__ import annotations

import functools
import time
import uuid

import anyio
import httpx
import pytest

from imagepipe.api.app import create_app
from imagepipe.api.parts import Parts
from imagepipe.queue import PROCESS_TASK
from tests.harness.app import SettingsWith, open_client, run_inline
from tests.images import photo

pytestmark = pytest.mark.anyio

ALICE, BOB = "alice-key-0123456789", "bob-key-0123456789ab"


def as_key(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def upload(client: httpx.AsyncClient, key: str) -> httpx.Response:
    return await client.post(
        "/upload", files={"file": ("a.jpg", photo(64, 48))}, headers=as_key(key)
    )


async def test_the_rate_limit_is_shared_by_apps_on_one_limiter(
    fast_settings_with: SettingsWith, parts: Parts
) -> None:
    settings = fast_settings_with(api_keys=(ALICE, BOB), key_rate_limit="3/minute")
    async with (
        open_client(create_app(settings, parts=parts)) as one,
        open_client(create_app(settings, parts=parts)) as two,
    ):
        first = await upload(one, ALICE)
        assert first.status_code == 202, first.text
        assert first.headers["ratelimit-policy"] == '"default";q=3;w=60'
        assert first.headers["ratelimit"] == '"default";r=2;t=20'
        assert (await upload(two, ALICE)).headers["ratelimit"].startswith('"default";r=1;')
        assert (await upload(one, ALICE)).status_code == 202
        refused = await upload(two, ALICE)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        assert refused.headers["ratelimit"].startswith('"default";r=0;t=')
        assert 1 <= int(refused.headers["retry-after"]) <= 20
        # Another tenant has its own quota.
        assert (await upload(one, BOB)).status_code == 202
    # The refused upload published nothing: three of Alice's renders and Bob's one.
    assert [m.task for m in parts.queue.published] == [PROCESS_TASK] * 4


async def test_a_status_change_wakes_a_waiting_follower(
    fast_settings_with: SettingsWith, parts: Parts
) -> None:
    # Timed re-reads far apart: only the notification can wake the follower in time.
    settings = fast_settings_with(events_reread_seconds=60)
    async with open_client(create_app(settings, parts=parts)) as client:
        task_id = (await client.post("/upload", files={"file": ("a.jpg", photo(64, 48))})).json()[
            "task_id"
        ]
        answers: list[httpx.Response] = []

        async def follow() -> None:
            answers.append(await client.get(f"/tasks/{task_id}?wait=60"))

        started = time.monotonic()
        async with anyio.create_task_group() as group:
            group.start_soon(follow)
            await anyio.sleep(0.2)
            # The worker's services, in a thread as in a pool process: their
            # notifications cross to the event loop.
            await anyio.to_thread.run_sync(
                functools.partial(run_inline, settings, task_id, hooks=parts.hooks())
            )
        # Woken by the notification, long before the wait or a timed re-read is up.
        assert time.monotonic() - started < 10
        assert answers[0].json()["status"] == "succeeded"
    assert uuid.UUID(task_id) in parts.events.notified
