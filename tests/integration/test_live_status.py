"""Following a task without polling: Server-Sent Events and ``?wait=N``, driven by
Redis notifications from a real worker, with the database row as the record."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpx
import pytest

from imagepipe.config import Settings
from imagepipe.db.engine import make_sync_engine, sync_session_factory
from imagepipe.errors import InternalError
from imagepipe.services import lifecycle
from tests.harness.app import make_settings
from tests.harness.processes import ApiProcess, WorkerProcess, settings_env
from tests.images import photo
from tests.integration.sse import Event, read_events

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

CLIENTS = 50
# Long enough that, within a test, only a notification can bring a change: these
# tests prove the notifications, not the timer.
NO_TIMER = 600.0


def api_env(settings: Settings) -> dict[str, str]:
    return settings_env(settings)


@contextmanager
def api_server(settings: Settings, log_path: Path) -> Iterator[ApiProcess]:
    server = ApiProcess(settings_env(settings), log_path, settings=settings)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def stack(tmp_path: Path, sqlite_url: str, redis_url: str) -> Iterator[ApiProcess]:
    settings = make_settings(tmp_path, sqlite_url, redis_url, events_reread_seconds=NO_TIMER)
    with api_server(settings, tmp_path / "api.log") as server:
        yield server


def upload(server: ApiProcess, data: bytes) -> str:
    with server.client() as client:
        response = client.post("/upload", files={"file": ("photo.jpg", data, "image/jpeg")})
    assert response.status_code == 202, response.text
    task_id: str = response.json()["task_id"]
    return task_id


async def test_fifty_followers_all_see_succeeded(stack: ApiProcess) -> None:
    assert stack.settings is not None
    task_id = upload(stack, photo(2000, 1500))  # no worker yet: it stays queued
    seen: list[list[Event]] = [[] for _ in range(CLIENTS)]
    connected = 0
    all_connected = anyio.Event()
    limits = httpx.Limits(max_connections=CLIENTS + 5)

    async with httpx.AsyncClient(base_url=stack.url, timeout=None, limits=limits) as client:

        async def follow(events: list[Event]) -> None:
            nonlocal connected
            async with client.stream("GET", f"/tasks/{task_id}/events") as response:
                async for event in read_events(response):
                    events.append(event)
                    if len(events) == 1:
                        connected += 1
                        if connected == CLIENTS:
                            all_connected.set()

        worker = WorkerProcess(api_env(stack.settings))
        try:
            with anyio.fail_after(90):
                async with anyio.create_task_group() as group:
                    for events in seen:
                        group.start_soon(follow, events)
                    await all_connected.wait()
                    worker.start()  # every follower is listening before anything changes
        except TimeoutError:
            raise AssertionError(f"followers hung\n{worker.output()[-3000:]}") from None
        finally:
            worker.stop()

    for events in seen:
        assert all(event.event == "status" for event in events)
        statuses = [event.json()["status"] for event in events]
        assert statuses[0] == "queued"
        assert statuses[-1] == "succeeded"
        assert statuses == sorted(set(statuses), key=statuses.index)  # one event per change
        final = events[-1].json()
        assert final["task_id"] == task_id
        assert set(final["variants"]) == {"small", "medium", "large"}


async def test_wait_answers_when_the_task_ends(stack: ApiProcess) -> None:
    assert stack.settings is not None
    task_id = upload(stack, photo(1200, 900))
    worker = WorkerProcess(api_env(stack.settings))
    async with httpx.AsyncClient(base_url=stack.url, timeout=90) as client:
        try:
            async with anyio.create_task_group() as group:
                answer: list[httpx.Response] = []

                async def wait() -> None:
                    answer.append(await client.get(f"/tasks/{task_id}", params={"wait": 60}))

                group.start_soon(wait)
                await anyio.sleep(0.5)
                worker.start()
        finally:
            worker.stop()
    assert answer[0].status_code == 200
    assert answer[0].json()["status"] == "succeeded", worker.output()[-3000:]


async def test_wait_gives_the_current_state_after_n_seconds(stack: ApiProcess) -> None:
    task_id = upload(stack, photo(300, 200))  # no worker: it stays queued
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:
        response = await client.get(f"/tasks/{task_id}", params={"wait": 1})
        assert response.status_code == 200
        assert response.json()["status"] == "queued"
        for bad in ("61", "-1", "soon"):
            refused = await client.get(f"/tasks/{task_id}", params={"wait": bad})
            assert refused.status_code == 422
            assert refused.json()["error"]["code"] == "invalid_request"


async def test_a_change_without_notification_still_reaches_followers(
    tmp_path: Path, sqlite_url: str, redis_url: str
) -> None:
    """The writer never publishes (a process with no notifier, as if the message were
    lost): the re-read timer alone ends the stream."""
    settings = make_settings(tmp_path, sqlite_url, redis_url, events_reread_seconds=0.3)
    with api_server(settings, tmp_path / "api.log") as server:
        task_id = upload(server, photo(300, 200))
        sessions = sync_session_factory(make_sync_engine(settings.resolved_database_url))
        events: list[Event] = []
        async with httpx.AsyncClient(base_url=server.url, timeout=None) as client:
            with anyio.fail_after(30):
                async with client.stream("GET", f"/tasks/{task_id}/events") as response:
                    async for event in read_events(response):
                        events.append(event)
                        if len(events) == 1:
                            # This process never configured a publisher: no notification.
                            assert lifecycle.fail(
                                sessions, uuid.UUID(task_id), InternalError("Stopped.")
                            )
    assert [e.json()["status"] for e in events] == ["queued", "failed"]


async def test_an_ended_task_gives_one_event_and_unknown_ids_404(stack: ApiProcess) -> None:
    assert stack.settings is not None
    task_id = upload(stack, photo(300, 200))
    worker = WorkerProcess(api_env(stack.settings))
    worker.start()
    try:
        async with httpx.AsyncClient(base_url=stack.url, timeout=60) as client:
            done = await client.get(f"/tasks/{task_id}", params={"wait": 60})
            assert done.json()["status"] == "succeeded", worker.output()[-3000:]
            async with client.stream("GET", f"/tasks/{task_id}/events") as response:
                events = [event async for event in read_events(response)]
            assert [(e.event, e.json()["status"]) for e in events] == [("status", "succeeded")]
            missing = await client.get(f"/tasks/{uuid.uuid4()}/events")
            assert missing.status_code == 404
            assert missing.json()["error"]["code"] == "task_not_found"
    finally:
        worker.stop()


async def test_deleting_a_followed_task_ends_its_stream(stack: ApiProcess) -> None:
    task_id = upload(stack, photo(300, 200))
    events: list[Event] = []
    async with httpx.AsyncClient(base_url=stack.url, timeout=None) as client:
        with anyio.fail_after(30):
            async with client.stream("GET", f"/tasks/{task_id}/events") as response:
                async for event in read_events(response):
                    events.append(event)
                    assert (await client.delete(f"/tasks/{task_id}")).status_code == 204
    assert [e.json()["status"] for e in events] == ["queued"]
