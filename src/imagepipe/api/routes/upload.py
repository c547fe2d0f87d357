"""POST /upload: store the original, commit the task row, enqueue, answer 202.

Nothing is decoded beyond the header. Every failure removes what it wrote: the temp
file, the original, the row.
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
from imagepipe.db.models import Task, TaskStatus
from imagepipe.errors import ImagepipeError, ServiceUnavailable
from imagepipe.imaging import ImageInfo, probe
from imagepipe.imaging.limits import probe_limiter
from imagepipe.metrics import UPLOAD_BYTES, UPLOADS_REJECTED
from imagepipe.queue import TaskQueue
from imagepipe.services import fairness, lifecycle, tidy
from imagepipe.services.idempotency import Replayed, Reservation, fingerprint
from imagepipe.services.transient import MAYBE_TRANSIENT, is_transient
from imagepipe.storage import Storage, StorageError, keys

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
    return UploadAccepted(
        task_id=accepted.task_id, status=TaskStatus.queued, status_url=status_url(accepted.task_id)
    )


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
    task_id = uuid.uuid4()
    key = keys.original(task_id)
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
        # Outside the probe pool: a slow storage must not hold a header-probe slot.
        put = functools.partial(storage.put_file, key, temp, content_type=info.content_type)
        await to_thread.run_sync(put)
    except StorageError as error:
        log.warning("storage unavailable during upload: %r", error)
        with anyio.CancelScope(shield=True):
            await to_thread.run_sync(_unlink, temp)
        raise ServiceUnavailable("The storage is unavailable; try again shortly.") from None
    except BaseException:
        # Shielded: a client that disconnects cancels the request, not the cleanup.
        with anyio.CancelScope(shield=True):
            await to_thread.run_sync(_unlink, temp)
        raise
    # put_file may have moved the temp file away; if it copied, the copy is stored.
    await to_thread.run_sync(_unlink, temp)

    task = Task(
        id=task_id,
        filename=received.filename,
        original_key=key,
        original_format=info.format,
        original_width=info.width,
        original_height=info.height,
        original_frames=info.frames,
        original_size_bytes=received.size_bytes,
        original_sha256=received.sha256,
        owner_scope=key_scope(request),
        callback_url=callback_url,
    )
    try:
        await session.run_sync(lifecycle.create, task)
        counted = getattr(request.state, ACTIVE_TASKS_STATE, None)
        if counted is None:
            priority = await session.run_sync(fairness.priority, task.owner_scope)
        else:  # the quota's count, made before this task existed: no second query
            priority = fairness.level(counted)
        if reservation is not None:
            answer = UploadAccepted(
                task_id=task_id, status=TaskStatus.queued, status_url=status_url(task_id)
            )
            await reservation.record(
                session, task_id=task_id, status_code=202, body=answer.model_dump_json()
            )
        await session.commit()
        if reservation is not None:
            reservation.committed()
    except BaseException as error:
        with anyio.CancelScope(shield=True):
            await tidy.delete_quietly(storage, key)
        if not is_transient(error):
            raise
        log.warning("database unavailable during upload: %r", error)
        raise ServiceUnavailable("The database is unavailable; try again shortly.") from None

    try:
        await to_thread.run_sync(queue.enqueue, task_id, priority)
    except Exception as error:
        # Policy: the client retries on 503, so leave nothing behind (see
        # docs/reliability.md). If even this cleanup fails, the row stays queued and
        # the reconciler delivers it later.
        with anyio.CancelScope(shield=True):
            await _forget(session, storage, task_id, key)
        if not is_transient(error):
            raise
        log.warning("broker unavailable during upload: %r", error, extra=_ids(task_id))
        raise ServiceUnavailable("The task queue is unavailable; try again shortly.") from None

    log.info("upload accepted", extra={"task_id": str(task_id), "bytes": received.size_bytes})
    return _Accepted(task_id=task_id, size_bytes=received.size_bytes)


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


def _ids(task_id: uuid.UUID) -> dict[str, str]:
    return {"task_id": str(task_id)}


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


async def _forget(session: AsyncSession, storage: Storage, task_id: uuid.UUID, key: str) -> None:
    try:
        await session.run_sync(lifecycle.forget, task_id)
        await session.commit()
    except MAYBE_TRANSIENT as error:
        log.error("could not remove task after a failed publish: %r", error, extra=_ids(task_id))
        return
    await tidy.delete_quietly(storage, key)
