"""Fault-injection tests' view of a deployment: a ``Stack`` of real processes (from
tests/harness), the record as an auditor reads it, and the measurements they report.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, func, select

from imagepipe.config import Settings
from imagepipe.db.engine import make_sync_engine
from imagepipe.db.models import Rendition, Task, TaskStatus, Variant
from tests.harness.processes import ApiProcess, BeatProcess, WorkerProcess
from tests.harness.wait import wait_until

# Small limits for the worker, so faults recover in seconds (see docs/reliability.md).
# The time limits are the exception: a 12 MP PNG renders in under a second on an idle
# core, but its first renders in a new pool process, on a CI machine that runs four
# test processes on two cores, were seen to take over 4 s. A limit that tight fails
# healthy renders; the limits themselves are tested with their own values
# (test_poison). The lease (hard limit + margin, 17 s) stays well under the tests'
# 60-90 s waits.
FAST_LIMITS: dict[str, object] = {
    "task_soft_time_limit": 12,
    "task_hard_time_limit": 15,
    "lease_margin_seconds": 2,
    "queued_grace_seconds": 2,
    "reconcile_interval_seconds": 1,
    "visibility_timeout": 30,
    "broker_timeout_seconds": 1,
}


def report(test: str, outcome: str, **numbers: object) -> None:
    """Append a measured outcome to $IMAGEPIPE_RELIABILITY_REPORT (JSON lines), if set.

    docs/reliability.md is filled from these lines; without the variable it is a no-op.
    """
    path = os.environ.get("IMAGEPIPE_RELIABILITY_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"test": test, "outcome": outcome, **numbers}) + "\n")


# --- the deployment ----------------------------------------------------------------


@dataclass
class Stack:
    """One imagepipe deployment made of real processes; the test drives its faults."""

    settings: Settings
    env: dict[str, str]
    directory: Path
    records: Records
    api: ApiProcess
    workers: list[WorkerProcess] = field(default_factory=list)
    beats: list[BeatProcess] = field(default_factory=list)

    def start_worker(
        self, *, beat: bool = False, concurrency: int = 2, ready: bool = True
    ) -> WorkerProcess:
        log_path = self.directory / f"worker-{len(self.workers)}.log"  # with the test's files
        worker = WorkerProcess(self.env, concurrency=concurrency, beat=beat, log_path=log_path)
        self.workers.append(worker)
        worker.start()
        if ready:
            wait_until(
                lambda: worker.ready() or worker.exited(),
                within=30,
                what="the worker to be ready",
                logs=worker.output,
            )
            assert not worker.exited(), worker.output()
        return worker

    def start_beat(self) -> BeatProcess:
        beat = BeatProcess(self.env, self.directory / f"beat-{len(self.beats)}.log")
        self.beats.append(beat)
        beat.start()
        return beat

    def logs(self) -> str:
        parts = [f"--- api\n{self.api.output()[-3000:]}"]
        parts += [f"--- {w.log_path.name}\n{w.output()[-3000:]}" for w in self.workers]
        parts += [f"--- {b.log_path.name}\n{b.output()[-2000:]}" for b in self.beats]
        return "\n".join(parts)

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()
        for beat in self.beats:
            beat.stop()
        self.api.stop()
        self.records.close()


StackFactory = Callable[..., Stack]


# --- looking at the record ---------------------------------------------------------


@dataclass(frozen=True)
class Row:
    status: TaskStatus
    attempts: int  # claims: the fencing token
    error_code: str | None
    counted: int  # claims that spent the poison-image budget (not given back as transient)


class Records:
    """Reads the tasks/variants tables and the storage directly (never through the API)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engine: Engine | None = None

    @property
    def root(self) -> Path:
        """The storage directory (local storage only)."""
        return self.settings.resolved_storage_root

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_sync_engine(self.settings.resolved_database_url)
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def tasks(self) -> dict[uuid.UUID, Row]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(
                    Task.id,
                    Task.status,
                    Task.attempts,
                    Task.error_code,
                    (Task.attempts - Task.transient_releases).label("counted"),
                )
            )
            return {
                r.id: Row(TaskStatus(r.status), r.attempts, r.error_code, r.counted) for r in rows
            }

    def times(self) -> dict[uuid.UUID, tuple[datetime, datetime | None]]:
        """Each task's (created_at, started_at), by the database's clock."""
        with self.engine.connect() as connection:
            rows = connection.execute(select(Task.id, Task.created_at, Task.started_at))
            return {r.id: (r.created_at, r.started_at) for r in rows}

    def holders(self) -> dict[uuid.UUID, tuple[int, int]]:
        """Each processing task's (holder pid, attempt): who renders what right now."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(Task.id, Task.claimed_by, Task.attempts).where(
                    Task.status == TaskStatus.processing
                )
            )
            return {
                r.id: (int(r.claimed_by.rsplit(":", 1)[1]), r.attempts)
                for r in rows
                if r.claimed_by
            }

    def count(self, status: TaskStatus) -> int:
        with self.engine.connect() as connection:
            query = select(func.count()).select_from(Task).where(Task.status == status)
            return int(connection.scalar(query) or 0)

    def variant_rows(self) -> list[tuple[uuid.UUID, str, str]]:
        return [(task_id, name, key) for task_id, name, key, _ in self._variants()]

    def _variants(self) -> list[tuple[uuid.UUID, str, str, str]]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(Variant.task_id, Variant.name, Variant.storage_key, Variant.sha256)
            )
            return [(r.task_id, r.name, r.storage_key, r.sha256) for r in rows]

    def _renditions(self) -> list[tuple[uuid.UUID, str, str]]:
        """(task, key, sha256) of every stored format of every variant."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(Variant.task_id, Rendition.storage_key, Rendition.sha256).join(
                    Rendition, Rendition.variant_id == Variant.id
                )
            )
            return [(r.task_id, r.storage_key, r.sha256) for r in rows]

    def all_finished(self, ids: list[uuid.UUID]) -> bool:
        rows = self.tasks()
        finished = (TaskStatus.succeeded, TaskStatus.failed)
        return all(rows[i].status in finished for i in ids)

    def storage_files(self, prefix: str) -> list[Path]:
        base = self.root / prefix
        return sorted(p for p in base.rglob("*") if p.is_file()) if base.exists() else []

    def upload_temp_files(self) -> list[Path]:
        """The API's temp files of uploads being received (``up-*``); the worker's
        rendition writes (``w-*``) are there only while a render stores them."""
        return [p for p in self.storage_files("tmp") if p.name.startswith("up-")]

    def settled_problems(self, ids: list[uuid.UUID], within: float = 30.0) -> list[str]:
        """``problems(ids)`` once the deployment has settled.

        A task can finish while a claim that lost the race for it is still rendering:
        its writes are in flight and its objects not yet removed (it learns that it
        lost at its own finish, then tidies). That is no leftover, so wait for it; a
        real leftover is still there after ``within`` seconds and is returned.
        """
        deadline = time.monotonic() + within
        while (found := self.problems(ids)) and time.monotonic() < deadline:
            time.sleep(0.2)
        return found

    def problems(self, ids: list[uuid.UUID]) -> list[str]:
        """Everything that breaks "one set of previews each, nothing half-written".

        Succeeded: exactly one row per configured variant, each file present, and the
        task's variant directory holds those files and nothing else. Not succeeded: no
        variant rows. Anywhere: no temp files left in tmp/.
        """
        found: list[str] = []
        names = set(self.settings.variants)
        rows = self.tasks()
        variants = self._variants()
        stored = self._renditions()
        per_task = Counter(task_id for task_id, _, _, _ in variants)
        for task_id in ids:
            row = rows.get(task_id)
            if row is None:
                found.append(f"{task_id}: no row")
                continue
            mine = [(name, key) for t, name, key, _ in variants if t == task_id]
            # Every format of every variant: the base (named by the variant row too)
            # and the extra formats.
            digests = {key: sha for t, key, sha in stored if t == task_id}
            if not {key for _, key in mine} <= set(digests):
                found.append(f"{task_id}: a variant's base format has no rendition row")
            if row.status != TaskStatus.succeeded:
                if mine:
                    found.append(f"{task_id}: {row.status} but {len(mine)} variant rows")
                continue
            if per_task[task_id] != len(names) or {n for n, _ in mine} != names:
                found.append(f"{task_id}: variant rows {sorted(n for n, _ in mine)}")
            keys = set(digests)
            for key in keys:
                path = self.root / key
                if not path.is_file():
                    found.append(f"{task_id}: row points at missing file {key}")
                elif hashlib.sha256(path.read_bytes()).hexdigest() != digests[key]:
                    found.append(f"{task_id}: {key} does not match its row's sha256")
            on_disk = {
                str(p.relative_to(self.root)) for p in self.storage_files(f"variants/{task_id}")
            }
            if on_disk != keys:
                found.append(f"{task_id}: files {sorted(on_disk)} != rows {sorted(keys)}")
        for path in self.storage_files("tmp"):
            found.append(f"temp file left behind: {path.relative_to(self.root)}")
        return found


