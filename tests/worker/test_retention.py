"""Retention (``IMAGEPIPE_KEEP_ORIGINALS``, ``IMAGEPIPE_TASK_RETENTION``): the service on
a real database (SQLite and PostgreSQL) and local storage, the ``imagepipe purge``
command, and the beat schedule that runs it."""

from __future__ import annotations

import subprocess
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import select, update

from imagepipe.api.app import create_app
from imagepipe.config import Settings
from imagepipe.db.engine import make_sync_engine
from imagepipe.db.models import Task, TaskStatus, utcnow
from imagepipe.queue import PURGE
from imagepipe.services import retention
from imagepipe.storage import LocalStorage, ObjectNotFound, keys
from imagepipe.worker.celery_app import create_celery
from tests.harness.app import open_client, run_inline, worker_sessions
from tests.harness.processes import WorkerProcess, imagepipe, settings_env
from tests.harness.wait import wait_until
from tests.images import photo
from tests.observe import stored_files

pytestmark = pytest.mark.anyio

DAY = timedelta(days=1)


async def upload(client: httpx.AsyncClient) -> str:
    response = await client.post("/upload", files={"file": ("a.jpg", photo(300, 200))})
    assert response.status_code == 202, response.text
    task_id: str = response.json()["task_id"]
    return task_id


def age(settings: Settings, task_id: str, days: float, **values: object) -> None:
    """Move a task's finish (and creation) ``days`` into the past."""
    engine = make_sync_engine(settings.resolved_database_url)
    when = utcnow() - days * DAY
    with engine.begin() as connection:
        connection.execute(
            update(Task)
            .where(Task.id == uuid.UUID(task_id))
            .values(**{"finished_at": when, "created_at": when, **values})
        )
    engine.dispose()


def row(settings: Settings, task_id: str) -> Task | None:
    with worker_sessions(settings) as sessions, sessions() as session:
        return session.scalar(select(Task).where(Task.id == uuid.UUID(task_id)))


def files_of(settings: Settings, task_id: str) -> list[str]:
    return [path for path in stored_files(settings) if task_id in path]


def run_purge(settings: Settings, *, dry_run: bool = False) -> retention.PurgeReport:
    storage = LocalStorage(settings.resolved_storage_root)
    with worker_sessions(settings) as sessions:
        return retention.purge(sessions, storage, settings, dry_run=dry_run)


async def test_retention_removes_old_tasks_and_originals_and_nothing_else(
    any_db_settings: Settings,
) -> None:
    settings = any_db_settings.model_copy(update={"task_retention": "30d", "keep_originals": "7d"})
    async with open_client(create_app(settings)) as client:
        old, middle, new, old_failed, old_queued = [await upload(client) for _ in range(5)]
        for task_id in (old, middle, new):
            run_inline(settings, task_id)
        age(settings, old, 40)
        age(settings, middle, 10)
        age(settings, old_failed, 40, status=TaskStatus.failed, error_code="invalid_image")
        age(settings, old_queued, 40, finished_at=None)
        before = stored_files(settings)

        dry = run_purge(settings, dry_run=True)
        assert (dry.tasks_removed, dry.originals_removed) == (2, 2)  # old counted in both
        assert stored_files(settings) == before

        report = run_purge(settings)
        assert (report.tasks_removed, report.originals_removed) == (2, 1)
        assert not report.interrupted
        for gone in (old, old_failed):
            assert row(settings, gone) is None
            assert files_of(settings, gone) == []
            assert (await client.get(f"/tasks/{gone}")).status_code == 404

        # Older than keep_originals: the original goes, the previews keep serving.
        kept = row(settings, middle)
        assert kept is not None and kept.original_removed_at is not None
        with pytest.raises(ObjectNotFound):
            LocalStorage(settings.resolved_storage_root).stat(keys.original(uuid.UUID(middle)))
        assert files_of(settings, middle)
        assert (await client.get(f"/tasks/{middle}")).json()["status"] == "succeeded"
        assert (await client.get(f"/tasks/{middle}/variants/small")).status_code == 200

        # Recent, or not finished: untouched.
        for untouched in (new, old_queued):
            current = row(settings, untouched)
            assert current is not None and current.original_removed_at is None
            assert keys.original(uuid.UUID(untouched)) in stored_files(settings)

        again = run_purge(settings)
        assert (again.tasks_removed, again.originals_removed) == (0, 0)


