"""The status notifier's contract: the Redis publisher and the recording and local
doubles are told of the same tasks in the same order, and none ever fails the caller;
and the follower's: a notification, from any thread, wakes the follower of that task
and no other, through Redis (Publisher + Listener) as through ``LocalEvents``."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager
from typing import Protocol

import pytest
import redis as redis_lib
from sqlalchemy import create_engine

from imagepipe.db.engine import sync_session_factory
from imagepipe.services import events, hooks
from imagepipe.services.hooks import Hooks

Told = Callable[[int], list[uuid.UUID]]


def _subscribed(client: redis_lib.Redis) -> Told:
    """A subscriber to every task's channel, as the API's Listener subscribes."""
    pubsub = client.pubsub()
    pubsub.psubscribe(f"{events.CHANNEL_PREFIX}*")
    # In place once Redis has confirmed it: what is published before is lost.
    confirmed = pubsub.get_message(timeout=5)
    assert confirmed is not None and confirmed["type"] == "psubscribe"

    def heard(count: int) -> list[uuid.UUID]:
        ids: list[uuid.UUID] = []
        deadline = time.monotonic() + 5
        while len(ids) < count and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.5)
            if message is not None and message["type"] == "pmessage":
                name = message["channel"].decode()
                ids.append(uuid.UUID(name.removeprefix(events.CHANNEL_PREFIX)))
        return ids

    return heard


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.servers), "recording", "local"])
def notifier(request: pytest.FixtureRequest) -> Iterator[tuple[events.Notifier, Told]]:
    if request.param in ("recording", "local"):
        double = (
            events.RecordingNotifier() if request.param == "recording" else events.LocalEvents()
        )
        yield double, lambda count: list(double.notified)
        return
    redis_url: str = request.getfixturevalue("redis_url")
    # Kept open for the whole test: closing the client drops the subscription with it.
    client = redis_lib.Redis.from_url(redis_url)
    publisher = events.Publisher(redis_url)
    try:
        yield publisher, _subscribed(client)
    finally:
        publisher.close()
        client.close()


def test_every_change_is_told_in_order(notifier: tuple[events.Notifier, Told]) -> None:
    sink, told = notifier
    first, second = uuid.uuid4(), uuid.uuid4()
    for task_id in (first, second, first):
        sink.notify(task_id)
    assert told(3) == [first, second, first]


def test_a_session_announces_through_the_hooks_it_was_built_with(
    notifier: tuple[events.Notifier, Told],
) -> None:
    sink, told = notifier
    engine = create_engine("sqlite://")
    try:
        mine = sync_session_factory(engine, Hooks(notifier=sink).session_info())
        other = events.RecordingNotifier()
        theirs = sync_session_factory(engine, Hooks(notifier=other).session_info())
        task_id, their_id = uuid.uuid4(), uuid.uuid4()
        with mine() as session:
            hooks.of(session).notify(task_id)
        hooks.of(theirs).notify(their_id)  # two runtimes in one process do not cross
        hooks.of(sync_session_factory(engine)).notify(uuid.uuid4())  # none: told no one
    finally:
        engine.dispose()
    assert told(1) == [task_id]
    assert other.notified == [their_id]


def test_an_unreachable_redis_does_not_fail_the_change() -> None:
    # What the double's silence stands for: the real one swallows a Redis error too.
    events.Publisher("redis://127.0.0.1:9", timeout=0.2).notify(uuid.uuid4())


@pytest.mark.servers
def test_the_publisher_sends_one_command_per_change_on_one_connection(redis_url: str) -> None:
    """A worker publishes twice per task: each is one PUBLISH on the connection the
    publisher keeps, never a connection (nor a handshake) per notification."""
    probe = redis_lib.Redis.from_url(redis_url)
    probe.config_resetstat()
    publisher = events.Publisher(redis_url)
    try:
        for _ in range(10):
            publisher.notify(uuid.uuid4())
        stats, commands = probe.info("stats"), probe.info("commandstats")
    finally:
        publisher.close()
        probe.close()
    # The probe's own connection came before the reset; the publisher's is the one.
    assert stats["total_connections_received"] == 1
    assert commands["cmdstat_publish"]["calls"] == 10


class Channel(Protocol):
    """A notifier and the follower that hears it, started as the API's lifespan does."""

    def notify(self, task_id: uuid.UUID) -> None: ...

    def follow(self, task_id: uuid.UUID) -> AbstractContextManager[asyncio.Event]: ...


class _RedisChannel:
    def __init__(self, redis_url: str) -> None:
        self.publisher = events.Publisher(redis_url)
        self.listener = events.Listener(redis_url)

    def notify(self, task_id: uuid.UUID) -> None:
        self.publisher.notify(task_id)

    def follow(self, task_id: uuid.UUID) -> AbstractContextManager[asyncio.Event]:
        return self.listener.follow(task_id)


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.servers), "local"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[Channel]:
    if request.param == "local":
        local = events.LocalEvents()
        await local.start()
        yield local
        await local.stop()
        return
    pair = _RedisChannel(request.getfixturevalue("redis_url"))
    await pair.listener.start()
    try:
        yield pair
    finally:
        await pair.listener.stop()
        pair.publisher.close()


async def _woken(channel: Channel, task_id: uuid.UUID, notify: Callable[[], None]) -> bool:
    """Whether a follower of ``task_id`` wakes on ``notify``. Notifies until it does or
    5 s pass: Redis's subscription is in place a moment after the listener starts."""
    with channel.follow(task_id) as changed:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            changed.clear()
            notify()
            try:
                await asyncio.wait_for(changed.wait(), timeout=0.5)
                return True
            except TimeoutError:
                continue
        return False


@pytest.mark.anyio
async def test_a_notification_wakes_that_tasks_followers_only(pair: Channel) -> None:
    followed, other = uuid.uuid4(), uuid.uuid4()
    assert await _woken(pair, followed, lambda: pair.notify(followed))
    with pair.follow(followed) as changed:
        pair.notify(other)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout=1.0)


@pytest.mark.anyio
async def test_a_notification_from_another_thread_wakes_the_follower(pair: Channel) -> None:
    task_id = uuid.uuid4()

    def from_a_thread() -> None:
        sender = threading.Thread(target=pair.notify, args=(task_id,))
        sender.start()
        sender.join()

    assert await _woken(pair, task_id, from_a_thread)
