"""Direct uploads: create one, let its bytes in, complete it.

The route module (``api/routes/direct.py``) parses the request, calls one function
here and renders the answer; everything between is here. On ``s3://`` storage the
client PUTs to a presigned URL that pins the length, and the upload bytes never reach
the API. On ``file://`` storage the URL is the API's own PUT behind a token minted
here, so the flow is the same everywhere.

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
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import anyio
from anyio import to_thread
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from imagepipe.config import Settings
from imagepipe.db.models import Task, TaskStatus, live, utcnow
from imagepipe.errors import (
    FileTooLarge,
    ImagepipeError,
    ServiceUnavailable,
    TaskNotFound,
    UploadClosed,
    UploadExpired,
    UploadForbidden,
    UploadIncomplete,
    UploadNotOpen,
)
from imagepipe.imaging import ImageInfo
from imagepipe.queue import TaskQueue
from imagepipe.services import lifecycle
from imagepipe.services.idempotency import Reservation, commit_with_answer
from imagepipe.services.publishing import Retry, publish
from imagepipe.services.tidy import delete_quietly
from imagepipe.services.transient import unavailable
from imagepipe.storage import ObjectInfo, ObjectNotFound, Storage, StorageError, keys
from imagepipe.storage.ranged import RangedFile, open_ranged

log = logging.getLogger(__name__)

STORAGE_UNAVAILABLE = "The storage is unavailable; try again shortly."

# The header probe of a stored original (the API's, under its probe limiter).
Probe = Callable[[RangedFile], Awaitable[ImageInfo]]


@dataclass(frozen=True)
class Asked:
    """A direct upload as the client declared it (already parsed and checked)."""

    filename: str
    size_bytes: int
    content_type: str
    callback_url: str | None


@dataclass(frozen=True)
class Created:
    """Where and how the client sends the bytes, until ``expires_at``."""

    task_id: uuid.UUID
    method: str
    url: str
    headers: dict[str, str]
    expires_at: datetime


# --- the upload token of file:// storage ----------------------------------------------


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def mint_token() -> tuple[str, str]:
    """A new upload token and its digest (only the digest is kept on the task)."""
    token = secrets.token_urlsafe(32)
    return token, token_digest(token)


def check_put(task: Task, token: str) -> None:
    """The token opens the task's upload URL now, or UploadForbidden, UploadNotOpen,
    UploadExpired."""
    stored = task.upload_token_sha256
    # Constant-time compare of digests; a task made with a presigned URL has no digest
    # and matches nothing.
    if stored is None or not hmac.compare_digest(token_digest(token), stored):
        raise UploadForbidden()
    if task.status != TaskStatus.awaiting_upload:
        raise UploadNotOpen()
    if task.upload_expires_at is None or task.upload_expires_at <= utcnow():
        raise UploadExpired()


async def stage(storage: Storage, task: Task, received: Path) -> None:
    """Store bytes received by the API's PUT at the staging key, never the original's
    (like the presigned S3 PUT). The task may be completed (or deleted) meanwhile: what
    this writes then is the sweep's to remove."""
    try:
        await to_thread.run_sync(storage.put_file, keys.staging(task.id), received)
    except StorageError as error:
        log.warning("storage unavailable during a direct upload: %r", error)
        raise ServiceUnavailable(STORAGE_UNAVAILABLE) from None


# --- creating ---------------------------------------------------------------------------


async def create(
    session: AsyncSession,
    storage: Storage,
    settings: Settings,
    asked: Asked,
    *,
    owner_scope: str,
    own_url: Callable[[uuid.UUID, str], str],
    reservation: Reservation | None,
    answer: Callable[[Created], str],
) -> Created:
    """A task awaiting its upload, and where to send the bytes: a presigned URL, or
    ``own_url(task_id, token)`` (the API's PUT) where the storage cannot presign.
    With a reservation, ``answer(created)`` (the response body) is remembered in the
    task's transaction."""
    task_id = uuid.uuid4()
    expires_at = utcnow() + timedelta(seconds=settings.direct_upload_ttl_seconds)
    presign = functools.partial(
        storage.presign_put,
        keys.staging(task_id),
        content_type=asked.content_type,
        content_length=asked.size_bytes,
        expires_seconds=settings.direct_upload_ttl_seconds,
    )
    try:
        presigned = await to_thread.run_sync(presign)
    except StorageError as error:
        log.warning("storage unavailable while presigning: %r", error)
        raise ServiceUnavailable(STORAGE_UNAVAILABLE) from None
    digest = None
    if presigned is None:
        # No presigned PUT on this backend: the API's own PUT, behind a token that is
        # bound to this task and expires with it. Only its digest is kept on the task
        # (with an Idempotency-Key, the first answer, URL included, is kept for replays
        # until the key expires).
        token, digest = mint_token()
        url, method, headers = own_url(task_id, token), "PUT", {"Content-Type": asked.content_type}
    else:
        url, method, headers = presigned.url, presigned.method, dict(presigned.headers)
        headers.setdefault("Content-Type", asked.content_type)
    # The header facts stay empty until the upload completes and the probe fills them.
    task = Task(
        id=task_id,
        filename=asked.filename,
        original_key=keys.original(task_id),
        original_format="",
        original_width=0,
        original_height=0,
        original_frames=1,
        original_size_bytes=asked.size_bytes,
        original_sha256="",
        upload_token_sha256=digest,
        upload_expires_at=expires_at,
        # Whose task it is: its webhook subscriptions hear of it, as for POST /upload.
        owner_scope=owner_scope,
        callback_url=asked.callback_url,
    )
    created = Created(task_id, method, url, headers, expires_at)
    with unavailable("database"):
        await session.run_sync(lifecycle.create, task, awaiting_upload=True)
        await commit_with_answer(
            session, reservation, task_id=task_id, status_code=201, body=lambda: answer(created)
        )
    log.info("direct upload created", extra={"task_id": str(task_id), "bytes": asked.size_bytes})
    return created


