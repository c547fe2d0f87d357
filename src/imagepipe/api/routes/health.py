"""Liveness and readiness."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio import to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="200 while the process serves")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _database(state: Any) -> None:
    async with state.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def _broker(state: Any) -> None:
    await to_thread.run_sync(state.queue.ping, abandon_on_cancel=True)


async def _storage(state: Any) -> None:
    await to_thread.run_sync(state.storage.check, abandon_on_cancel=True)


CHECKS: dict[str, Callable[[Any], Awaitable[None]]] = {
    "database": _database,
    "broker": _broker,
    "storage": _storage,
}


@router.get("/readyz", summary="200 when the database, the broker and the storage answer")
async def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    timeout = state.settings.broker_timeout_seconds + 2
    checks: dict[str, str] = {}

    async def run(name: str) -> None:
        try:
            with anyio.fail_after(timeout):
                await CHECKS[name](state)
            checks[name] = "ok"
        except Exception as error:
            checks[name] = f"failed: {type(error).__name__}"

    async with anyio.create_task_group() as group:
        for name in CHECKS:
            group.start_soon(run, name)

    failed = sorted(name for name, result in checks.items() if result != "ok")
    if failed:
        retry_after = str(state.settings.retry_after_seconds)
        body = {
            "error": {"code": "service_unavailable", "message": f"Not ready: {', '.join(failed)}."},
            "checks": checks,
        }
        return JSONResponse(body, status_code=503, headers={"Retry-After": retry_after})
    return JSONResponse({"status": "ok", "checks": checks})
