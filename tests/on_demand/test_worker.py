"""On-demand renditions with a real Celery worker: the first request waits for the
render and gets the bytes; concurrent first requests cause one render; a lock left by
a render that never finished expires and the next request publishes again; on S3
storage (SeaweedFS) with redirect delivery, and gone with the task."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import httpx
import pytest
import redis
from PIL import Image

from imagepipe.api.app import create_app
from imagepipe.config import Settings
from imagepipe.queue import (
    FOLLOW_UP_POOL_QUEUES,
    ON_DEMAND_QUEUE,
    RENDER_ON_DEMAND,
    RENDER_POOL_QUEUES,
)
from imagepipe.worker.celery_app import create_celery
from tests.harness import s3
from tests.harness.app import open_client
from tests.harness.processes import WorkerProcess, settings_env
from tests.harness.wait import wait_complete, wait_until
from tests.images import photo
from tests.on_demand.inline import SIGNING_KEY, SettingsWith

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

MADE = "on-demand render made"


def test_on_demand_renders_go_to_the_render_pool(settings: Settings) -> None:
    route = create_celery(settings).amqp.router.route({}, RENDER_ON_DEMAND)
    assert route["queue"].name == ON_DEMAND_QUEUE
    assert ON_DEMAND_QUEUE in RENDER_POOL_QUEUES
    assert ON_DEMAND_QUEUE not in FOLLOW_UP_POOL_QUEUES


@pytest.fixture
def waiting_settings(settings_with: SettingsWith) -> Settings:
    # Long enough for a render on a busy machine; the requests end when it is there.
    return settings_with(on_demand_wait_seconds=30)


@pytest.fixture
def one_worker(waiting_settings: Settings) -> Iterator[WorkerProcess]:
    process = WorkerProcess(settings_env(waiting_settings), concurrency=1)
    process.start()
    yield process
    process.stop()


async def upload(client: httpx.AsyncClient, worker: WorkerProcess, data: bytes) -> str:
    response = await client.post("/upload", files={"file": ("a.jpg", data)})
    assert response.status_code == 202, response.text
    task_id: str = response.json()["task_id"]
    status = await wait_complete(client, task_id, logs=worker.output)
    assert status["status"] == "succeeded", status
    return task_id


async def signed(client: httpx.AsyncClient, task_id: str, options: str) -> str:
    response = await client.post(f"/tasks/{task_id}/links", json={"options": options})
    assert response.status_code == 201, response.text
    url: str = response.json()["url"]
    return url


async def test_concurrent_first_requests_cause_one_render(
    waiting_settings: Settings, one_worker: WorkerProcess
) -> None:
    async with open_client(create_app(waiting_settings)) as client:
        task_id = await upload(client, one_worker, photo(1600, 1200))
        url = await signed(client, task_id, "w:500,h:500,fit:cover,g:smart")
        answers: list[httpx.Response] = []

        async def fetch() -> None:
            answers.append(await client.get(url))

        async with anyio.create_task_group() as group:
            for _ in range(6):
                group.start_soon(fetch)
        assert [a.status_code for a in answers] == [200] * 6, [a.text for a in answers]
        assert len({a.headers["etag"] for a in answers}) == 1
        with Image.open(io.BytesIO(answers[0].content)) as image:
            assert image.size == (500, 500)
        # Served from storage from now on: still one render.
        assert (await client.get(url)).status_code == 200
        wait_until(lambda: MADE in one_worker.output(), within=30, what="the render's log line")
        assert one_worker.output().count(MADE) == 1, one_worker.output()[-3000:]


@pytest.fixture
def impatient_settings(settings_with: SettingsWith) -> Settings:
    # Requests do not wait; a render's lock outlives a killed worker by 3 s only.
    return settings_with(on_demand_lock_seconds=3)


async def test_a_worker_killed_mid_render_the_next_request_after_the_lock_renders(
    impatient_settings: Settings,
) -> None:
    """The whole worker is SIGKILLed once it has taken the render's message and before
    the row is written: its message is unacknowledged (out of reach until the broker's
    visibility timeout) and its lock held. Once the lock has expired, the next request
    publishes again and another worker makes the rendition."""
    settings = impatient_settings
    env = settings_env(settings)
    async with open_client(create_app(settings)) as client:
        first = WorkerProcess(env, concurrency=1)
        first.start()
        try:
            # A large PNG: long enough to decode that the kill lands mid-render.
            task_id = await upload(client, first, photo(4000, 3000, "PNG"))
            url = await signed(client, task_id, "w:300")
            assert (await client.get(url)).status_code == 503  # published, not made yet
            broker = redis.Redis.from_url(settings.redis_url)
            try:
                wait_until(
                    lambda: broker.llen(ON_DEMAND_QUEUE) == 0 or None,
                    within=30,
                    every=0.01,
                    what="the worker to take the render",
                    logs=first.output,
                )
            finally:
                broker.close()
        finally:
            first.kill()
        assert MADE not in first.output()  # killed before the row was written

        second = WorkerProcess(env, concurrency=1)
        second.start()
        try:
            answer = None
            for _ in range(300):  # a request every 0.2 s, for up to a minute
                response = await client.get(url)
                assert response.status_code in (200, 503), response.text
                if response.status_code == 200:
                    answer = response
                    break
                await anyio.sleep(0.2)
            assert answer is not None, second.output()[-3000:]
            with Image.open(io.BytesIO(answer.content)) as image:
                assert image.size == (300, 225)
            # The worker logs its outcome after the notification that answered the
            # request: wait for the line, then check there was only one render.
            wait_until(lambda: MADE in second.output(), within=30, what="the render's log line")
            assert second.output().count(MADE) == 1, second.output()[-3000:]
        finally:
            second.stop()


@pytest.fixture
def s3_od_settings(
    tmp_path: Path, sqlite_url: str, redis_url: str, s3_env: dict[str, str]
) -> Settings:
    return s3.s3_settings(
        tmp_path,
        sqlite_url,
        redis_url,
        s3_env,
        url_signing_keys=(SIGNING_KEY,),
        on_demand_wait_seconds=30,
        variant_delivery="redirect",
    )


@pytest.fixture
async def s3_od_client(s3_od_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with open_client(create_app(s3_od_settings)) as client:
        yield client


async def test_on_s3_with_redirects_and_gone_with_the_task(
    s3_od_settings: Settings, s3_od_client: httpx.AsyncClient
) -> None:
    with s3.remote_worker(s3_od_settings) as worker:
        task_id = await upload(s3_od_client, worker, photo(1200, 900))
        url = await signed(s3_od_client, task_id, "w:240,h:240,fit:cover")
        first = await s3_od_client.get(url, headers={"Accept": "image/webp"})
    assert first.status_code == 307, first.text
    assert first.headers["cache-control"] == "no-store" and first.headers["vary"] == "Accept"
    etag = first.headers["etag"]
    async with httpx.AsyncClient(timeout=10) as browser:
        stored = await browser.get(first.headers["location"])
    assert stored.status_code == 200
    with Image.open(io.BytesIO(stored.content)) as image:
        assert (image.format, image.size) == ("WEBP", (240, 240))
    again = await s3_od_client.get(url, headers={"Accept": "image/webp", "If-None-Match": etag})
    assert again.status_code == 304

    derived = s3.object_keys(s3_od_settings, f"derived/{task_id}/")
    assert len(derived) == 1 and derived[0].endswith(".webp")
    assert (await s3_od_client.delete(f"/tasks/{task_id}")).status_code == 204
    assert s3.object_keys(s3_od_settings) == []
