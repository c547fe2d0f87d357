"""POST /upload: receive the body into a temp file, probe its header, hand it to
``services.uploads`` (store, commit, publish) and answer 202.

Nothing is decoded beyond the header. Every failure removes what it wrote: the temp
file here, the original and the row in the service.
"""

from __future__ import annotations

import functools
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import anyio
from anyio import to_thread
from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from imagepipe.api.admission import UploadGate
from imagepipe.api.deps import (
    QueueDep,
    SessionDep,
    SettingsDep,
    StorageDep,
    UploadGateDep,
    refuse_when_queue_full,
)
from imagepipe.api.idempotent import replay_response, reservation_for
from imagepipe.api.receive import receive_file
from imagepipe.api.route_limits import ACTIVE_TASKS_STATE
from imagepipe.api.schemas import ErrorBody, UploadAccepted, status_url
from imagepipe.api.scope import key_scope
from imagepipe.api.webhook_urls import accept_callback_url
from imagepipe.config import Settings
from imagepipe.db.models import TaskStatus
from imagepipe.errors import ImagepipeError
from imagepipe.imaging import ImageInfo, probe
from imagepipe.imaging.limits import probe_limiter
from imagepipe.metrics import UPLOAD_BYTES, UPLOADS_REJECTED
from imagepipe.queue import TaskQueue
from imagepipe.services import uploads
from imagepipe.services.idempotency import Replayed, Reservation, fingerprint
from imagepipe.storage import Storage

log = logging.getLogger(__name__)
router = APIRouter()

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}
_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {
        400: "no `file` part / not multipart (`invalid_request`)",
        413: "over the byte limit (`file_too_large`)",
        415: "not an allowed image format (`unsupported_media_type`)",
        408: "the body stalled or took too long (`upload_timeout`)",
        422: "too many pixels (`image_too_large`) or unreadable header (`invalid_image`)",
        503: "database or broker unreachable (`service_unavailable`), too many uploads at "
        "once (`too_many_uploads`), low on disk (`insufficient_storage`), render queue "
        "over IMAGEPIPE_MAX_QUEUE_DEPTH (`queue_full`); with Retry-After",
    }.items()
}


@router.post(
    "/upload",
    status_code=202,
    response_model=UploadAccepted,
    responses=_ERRORS,
    openapi_extra=_UPLOAD_BODY,
    summary="Upload an image; previews are made in the background",
    dependencies=[Depends(refuse_when_queue_full)],
)
async def upload(
    request: Request,
    response: Response,
    settings: SettingsDep,
    session: SessionDep,
    storage: StorageDep,
    queue: QueueDep,
    gate: UploadGateDep,
) -> UploadAccepted | Response:
    reservation = reservation_for(request, settings)
    try:
        async with gate.admit(request):
            accepted = await _accept(request, settings, session, storage, queue, gate, reservation)
    except Replayed as replayed:
        task_id = replayed.replay.task_id
        return replay_response(replayed.replay, status_url(task_id) if task_id else None)
    except BaseException as error:
        if reservation is not None:
            with anyio.CancelScope(shield=True):
                await reservation.release()  # nothing was created: the key may be retried
        if isinstance(error, ImagepipeError):
            UPLOADS_REJECTED.labels(error.code).inc()
        raise
    UPLOAD_BYTES.inc(accepted.size_bytes)
    response.headers["Location"] = status_url(accepted.task_id)
    return _answer(accepted.task_id)


@dataclass(frozen=True)
class _Accepted:
    task_id: uuid.UUID
    size_bytes: int


async def _accept(
    request: Request,
    settings: Settings,
    session: AsyncSession,
    storage: Storage,
    queue: TaskQueue,
    gate: UploadGate,
    reservation: Reservation | None = None,
) -> _Accepted:
    # Received into a local temp file first: the header probe seeks, and the storage
    # gets a complete, checked file (a rename on local storage, one PUT on S3).
    temp = await to_thread.run_sync(storage.local_temp)
    try:
        received = await receive_file(request, temp, settings.max_upload_bytes, gate.deadlines)
        callback_url = await accept_callback_url(
            received.fields.get("callback_url"), settings, session, key_scope(request)
        )
        if reservation is not None:
            same_request = fingerprint(
                "POST /upload", received.sha256, received.filename, callback_url
            )
            if replay := await reservation.reserve(same_request):
                raise Replayed(replay)
        # Header only; the original is stored only if it passes.
        info = await probe_header(settings, temp)
        original = uploads.Original(
            temp, received.filename, received.size_bytes, received.sha256, info
        )
        task_id = await uploads.accept(
            session,
            storage,
            queue,
            original,
            owner_scope=key_scope(request),
            callback_url=callback_url,
            backlog=getattr(request.state, ACTIVE_TASKS_STATE, None),
            reservation=reservation,
            answer=lambda task_id: _answer(task_id).model_dump_json(),
        )
    finally:
        # Shielded: a client that disconnects cancels the request, not the cleanup.
        # Storing may have moved the file away; if it copied, the copy is stored.
        with anyio.CancelScope(shield=True):
            await to_thread.run_sync(_unlink, temp)
    return _Accepted(task_id=task_id, size_bytes=received.size_bytes)


def _answer(task_id: uuid.UUID) -> UploadAccepted:
    return UploadAccepted(task_id=task_id, status=TaskStatus.queued, status_url=status_url(task_id))


async def probe_header(settings: Settings, source: Path | BinaryIO) -> ImageInfo:
    """The upload-time header probe, under the probe limiter (also for direct uploads)."""
    check = functools.partial(
        probe,
        source,
        allowed_formats=settings.allowed_formats,
        max_pixels=settings.max_pixels,
        max_frames=settings.max_frames,
        max_decoded_bytes=settings.max_decoded_bytes,
        header_cpu_seconds=settings.probe_cpu_seconds,
    )
    return await to_thread.run_sync(check, limiter=probe_limiter(settings.probe_concurrency))


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)
