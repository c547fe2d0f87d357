"""Liveness and readiness."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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
    await to_thread.run_sync(state.queue.ping)


async def _storage(state: Any) -> None:
    # Never cancelled (see _Check): a hung disk keeps this one thread, no more.
    await to_thread.run_sync(state.storage.check)


CHECKS: dict[str, Callable[[Any], Awaitable[None]]] = {
    "database": _database,
    "broker": _broker,
    "storage": _storage,
}
# A readiness answer is reused this long: probes from several load balancers and the
# kubelet cost one check per second, not one per call.
FRESH_SECONDS = 1.0


@dataclass
class _Check:
    """One dependency's check: at most one run in flight (a hung disk holds one thread,
    never one per probe), its answer cached for FRESH_SECONDS."""

    run: Callable[[Any], Awaitable[None]]
    result: str = "failed: not checked"
    checked_at: float = -math.inf
    running: asyncio.Task[None] | None = None
    started_at: float = 0.0

    async def answer(self, state: Any, bound: float) -> str:
        now = time.monotonic()
        if self.running is None:
            if now - self.checked_at < FRESH_SECONDS:
                return self.result
            self.started_at = now
            self.running = asyncio.ensure_future(self._run(state))
        # A run that has been going for longer than the timeout gets no more waiting.
        left = self.started_at + bound - now
        try:
            if left <= 0:
                raise TimeoutError
            await asyncio.wait_for(asyncio.shield(self.running), left)
        except TimeoutError:
            return "failed: TimeoutError"
        return self.result

    async def _run(self, state: Any) -> None:
        try:
            await self.run(state)
            self.result = "ok"
        except Exception as error:
            self.result = f"failed: {type(error).__name__}"
        finally:
            self.checked_at, self.running = time.monotonic(), None


class Readiness:
    """The checks of one app, kept on ``app.state``."""

    def __init__(self) -> None:
        self.checks = {name: _Check(run) for name, run in CHECKS.items()}


@router.get("/readyz", summary="200 when the database, the broker and the storage answer")
async def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    timeout = state.settings.broker_timeout_seconds + 2
    readiness: Readiness = state.readiness
    checks: dict[str, str] = {}

    async def run(name: str) -> None:
        checks[name] = await readiness.checks[name].answer(state, timeout)

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
