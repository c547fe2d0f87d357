"""The API's outside services replaced by in-process doubles: ``create_app(settings,
parts=Parts())`` runs the whole app in one process, with no Redis (the fast tests).

Each double lives beside what it stands in for and passes the same contract test
(docs/architecture.md, "Test doubles"). The database and, unless ``storage`` is given,
the storage still come from the settings: a SQLite file and a directory are in-process
already. Without parts the app opens the production runtime (``runtime.open_api_runtime``)
and nothing here is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from anyio import to_thread
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from imagepipe.config import Settings
from imagepipe.db.engine import async_session_factory, make_async_engine
from imagepipe.queue import MemoryQueue
from imagepipe.services import events
from imagepipe.services.hooks import Hooks
from imagepipe.services.memory_limiter import MemoryLimiter
from imagepipe.storage import Storage, open_storage


@dataclass
class Parts:
    """Stand-ins for the broker producer, the status notifier and listener, and the
    tenant limiter; a test keeps them to look inside (``queue.published``)."""

    queue: MemoryQueue = field(default_factory=MemoryQueue)
    events: events.LocalEvents = field(default_factory=events.LocalEvents)
    limiter: MemoryLimiter = field(default_factory=MemoryLimiter)
    # None: the settings' storage, opened and closed by the app.
    storage: Storage | None = None

    def hooks(self) -> Hooks:
        """The hooks a runtime gives its sessions in production, on the doubles (also
        for a test's worker services, so their changes reach this app's followers)."""
        return Hooks(notifier=self.events, publish_delivery=self.queue.publish_delivery)


@dataclass
class LocalRuntime:
    """What the lifespan reads of an ``ApiRuntime``, built on the parts."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    storage: Storage
    queue: MemoryQueue
    owns_storage: bool

    async def close(self) -> None:
        await self.engine.dispose()
        if self.owns_storage:
            self.storage.close()


async def open_local_runtime(settings: Settings, parts: Parts) -> LocalRuntime:
    engine = make_async_engine(settings.resolved_database_url)
    storage = parts.storage
    if storage is None:
        storage = await to_thread.run_sync(open_storage, settings)
    return LocalRuntime(
        engine=engine,
        sessions=async_session_factory(engine, parts.hooks().session_info()),
        storage=storage,
        queue=parts.queue,
        owns_storage=parts.storage is None,
    )
