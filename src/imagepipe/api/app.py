"""The app factory. Engines and clients are built in the lifespan and disposed after,
so importing this module connects to nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import Depends, FastAPI
from fastapi_offline import FastAPIOffline
from prometheus_client import CollectorRegistry
from starlette.middleware.cors import CORSMiddleware
from starlette.staticfiles import StaticFiles

from imagepipe import __version__, logs
from imagepipe.api import errors
from imagepipe.api.admission import UploadGate
from imagepipe.api.backpressure import QueueDepthGate
from imagepipe.api.deps import require_api_key
from imagepipe.api.middleware import ObservedMiddleware, storage_origins
from imagepipe.api.protocol import LimitedHttpToolsProtocol
from imagepipe.api.routes import direct, health, metrics, tasks, upload
from imagepipe.api.routes import events as event_routes
from imagepipe.api.routes import webhooks as webhook_routes
from imagepipe.api.state import Services, attach
from imagepipe.config import Settings
from imagepipe.db.engine import async_session_factory, make_async_engine
from imagepipe.metrics import QueueDepthCollector
from imagepipe.queue import CeleryQueue
from imagepipe.services import events, webhooks
from imagepipe.storage import open_storage
from imagepipe.web import routes as web
from imagepipe.worker.celery_app import create_celery


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    # Here, not only in the CLI: `api --workers N` and `--reload` start fresh processes.
    logs.configure(settings)
    LimitedHttpToolsProtocol.configure(head_timeout=settings.request_head_timeout_seconds)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_async_engine(settings.resolved_database_url)
        queue = CeleryQueue(create_celery(settings))
        storage = await to_thread.run_sync(open_storage, settings)
        registry = CollectorRegistry(auto_describe=True)
        registry.register(QueueDepthCollector(queue.depth))
        publisher = events.Publisher(settings.redis_url)
        events.configure(publisher)
        # Deliveries the API writes (a direct upload refused or expired at completion)
        # go to the broker after the commit; a lost publish is found by the sweep.
        webhooks.configure(queue.publish_delivery)
        listener = events.Listener(settings.redis_url)
        state.start(
            Services(
                engine=engine,
                sessions=async_session_factory(engine),
                storage=storage,
                queue=queue,
                uploads=UploadGate(settings, storage),
                queue_depth=QueueDepthGate(settings, queue),
                listener=listener,
                metrics=registry,
            )
        )
        await listener.start()
        try:
            yield
        finally:
            state.start(None)
            await listener.stop()
            events.configure(None)
            webhooks.configure(None)
            publisher.close()
            await engine.dispose()
            queue.close()
            storage.close()

    # FastAPIOffline serves Swagger UI's JS/CSS from the package: /docs works offline.
    app = FastAPIOffline(
        title="imagepipe",
        version=__version__,
        description="Upload an image, get a task id at once, previews made in the background.",
        lifespan=lifespan,
    )
    state = attach(app, settings)
    errors.install(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "HEAD", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(ObservedMiddleware, storage_origins=storage_origins(settings))
    app.include_router(health.router)
    protected = [Depends(require_api_key)]
    app.include_router(upload.router, tags=["tasks"], dependencies=protected)
    app.include_router(direct.router, tags=["tasks"], dependencies=protected)
    # Authenticated by the upload token in its URL, like a presigned S3 PUT.
    app.include_router(direct.token_router, tags=["tasks"])
    app.include_router(tasks.router, tags=["tasks"], dependencies=protected)
    app.include_router(event_routes.router, tags=["tasks"], dependencies=protected)
    app.include_router(webhook_routes.router, tags=["webhooks"], dependencies=protected)
    app.include_router(metrics.router, dependencies=protected)
    app.include_router(web.router)
    app.mount("/static", StaticFiles(directory=web.STATIC), name="static")
    return app
