"""GET /metrics for Prometheus."""

from __future__ import annotations

from anyio import to_thread
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from imagepipe.api.state import app_state

router = APIRouter(tags=["observability"])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    # The per-app registry asks Redis for the queue depth: a blocking call.
    per_app = await to_thread.run_sync(generate_latest, app_state(request.app).services.metrics)
    return Response(generate_latest(REGISTRY) + per_app, media_type=CONTENT_TYPE_LATEST)
