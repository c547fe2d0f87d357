"""Fair share: with one worker, a key's single upload does not wait behind another
key's backlog (services.fairness), and the backlog itself still all succeeds."""

from __future__ import annotations

import uuid

import pytest

from imagepipe.db.models import TaskStatus
from tests.harness.redis import RedisServer
from tests.harness.wait import wait_until
from tests.images import photo
from tests.reliability.stack import StackFactory, report, upload

pytestmark = pytest.mark.integration

BACKLOG = 24
# What B may wait for: the render running when it arrives, and the one that worker
# process may have taken already (prefetch 1). FIFO would make it wait for ~BACKLOG.
AT_MOST_AHEAD = 2


def test_one_upload_does_not_wait_behind_another_keys_backlog(
    pg_url: str, private_redis: RedisServer, make_stack: StackFactory
) -> None:
    stack = make_stack(pg_url, private_redis.url, api_keys=("key-a", "key-b"))
    a = {"Authorization": "Bearer key-a"}
    b = {"Authorization": "Bearer key-b"}
    with stack.api.client(headers=a) as client:
        # Distinct bytes each, so every one is a real render (identical ones are copies).
        backlog = [upload(client, photo(1600 + n, 1200)) for n in range(BACKLOG)]
    stack.start_worker(concurrency=1)
    wait_until(
        lambda: stack.records.count(TaskStatus.succeeded),
        within=60,
        what="the backlog to start draining",
        logs=stack.logs,
    )
    with stack.api.client(headers=b) as client:
        newcomer: uuid.UUID = upload(client, photo(1200, 900))
    everything = [*backlog, newcomer]
    wait_until(
        lambda: stack.records.all_finished(everything),
        within=120,
        what="every task to finish",
        logs=stack.logs,
    )
    rows = stack.records.tasks()
    assert {rows[i].status for i in everything} == {TaskStatus.succeeded}, stack.logs()
    times = stack.records.times()
    arrived, began = times[newcomer]
    assert began is not None
    # A's renders that began after B's upload arrived and before B's own render began.
    ahead = [i for i in backlog if (s := times[i][1]) is not None and arrived < s < began]
    waiting = sum(1 for i in backlog if (s := times[i][1]) is None or s > arrived)
    assert len(ahead) <= AT_MOST_AHEAD, (len(ahead), waiting)
    assert waiting > AT_MOST_AHEAD + 5  # A really had a backlog when B arrived
    report(
        "fair_share",
        f"one worker process, key A {BACKLOG} uploads queued, key B uploads 1: B started "
        f"after {len(ahead)} of A's renders while {waiting} of A's were waiting",
        ahead=len(ahead),
        waiting=waiting,
    )
