"""The status notifier's contract: the Redis publisher and the recording double are
told of the same tasks in the same order, and neither ever fails the caller."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis as redis_lib

from imagepipe.services import events

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


@pytest.fixture(params=["redis", "recording"])
def notifier(request: pytest.FixtureRequest) -> Iterator[tuple[events.Notifier, Told]]:
    if request.param == "recording":
        double = events.RecordingNotifier()
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


def test_the_module_function_reaches_the_configured_notifier(
    notifier: tuple[events.Notifier, Told],
) -> None:
    sink, told = notifier
    task_id = uuid.uuid4()
    events.configure(sink)
    try:
        events.notify(task_id)
    finally:
        events.configure(None)
    events.notify(uuid.uuid4())  # none configured: told to no one
    assert told(1) == [task_id]


def test_an_unreachable_redis_does_not_fail_the_change() -> None:
    # What the double's silence stands for: the real one swallows a Redis error too.
    events.Publisher("redis://127.0.0.1:9", timeout=0.2).notify(uuid.uuid4())
