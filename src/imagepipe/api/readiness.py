"""The readiness checks behind ``/readyz``: bounded, cached, one run in flight each."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from anyio import to_thread
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from imagepipe.queue import TaskQueue
from imagepipe.storage import Storage


class Services(Protocol):
    """What the checks look at: the app's Services (api.state, which holds this
    module's Readiness) provide it, so neither module imports the other."""

    @property
    def engine(self) -> AsyncEngine: ...

    @property
    def queue(self) -> TaskQueue: ...

    @property
    def storage(self) -> Storage: ...


async def _database(services: Services) -> None:
    async with services.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def _broker(services: Services) -> None:
    await to_thread.run_sync(services.queue.ping)


async def _storage(services: Services) -> None:
    # Never cancelled (see _Check): a hung disk keeps this one thread, no more.
    await to_thread.run_sync(services.storage.check)


Check = Callable[[Services], Awaitable[None]]
CHECKS: dict[str, Check] = {
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

    run: Check
    result: str = "failed: not checked"
    checked_at: float = -math.inf
    running: asyncio.Task[None] | None = None
    started_at: float = 0.0

    async def answer(self, services: Services, bound: float) -> str:
        now = time.monotonic()
        if self.running is None:
            if now - self.checked_at < FRESH_SECONDS:
                return self.result
            self.started_at = now
            self.running = asyncio.ensure_future(self._run(services))
        # A run that has been going for longer than the bound gets no more waiting.
        left = self.started_at + bound - now
        try:
            if left <= 0:
                raise TimeoutError
            await asyncio.wait_for(asyncio.shield(self.running), left)
        except TimeoutError:
            return "failed: TimeoutError"
        return self.result

    async def _run(self, services: Services) -> None:
        try:
            await self.run(services)
            self.result = "ok"
        except Exception as error:
            self.result = f"failed: {type(error).__name__}"
        finally:
            self.checked_at, self.running = time.monotonic(), None


@dataclass
class Readiness:
    """The checks of one app."""

    checks: dict[str, _Check] = field(
        default_factory=lambda: {name: _Check(run) for name, run in CHECKS.items()}
    )
