"""Fault 6: an image that kills or hangs the worker process (a poison task).

The image is a real decompression bomb that stays under the pixel cap: a 7000x7000 PNG
of 160 KB that decodes to 196 MB (Pillow keeps RGB in 4 bytes a pixel) and costs over
a second of CPU, crafted like an attacker would (one colour, Paeth-filtered rows).

- Killed: the worker's memory limit is below what the bomb needs. A watchdog in the
  test stands in for the kernel's (cgroup) OOM killer, which cannot be configured in
  this sandbox: it SIGKILLs any pool process above 180 MB, as a container limit would.
- Hung: the render never returns (stuck in C code, where the soft limit cannot reach
  it); SIGSTOP makes that exact, and the hard time limit kills the process.
- Slow: the soft time limit interrupts the render.

Killed or hung, the task ends ``failed`` / ``processing_timeout`` after exactly
max_attempts claims; slow, it fails at once. Tasks uploaded beside it succeed.
"""

from __future__ import annotations

import os
import signal
import struct
import threading
import zlib
from functools import cache

import pytest

from imagepipe.db.models import TaskStatus
from tests.harness.processes import WorkerProcess
from tests.harness.redis import RedisServer
from tests.harness.wait import wait_until
from tests.images import photo
from tests.reliability.stack import StackFactory, children, report, rss_bytes, upload

pytestmark = pytest.mark.integration

MEMORY_LIMIT = 180 * 1024 * 1024  # a pool process idles at ~75 MB, peaks ~95 MB on a photo


@cache
def bomb_png(width: int = 7000, height: int = 7000) -> bytes:
    """A valid RGB PNG: every row Paeth-filtered zeros (slow to unfilter), zlib level 9."""
    compressor = zlib.compressobj(9)
    row = b"\x04" + bytes(width * 3)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


class OomKiller(threading.Thread):
    """SIGKILLs any child of the worker above MEMORY_LIMIT, like a cgroup OOM kill."""

    def __init__(self, worker: WorkerProcess) -> None:
        super().__init__(daemon=True)
        assert worker.process is not None
        self.parent = worker.process.pid
        self.killed: set[int] = set()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.01):
            for pid in children(self.parent):
                if pid not in self.killed and rss_bytes(pid) > MEMORY_LIMIT:
                    os.kill(pid, signal.SIGKILL)
                    self.killed.add(pid)

    def stop(self) -> None:
        self.done.set()
        self.join(5)


def test_bomb_that_gets_the_worker_oom_killed(
    pg_url: str, private_redis: RedisServer, make_stack: StackFactory
) -> None:
    # Time limits well above the render time even on a loaded machine (this test is
    # about kills: a soft limit striking first fails the task after one attempt), yet
    # short, since the last claim's lease must expire before the task is given up.
    stack = make_stack(
        pg_url,
        private_redis.url,
        task_soft_time_limit=10,
        task_hard_time_limit=12,
        lease_margin_seconds=1,
        max_attempts=3,
    )
    with stack.api.client() as client:
        bomb = upload(client, bomb_png(), "bomb.png")
        others = [upload(client, photo(1600, 1200), f"{n}.jpg") for n in range(6)]
    worker = stack.start_worker(beat=True)
    killer = OomKiller(worker)
    killer.start()
    try:
        wait_until(
            lambda: stack.records.all_finished([bomb, *others]),
            within=60,
            what="the bomb to be given up on",
            logs=stack.logs,
        )
    finally:
        killer.stop()
    rows = stack.records.tasks()
    assert rows[bomb].status == TaskStatus.failed, stack.logs()
    assert rows[bomb].error_code == "processing_timeout"
    assert rows[bomb].attempts == 3
    assert len(killer.killed) == 3  # once per attempt, never again after
    assert {rows[i].status for i in others} == {TaskStatus.succeeded}
    assert stack.records.settled_problems([bomb, *others]) == []
    assert worker.process is not None and worker.process.poll() is None
    report(
        "bomb_oom_killed",
        f"160 KB PNG decoding to 196 MB, pool process OOM-killed each time: failed "
        f"processing_timeout after {rows[bomb].attempts} attempts ({len(killer.killed)} kills); "
        f"6/6 tasks uploaded with it succeeded",
    )


