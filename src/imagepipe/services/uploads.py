"""``POST /upload`` once its body is received and its header checked: store the
original, commit the task row (with the idempotency answer), publish the render.

The route module (``api/routes/upload.py``) receives the body into a local file,
probes it and renders the answer; it removes its file whatever happens here. Every
failure here removes what it wrote: the original when the commit fails, the row and
the original when the publish fails (``publishing``).
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
from anyio import to_thread
from sqlalchemy.ext.asyncio import AsyncSession

from imagepipe.db.models import Task
from imagepipe.errors import ServiceUnavailable
from imagepipe.imaging import ImageInfo
from imagepipe.queue import TaskQueue
from imagepipe.services import fairness, lifecycle, tidy
from imagepipe.services.idempotency import Reservation, commit_with_answer
from imagepipe.services.publishing import Retry, publish
from imagepipe.services.transient import is_transient
from imagepipe.storage import Storage, StorageError, keys

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Original:
    """An uploaded file, received into ``path``, whose header passed the probe."""

    path: Path
    filename: str
    size_bytes: int
    sha256: str
    info: ImageInfo


async def accept(
    session: AsyncSession,
    storage: Storage,
    queue: TaskQueue,
    original: Original,
    *,
    owner_scope: str,
    callback_url: str | None,
    backlog: int | None,
    reservation: Reservation | None,
    answer: Callable[[uuid.UUID], str],
) -> uuid.UUID:
    """The new task's id, once its original is stored, its row committed ``queued``
    and its render published. ``backlog``: the owner's waiting tasks as the quota
    counted them before this one (None: counted here). With a reservation,
    ``answer(task_id)`` (the response body) is remembered in the task's transaction."""
    task_id = uuid.uuid4()
    key = keys.original(task_id)
    # Outside the probe pool: a slow storage must not hold a header-probe slot.
    put = functools.partial(
        storage.put_file, key, original.path, content_type=original.info.content_type
    )
    try:
        await to_thread.run_sync(put)
    except StorageError as error:
        log.warning("storage unavailable during upload: %r", error)
        raise ServiceUnavailable("The storage is unavailable; try again shortly.") from None

    info = original.info
    task = Task(
        id=task_id,
        filename=original.filename,
        original_key=key,
        original_format=info.format,
        original_width=info.width,
        original_height=info.height,
        original_frames=info.frames,
        original_size_bytes=original.size_bytes,
        original_sha256=original.sha256,
        owner_scope=owner_scope,
        callback_url=callback_url,
    )
    try:
        await session.run_sync(lifecycle.create, task)
        if backlog is None:
            priority = await session.run_sync(fairness.priority, task.owner_scope)
        else:  # the quota's count, made before this task existed: no second query
            priority = fairness.level(backlog)
        await commit_with_answer(
            session, reservation, task_id=task_id, status_code=202, body=lambda: answer(task_id)
        )
    except BaseException as error:
        with anyio.CancelScope(shield=True):
            await tidy.delete_quietly(storage, key)
        if not is_transient(error):
            raise
        log.warning("database unavailable during upload: %r", error)
        raise ServiceUnavailable("The database is unavailable; try again shortly.") from None

    await publish(session, storage, queue, task, retry=Retry.NEW_UPLOAD, priority=priority)
    log.info("upload accepted", extra={"task_id": str(task_id), "bytes": original.size_bytes})
    return task_id
