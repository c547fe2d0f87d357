"""Helpers of the on-demand tests. The worker's service is called in the test's own
process: the messages the API published are read off the broker's list and rendered
one by one, as a render worker would (the Celery shell is tested with a real worker
in test_worker.py); also a succeeded task to start from, and a link to it."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable

import httpx
import redis

from imagepipe.config import Settings
from imagepipe.queue import ON_DEMAND_QUEUE
from imagepipe.services.on_demand import making
from imagepipe.services.on_demand.records import RenderJob
from imagepipe.storage import open_storage
from tests.harness.app import run_inline, worker_sessions
from tests.images import photo

SIGNING_KEY = "on-demand-test-key"
# A factory of settings (the settings_with fixture): keyword overrides in, Settings out.
SettingsWith = Callable[..., Settings]


def published(settings: Settings) -> list[RenderJob]:
    """The render messages waiting in the on-demand queue, taken off it."""
    client = redis.Redis.from_url(settings.redis_url)
    jobs: list[RenderJob] = []
    try:
        while (raw := client.rpop(ON_DEMAND_QUEUE)) is not None:
            message = json.loads(raw)
            args = json.loads(base64.b64decode(message["body"]))[0]
            jobs.append(RenderJob(uuid.UUID(args[0]), args[1], args[2], args[3]))
    finally:
        client.close()
    return jobs


def render_published(settings: Settings) -> list[making.Outcome]:
    """Render every waiting message; the outcome of each."""
    return render(settings, published(settings))


def render(settings: Settings, jobs: list[RenderJob]) -> list[making.Outcome]:
    """Run the worker's service on each job, in order."""
    client = redis.Redis.from_url(settings.redis_url)
    storage = open_storage(settings)
    try:
        with worker_sessions(settings) as sessions:
            return [making.make(sessions, storage, settings, job, lock=client) for job in jobs]
    finally:
        storage.close()
        client.close()


async def rendered_task(
    client: httpx.AsyncClient, settings: Settings, size: tuple[int, int] = (800, 600)
) -> str:
    """A succeeded task of a photo of ``size``."""
    response = await client.post("/upload", files={"file": ("a.jpg", photo(*size))})
    assert response.status_code == 202, response.text
    task_id: str = response.json()["task_id"]
    assert run_inline(settings, task_id).value == "succeeded"
    return task_id


async def link(client: httpx.AsyncClient, task_id: str, options: str, **extra: str) -> str:
    response = await client.post(f"/tasks/{task_id}/links", json={"options": options, **extra})
    assert response.status_code == 201, response.text
    url: str = response.json()["url"]
    return url
