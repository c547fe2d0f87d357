"""The app factory. Engines and clients are built in the lifespan and disposed after,
so importing this module connects to nothing."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.middleware.cors import CORSMiddleware
from starlette.staticfiles import StaticFiles

from imagepipe import __version__, logs
from imagepipe.api import errors
from imagepipe.api.access import AccessControl, AccessMiddleware
from imagepipe.api.admission import UploadGate
from imagepipe.api.backpressure import QueueDepthGate
from imagepipe.api.deps import require_api_key
from imagepipe.api.middleware import ObservedMiddleware, storage_origins
from imagepipe.api.parts import LocalRuntime, Parts, open_local_runtime
from imagepipe.api.protocol import LimitedHttpToolsProtocol
from imagepipe.api.routes import direct, focal, health, metrics, renditions, tasks, upload
from imagepipe.api.routes import events as event_routes
from imagepipe.api.routes import webhooks as webhook_routes
from imagepipe.api.state import Services, attach
from imagepipe.config import Settings
from imagepipe.metrics import QueueDepthCollector
from imagepipe.runtime import ApiRuntime, open_api_runtime
from imagepipe.services import events, tenancy
from imagepipe.services.on_demand import options as on_demand_options
from imagepipe.services.on_demand.serving import OnDemand
from imagepipe.services.transient import MAYBE_TRANSIENT, is_transient
from imagepipe.web import routes as web

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, parts: Parts | None = None) -> FastAPI:
    """``parts``: in-process doubles of the broker, the status events and the tenant
    limiter (``api.parts``), for an app run without Redis; None in production."""
    settings = settings or Settings()
    # Here, not only in the CLI: `api --workers N` and `--reload` start fresh processes.
    logs.configure(settings)
    LimitedHttpToolsProtocol.configure(head_timeout=settings.request_head_timeout_seconds)
    access = AccessControl(settings)
    # A preset that does not parse stops the service here, not each request for it.
    on_demand_options.check_presets(
        settings.on_demand_presets, max_side=settings.on_demand_max_side
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime: ApiRuntime | LocalRuntime
        listener: events.Listener | events.LocalEvents
        if parts is None:
            runtime = await open_api_runtime(settings)
            listener = events.Listener(settings.redis_url)
        else:
            runtime = await open_local_runtime(settings, parts)
            listener = parts.events
        registry = CollectorRegistry(auto_describe=True)
        registry.register(QueueDepthCollector(runtime.queue.depth))
        on_demand = OnDemand(
            settings,
            runtime.sessions,
            listener,
            lambda job: runtime.queue.enqueue_on_demand(job.args()),
        )
        await _adopt_owners(runtime.sessions, access)
        await access.start(None if parts is None else parts.limiter)
        state.start(
            Services(
                engine=runtime.engine,
                sessions=runtime.sessions,
                storage=runtime.storage,
                queue=runtime.queue,
                uploads=UploadGate(settings, runtime.storage),
                queue_depth=QueueDepthGate(settings, runtime.queue),
                listener=listener,
                metrics=registry,
                on_demand=on_demand,
            )
        )
        await listener.start()
        try:
            yield
        finally:
            state.start(None)
            await access.stop()
            await listener.stop()
            await on_demand.close()
            await runtime.close()

    # FastAPIOffline serves Swagger UI's JS/CSS from the package: /docs works offline.
    app = FastAPIOffline(
        title="imagepipe",
        version=__version__,
        description="Upload an image, get a task id at once, previews made in the background.",
        lifespan=lifespan,
    )
    state = attach(app, settings)
    errors.install(app)
    # Added first, so innermost: its refusals still get CORS and the security headers.
    # The stack is built at the first request, when keyed_routes is filled (below).
    keyed_routes: list[APIRoute] = []
    app.add_middleware(AccessMiddleware, control=access, routes=keyed_routes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "HEAD", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(ObservedMiddleware, storage_origins=storage_origins(settings))
    app.include_router(health.router)
    # Every route of these needs an API key (when keys are set): AccessMiddleware
    # checks it before the body is read, require_api_key hands the tenant to routes.
    keyed: list[APIRouter] = []

    def include_keyed(router: APIRouter, **options: Any) -> None:
        app.include_router(router, dependencies=[Depends(require_api_key)], **options)
        keyed.append(router)

    include_keyed(upload.router, tags=["tasks"])
    include_keyed(direct.router, tags=["tasks"])
    # Authenticated by the upload token in its URL, like a presigned S3 PUT.
    app.include_router(direct.token_router, tags=["tasks"])
    include_keyed(tasks.router, tags=["tasks"])
    include_keyed(focal.router, tags=["tasks"])
    include_keyed(renditions.router)
    # Signed links: no API key, the signature (checked by the route) is the credential.
    app.include_router(renditions.signed_router)
    include_keyed(event_routes.router, tags=["tasks"])
    include_keyed(webhook_routes.router, tags=["webhooks"])
    include_keyed(metrics.router)
    app.include_router(web.router)
    app.mount("/static", StaticFiles(directory=web.STATIC), name="static")
    keyed_routes.extend(r for router in keyed for r in router.routes if isinstance(r, APIRoute))
    return app


async def _adopt_owners(sessions: async_sessionmaker[AsyncSession], access: AccessControl) -> None:
    """Rows owned by a key of a named tenant become the tenant's (see
    ``tenancy.adopt_owners``). At every start, so keys grouped later are adopted too;
    a database that does not answer now is tried again at the next start."""
    adoptions = access.keys.adoptions()
    if not adoptions:
        return
    try:
        async with sessions() as session:
            moved = await session.run_sync(tenancy.adopt_owners, adoptions)
            await session.commit()
    except IntegrityError as error:  # another process adopting at the same moment
        log.warning("tenant adoption deferred to the next start: %r", error)
        return
    except MAYBE_TRANSIENT as error:
        if not is_transient(error):
            raise
        log.warning("database unavailable: tenant adoption deferred to the next start")
        return
    if moved:
        log.info("rows of grouped keys given to their tenants", extra={"rows": moved})