# --- completing -------------------------------------------------------------------------


async def complete(
    task: Task,
    settings: Settings,
    session: AsyncSession,
    storage: Storage,
    queue: TaskQueue,
    probe: Probe,
) -> None:
    """The task is queued when this returns: by this call (the stored object checked,
    the task published), or before it, by another completion. Raises what refused it
    (the task failed and the object deleted), UploadClosed for an upload refused or
    expired before, TaskNotFound if it was deleted meanwhile."""
    if task.status == TaskStatus.awaiting_upload:
        if not await _complete(task, settings, session, storage, probe):
            await _as_it_is_now(session, storage, task)
            return
    elif task.status == TaskStatus.failed and task.enqueued_at is None:
        # Refused at completion (or expired) before: the same answer again.
        raise UploadClosed(task.error_code or "upload_incomplete", task.error_message or "")
    else:
        # Completed before: the same answer. Not published again: if the first
        # publish was lost, the reconciler publishes the queued row.
        return
    # A failed publish keeps the row queued: completing again answers 202.
    await publish(session, storage, queue, task, retry=Retry.COMPLETE)


async def _as_it_is_now(session: AsyncSession, storage: Storage, task: Task) -> None:
    """Our compare-and-swap matched nothing: another request moved the task after we
    read it. Answer what that did: completed it (202, published by that request),
    expired or refused it (409 with its code), deleted it (404). In the last two the
    object this request moved belongs to nothing: it goes (the expiry or the delete
    may have removed the original's key before the move filled it)."""
    task_id, key = task.id, task.original_key
    with unavailable("database"):
        now = await session.scalar(
            select(Task).where(Task.id == task_id, live()).execution_options(populate_existing=True)
        )
    if now is None:
        await _discard(storage, task_id, key)
        raise TaskNotFound()
    if now.status == TaskStatus.failed and now.enqueued_at is None:
        await _discard(storage, task_id, key)
        raise UploadClosed(now.error_code or "upload_incomplete", now.error_message or "")


async def _complete(
    task: Task, settings: Settings, session: AsyncSession, storage: Storage, probe: Probe
) -> bool:
    """Check the stored object and move the task to queued (True), or fail it and
    delete the object (raises). False: another request moved the task first."""
    task_id, key, declared = task.id, task.original_key, task.original_size_bytes
    if task.upload_expires_at is not None and task.upload_expires_at <= utcnow():
        return await _refuse(session, storage, task, UploadExpired())
    try:
        info = await to_thread.run_sync(_take_upload, storage, task)
    except ObjectNotFound:
        raise UploadIncomplete() from None
    except StorageError as error:
        log.warning("storage unavailable on completion: %r", error)
        raise ServiceUnavailable(STORAGE_UNAVAILABLE) from None
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
        image = await probe(handle)
    except ImagepipeError as error:
        if handle.failure is not None:  # the storage failed mid-probe, not the image
            log.warning("storage unavailable on completion: %r", handle.failure)
            raise ServiceUnavailable(STORAGE_UNAVAILABLE) from None
        return await _refuse(session, storage, task, error)
    except StorageError as error:
        log.warning("storage unavailable on completion: %r", error)
        raise ServiceUnavailable(STORAGE_UNAVAILABLE) from None
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
    with unavailable("database"):
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
        with unavailable("database"):
            deliveries = await session.run_sync(lifecycle.refuse_upload, task.id, error)
            await session.commit()
        if deliveries is None:
            return False
        await to_thread.run_sync(lifecycle.announce, session, task.id, deliveries)
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
