"""Bounded waiting: every wait has a deadline and fails with the logs that explain it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import httpx

T = TypeVar("T")

FINISHED = ("succeeded", "failed")


class Deadline:
    """``within`` seconds to see ``what`` happen; ``expire()`` fails with the logs."""

    def __init__(self, within: float, what: str, logs: Callable[[], str]) -> None:
        self.within = within
        self.what = what
        self.logs = logs
        self.end = time.monotonic() + within

    def expire(self) -> None:
        if time.monotonic() > self.end:
            raise AssertionError(
                f"timed out after {self.within}s waiting for {self.what}\n{self.logs()[-4000:]}"
            )


def wait_until(
    check: Callable[[], T | None],
    *,
    within: float,
    what: str,
    logs: Callable[[], str] = lambda: "",
    every: float = 0.1,
) -> T:
    """Call ``check`` until it returns something truthy; fail after ``within`` seconds."""
    deadline = Deadline(within, what, logs)
    while True:
        value = check()
        if value:
            return value
        deadline.expire()
        time.sleep(every)


def finished(body: dict[str, Any]) -> dict[str, Any] | None:
    """A GET /tasks/{id} body once the task has succeeded or failed, else None."""
    return body if body["status"] in FINISHED else None


async def wait_finished(
    client: httpx.AsyncClient,
    task_id: str,
    *,
    within: float = 60,
    logs: Callable[[], str] = lambda: "",
) -> dict[str, Any]:
    """Poll GET /tasks/{id} until the task succeeds or fails; its final body."""
    return await wait_for_task(
        client, task_id, finished, within=within, what=f"task {task_id} to finish", logs=logs
    )


async def wait_complete(
    client: httpx.AsyncClient,
    task_id: str,
    *,
    formats: tuple[str, ...] = ("image/webp",),
    within: float = 60,
    logs: Callable[[], str] = lambda: "",
) -> dict[str, Any]:
    """``wait_finished``, then (if it succeeded) until every variant also lists
    ``formats``: the extra formats, made after the task succeeded."""

    def complete(body: dict[str, Any]) -> dict[str, Any] | None:
        if body["status"] == "failed":
            return body
        if body["status"] != "succeeded":
            return None
        variants = body["variants"].values()
        return body if all(set(formats) <= set(v["formats"]) for v in variants) else None

    return await wait_for_task(
        client, task_id, complete, within=within, what=f"task {task_id} in every format", logs=logs
    )


async def wait_for_task(
    client: httpx.AsyncClient,
    task_id: str,
    check: Callable[[dict[str, Any]], dict[str, Any] | None],
    *,
    within: float = 60,
    what: str,
    logs: Callable[[], str] = lambda: "",
) -> dict[str, Any]:
    """Poll GET /tasks/{id} until ``check`` returns the body; that body."""
    deadline = Deadline(within, what, logs)
    while True:
        body = check((await client.get(f"/tasks/{task_id}")).json())
        if body:
            return body
        deadline.expire()
        await anyio.sleep(0.1)


def wait_finished_sync(
    client: httpx.Client,
    task_id: str,
    *,
    within: float = 60,
    logs: Callable[[], str] = lambda: "",
) -> dict[str, Any]:
    """``wait_finished`` for a blocking client (a server in another process)."""
    return wait_until(
        lambda: finished(client.get(f"/tasks/{task_id}").json()),
        within=within,
        what=f"task {task_id} to finish",
        logs=logs,
    )
