"""Fault 1: the worker is SIGKILLed while tasks are mid-render.

Whole worker (main process and pool children, as an OOM kill of the container or
``kill -9`` would) several times, then one pool child alone (Celery's
``reject_on_worker_lost`` path). A new worker with the reconciler must finish every
task exactly once: 3 variant rows, 3 files, nothing else.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from imagepipe.db.models import TaskStatus
from imagepipe.storage import LocalStorage
from tests.harness.redis import RedisServer
from tests.harness.wait import wait_until
from tests.images import photo, tagged_png
from tests.reliability.stack import (
    Stack,
    StackFactory,
    children,
    kill_child_mid_render,
    report,
    upload,
)

pytestmark = pytest.mark.integration

TASKS = 20
KILLS = 3
# ~0.7 s to render on one core: long enough to be caught in the middle.
BIG_PNG = (4000, 3000)


def killed_writes(stack: Stack, killed_at: float) -> list[Path]:
    """Renditions are written while the render goes on: a process killed in the middle
    of one leaves its temp file (never renamed into place, so never visible). Only such
    files may predate the kill; writes still in flight after it (a replacement's, the
    extra formats') come and go."""
    return [p for p in stack.records.storage_files("tmp") if p.stat().st_mtime <= killed_at]


def sweep_killed_writes(stack: Stack, killed_at: float) -> int:
    """The reconciler's sweep of abandoned temp files (after an hour; here, of those
    older than the kill): how many it removed."""
    return LocalStorage(stack.records.root).sweep_temp(time.time() - killed_at)


def test_whole_worker_killed_three_times_mid_render(
    pg_url: str, private_redis: RedisServer, make_stack: StackFactory
) -> None:
    # Each kill costs a task at most one attempt, so KILLS + 1 attempts let every task
    # survive even the unluckiest timing; the default (3) is tested in test_poison.
    stack = make_stack(pg_url, private_redis.url, max_attempts=KILLS + 1)
    image = photo(*BIG_PNG, "PNG")
    with stack.api.client() as client:
        # Bytes of their own: identical ones would be copied from the first, not rendered.
        ids = [upload(client, tagged_png(image, str(n))) for n in range(TASKS)]

    mid_render: list[int] = []
    stale: set[uuid.UUID] = set()  # left in processing by an earlier kill

    def rendering() -> set[uuid.UUID]:
        rows = stack.records.tasks()
        return {i for i, r in rows.items() if r.status == TaskStatus.processing} - stale

    def in_flight() -> set[uuid.UUID] | None:
        """Renders seen in processing now and still 0.2 s later: past the claim, into
        decode/resize. (A render seen near its end finishes in between: look again.)"""
        seen = rendering()
        if not seen:
            return None
        time.sleep(0.2)
        return (rendering() & seen) or None

    for _ in range(KILLS):
        worker = stack.start_worker()
        caught = wait_until(in_flight, within=30, every=0.02, what="a render", logs=stack.logs)
        worker.kill()
        mid_render.append(len(caught))
        stale |= caught
    killed_at = time.time()

    started = time.monotonic()
    final = stack.start_worker(beat=True)
    wait_until(
        lambda: stack.records.all_finished(ids),
        within=90,
        what="every task to finish after the kills",
        logs=stack.logs,
    )
    recovery = time.monotonic() - started

    rows = stack.records.tasks()
    statuses = [rows[i].status for i in ids]
    assert statuses == [TaskStatus.succeeded] * TASKS, stack.logs()
    # The killed workers' writes may be left; the sweep removes them, then nothing else
    # is amiss.
    debris = killed_writes(stack, killed_at)
    assert sweep_killed_writes(stack, killed_at) == len(debris)
    assert stack.records.settled_problems(ids) == []
    assert len(stack.records.variant_rows()) == 3 * TASKS
    assert all(n >= 1 for n in mid_render), mid_render
    retried = sum(1 for i in ids if rows[i].attempts > 1)
    assert retried >= 1  # the interrupted renders ran again
    assert final.process is not None and final.process.poll() is None
    report(
        "worker_group_sigkill",
        f"{TASKS} tasks, whole worker SIGKILLed {KILLS} times "
        f"({sum(mid_render)} renders in flight): {statuses.count(TaskStatus.succeeded)}/{TASKS} "
        f"succeeded, 0 duplicates, {retried} re-run, recovered in {recovery:.1f} s",
        in_flight=mid_render,
        max_attempts=max(rows[i].attempts for i in ids),
    )


def test_pool_child_killed_mid_render(
    pg_url: str, private_redis: RedisServer, make_stack: StackFactory
) -> None:
    stack = make_stack(pg_url, private_redis.url)
    image = photo(*BIG_PNG, "PNG")
    with stack.api.client() as client:
        ids = [upload(client, tagged_png(image, str(n))) for n in range(8)]
    worker = stack.start_worker()  # the reconciler runs beside it, as its own service
    stack.start_beat()
    assert worker.process is not None
    pool = children(worker.process.pid)
    assert len(pool) == 2, pool

    kill = kill_child_mid_render(stack.records, worker.process.pid)
    killed_at = kill.at

    wait_until(
        lambda: stack.records.all_finished(ids),
        within=60,
        what="every task to finish after a child was killed",
        logs=stack.logs,
    )
    rows = stack.records.tasks()
    assert [rows[i].status for i in ids] == [TaskStatus.succeeded] * len(ids), stack.logs()
    sweep_killed_writes(stack, killed_at)
    assert stack.records.settled_problems(ids) == []
    output = worker.output()
    assert "WorkerLostError" in output or "signal 9" in output, output[-3000:]
    # The main process replaced the child and kept going.
    assert worker.process.poll() is None
    assert len(children(worker.process.pid)) == 2
    assert rows[kill.task_id].attempts > kill.attempt  # taken over by a new claim
    rerun = sum(1 for i in ids if rows[i].attempts > 1)
    report(
        "pool_child_sigkill",
        f"{len(ids)} tasks, one pool child SIGKILLed mid-render: "
        f"{len(ids)}/{len(ids)} succeeded, 0 duplicates, {rerun} re-run",
    )


def test_dead_child_task_is_taken_over_without_waiting_for_its_lease(
    pg_url: str, private_redis: RedisServer, make_stack: StackFactory
) -> None:
    """No reconciler and a 10-minute lease: only the immediate takeover (the holder
    process is gone on this host) can finish the task inside the wait below."""
    stack = make_stack(pg_url, private_redis.url, lease_margin_seconds=600, visibility_timeout=900)
    image = photo(*BIG_PNG, "PNG")
    with stack.api.client() as client:
        ids = [upload(client, tagged_png(image, str(n))) for n in range(4)]
    worker = stack.start_worker()
    assert worker.process is not None

    wait_until(
        lambda: stack.records.count(TaskStatus.processing),
        within=30, every=0.02, what="a render", logs=stack.logs,
    )  # fmt: skip
    kill = kill_child_mid_render(stack.records, worker.process.pid)

    wait_until(
        lambda: stack.records.all_finished(ids),
        within=60,
        what="every task to finish with no reconciler after a child was killed",
        logs=stack.logs,
    )
    rows = stack.records.tasks()
    assert [rows[i].status for i in ids] == [TaskStatus.succeeded] * len(ids), stack.logs()
    assert stack.records.settled_problems(ids) == []
    assert rows[kill.task_id].attempts > kill.attempt  # taken over by a new claim
    taken_over = sum(1 for i in ids if rows[i].attempts == 2)
    report(
        "pool_child_takeover",
        f"{len(ids)} tasks, one pool child SIGKILLed, no reconciler, "
        f"{stack.settings.lease_seconds:g} s lease: "
        f"{len(ids)}/{len(ids)} succeeded, {taken_over} taken over at once",
    )
