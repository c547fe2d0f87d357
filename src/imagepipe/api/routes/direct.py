"""Direct uploads: ``POST /uploads`` → PUT the bytes → ``POST /tasks/{id}/complete``.

On ``s3://`` storage the client PUTs to a presigned URL that pins the length, and the
upload bytes never reach the API. On ``file://`` storage the URL is the API's own
``PUT /tasks/{id}/original?token=…``, so the flow is the same everywhere.

Completing checks the stored object as ``POST /upload`` checks a body (size, then the
header probe, read by byte ranges: the API never downloads the object); a refused
object is deleted and the task failed. The original's sha256 is taken by the worker,
which reads the whole object anyway.

A presigned PUT cannot be revoked before it expires, so no upload URL names the
original's key: both kinds write to a staging key (``keys.staging``). Completing moves
the object to the original's key (a server-side copy then a delete on S3, a rename on
file://) before probing it there, and records its version tag, which the worker checks:
the URL, used again after completion, cannot change what was checked or what is
rendered. What it writes after that is removed by the reconciler's staging sweep.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

import anyio
from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy import select
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
from imagepipe.api.errors import unavailable_as_503
from imagepipe.api.idempotent import replay_response, reservation_for
from imagepipe.api.receive import display_filename, receive_body
from imagepipe.api.routes.upload import _unlink, delete_quietly, probe_header
from imagepipe.api.schemas import ErrorBody, UploadAccepted, status_url
from imagepipe.api.scope import key_scope
from imagepipe.api.webhook_urls import accept_callback_url
from imagepipe.config import Settings
from imagepipe.db.models import Task, TaskStatus, live, utcnow
from imagepipe.errors import (
    FileTooLarge,
    ImagepipeError,
    ServiceUnavailable,
    TaskNotFound,
    UnprocessableRequest,
    UploadClosed,
    UploadExpired,
    UploadForbidden,
    UploadIncomplete,
    UploadNotOpen,
)
from imagepipe.imaging import ImageInfo
from imagepipe.services import fairness, lifecycle
from imagepipe.services.idempotency import Replayed, Reservation, fingerprint
from imagepipe.storage import ObjectInfo, ObjectNotFound, Storage, StorageError, keys
from imagepipe.storage.ranged import open_ranged

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


def _iso_z(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(tzinfo=None, microsecond=0).isoformat() + "Z"


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; every stored time is UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class _Request:
    filename: str
    size_bytes: int
    content_type: str
    callback_url: str | None


def _parse(body: bytes, max_bytes: int) -> _Request:
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
    return _Request(display_filename(filename), size, content_type.strip(), callback_url)


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
    filename, size, content_type = asked.filename, asked.size_bytes, asked.content_type
    callback_url = await accept_callback_url(
        asked.callback_url, settings, session, key_scope(request)
    )
    if reservation is not None:
        same_request = fingerprint("POST /uploads", filename, size, content_type, callback_url)
        if replay := await reservation.reserve(same_request):
            raise Replayed(replay)
    task_id = uuid.uuid4()
    key = keys.original(task_id)
    now = utcnow()
    expires_at = now + timedelta(seconds=settings.direct_upload_ttl_seconds)
    presign = functools.partial(
        storage.presign_put,
        keys.staging(task_id),
        content_type=content_type,
        content_length=size,
        expires_seconds=settings.direct_upload_ttl_seconds,
    )
    try:
        presigned = await to_thread.run_sync(presign)
    except StorageError as error:
        log.warning("storage unavailable while presigning: %r", error)
        raise ServiceUnavailable("The storage is unavailable; try again shortly.") from None
    token_digest = None
    if presigned is None:
        # No presigned PUT on this backend: the API's own PUT, behind a token that is
        # bound to this task and expires with it. Only its digest is kept on the task
        # (with an Idempotency-Key, the first answer, URL included, is kept for replays
        # until the key expires).
        token = secrets.token_urlsafe(32)
        token_digest = _token_digest(token)
        url = str(
            request.url_for("put_original", task_id=str(task_id)).include_query_params(token=token)
        )
        method, headers = "PUT", {"Content-Type": content_type}
    else:
        url, method, headers = presigned.url, presigned.method, dict(presigned.headers)
        headers.setdefault("Content-Type", content_type)
    # The header facts stay empty until the upload completes and the probe fills them.
    task = Task(
        id=task_id,
        filename=filename,
        original_key=key,
        original_format="",
        original_width=0,
        original_height=0,
        original_frames=1,
        original_size_bytes=size,
        original_sha256="",
        upload_token_sha256=token_digest,
        upload_expires_at=expires_at,
        # Whose task it is: its webhook subscriptions hear of it, as for POST /upload.
        owner_scope=key_scope(request),
        callback_url=callback_url,
    )
    answer = UploadCreated(
        task_id=task_id,
        status=TaskStatus.awaiting_upload,
        upload=UploadTarget(method=method, url=url, headers=headers, expires_at=_iso_z(expires_at)),
        complete_url=f"{status_url(task_id)}/complete",
    )
    with unavailable_as_503("database"):
        await session.run_sync(lifecycle.create, task, awaiting_upload=True)
        if reservation is not None:
            # In the task's transaction: "created" and "answer remembered" agree.
            await reservation.record(
                session, task_id=task_id, status_code=201, body=answer.model_dump_json()
            )
        await session.commit()
        if reservation is not None:
            reservation.committed()
    log.info("direct upload created", extra={"task_id": str(task_id), "bytes": size})
    return answer


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
    stored = task.upload_token_sha256
    # Constant-time compare of digests; a task made with a presigned URL has no digest
    # and matches nothing.
    if stored is None or not hmac.compare_digest(_token_digest(token), stored):
        raise UploadForbidden()
    if task.status != TaskStatus.awaiting_upload:
        raise UploadNotOpen()
    if task.upload_expires_at is None or _aware(task.upload_expires_at) <= utcnow():
        raise UploadExpired()
    async with gate.admit(request, task.original_size_bytes):
        temp = await to_thread.run_sync(storage.local_temp)
        try:
            # Like the presigned S3 PUT: not one byte more than declared, and to the
            # staging key, never the original's. The task may be completed (or deleted)
            # while the body arrives: what this writes then is the sweep's to remove.
            await receive_body(request, temp, task.original_size_bytes, gate.deadlines)
            put = functools.partial(storage.put_file, keys.staging(task.id), temp)
            await to_thread.run_sync(put)
        except StorageError as error:
            log.warning("storage unavailable during a direct upload: %r", error)
            raise ServiceUnavailable("The storage is unavailable; try again shortly.") from None
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
    if task.status == TaskStatus.awaiting_upload:
        if not await _complete(task, settings, session, storage):
            return await _as_it_is_now(session, storage, task, response)
    elif task.status == TaskStatus.failed and task.enqueued_at is None:
        # Refused at completion (or expired) before: the same answer again.
        raise UploadClosed(task.error_code or "upload_incomplete", task.error_message or "")
    else:
        # Completed before: the same answer. Not published again: if the first
        # publish was lost, the reconciler publishes the queued row.
        return _accepted(task.id, response)
    try:
        priority = await session.run_sync(fairness.priority, task.owner_scope)
        await to_thread.run_sync(queue.enqueue, task.id, priority)
    except Exception as error:
        # The row is queued with enqueued_at set: the reconciler publishes it after
        # its grace period, and completing again answers 202.
        log.warning("broker unavailable on completion: %s", error, extra={"task_id": str(task.id)})
        raise ServiceUnavailable("The task queue is unavailable; try again shortly.") from None
    return _accepted(task.id, response)


def _accepted(task_id: uuid.UUID, response: Response) -> UploadAccepted:
    response.headers["Location"] = status_url(task_id)
    return UploadAccepted(task_id=task_id, status=TaskStatus.queued, status_url=status_url(task_id))


async def _as_it_is_now(
    session: AsyncSession, storage: Storage, task: Task, response: Response
) -> UploadAccepted:
    """Our compare-and-swap matched nothing: another request moved the task after we
    read it. Answer what that did: completed it (202, published by that request),
    expired or refused it (409 with its code), deleted it (404). In the last two the
    object this request moved belongs to nothing: it goes (the expiry or the delete
    may have removed the original's key before the move filled it)."""
    task_id, key = task.id, task.original_key
    with unavailable_as_503("database"):
        now = await session.scalar(
            select(Task).where(Task.id == task_id, live()).execution_options(populate_existing=True)
        )
    if now is None:
        await _discard(storage, task_id, key)
        raise TaskNotFound()
    if now.status == TaskStatus.failed and now.enqueued_at is None:
        await _discard(storage, task_id, key)
        raise UploadClosed(now.error_code or "upload_incomplete", now.error_message or "")
    return _accepted(task_id, response)


async def _complete(
    task: Task, settings: Settings, session: AsyncSession, storage: Storage
) -> bool:
    """Check the stored object and move the task to queued (True), or fail it and
    delete the object (raises). False: another request moved the task first."""
    task_id, key, declared = task.id, task.original_key, task.original_size_bytes
    if task.upload_expires_at is not None and _aware(task.upload_expires_at) <= utcnow():
        return await _refuse(session, storage, task, UploadExpired())
    try:
        info = await to_thread.run_sync(_take_upload, storage, task)
    except ObjectNotFound:
        raise UploadIncomplete() from None
    except StorageError as error:
        log.warning("storage unavailable on completion: %r", error)
        raise ServiceUnavailable("The storage is unavailable; try again shortly.") from None
    if info.size > declared or info.size > settings.max_upload_bytes:
        limit = min(declared, settings.max_upload_bytes)
        return await _refuse(
            session,
            storage,
            task,
            FileTooLarge(f"The stored original is larger than the {limit} bytes allowed."),
        )
    if info.size < declared:
        # Cut short: the client may PUT again until the upload expires.
        raise UploadIncomplete(
            f"The stored original has {info.size} of the {declared} bytes declared."
        )
    # The header only, read by ranges (probe_header runs in a thread): the upload's
    # bytes stay off the API. Its sha256 is taken by the worker, which reads it all,
    # and reads the version checked here (info.etag) or fails the task.
    handle = open_ranged(storage, key, info.size)
    try:
        image = await probe_header(settings, handle)
    except ImagepipeError as error:
        if handle.failure is not None:  # the storage failed mid-probe, not the image
            log.warning("storage unavailable on completion: %r", handle.failure)
            raise ServiceUnavailable("The storage is unavailable; try again shortly.") from None
        return await _refuse(session, storage, task, error)
    except StorageError as error:
        log.warning("storage unavailable on completion: %r", error)
        raise ServiceUnavailable("The storage is unavailable; try again shortly.") from None
    if not await _queue(session, task, image, info):
        return False
    log.info("direct upload completed", extra={"task_id": str(task_id), "bytes": info.size})
    return True


def _take_upload(storage: Storage, task: Task) -> ObjectInfo:
    """The uploaded object at the original's key (which no URL names), moved there from
    the staging key (where the URL writes) if it is not there yet; its info.

    Once an object of the declared size is at the original's key it stays: a retried
    or concurrent completion checks that one, whatever the URL staged since (the sweep
    removes it). A staged object of another size stays staged and is judged where it is
    (the client may PUT again; a longer one is refused). Besides a completion that went
    no further (the probe's storage failed), the original's key holds what a release
    whose URL named that key stored. Nothing at either key: ObjectNotFound."""
    declared = task.original_size_bytes
    try:
        placed = storage.stat(task.original_key)
        if placed.size == declared:
            return placed
    except ObjectNotFound:
        pass
    staged_key = keys.staging(task.id)
    try:
        staged = storage.stat(staged_key)
        if staged.size != declared:
            return staged
        # Blocking (a server-side copy and a delete on S3, a rename on file://).
        return storage.move(staged_key, task.original_key)
    except ObjectNotFound:
        # Nothing staged (or moved meanwhile by another completion): what is there.
        return storage.stat(task.original_key)


async def _queue(session: AsyncSession, task: Task, image: ImageInfo, info: ObjectInfo) -> bool:
    """awaiting_upload → queued; False if another request moved the row first."""
    with unavailable_as_503("database"):
        moved = await session.run_sync(
            lifecycle.complete_upload, task.id, image, info.size, info.etag
        )
        await session.commit()
    return moved


async def _refuse(
    session: AsyncSession, storage: Storage, task: Task, error: ImagepipeError
) -> bool:
    """Fail the task with ``error``'s code, delete the object, raise ``error``; False
    (nothing done) if another request moved the task first.

    A failure like any other: the ``task.failed`` deliveries are written in the same
    transaction, and followers and the broker are told after the commit."""
    with anyio.CancelScope(shield=True):
        with unavailable_as_503("database"):
            deliveries = await session.run_sync(lifecycle.refuse_upload, task.id, error)
            await session.commit()
        if deliveries is None:
            return False
        await to_thread.run_sync(lifecycle.announce, task.id, deliveries)
        # After the commit: the row says failed before the object goes.
        await _discard(storage, task.id, task.original_key)
    if isinstance(error, UploadExpired):
        # The URL is gone; completing is a conflict, not a forbidden request.
        raise UploadClosed(error.code, error.message)
    raise error


async def _discard(storage: Storage, task_id: uuid.UUID, key: str) -> None:
    """Remove what a closed upload left at either key (after the commit that closed it)."""
    await delete_quietly(storage, keys.staging(task_id))
    await delete_quietly(storage, key)
