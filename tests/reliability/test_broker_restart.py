"""Fault 2: Redis (no persistence) restarts with tasks queued; its queue is gone.

The database row is the record: the reconciler re-enqueues every ``queued`` row older
than the grace period, so every task still succeeds, once.
"""

from __future__ import annotations

import time

import pytest

from imagepipe.db.models import TaskStatus
from tests.harness.redis import RedisServer
from tests.harness.wait import wait_until
from tests.images import photo
from tests.observe import queue_length
from tests.reliability.stack import StackFactory, report, upload

pytestmark = pytest.mark.integration


def test_redis_restart_with_tasks_queued(
    pg_url: str, private_redis: RedisServer, make_stack: StackFactory
) -> None:
    stack = make_stack(pg_url, private_redis.url)
    with stack.api.client() as client:
        ids = [upload(client, photo(1600, 1200)) for _ in range(10)]
    assert queue_length(private_redis.url) == 10

    private_redis.stop()
    private_redis.start()  # same port, empty: the 10 messages are lost
    assert queue_length(private_redis.url) == 0
    assert stack.records.count(TaskStatus.queued) == 10

    started = time.monotonic()
    stack.start_worker(beat=True)
    wait_until(
        lambda: stack.records.all_finished(ids),
        within=60,
        what="the lost tasks to be re-enqueued and finished",
        logs=stack.logs,
    )
    rows = stack.records.tasks()
    assert [rows[i].status for i in ids] == [TaskStatus.succeeded] * 10, stack.logs()
    assert stack.records.settled_problems(ids) == []
    report(
        "redis_restart_queued",
        f"10 tasks queued, Redis restarted empty: 10/10 succeeded, 0 duplicates, "
        f"{time.monotonic() - started:.1f} s after a worker started",
    )


def test_redis_restart_under_a_running_worker(
    pg_url: str, private_redis: RedisServer, make_stack: StackFactory
) -> None:
    stack = make_stack(pg_url, private_redis.url)
    worker = stack.start_worker(beat=True)
    image = photo(4000, 3000, "PNG")  # ~0.7 s each: a backlog builds up
    with stack.api.client() as client:
        ids = [upload(client, image) for _ in range(12)]
    waiting = stack.records.count(TaskStatus.queued)
    in_redis = queue_length(private_redis.url)

    private_redis.stop()
    time.sleep(2)  # the worker and beat lose their connections
    private_redis.start()

    wait_until(
        lambda: stack.records.all_finished(ids),
        within=90,
        what="every task to finish after the Redis restart",
        logs=stack.logs,
    )
    rows = stack.records.tasks()
    assert [rows[i].status for i in ids] == [TaskStatus.succeeded] * 12, stack.logs()
    assert stack.records.settled_problems(ids) == []
    assert waiting >= 3, waiting  # the restart did catch tasks waiting in the queue
    # The same worker reconnected: no restart needed.
    assert worker.process is not None and worker.process.poll() is None
    with stack.api.client() as client:
        late = upload(client, photo(800, 600))
    wait_until(
        lambda: stack.records.all_finished([late]),
        within=30,
        what="an upload after the restart",
        logs=stack.logs,
    )
    assert stack.records.tasks()[late].status == TaskStatus.succeeded
    report(
        "redis_restart_running_worker",
        f"12 tasks ({waiting} queued, {in_redis} messages in Redis), Redis down 2 s under a "
        f"running worker: 12/12 succeeded, 0 duplicates, same worker kept consuming",
    )
