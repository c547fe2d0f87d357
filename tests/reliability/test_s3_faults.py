"""Faults of S3 storage, on a real SeaweedFS that the tests stop, restart and freeze.

Decisions (docs/reliability.md, docs/scaling.md):
- S3 unreachable during an upload → 503 service_unavailable; no row, no object, no
  temp file left behind.
- S3 unreachable during a render → the claim is given back without spending an
  attempt, the task is retried and succeeds once S3 is back.
- An original missing from storage → failed with ``original_missing``, at once.
- A frozen S3 (accepts connections, never answers) → every call ends after the
  client's timeouts and bounded retries: 503 for a request, a retry for the worker.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagepipe.config import Settings
from imagepipe.db.models import TaskStatus
from imagepipe.storage import Storage, StorageUnavailable, keys, open_storage
from tests.harness.redis import RedisServer
from tests.harness.s3 import object_keys
from tests.harness.seaweedfs import SeaweedFS, seaweedfs
from tests.harness.wait import wait_until
from tests.images import photo
from tests.reliability.stack import Stack, StackFactory, report, upload

pytestmark = pytest.mark.integration

# Short, so a test waits seconds on a dead S3, not minutes; still far above what a
# healthy local SeaweedFS needs.
S3_LIMITS = {
    "s3_connect_timeout_seconds": 1.0,
    "s3_read_timeout_seconds": 2.0,
    "s3_max_attempts": 2,
}


@pytest.fixture
def private_seaweed(tmp_path: Path) -> Iterator[SeaweedFS]:
    """A SeaweedFS of this test alone: it may be stopped, restarted and frozen."""
    directory = tmp_path / "seaweedfs"
    directory.mkdir()
    with seaweedfs(directory) as server:
        yield server


@pytest.fixture
def s3_stack(
    sqlite_url: str,
    private_redis: RedisServer,
    private_seaweed: SeaweedFS,
    make_stack: StackFactory,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Stack:
    env = private_seaweed.client_env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # Every process's own temp files land here, to check none is left behind.
    temp = tmp_path / "process-temp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    return make_stack(
        sqlite_url,
        private_redis.url,
        storage_url=env["IMAGEPIPE_STORAGE_URL"],
        s3_endpoint_url=env["IMAGEPIPE_S3_ENDPOINT_URL"],
        **S3_LIMITS,
    )


def test_s3_down_during_upload_leaves_nothing(
    s3_stack: Stack, private_seaweed: SeaweedFS, tmp_path: Path
) -> None:
    with s3_stack.api.client() as client:
        before = upload(client, photo(800, 600))
        private_seaweed.stop()

        refused = client.post("/upload", files={"file": ("a.jpg", photo(800, 600))})
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "service_unavailable"
        assert int(refused.headers["retry-after"]) > 0
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["storage"].startswith("failed")

        private_seaweed.start()
        # Readiness answers from a check cached for a second: wait for a fresh one.
        wait_until(
            lambda: client.get("/readyz").status_code == 200,
            within=30,
            what="/readyz after S3 came back",
        )
        after = upload(client, photo(800, 600))

    # Only the accepted uploads exist: rows, objects, and no temp file anywhere.
    assert set(s3_stack.records.tasks()) == {before, after}
    assert object_keys(s3_stack.settings) == sorted([keys.original(before), keys.original(after)])
    assert list((tmp_path / "process-temp").iterdir()) == []
    report("s3_down_upload", "503 service_unavailable, 0 rows, 0 objects, 0 temp files")


def test_s3_down_during_render_retries_without_spending_attempts(
    s3_stack: Stack, private_seaweed: SeaweedFS
) -> None:
    with s3_stack.api.client() as client:
        ok = upload(client, photo(1200, 900))
        # Bytes of its own: a copy of `ok` would be served by dedup, without its original.
        lost = upload(client, photo(1100, 900))
    # An original that vanished from the bucket (an operator, a lifecycle rule).
    storage = open_storage(s3_stack.settings)
    try:
        storage.delete(keys.original(lost))
    finally:
        storage.close()

    private_seaweed.stop()
    worker = s3_stack.start_worker()
    wait_until(
        lambda: "transient error" in worker.output(),
        within=60,
        what="a render to meet the stopped S3",
        logs=s3_stack.logs,
    )
    # Given back, not failed, and the outage did not count as an attempt. (While a
    # retry holds its claim the attempt is counted until it is given back: wait for
    # a moment between claims.)
    given_back = wait_until(
        lambda: (row := s3_stack.records.tasks()[ok]).counted == 0 and row,
        within=60,
        what="the task to be given back without spending an attempt",
        logs=s3_stack.logs,
    )
    assert given_back.status in (TaskStatus.queued, TaskStatus.processing)
    private_seaweed.start()

    wait_until(
        lambda: s3_stack.records.all_finished([ok, lost]),
        within=90,
        what="both tasks to finish",
        logs=s3_stack.logs,
    )
    rows = s3_stack.records.tasks()
    assert rows[ok].status == TaskStatus.succeeded, s3_stack.logs()
    assert rows[ok].counted == 1  # the claim that succeeded; the outage's claims are free
    assert rows[lost].status == TaskStatus.failed
    assert rows[lost].error_code == "original_missing"
    assert rows[lost].counted == 1  # at once, not after every attempt
    with s3_stack.api.client() as client:
        status = client.get(f"/tasks/{lost}").json()
        assert status["error"]["code"] == "original_missing"
        for variant in client.get(f"/tasks/{ok}").json()["variants"].values():
            response = client.get(variant["url"])
            assert response.status_code == 200
            assert len(response.content) == variant["size_bytes"]
    report(
        "s3_down_render",
        f"retried ({rows[ok].attempts} claims, 1 counted), succeeded after S3 restart; "
        "missing original: original_missing",
    )


def test_frozen_s3_is_bounded_by_timeouts(s3_stack: Stack, private_seaweed: SeaweedFS) -> None:
    with s3_stack.api.client() as client:
        done = upload(client, photo(800, 600))
        worker = s3_stack.start_worker()
        wait_until(
            lambda: s3_stack.records.all_finished([done]),
            within=60,
            what="the task to finish",
            logs=s3_stack.logs,
        )
        url = client.get(f"/tasks/{done}").json()["variants"]["small"]["url"]

        private_seaweed.pause()
        try:
            # Requests end with 503 (timeouts, bounded retries), never hang.
            refused = client.post("/upload", files={"file": ("a.jpg", photo(800, 600))})
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "service_unavailable"
            download = client.get(url)
            assert download.status_code == 503, download.text
        finally:
            private_seaweed.resume()
        assert client.get(url).status_code == 200
    assert "Traceback" not in worker.output()
    report("s3_frozen", "upload 503 and download 503 within the client timeouts")


def test_client_calls_end_on_a_frozen_server(
    private_seaweed: SeaweedFS, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each storage call on a server that never answers raises StorageUnavailable
    after connect/read timeouts times attempts, instead of blocking its thread for ever."""
    for name, value in private_seaweed.client_env().items():
        monkeypatch.setenv(name, value)
    settings = Settings(
        data_dir=tmp_path,
        storage_url=private_seaweed.storage_url(f"p-{uuid.uuid4().hex[:8]}"),
        s3_endpoint_url=private_seaweed.endpoint_url,
        **S3_LIMITS,  # type: ignore[arg-type]
    )
    storage: Storage = open_storage(settings)
    storage.put_bytes("originals/x", b"bytes")
    outcomes: dict[str, BaseException | None] = {}

    def call(name: str, action: object) -> None:
        try:
            action()  # type: ignore[operator]
            outcomes[name] = None
        except BaseException as error:
            outcomes[name] = error

    private_seaweed.pause()
    try:
        calls = {
            "stat": lambda: storage.stat("originals/x"),
            "open": lambda: storage.open("originals/x"),
            "put": lambda: storage.put_bytes("originals/y", b"more"),
            "check": storage.check,
        }
        threads = [threading.Thread(target=call, args=item) for item in calls.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            # A generous hang detector, not a speed check: the bound is 2 x (1 s + 2 s).
            thread.join(60)
        assert not any(thread.is_alive() for thread in threads)
    finally:
        private_seaweed.resume()
    assert all(isinstance(outcomes[name], StorageUnavailable) for name in calls), outcomes
    reader = storage.open("originals/x")
    assert reader.read() == b"bytes"
    reader.close()
    storage.close()
