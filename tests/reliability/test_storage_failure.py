"""Fault 5: writing the previews fails.

The tests run as root, where a read-only mode bit stops nothing, and no tmpfs can be
mounted here; so the storage is broken the way root cannot write through either: a
FILE where the task's variant directory must be created (mkdir fails before anything
is written), and a DIRECTORY where one preview of the first attempt must be renamed
to (the failure comes after the first preview of the set was written). A real worker
retries (storage errors are transient); fixed in time, the task succeeds; never fixed, it fails with
``internal_error`` after the configured attempts. Nothing half-written is ever visible:
no variant row without its file, no temp file left in a variant directory.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest

from imagepipe.db.models import TaskStatus
from tests.harness.redis import RedisServer
from tests.harness.wait import wait_until
from tests.images import photo
from tests.reliability.stack import StackFactory, report, upload

pytestmark = pytest.mark.integration


def test_storage_write_failures(
    sqlite_url: str, private_redis: RedisServer, make_stack: StackFactory
) -> None:
    # SQLite here: the default of `imagepipe dev`, shared by API, worker and beat.
    stack = make_stack(sqlite_url, private_redis.url, max_attempts=3)
    root = stack.settings.resolved_storage_root
    with stack.api.client() as client:
        broken, fixed, normal, stale = (upload(client, photo(1600, 1200)) for _ in range(4))

        # broken: the task's variant directory cannot be created, ever.
        (root / "variants").mkdir(parents=True, exist_ok=True)
        (root / "variants" / str(broken)).write_bytes(b"not a directory")
        # fixed: large.jpg and large.webp are written, then medium.jpg cannot replace a dir.
        obstacle = root / "variants" / str(fixed) / "1" / "medium.jpg"
        obstacle.mkdir(parents=True)
        (obstacle / "keep").write_bytes(b"x")
        # stale: a temp file a killed writer left behind two hours ago.
        leftover = root / "tmp" / "w-large.jpg.k1ll3d"
        leftover.write_bytes(b"half a preview")
        os.utime(leftover, (time.time() - 7200, time.time() - 7200))

        stack.start_worker(beat=True)

        # The first attempt on `fixed` failed and gave its claim back.
        def failed_once() -> bool:
            row = stack.records.tasks()[fixed]
            return row.attempts >= 1 and row.status == TaskStatus.queued

        wait_until(failed_once, within=30, every=0.02, what="a failed write", logs=stack.logs)
        seen = client.get(f"/tasks/{fixed}").json()
        assert seen["status"] in ("queued", "processing") and seen["variants"] == {}
        assert [k for t, _, k in stack.records.variant_rows() if t == fixed] == []
        written = sorted(p.name for p in (root / "variants" / str(fixed) / "1").iterdir())
        assert written == ["large.jpg", "large.webp", "medium.jpg"]  # the files, the obstacle
        shutil.rmtree(obstacle)  # the operator fixes the storage

        ids = [broken, fixed, normal, stale]
        wait_until(
            lambda: stack.records.all_finished(ids),
            within=60,
            what="every task to finish",
            logs=stack.logs,
        )
        rows = stack.records.tasks()
        assert rows[fixed].status == TaskStatus.succeeded, stack.logs()
        assert rows[normal].status == TaskStatus.succeeded
        assert rows[stale].status == TaskStatus.succeeded
        # The reconciler's sweep (beat) removes what the killed writer left.
        wait_until(lambda: not leftover.exists(), within=60, what="the sweep", logs=stack.logs)
        assert rows[broken].status == TaskStatus.failed
        assert rows[broken].error_code == "internal_error"
        assert rows[broken].attempts == 3
        final = client.get(f"/tasks/{broken}").json()
        assert final["error"]["code"] == "internal_error" and final["variants"] == {}
        assert "Traceback" not in final["error"]["message"]
        for variant in client.get(f"/tasks/{fixed}").json()["variants"].values():
            response = client.get(variant["url"])
            assert response.status_code == 200
            assert len(response.content) == variant["size_bytes"]

    assert stack.records.problems(ids) == []
    assert "transient error" in "".join(w.output() for w in stack.workers)
    report(
        "storage_write_fails",
        "variant dir uncreatable: failed internal_error after 3 attempts, 0 rows, 0 temp "
        "files; rename fails after 1 of 3 previews: retried, succeeded once fixed, 3 files; "
        "stale temp file of a killed writer removed",
    )