async def test_a_purge_cut_short_is_finished_by_the_next_run(settings: Settings) -> None:
    """The state a crash leaves between the files and the row: files gone, row there."""
    settings = settings.model_copy(update={"task_retention": "1d"})
    async with open_client(create_app(settings)) as client:
        task_id = await upload(client)
    run_inline(settings, task_id)
    age(settings, task_id, 2)
    storage = LocalStorage(settings.resolved_storage_root)
    storage.delete(keys.original(uuid.UUID(task_id)))
    storage.delete_prefix(keys.variants_prefix(uuid.UUID(task_id)))

    report = run_purge(settings)
    assert report.tasks_removed == 1 and not report.interrupted
    assert row(settings, task_id) is None


async def test_keep_originals_never_removes_the_original_once_succeeded(
    settings: Settings,
) -> None:
    settings = settings.model_copy(update={"keep_originals": "never"})
    async with open_client(create_app(settings)) as client:
        done, waiting = await upload(client), await upload(client)
        run_inline(settings, done)
        report = run_purge(settings)
        assert report.originals_removed == 1
        assert keys.original(uuid.UUID(done)) not in stored_files(settings)
        assert keys.original(uuid.UUID(waiting)) in stored_files(settings)  # not rendered yet
        assert (await client.get(f"/tasks/{done}/variants/small")).status_code == 200


def test_imagepipe_purge_command(settings: Settings) -> None:
    configured = settings.model_copy(update={"task_retention": "30d", "keep_originals": "never"})
    env = settings_env(configured)
    dry = subprocess.run(
        imagepipe("purge", "--dry-run"), env=env, capture_output=True, text=True, timeout=60
    )
    assert dry.returncode == 0, dry.stderr
    assert "would remove 0 tasks and 0 originals" in dry.stdout
    done = subprocess.run(imagepipe("purge"), env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "removed 0 tasks and 0 originals" in done.stdout


def test_beat_runs_retention_on_its_interval(settings: Settings) -> None:
    configured = settings.model_copy(update={"retention_interval_seconds": 600})
    schedule = create_celery(configured).conf.beat_schedule
    assert schedule["purge"] == {"task": PURGE, "schedule": 600}


def test_retention_settings_are_checked(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).keep_originals_seconds is None
    assert Settings(data_dir=tmp_path).task_retention_seconds is None
    assert Settings(data_dir=tmp_path, keep_originals="never").keep_originals_seconds == 0
    assert Settings(data_dir=tmp_path, keep_originals="30d").keep_originals_seconds == 30 * 86400
    assert Settings(data_dir=tmp_path, task_retention="12h").task_retention_seconds == 43200
    assert Settings(data_dir=tmp_path, task_retention="").task_retention is None
    for bad in ("soon", "30 days", "-1d"):
        with pytest.raises(ValidationError):
            Settings(data_dir=tmp_path, keep_originals=bad)
        with pytest.raises(ValidationError):
            Settings(data_dir=tmp_path, task_retention=bad)


async def test_a_real_worker_with_beat_applies_retention(settings: Settings) -> None:
    configured = settings.model_copy(
        update={"task_retention": "1d", "retention_interval_seconds": 1}
    )
    async with open_client(create_app(configured)) as client:
        task_id = await upload(client)
    run_inline(configured, task_id)
    age(configured, task_id, 2)
    worker = WorkerProcess(settings_env(configured), concurrency=1, beat=True)
    worker.start()
    try:
        wait_until(
            lambda: row(configured, task_id) is None,
            within=60,
            what="beat's retention run to remove the task",
            logs=worker.output,
        )
    finally:
        worker.stop()
    assert files_of(configured, task_id) == []
