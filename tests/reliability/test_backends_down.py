"""Fault 3: the broker, then the database, goes down while clients upload.

Decisions (docs/reliability.md): broker down → 503 + Retry-After and nothing left
behind (row and file removed); database down → 503, no orphan file. Every 202 is a
task that finishes; every 503 left nothing. Uploads after the restart succeed.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field

import httpx
import pytest

from imagepipe.db.models import TaskStatus
from tests.harness.postgres import private_postgres
from tests.harness.redis import RedisServer
from tests.harness.wait import wait_until
from tests.images import photo
from tests.reliability.stack import Stack, StackFactory, report, upload

pytestmark = pytest.mark.integration


@dataclass
class Outcomes:
    accepted: list[uuid.UUID] = field(default_factory=list)
    refused: list[httpx.Response] = field(default_factory=list)
    other: list[str] = field(default_factory=list)
    slowest: float = 0.0

    def record(self, response: httpx.Response, seconds: float) -> None:
        self.slowest = max(self.slowest, seconds)
        if response.status_code == 202:
            self.accepted.append(uuid.UUID(response.json()["task_id"]))
        elif response.status_code == 503:
            self.refused.append(response)
        else:
            self.other.append(f"{response.status_code} {response.text[:300]}")


def check_refusals(refused: list[httpx.Response]) -> None:
    for response in refused:
        assert response.json()["error"]["code"] == "service_unavailable", response.text
        assert int(response.headers["retry-after"]) > 0
        assert "Traceback" not in response.text


def check_nothing_left_behind(stack: Stack, accepted: list[uuid.UUID]) -> None:
    """Rows and originals are exactly the accepted uploads; no upload's temp file
    remains. (A worker's rendition writes come and go while it renders: the final
    ``settled_problems`` check, once every task has ended, finds any it left.)"""
    assert set(stack.records.tasks()) == set(accepted)
    originals = {p.name for p in stack.records.storage_files("originals")}
    assert originals == {str(i) for i in accepted}
    assert stack.records.upload_temp_files() == []


OUTAGE_SECONDS = 2.5


def test_broker_down_during_uploads(
    pg_url: str, private_redis: RedisServer, make_stack: StackFactory
) -> None:
    stack = make_stack(pg_url, private_redis.url)
    image = photo(640, 480)
    outcomes = Outcomes()
    lock = threading.Lock()
    stop = threading.Event()

    def uploader() -> None:
        with stack.api.client() as client:
            while not stop.is_set():
                started = time.monotonic()
                response = client.post("/upload", files={"file": ("a.jpg", image)})
                with lock:
                    outcomes.record(response, time.monotonic() - started)
                stop.wait(0.1)  # a steady trickle, not a load test

    threads = [threading.Thread(target=uploader) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        # Events, not a clock: a new API's first answers can take seconds on a busy
        # machine, and the outage must fall between 202s and catch uploads.
        wait_until(lambda: outcomes.accepted, within=30, what="a 202 before the outage")
        refused_before = len(outcomes.refused)
        private_redis.stop()
        down_at = time.monotonic()
        wait_until(
            lambda: len(outcomes.refused) > refused_before,
            within=30,
            what="a 503 during the outage",
        )
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
        private_redis.start()
        time.sleep(1.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert outcomes.other == []
    check_refusals(outcomes.refused)
    check_nothing_left_behind(stack, outcomes.accepted)

    # Uploads after the restart get through at once.
    with stack.api.client() as client:
        after = [upload(client, image) for _ in range(3)]
    accepted = outcomes.accepted + after

    # Every accepted task is done, including those whose message the restart lost.
    stack.start_worker(beat=True)
    wait_until(
        lambda: stack.records.all_finished(accepted),
        within=90,
        what="every accepted upload to finish",
        logs=stack.logs,
    )
    rows = stack.records.tasks()
    assert {rows[i].status for i in accepted} == {TaskStatus.succeeded}
    assert stack.records.settled_problems(accepted) == []
    report(
        "broker_down_uploads",
        f"3 clients uploading, Redis down {OUTAGE_SECONDS:g} s: {len(outcomes.accepted)} x 202, "
        f"{len(outcomes.refused)} x 503 + Retry-After, 0 rows/files left by a 503, "
        f"slowest answer {outcomes.slowest:.1f} s; all {len(accepted)} accepted succeeded",
    )


def test_database_down_during_uploads(private_redis: RedisServer, make_stack: StackFactory) -> None:
    with private_postgres() as postgres:
        stack = make_stack(postgres.url, private_redis.url)
        image = photo(1200, 900)
        big = photo(4000, 3000, "PNG")  # ~0.7 s each
        with stack.api.client() as client:
            accepted = [upload(client, big) for _ in range(6)]
        # A worker is busy with them when the database goes away.
        worker = stack.start_worker(beat=True)
        wait_until(
            lambda: stack.records.count(TaskStatus.processing),
            within=30,
            every=0.02,
            what="a render",
            logs=stack.logs,
        )
        postgres.stop("immediate")  # like a crash: connections die at once
        outcomes = Outcomes()
        with stack.api.client() as client:
            for _ in range(5):
                started = time.monotonic()
                outcomes.record(
                    client.post("/upload", files={"file": ("a.jpg", image)}),
                    time.monotonic() - started,
                )
            assert client.get("/readyz").status_code == 503
            status_while_down = client.get(f"/tasks/{accepted[0]}")
            assert "Traceback" not in status_while_down.text
        assert outcomes.accepted == [] and outcomes.other == []
        check_refusals(outcomes.refused)
        # The refused uploads left no temp file. The worker may be storing what it
        # rendered before the outage at this very moment: its writes are not counted.
        assert stack.records.upload_temp_files() == []
        originals = {p.name for p in stack.records.storage_files("originals")}
        assert originals == {str(i) for i in accepted}  # no orphan from the 503s
        time.sleep(1.0)

        postgres.start()
        with stack.api.client() as client:
            after = [upload(client, image) for _ in range(3)]  # at once, no retry
        accepted += after
        check_nothing_left_behind(stack, accepted)
        wait_until(
            lambda: stack.records.all_finished(accepted),
            within=90,
            what="every accepted upload to finish after the database came back",
            logs=lambda: stack.logs() + postgres.log()[-2000:],
        )
        rows = stack.records.tasks()
        assert {rows[i].status for i in accepted} == {TaskStatus.succeeded}, stack.logs()
        assert stack.records.settled_problems(accepted) == []
        assert worker.process is not None and worker.process.poll() is None
        stack.close()  # before its database goes away
        report(
            "database_down_uploads",
            f"private PostgreSQL stopped (immediate) under a busy worker: 5/5 uploads 503 + "
            f"Retry-After (slowest {outcomes.slowest:.2f} s), 0 orphan files; after restart "
            f"3/3 uploads 202; all {len(accepted)} accepted succeeded",
            status_while_down=status_while_down.status_code,
        )
