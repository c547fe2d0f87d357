"""imagepipe in the test's own process: settings on a migrated database, the app behind
an in-memory HTTP client, and the render service called directly."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.config import Settings
from imagepipe.db.engine import make_sync_engine, sync_session_factory
from imagepipe.db.migrate import upgrade
from imagepipe.db.models import Task, TaskStatus, utcnow
from imagepipe.runtime import open_runtime
from imagepipe.services import extras as extras_service
from imagepipe.services import rendering
from imagepipe.services.hooks import SILENT, Hooks
from imagepipe.storage import Storage, open_storage

# Variants of every kind: a number (contain), a cover box placed by the focal point and
# one placed by the smart crop (the crop_settings fixture).
CROP_VARIANTS: dict[str, object] = {
    "small": 150,
    "avatar": {"width": 200, "height": 200, "fit": "cover", "gravity": "focal"},
    "banner": {"width": 300, "height": 100, "fit": "cover", "gravity": "smart"},
}


# make_settings with the test's database and Redis filled in: ``fast_settings_with``.
SettingsWith = Callable[..., Settings]

# The Redis URL of the fast tier's settings: nothing listens on port 1, so a code path
# that still reaches for Redis fails at once instead of finding someone's server.
NO_REDIS = "redis://127.0.0.1:1/0"


def make_settings(
    tmp_path: Path, database_url: str, redis_url: str, **overrides: object
) -> Settings:
    """Settings for a test, with the database migrated. Worker metrics are off unless
    a test asks (several workers on one machine would fight over the port)."""
    values: dict[str, object] = {"log_format": "text", "worker_metrics_port": 0, **overrides}
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        redis_url=redis_url,
        **values,  # type: ignore[arg-type]
    )
    upgrade(settings.resolved_database_url)
    return settings


@asynccontextmanager
async def open_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


@contextmanager
def worker_sessions(settings: Settings, hooks: Hooks = SILENT) -> Iterator[sessionmaker[Session]]:
    """Sessions on the worker's (sync) engine, disposed at the end. Changes committed
    through them are announced to ``hooks`` (by default to no one)."""
    engine = make_sync_engine(settings.resolved_database_url)
    try:
        yield sync_session_factory(engine, hooks.session_info())
    finally:
        engine.dispose()


@contextmanager
def worker_parts(
    settings: Settings, hooks: Hooks | None = None
) -> Iterator[tuple[sessionmaker[Session], Storage]]:
    """A worker's sessions and storage. With real servers (and no ``hooks``), a
    runtime as a worker's pool process opens: its changes reach followers and its
    webhook deliveries the broker. Else the settings' storage and ``hooks`` (SILENT:
    the fast tier's settings name no Redis)."""
    if hooks is None and settings.redis_url != NO_REDIS:
        runtime = open_runtime(settings)
        try:
            yield runtime.sessions, runtime.storage
        finally:
            runtime.close()
        return
    storage = open_storage(settings)
    try:
        with worker_sessions(settings, hooks or SILENT) as sessions:
            yield sessions, storage
    finally:
        storage.close()


def run_inline(
    settings: Settings, task_id: str, *, extras: bool = True, hooks: Hooks | None = None
) -> rendering.Outcome:
    """The render service (services.rendering), called directly (the Celery shell is tested in
    tests/integration with a real worker process): the render, then (unless
    ``extras=False``) the follow-up that makes the extra formats, as a worker serving
    every queue does. ``hooks``: see ``worker_parts``."""
    published: list[uuid.UUID] = []
    with worker_parts(settings, hooks) as (sessions, storage):
        outcome = rendering.process(
            sessions, storage, settings, uuid.UUID(task_id), publish_extras=published.append
        )
        if extras:
            options = rendering.render_options(settings)
            for published_id in published:
                extras_service.make(sessions, storage, options, published_id)
        return outcome


def queue_upload(
    sessions: sessionmaker[Session], storage: Storage, data: bytes, size: tuple[int, int]
) -> uuid.UUID:
    """A JPEG queued as ``POST /upload`` leaves it: stored, its digest known, owned by
    the anonymous tenant. Returns its task id."""
    task_id = uuid.uuid4()
    key = f"originals/{task_id}"
    storage.put_bytes(key, data, content_type="image/jpeg")
    with sessions.begin() as session:
        session.add(
            Task(
                id=task_id, filename="a.jpg", original_key=key, original_format="JPEG",
                original_width=size[0], original_height=size[1], original_size_bytes=len(data),
                original_sha256=hashlib.sha256(data).hexdigest(), owner_scope="anonymous",
                status=TaskStatus.queued, created_at=utcnow(), enqueued_at=utcnow(),
            )
        )  # fmt: skip
    return task_id
