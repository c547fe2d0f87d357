"""Direct uploads over HTTP: ``POST /uploads`` → PUT the bytes → ``POST
/tasks/{id}/complete``. Each route parses, calls one function of
``services.direct_uploads`` (which says how the flow works) and renders its answer.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import uuid
from typing import Annotated

import anyio
from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from imagepipe.api.deps import (
    AnyTaskDep,
    QueueDep,
    SessionDep,
    SettingsDep,
    StorageDep,
    TaskDep,
    UploadGateDep,
    refuse_when_queue_full,
)
from imagepipe.api.idempotent import replay_response, reservation_for
from imagepipe.api.receive import display_filename, receive_body
from imagepipe.api.routes.upload import _unlink, probe_header
from imagepipe.api.schemas import ErrorBody, UploadAccepted, status_url
from imagepipe.api.scope import key_scope
from imagepipe.api.webhook_urls import accept_callback_url
from imagepipe.config import Settings
from imagepipe.db.models import TaskStatus
from imagepipe.errors import FileTooLarge, UnprocessableRequest
from imagepipe.services import direct_uploads
from imagepipe.services.idempotency import Replayed, Reservation, fingerprint
from imagepipe.services.representation import iso_z
from imagepipe.storage import Storage

log = logging.getLogger(__name__)
router = APIRouter()
# The PUT carries its own credential (the token), like a presigned S3 URL: it is
# mounted without the API-key dependency.
token_router = APIRouter()

MAX_CONTENT_TYPE = 100


class UploadTarget(BaseModel):
    method: str
    url: str
    headers: dict[str, str]
    expires_at: str


class UploadCreated(BaseModel):
    task_id: uuid.UUID
    status: TaskStatus
    upload: UploadTarget
    complete_url: str


def _errors(table: dict[int, str]) -> dict[int | str, dict[str, object]]:
    return {code: {"model": ErrorBody, "description": text} for code, text in table.items()}


def _parse(body: bytes, max_bytes: int) -> direct_uploads.Asked:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise UnprocessableRequest("The body must be a JSON object.") from None
    if not isinstance(data, dict):
        raise UnprocessableRequest("The body must be a JSON object.")
    filename, size, content_type, callback_url = (
        data.get("filename"),
        data.get("size_bytes"),
        data.get("content_type"),
        data.get("callback_url"),
    )
    if not isinstance(filename, str) or not filename.strip():
        raise UnprocessableRequest("'filename' must be a non-empty string.")
    # bool is an int in Python; true is not a size.
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise UnprocessableRequest("'size_bytes' must be a positive integer.")
    if (
        not isinstance(content_type, str)
        or not content_type.strip()
        or len(content_type) > MAX_CONTENT_TYPE
        or not content_type.isascii()
    ):
        raise UnprocessableRequest("'content_type' must be a media type such as image/jpeg.")
    if callback_url is not None and not isinstance(callback_url, str):
        raise UnprocessableRequest("'callback_url' must be a string.")
    if size > max_bytes:
        raise FileTooLarge(f"The file is larger than the limit of {max_bytes} bytes.")
    return direct_uploads.Asked(
        display_filename(filename), size, content_type.strip(), callback_url
    )


@router.post(
    "/uploads",
    status_code=201,
    response_model=UploadCreated,
    responses=_errors(
        {
            400: "a malformed Idempotency-Key (`invalid_request`)",
            409: "the Idempotency-Key's first request is still running",
            413: "size_bytes over the byte limit (`file_too_large`)",
            422: "a missing or malformed field (`invalid_request`), "
            "the Idempotency-Key used with another body (`idempotency_key_reused`)",
            503: "database or storage unreachable (`service_unavailable`), render queue "
            "over IMAGEPIPE_MAX_QUEUE_DEPTH (`queue_full`); with Retry-After",
        }
    ),
    summary="Start a direct upload: the bytes go to storage, not through the API",
    dependencies=[Depends(refuse_when_queue_full)],
)
async def create_upload(
    request: Request, settings: SettingsDep, session: SessionDep, storage: StorageDep
) -> UploadCreated | Response:
    reservation = reservation_for(request, settings)
    try:
        return await _create(request, settings, session, storage, reservation)
    except Replayed as replayed:
        return replay_response(replayed.replay, None)
    except BaseException:
        if reservation is not None:
            with anyio.CancelScope(shield=True):
                await reservation.release()  # nothing was created: the key may be retried
        raise


async def _create(
    request: Request,
    settings: Settings,
    session: AsyncSession,
    storage: Storage,
    reservation: Reservation | None,
) -> UploadCreated:
    asked = _parse(await request.body(), settings.max_upload_bytes)
    callback_url = await accept_callback_url(
        asked.callback_url, settings, session, key_scope(request)
    )
    asked = dataclasses.replace(asked, callback_url=callback_url)
    if reservation is not None:
        same_request = fingerprint(
            "POST /uploads", asked.filename, asked.size_bytes, asked.content_type, callback_url
        )
        if replay := await reservation.reserve(same_request):
            raise Replayed(replay)

    def own_url(task_id: uuid.UUID, token: str) -> str:
        put = request.url_for("put_original", task_id=str(task_id))
        return str(put.include_query_params(token=token))

    created = await direct_uploads.create(
        session,
        storage,
        settings,
        asked,
        owner_scope=key_scope(request),
        own_url=own_url,
        reservation=reservation,
        answer=lambda created: _rendered(created).model_dump_json(),
    )
    return _rendered(created)


def _rendered(created: direct_uploads.Created) -> UploadCreated:
    target = UploadTarget(
        method=created.method,
        url=created.url,
        headers=created.headers,
        expires_at=iso_z(created.expires_at),
    )
    return UploadCreated(
        task_id=created.task_id,
        status=TaskStatus.awaiting_upload,
        upload=target,
        complete_url=f"{status_url(created.task_id)}/complete",
    )


@token_router.put(
    "/tasks/{task_id}/original",
    name="put_original",
    status_code=204,
    responses=_errors(
        {
            403: "wrong token (`invalid_upload_token`), expired (`upload_expired`)",
            404: "`task_not_found`",
            409: "completed, refused or expired: no more bytes (`upload_closed`)",
            413: "longer than declared (`file_too_large`)",
        }
    ),
    summary="The upload URL of a direct upload on file:// storage",
)
async def put_original(
    task: AnyTaskDep,
    token: Annotated[str, Query(max_length=128)],
    request: Request,
    storage: StorageDep,
    gate: UploadGateDep,
) -> Response:
    direct_uploads.check_put(task, token)
    async with gate.admit(request, task.original_size_bytes):
        temp = await to_thread.run_sync(storage.local_temp)
        try:
            # Not one byte more than declared, like the presigned S3 PUT.
            await receive_body(request, temp, task.original_size_bytes, gate.deadlines)
            await direct_uploads.stage(storage, task, temp)
        finally:
            with anyio.CancelScope(shield=True):
                await to_thread.run_sync(_unlink, temp)
    return Response(status_code=204)


@router.post(
    "/tasks/{task_id}/complete",
    status_code=202,
    response_model=UploadAccepted,
    responses=_errors(
        {
            404: "`task_not_found` (also when the task is deleted while completing)",
            409: "nothing (or too little) uploaded (`upload_incomplete`), `upload_expired` "
            "(also when the expiry wins a race with this request), or the code of an "
            "earlier refusal",
            413: "longer than declared or the limit (`file_too_large`)",
            415: "not an allowed image format (`unsupported_media_type`)",
            422: "too many pixels (`image_too_large`) or unreadable (`invalid_image`)",
            503: "database, storage or broker unreachable (`service_unavailable`)",
        }
    ),
    summary="Finish a direct upload: check the stored original, then queue it",
)
async def complete_upload(
    task: TaskDep,
    response: Response,
    settings: SettingsDep,
    session: SessionDep,
    storage: StorageDep,
    queue: QueueDep,
) -> UploadAccepted:
    probe = functools.partial(probe_header, settings)
    await direct_uploads.complete(task, settings, session, storage, queue, probe)
    return _accepted(task.id, response)


def _accepted(task_id: uuid.UUID, response: Response) -> UploadAccepted:
    response.headers["Location"] = status_url(task_id)
    return UploadAccepted(task_id=task_id, status=TaskStatus.queued, status_url=status_url(task_id))
