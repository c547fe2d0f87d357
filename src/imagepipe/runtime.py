"""The composition root: the one place a process turns its Settings into parts.

A runtime holds the database sessions, the storage, the broker producer and the status
notifier. Its hooks (status notifications, webhook deliveries: ``services.hooks``)
ride on the sessions it builds, so every service that commits a change through them
announces it through this runtime, and no entry point can forget to set one up. The API's
lifespan opens an ``ApiRuntime`` (async database); a worker's pool process, every CLI
command and the test harness open a ``Runtime`` (sync database). Nothing connects
while a runtime is opened: clients connect on first use, so a backing service that is
down fails a request or a task, never a process start.
"""

from __future__ import annotations

from dataclasses import dataclass

from anyio import to_thread
from celery import Celery
from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.config import Settings
from imagepipe.db.engine import (
    async_session_factory,
    make_async_engine,
    make_sync_engine,
    sync_session_factory,
)
from imagepipe.imaging import plugins
from imagepipe.queue import CeleryQueue, create_celery
from imagepipe.services import events
from imagepipe.services.hooks import Hooks
from imagepipe.services.spool import Spool
from imagepipe.storage import Storage, open_storage


@dataclass
class Runtime:
    """A synchronous process's parts: a worker's pool process, a CLI command, a test."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    storage: Storage
    queue: CeleryQueue
    publisher: events.Publisher
    # Resized pixels a render keeps for the extra formats made on this host.
    spool: Spool

    def close(self) -> None:
        self.publisher.close()
        self.queue.close()
        self.storage.close()
        self.engine.dispose()


def open_runtime(settings: Settings | None = None, *, celery: Celery | None = None) -> Runtime:
    """``celery``: the process's own app where it has one (a worker's), so tasks are
    published through the connection pool it already keeps; else a producer is built."""
    settings = settings or Settings()
    # The decoders a process may meet (HEIF) are known from its start; opening an
    # image registers them too, so this only moves that cost off the first upload.
    plugins.register()
    # The worker retries a disconnect (and a CLI command is short): no ping per checkout.
    engine = make_sync_engine(settings.resolved_database_url, idle_pings=True)
    queue = CeleryQueue(celery or create_celery(settings))
    publisher = events.Publisher(settings.redis_url)
    # What a committed change tells followers and webhook receivers: on every session.
    hooks = _hooks(queue, publisher)
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=sync_session_factory(engine, hooks.session_info()),
        storage=open_storage(settings),
        queue=queue,
        publisher=publisher,
        spool=Spool.from_settings(settings),
    )


@dataclass
class ApiRuntime:
    """The API process's parts: the same, on an async database engine."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    storage: Storage
    queue: CeleryQueue
    publisher: events.Publisher

    async def close(self) -> None:
        self.publisher.close()
        await self.engine.dispose()
        self.queue.close()
        self.storage.close()


async def open_api_runtime(settings: Settings) -> ApiRuntime:
    plugins.register()  # as in open_runtime: the API probes uploads' headers
    engine = make_async_engine(settings.resolved_database_url)
    queue = CeleryQueue(create_celery(settings))
    publisher = events.Publisher(settings.redis_url)
    # Building an S3 client reads files and the environment: off the event loop.
    storage = await to_thread.run_sync(open_storage, settings)
    hooks = _hooks(queue, publisher)
    return ApiRuntime(
        settings=settings,
        engine=engine,
        sessions=async_session_factory(engine, hooks.session_info()),
        storage=storage,
        queue=queue,
        publisher=publisher,
    )


def _hooks(queue: CeleryQueue, publisher: events.Publisher) -> Hooks:
    # Deliveries a service writes go to the broker after the commit; a lost publish is
    # found by the webhook sweep.
    return Hooks(notifier=publisher, publish_delivery=queue.publish_delivery)
