"""Dependencies as ``Annotated`` aliases; tests override the functions behind them.

All are ``async def`` even when they do not await: FastAPI runs a plain ``def``
dependency in the thread pool, a thread hop per request for nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from imagepipe.api.admission import UploadGate
from imagepipe.api.scope import ANONYMOUS, Caller, caller_of
from imagepipe.api.state import app_state
from imagepipe.config import Settings
from imagepipe.db.models import Task
from imagepipe.errors import TaskNotFound, Unauthorized
from imagepipe.queue import TaskQueue
from imagepipe.services import tasks
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
    """The tenant of a route that needs a key. ``imagepipe.api.access`` has checked the
    key before the body was read (a wrong one never gets here) and left the caller in
    the scope; the bearer scheme is declared here for OpenAPI only."""
    caller = caller_of(request.scope)
    if caller is not None:
        return caller
    # Not authenticated by the access layer (an app assembled without it): only a
    # service without keys lets such a request through.
    if settings.keys_required:
        raise Unauthorized()
    return Caller(owner=ANONYMOUS, sees_all=True)


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
    task = await tasks.find_live(session, _parse_id(task_id))
    if task is None or not caller.may_see(task):
        raise TaskNotFound()
    return task


async def load_task_by_token_route(task_id: str, session: SessionDep) -> Task:
    """The task named in the path, for a route authenticated by something else than an
    API key (the upload token of a direct upload)."""
    task = await tasks.find_live(session, _parse_id(task_id))
    if task is None:
        raise TaskNotFound()
    return task


TaskDep = Annotated[Task, Depends(load_task)]
AnyTaskDep = Annotated[Task, Depends(load_task_by_token_route)]
