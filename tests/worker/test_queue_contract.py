"""The broker producer's contract: the Celery producer on a real Redis and the
in-memory double put the same messages in the same queues at the same levels, and
count the same depths. A test that uses the double is then testing what Redis does."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis as redis_lib

from imagepipe.config import Settings
from imagepipe.queue import (
    DELIVER_WEBHOOK,
    FOLLOW_UP_QUEUE,
    MAKE_EXTRAS,
    ON_DEMAND_QUEUE,
    PROCESS_TASK,
    QUEUES,
    REFRESH_TASK,
    RENDER_ON_DEMAND,
    RENDER_QUEUE,
    CeleryQueue,
    MemoryQueue,
    Published,
    create_celery,
    priority_lists,
)

Producer = tuple[CeleryQueue | MemoryQueue, Callable[[], list[Published]]]


def _in_redis(redis_url: str) -> list[Published]:
    """Every message waiting in Redis, read back from kombu's lists."""
    broker = redis_lib.Redis.from_url(redis_url)
    found = []
    try:
        for queue in QUEUES.values():
            for level, name in enumerate(priority_lists(queue)):
                for raw in broker.lrange(name, 0, -1):
                    message = json.loads(raw)
                    args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
                    task = message["headers"]["task"]
                    found.append(Published(task, tuple(args), queue, level))
    finally:
        broker.close()
    return found


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.servers), "memory"])
def producer(request: pytest.FixtureRequest) -> Iterator[Producer]:
    if request.param == "memory":
        double = MemoryQueue()
        yield double, lambda: list(double.published)
        return
    settings: Settings = request.getfixturevalue("settings")
    queue = CeleryQueue(create_celery(settings))
    try:
        yield queue, lambda: _in_redis(settings.redis_url)
    finally:
        queue.close()


def _key(message: Published) -> tuple[str, int, str, tuple[str, ...]]:
    return (message.queue, message.priority, message.task, message.args)


def test_each_message_lands_in_its_queue_at_its_level(producer: Producer) -> None:
    queue, published = producer
    a, b, c, d, e = (uuid.uuid4() for _ in range(5))
    queue.ping()
    queue.enqueue(a, 3)
    queue.enqueue(b)
    queue.enqueue_extras(c)
    queue.enqueue_refresh(d)
    queue.publish_delivery(e)
    queue.enqueue_on_demand([str(a), "w:640,fit:contain", "auto", "0" * 32])
    expected = [
        Published(
            RENDER_ON_DEMAND, (str(a), "w:640,fit:contain", "auto", "0" * 32), ON_DEMAND_QUEUE, 0
        ),
        Published(PROCESS_TASK, (str(a),), RENDER_QUEUE, 3),
        Published(PROCESS_TASK, (str(b),), RENDER_QUEUE, 0),
        Published(MAKE_EXTRAS, (str(c),), FOLLOW_UP_QUEUE, 0),
        Published(REFRESH_TASK, (str(d),), FOLLOW_UP_QUEUE, 0),
        Published(DELIVER_WEBHOOK, (str(e),), FOLLOW_UP_QUEUE, 0),
    ]
    assert sorted(published(), key=_key) == sorted(expected, key=_key)
    # Follow-up work, and on-demand renders, are no waiting upload render.
    assert (queue.depth(), queue.follow_up_depth()) == (2, 3)
