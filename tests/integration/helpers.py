"""Polling helpers for tests that wait on a real worker."""

from __future__ import annotations

import time
from typing import Any

import anyio
import httpx

from tests.services import WorkerProcess


async def wait_finished(
    client: httpx.AsyncClient,
    task_id: str,
    *,
    within: float = 60,
    worker: WorkerProcess | None = None,
) -> dict[str, Any]:
    """Poll GET /tasks/{id} until it succeeds or fails; fail with the worker's log."""
    deadline = time.monotonic() + within
    while True:
        body: dict[str, Any] = (await client.get(f"/tasks/{task_id}")).json()
        if body["status"] in ("succeeded", "failed"):
            return body
        if time.monotonic() > deadline:
            log = worker.output()[-3000:] if worker else ""
            raise AssertionError(f"task {task_id} still {body['status']} after {within}s\n{log}")
        await anyio.sleep(0.1)
