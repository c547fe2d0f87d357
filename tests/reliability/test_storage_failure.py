"""Fault 5: writing the previews fails — and then the storage is fixed.

The tests run as root, where a read-only mode bit stops nothing, and no tmpfs can be
mounted here; so the storage is broken the way root cannot write through either: a
FILE where the task's variant directory must be created (mkdir fails before anything
is written), and a DIRECTORY where one preview of the first attempt must be renamed
to (the failure comes after the first preview of the set was written).

A storage failure is transient: the claim is given back without spending the
poison-image budget (``max_attempts=1`` here, so a single counted claim would fail a
task for good), and a real worker retries. Never fixed in time, the task fails with
``service_unavailable`` and the fixed message; once the operator fixes the storage,
``imagepipe requeue`` queues it again and it succeeds. Nothing half-written is ever
visible: no variant row without its file, no temp file left in a variant directory.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from imagepipe.db.models import TaskStatus
from tests.harness.processes import imagepipe
from tests.harness.redis import RedisServer
from tests.harness.wait import wait_until
from tests.images import photo
from tests.reliability.stack import StackFactory, report, upload

pytestmark = pytest.mark.integration

GAVE_UP = "A backing service (storage or database) failed on every try."


def test_storage_write_failures_do_not_spend_attempts_and_requeue_recovers(
    sqlite_url: str, private_redis: RedisServer, make_stack: StackFactory
) -> None:
    # SQLite here: the default of `imagepipe dev`, shared by API, worker and beat.
    stack = make_stack(sqlite_url, private_redis.url, max_attempts=1, transient_retries=2)
    root = stack.settings.resolved_storage_root
    with stack.api.client() as client:
        broken, fixed, normal, stale = (upload(client, photo(1600, 1200)) for _ in range(4))

        # broken: the task's variant directory cannot be created until it is fixed.
        (root / "variants").mkdir(parents=True, exist_ok=True)
        blocker = root / "variants" / str(broken)
        blocker.write_bytes(b"not a directory")
        # fixed: large.jpg is written, then medium.jpg cannot replace a dir.
        obstacle = root / "variants" / str(fixed) / "1" / "medium.jpg"
        obstacle.mkdir(parents=True)
        (obstacle / "keep").write_bytes(b"x")
        # stale: a temp file a killed writer left behind two hours ago.
        leftover = root / "tmp" / "w-large.jpg.k1ll3d"
        leftover.write_bytes(b"half a preview")
        os.utime(leftover, (time.time() - 7200, time.time() - 7200))

        stack.start_worker(beat=True)

        ids = [broken, fixed, normal, stale]
        wait_until(
            lambda: stack.records.all_finished(ids),
            within=90,
            what="every task to finish",
            logs=stack.logs,
        )
        rows = stack.records.tasks()
        # The failed write on `fixed` was given back and did not count: with one
        # attempt allowed, the next claim (a new attempt, new keys) succeeded.
        assert rows[fixed].status == TaskStatus.succeeded, stack.logs()
        assert rows[fixed].attempts >= 2 and rows[fixed].counted == 1
        assert rows[normal].status == TaskStatus.succeeded
        assert rows[stale].status == TaskStatus.succeeded
        # The reconciler's sweep (beat) removes what the killed writer left.
        wait_until(lambda: not leftover.exists(), within=60, what="the sweep", logs=stack.logs)

        # `broken` never could write: failed for a transient cause, budget untouched.
        assert rows[broken].status == TaskStatus.failed
        assert rows[broken].error_code == "service_unavailable"
        assert rows[broken].counted == 0
        final = client.get(f"/tasks/{broken}").json()
        assert final["error"] == {"code": "service_unavailable", "message": GAVE_UP}
        assert final["variants"] == {}

        # The operator fixes the storage, looks, then queues the task again.
        blocker.unlink()
        env = stack.env
        looked = subprocess.run(
            imagepipe("requeue", "--dry-run"), env=env, capture_output=True, text=True, timeout=60
        )
        assert looked.returncode == 0, looked.stderr
        assert looked.stdout.split() == [str(broken), "would", "queue", "1", "tasks"]
        assert stack.records.tasks()[broken].status == TaskStatus.failed  # nothing changed
        done = subprocess.run(
            imagepipe("requeue"), env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "queued 1 tasks"
        wait_until(
            lambda: stack.records.all_finished([broken]),
            within=60,
            what="the requeued task to finish",
            logs=stack.logs,
        )
        assert stack.records.tasks()[broken].status == TaskStatus.succeeded, stack.logs()
        for task_id in (fixed, broken):
            for variant in client.get(f"/tasks/{task_id}").json()["variants"].values():
                response = client.get(variant["url"])
                assert response.status_code == 200
                assert len(response.content) == variant["size_bytes"]

    assert stack.records.settled_problems(ids) == []
    output = "".join(w.output() for w in stack.workers)
    assert "transient error" in output
    assert str(root) not in final["error"]["message"]
    report(
        "storage_write_fails",
        "max_attempts 1: rename fails after 1 of 3 previews: given back uncounted, "
        f"succeeded on attempt {rows[fixed].attempts}; variant dir uncreatable: failed "
        "service_unavailable with 0 counted attempts, 0 rows, 0 temp files; after the fix "
        "`imagepipe requeue` queued it and it succeeded; stale temp file removed",
    )
