"""The queue layout and the fair share: which Redis list a message lands in, what the
render queue's depth counts, and the priority level a task of an owner is given."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
import redis as redis_lib
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.config import Settings
from imagepipe.db.models import Task, TaskStatus, utcnow
from imagepipe.queue import (
    FOLLOW_UP_QUEUE,
    LEGACY_RENDER_QUEUE,
    MAINTENANCE_QUEUE,
    RENDER_QUEUE,
    CeleryQueue,
    priority_lists,
)
from imagepipe.services import fairness
from imagepipe.worker.celery_app import create_celery
from imagepipe.worker.pools import keeps_pixels, queue_names
from tests.harness.wait import wait_until


def test_level_grows_with_the_log_of_the_backlog() -> None:
    levels = [fairness.level(n) for n in (0, 1, 2, 3, 4, 7, 8, 255, 256, 10**6)]
    assert levels == [0, 1, 2, 2, 3, 3, 4, 8, 9, 9]


def _task(session: Session, owner: str | None, status: TaskStatus, age: int = 0) -> uuid.UUID:
    created = utcnow() - timedelta(seconds=age)
    task = Task(
        id=uuid.uuid4(), filename="a.jpg", original_key="originals/x", original_format="JPEG",
        original_width=10, original_height=10, original_size_bytes=1,
        original_sha256="0" * 64, status=status, created_at=created, owner_scope=owner,
    )  # fmt: skip
    session.add(task)
    return task.id


def test_priority_counts_the_owners_waiting_tasks_only(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        busy = [_task(session, "a", TaskStatus.queued) for _ in range(5)]
        busy.append(_task(session, "a", TaskStatus.processing))
        for _ in range(20):  # finished work is no backlog
            _task(session, "a", TaskStatus.succeeded)
        newcomer = _task(session, "b", TaskStatus.queued)
        legacy = _task(session, None, TaskStatus.queued)
    with sessions() as session:
        # Five others waiting besides the one being published: level 3.
        assert fairness.priority(session, "a") == fairness.level(5) == 3
        assert fairness.priority(session, "b") == 0
        assert fairness.priority(session, "c") == 0
        assert fairness.priority(session, None) == 0
        assert fairness.priorities(session, [busy[1], newcomer, legacy]) == {
            busy[1]: 3,
            newcomer: 0,
            legacy: 0,
        }
        assert fairness.priorities(session, []) == {}


def test_the_backlog_count_stops_at_the_last_level(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        for _ in range(fairness.BACKLOG_CAP + 5):
            _task(session, "a", TaskStatus.queued)
    with sessions() as session:
        assert fairness.priority(session, "a") == fairness.LAST_LEVEL


@pytest.fixture
def queue(settings: Settings) -> CeleryQueue:
    return CeleryQueue(create_celery(settings))


def test_a_render_lands_in_its_levels_list_and_depth_counts_every_list(
    queue: CeleryQueue, redis_url: str
) -> None:
    broker = redis_lib.Redis.from_url(redis_url)
    try:
        lists = priority_lists(RENDER_QUEUE)
        queue.enqueue(uuid.uuid4(), 3)
        queue.enqueue(uuid.uuid4())
        assert [broker.llen(name) for name in lists] == [1, 0, 0, 1, 0, 0, 0, 0, 0, 0]
        # A message published by an earlier release, to Celery's default queue.
        broker.rpush(LEGACY_RENDER_QUEUE, b"waiting")
        assert queue.depth() == 3
        # Follow-up work is not a waiting render.
        queue.publish_delivery(uuid.uuid4())
        queue.enqueue_refresh(uuid.uuid4())
        assert broker.llen(FOLLOW_UP_QUEUE) == 2
        assert queue.depth() == 3
    finally:
        broker.close()
        queue.close()


def test_worker_queue_names() -> None:
    assert queue_names("render") == [RENDER_QUEUE, LEGACY_RENDER_QUEUE]
    assert queue_names("follow_up, maintenance") == [FOLLOW_UP_QUEUE, MAINTENANCE_QUEUE]
    with pytest.raises(ValueError, match="unknown queue 'celery'"):
        queue_names("celery")


def test_only_a_worker_whose_host_makes_the_extras_keeps_the_pixels() -> None:
    plain = queue_names("render,on_demand")
    assert keeps_pixels(plain, narrowed=False)  # its follow-up pool runs beside it
    assert not keeps_pixels(plain, narrowed=True)  # compose's render-only workers
    assert keeps_pixels(queue_names("render,follow_up"), narrowed=True)


def test_the_follow_up_pool_yields_the_core_to_renders() -> None:
    # In a child, as the pool itself does first thing: the lowest CPU priority there is,
    # and the idle scheduling class (a waking render preempts it at once). Read from
    # outside: once idle, the child runs only on a core nothing else wants, which on a
    # busy test machine can be seconds away, so it is asked to do nothing more.
    probe = (
        "import os, sys; from imagepipe.worker.pools import become_follow_up_pool; "
        "become_follow_up_pool(os.getppid()); sys.stdin.read()"
    )
    before = os.getpriority(os.PRIO_PROCESS, 0)
    with subprocess.Popen([sys.executable, "-c", probe], stdin=subprocess.PIPE) as child:

        def idle() -> bool:
            assert child.poll() is None, f"the probe exited with {child.returncode}"
            return os.sched_getscheduler(child.pid) == os.SCHED_IDLE

        try:
            wait_until(idle, within=60, every=0.02, what="the probe to become idle")
            assert os.getpriority(os.PRIO_PROCESS, child.pid) == min(19, before + 19)
        finally:
            child.kill()