def test_hung_render_is_ended_by_the_hard_time_limit(
    pg_url: str, private_redis: RedisServer, make_stack: StackFactory
) -> None:
    stack = make_stack(
        pg_url,
        private_redis.url,
        task_soft_time_limit=1,
        task_hard_time_limit=2,
        lease_margin_seconds=1,
        max_attempts=2,
    )
    with stack.api.client() as client:
        stuck = upload(client, bomb_png(), "stuck.png")
        others = [upload(client, photo(800, 600), f"{n}.jpg") for n in range(4)]
    # One pool process, and the reconciler as its own service: the worker's only child
    # is the process that renders.
    worker = stack.start_worker(concurrency=1)
    stack.start_beat()
    assert worker.process is not None
    pid = worker.process.pid
    frozen: list[int] = []

    def freeze_each_attempt() -> bool:
        """SIGSTOP the pool process as soon as it claims the stuck task."""
        row = stack.records.tasks()[stuck]
        if row.status == TaskStatus.processing and row.attempts > len(frozen):
            for child in children(pid):
                if child not in frozen:
                    os.kill(child, signal.SIGSTOP)
                    frozen.append(child)
        return row.status == TaskStatus.failed

    wait_until(
        freeze_each_attempt,
        within=60,
        every=0.01,
        what="the hung task to be failed",
        logs=stack.logs,
    )
    wait_until(
        lambda: stack.records.all_finished(others),
        within=30,
        what="the other tasks",
        logs=stack.logs,
    )
    rows = stack.records.tasks()
    assert rows[stuck].error_code == "processing_timeout"
    assert rows[stuck].attempts == 2 and len(frozen) == 2
    assert {rows[i].status for i in others} == {TaskStatus.succeeded}
    assert stack.records.settled_problems([stuck, *others]) == []
    assert "TimeLimitExceeded" in worker.output() or "Hard time limit" in worker.output()
    report(
        "hung_render_hard_limit",
        "render hung (SIGSTOP) each attempt, hard limit 2 s: failed processing_timeout "
        "after 2 attempts, never processing for ever; 4/4 tasks uploaded with it succeeded",
    )


def test_slow_image_hits_the_soft_time_limit(
    pg_url: str, private_redis: RedisServer, make_stack: StackFactory
) -> None:
    stack = make_stack(
        pg_url,
        private_redis.url,
        task_soft_time_limit=0.5,  # the bomb's decode alone takes over a second
        task_hard_time_limit=3,
    )
    # One warm pool process: a tiny limit must not catch a cold start.
    stack.start_worker(beat=True, concurrency=1)
    with stack.api.client() as client:
        warm = upload(client, photo(400, 300), "warm.jpg")
        wait_until(lambda: stack.records.all_finished([warm]), within=30, what="warm-up")
        slow = upload(client, bomb_png(), "slow.png")
        others = [upload(client, photo(400, 300), f"{n}.jpg") for n in range(4)]
        wait_until(
            lambda: stack.records.all_finished([slow, *others]),
            within=30,
            what="every task to finish",
            logs=stack.logs,
        )
        status = client.get(f"/tasks/{slow}").json()
    rows = stack.records.tasks()
    # A timeout, not "invalid_image": the soft limit struck inside the decoder.
    assert status["status"] == "failed", stack.logs()
    assert status["error"]["code"] == "processing_timeout", status
    assert rows[slow].attempts == 1  # deterministic: no point in another try
    assert {rows[i].status for i in [warm, *others]} == {TaskStatus.succeeded}
    assert stack.records.settled_problems([slow, *others]) == []
    report(
        "slow_image_soft_limit",
        "1.4 s decode, soft limit 0.5 s: failed processing_timeout after 1 attempt; "
        "4/4 tasks uploaded with it succeeded",
    )
