"""What the app keeps between requests, typed. The factory sets the settings; the
lifespan builds the services (connections, clients) and disposes of them. Everything
reads them through ``app_state`` — nothing else touches Starlette's untyped
``app.state``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from imagepipe.api.admission import UploadGate
from imagepipe.api.backpressure import QueueDepthGate
from imagepipe.api.readiness import Readiness
from imagepipe.config import Settings
from imagepipe.queue import CeleryQueue, MemoryQueue
from imagepipe.services import events
from imagepipe.services.on_demand.serving import OnDemand
from imagepipe.storage import Storage


@dataclass
class Services:
    """Built by the lifespan, one set per app."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    storage: Storage
    # MemoryQueue: the app run in one process without a broker (create_app's parts).
    queue: CeleryQueue | MemoryQueue
    uploads: UploadGate
    queue_depth: QueueDepthGate
    listener: events.Follower
    metrics: CollectorRegistry
    on_demand: OnDemand


@dataclass
class AppState:
    settings: Settings
    readiness: Readiness = field(default_factory=Readiness)
    _services: Services | None = None

    @property
    def services(self) -> Services:
        if self._services is None:
            raise RuntimeError("the app's lifespan has not started")
        return self._services

    def start(self, services: Services | None) -> None:
        self._services = services


def app_state(app: Starlette) -> AppState:
    state = app.state.imagepipe
    if not isinstance(state, AppState):
        raise TypeError("not an imagepipe app")
    return state


def attach(app: Starlette, settings: Settings) -> AppState:
    state = AppState(settings=settings)
    app.state.imagepipe = state
    return state
