"""Dependencies as ``Annotated`` aliases; tests override the functions behind them.

All are ``async def`` even when they do not await: FastAPI runs a plain ``def``
dependency in the thread pool, a thread hop per request for nothing."""

from __future__ import annotations

import hmac
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from imagepipe.api.admission import UploadGate
from imagepipe.api.scope import Caller, key_digest, key_scope
from imagepipe.api.state import app_state
from imagepipe.config import Settings
from imagepipe.db.models import Task, live
from imagepipe.errors import TaskNotFound, Unauthorized
from imagepipe.queue import TaskQueue
from imagepipe.storage import Storage


async def get_settings(request: Request) -> Settings:
    return app_state(request.app).settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with app_state(request.app).services.sessions() as session:
        yield session


async def get_storage(request: Request) -> Storage:
    return app_state(request.app).services.storage


async def get_upload_gate(request: Request) -> UploadGate:
    return app_state(request.app).services.uploads


async def refuse_when_queue_full(request: Request) -> None:
    """A route dependency of the routes that create tasks: 503 ``queue_full`` before a
    byte of the body is read."""
    await app_state(request.app).services.queue_depth.check()


async def get_queue(request: Request) -> TaskQueue:
    return app_state(request.app).services.queue


SettingsDep = Annotated[Settings, Depends(get_settings)]
# scope="function": the session (and its pooled connection) is closed when the handler
# returns, not after the response body is sent — a slow preview download must not hold
# a database connection, mid-transaction, for its whole transfer.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
StorageDep = Annotated[Storage, Depends(get_storage)]
QueueDep = Annotated[TaskQueue, Depends(get_queue)]
UploadGateDep = Annotated[UploadGate, Depends(get_upload_gate)]


# Declares the scheme in OpenAPI, so Swagger UI's "Authorize" button can send a key.
_bearer = HTTPBearer(
    auto_error=False, description="One of IMAGEPIPE_API_KEYS or IMAGEPIPE_ADMIN_API_KEYS, if set."
)


async def require_api_key(
    request: Request,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """When API keys are set, every route that uses this needs a Bearer key; the key
    decides which tasks the request sees (its own, or all for an admin key)."""
    if not settings.keys_required:
        # An open service: every caller sees every task. The owner still scopes
        # idempotency keys and webhooks, as a bearer token (if any) names it.
        return Caller(owner=key_scope(request), sees_all=True)
    supplied = credentials.credentials.strip().encode() if credentials else b""
    if not supplied:
        raise Unauthorized()
    # Compare against every key in constant time: no early exit leaks which matched.
    regular = [hmac.compare_digest(supplied, key.encode()) for key in settings.api_keys]
    admin = [hmac.compare_digest(supplied, key.encode()) for key in settings.admin_api_keys]
    if not any(regular) and not any(admin):
        raise Unauthorized()
    return Caller(owner=key_digest(supplied.decode()), sees_all=any(admin))


# Cached per request: the router-level dependency and every route's use are one call.
CallerDep = Annotated[Caller, Depends(require_api_key)]


def _parse_id(task_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(task_id)
    except ValueError:
        raise TaskNotFound() from None


async def load_task(task_id: str, session: SessionDep, caller: CallerDep) -> Task:
    """The task named in the path if the caller may see it, or 404 — a malformed id, or
    another key's task, is simply not found."""
    task = await session.scalar(select(Task).where(Task.id == _parse_id(task_id), live()))
    if task is None or not caller.may_see(task):
        raise TaskNotFound()
    return task


async def load_task_by_token_route(task_id: str, session: SessionDep) -> Task:
    """The task named in the path, for a route authenticated by something else than an
    API key (the upload token of a direct upload)."""
    task = await session.scalar(select(Task).where(Task.id == _parse_id(task_id), live()))
    if task is None:
        raise TaskNotFound()
    return task


TaskDep = Annotated[Task, Depends(load_task)]
AnyTaskDep = Annotated[Task, Depends(load_task_by_token_route)]
