"""Fault 4: the same task delivered more than once, and run concurrently.

Redis delivers at least once (visibility timeout, reject_on_worker_lost, the
reconciler's re-enqueue): the claim (a conditional UPDATE) lets one delivery work, and
the attempt counter fences a superseded one out of the result.
"""

from __future__ import annotations

import functools
import hashlib
import re
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import update

from imagepipe.config import Settings
from imagepipe.db.engine import make_sync_engine, sync_session_factory
from imagepipe.db.models import Task, TaskStatus, utcnow
from imagepipe.errors import InternalError
from imagepipe.queue import RENDER_LISTS, CeleryQueue
from imagepipe.services import lifecycle, rendering
from imagepipe.storage import LocalStorage, keys
from imagepipe.worker.celery_app import create_celery
from tests.harness.app import make_settings
from tests.harness.redis import RedisServer
from tests.harness.wait import wait_until
from tests.images import photo
from tests.reliability.stack import Records, StackFactory, report, upload

pytestmark = pytest.mark.integration

COPIES = 3


def test_same_task_published_three_times_to_a_real_worker(
    pg_url: str, private_redis: RedisServer, make_stack: StackFactory
) -> None:
    stack = make_stack(pg_url, private_redis.url)
    image = photo(3000, 2000, "PNG")  # ~0.4 s: copies overlap with the render
    with stack.api.client() as client:
        ids = [upload(client, image) for _ in range(8)]
    # Re-publish each task back to back, so both pool children get copies of the same
    # task at the same moment.
    broker = redis.Redis.from_url(private_redis.url)
    broker.delete(*RENDER_LISTS)
    broker.close()
    queue = CeleryQueue(create_celery(stack.settings))
    try:
        for task_id in ids:
            for _ in range(COPIES):
                queue.enqueue(task_id)
    finally:
        queue.close()

    worker = stack.start_worker()
    wait_until(
        lambda: stack.records.all_finished(ids),
        within=60,
        what="every task to finish",
        logs=stack.logs,
    )
    wait_until(
        lambda: worker.output().count("task skipped") >= len(ids) * (COPIES - 1),
        within=30,
        what="every copy to be handled",
        logs=stack.logs,
    )
    rows = stack.records.tasks()
    assert {rows[i].status for i in ids} == {TaskStatus.succeeded}
    assert {rows[i].attempts for i in ids} == {1}  # one claim each: no double render
    assert stack.records.settled_problems(ids) == []
    output = worker.output()
    assert output.count("task succeeded") == len(ids)
    assert output.count("task skipped") == len(ids) * (COPIES - 1)
    assert not re.search(r"\b(ERROR|CRITICAL)\b|Traceback", output), output[-3000:]
    report(
        "duplicate_delivery_worker",
        f"{len(ids)} tasks x {COPIES} copies to 2 pool processes: {len(ids)}/{len(ids)} "
        f"succeeded once, {len(ids) * (COPIES - 1)} copies skipped, 0 errors, 0 duplicates",
    )


# --- the render service from two threads, on both databases ----------------------


def make_task(settings: Settings, data: bytes) -> uuid.UUID:
    """A queued task row with its original, as an upload leaves it."""
    storage = LocalStorage(settings.resolved_storage_root)
    task_id = uuid.uuid4()
    storage.put_bytes(keys.original(task_id), data)
    engine = make_sync_engine(settings.resolved_database_url)
    try:
        with sync_session_factory(engine).begin() as session:
            session.add(
                Task(
                    id=task_id,
                    status=TaskStatus.queued,
                    created_at=utcnow(),
                    enqueued_at=utcnow(),
                    filename="a.png",
                    original_key=keys.original(task_id),
                    original_format="PNG",
                    original_width=1,
                    original_height=1,
                    original_frames=1,
                    original_size_bytes=len(data),
                    original_sha256=hashlib.sha256(data).hexdigest(),
                )
            )
    finally:
        engine.dispose()
    return task_id


def run_together(*calls: Callable[[], object]) -> list[object]:
    """Run the calls in threads released at the same instant; re-raise any error."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int, call: Callable[[], object]) -> None:
        barrier.wait(10)
        try:
            results[index] = call()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(t.is_alive() for t in threads), "a call did not return in 60 s"
    if errors:
        raise errors[0]
    return results


@pytest.fixture
def service_settings(tmp_path: Path, database_url: str, redis_url: str) -> Settings:
    return make_settings(tmp_path, database_url, redis_url)


def test_concurrent_process_calls_give_one_result(service_settings: Settings) -> None:
    settings = service_settings
    engine = make_sync_engine(settings.resolved_database_url)
    sessions = sync_session_factory(engine)
    storage = LocalStorage(settings.resolved_storage_root)
    image = photo(2000, 1500, "PNG")
    ids = [make_task(settings, image) for _ in range(5)]
    try:
        for task_id in ids:
            work = functools.partial(rendering.process, sessions, storage, settings, task_id)
            outcomes = run_together(work, work)
            assert sorted(map(str, outcomes)) == ["skipped", "succeeded"]
    finally:
        engine.dispose()
    records = Records(settings)
    try:
        assert records.settled_problems(ids) == []
        assert {r.attempts for r in records.tasks().values()} == {1}
    finally:
        records.close()


def test_superseded_claim_cannot_overwrite_the_result(service_settings: Settings) -> None:
    """A worker whose lease expired (stuck, then resumed) races the worker that took the
    task over: exactly one result is recorded, the newer claim's."""
    settings = service_settings
    engine = make_sync_engine(settings.resolved_database_url)
    sessions = sync_session_factory(engine)
    storage = LocalStorage(settings.resolved_storage_root)
    task_id = make_task(settings, photo(2000, 1500, "PNG"))
    try:
        old = lifecycle.claim(sessions, task_id, settings)
        assert old is not None
        old_result = rendering.render(old, storage, settings)
        with sessions.begin() as session:  # the lease runs out while it is stuck
            session.execute(
                update(Task)
                .where(Task.id == task_id)
                .values(lease_expires_at=utcnow() - timedelta(seconds=1))
            )
        new = lifecycle.claim(sessions, task_id, settings)
        assert new is not None and new.attempt == old.attempt + 1
        new_result = rendering.render(new, storage, settings)

        stored = run_together(
            lambda: rendering.store_and_finish(sessions, storage, old, old_result),
            lambda: rendering.store_and_finish(sessions, storage, new, new_result),
        )
        assert stored == [False, True]
        # The old claim can no longer fail the task either.
        assert not lifecycle.fail(sessions, task_id, InternalError(), attempt=old.attempt)
    finally:
        engine.dispose()
    records = Records(settings)
    try:
        assert records.tasks()[task_id].status == TaskStatus.succeeded
        assert records.settled_problems([task_id]) == []
    finally:
        records.close()