# --- processes of a worker ---------------------------------------------------------


def children(pid: int) -> list[int]:
    """The render pool's processes of the worker ``pid``: its direct children (Linux
    /proc), less the follow-up pool, which is a Celery worker of its own."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return sorted(c for c in set(found) if not _is_follow_up_pool(c))


def _is_follow_up_pool(pid: int) -> bool:
    try:
        return b"follow_up@" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid``; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/statm").read_text().split()
    except OSError:
        return 0
    return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Kill:
    task_id: uuid.UUID  # the render the kill ended
    attempt: int  # the claim it ended: a takeover has a higher one
    at: float  # time.time() of the kill


def kill_child_mid_render(records: Records, worker_pid: int, *, tries: int = 20) -> Kill:
    """SIGKILL the pool child that holds a processing claim, and check that the kill is
    what ended that render: just after it, the task is still processing under the same
    claim. A render that finished between the look and the kill leaves nothing to take
    over, so then look again (the worker has replaced the child meanwhile)."""
    for _ in range(tries):

        def in_flight() -> tuple[uuid.UUID, int, int] | None:
            pool = children(worker_pid)
            for task_id, (pid, attempt) in records.holders().items():
                if pid in pool:
                    return task_id, pid, attempt
            return None

        task_id, victim, attempt = wait_until(
            in_flight, within=30, every=0.02, what="a render held by a pool child"
        )
        os.kill(victim, signal.SIGKILL)
        killed_at = time.time()
        if records.holders().get(task_id) == (victim, attempt):
            return Kill(task_id, attempt, killed_at)
    raise AssertionError(f"no kill landed mid-render in {tries} tries")


def cpu_ticks(pid: int) -> int:
    """utime + stime of ``pid`` in clock ticks; 0 once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def upload(client: httpx.Client, data: bytes, name: str = "image.png") -> uuid.UUID:
    response = client.post("/upload", files={"file": (name, data)})
    if response.status_code != 202:
        pytest.fail(f"upload answered {response.status_code}: {response.text}")
    return uuid.UUID(response.json()["task_id"])
