"""Liveness and readiness."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from imagepipe.api.errors import error_body, headers_for
from imagepipe.api.readiness import CHECKS
from imagepipe.api.state import app_state
from imagepipe.errors import ServiceUnavailable

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="200 while the process serves")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="200 when the database, the broker and the storage answer")
async def readyz(request: Request) -> JSONResponse:
    state = app_state(request.app)
    timeout = state.settings.broker_timeout_seconds + 2
    services = state.services
    checks: dict[str, str] = {}

    async def run(name: str) -> None:
        checks[name] = await state.readiness.checks[name].answer(services, timeout)

    async with anyio.create_task_group() as group:
        for name in CHECKS:
            group.start_soon(run, name)

    failed = sorted(name for name, result in checks.items() if result != "ok")
    if failed:
        error = ServiceUnavailable(f"Not ready: {', '.join(failed)}.")
        body = {**error_body(error), "checks": checks}
        headers = headers_for(error, state.settings.retry_after_seconds)
        return JSONResponse(body, status_code=error.status_code, headers=headers)
    return JSONResponse({"status": "ok", "checks": checks})
