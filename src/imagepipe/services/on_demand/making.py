"""The worker's side of an on-demand rendition: read the source, ``render_one``, store
the bytes, write the row, then let the waiting requests know.

Idempotent: a second delivery of the same job (the broker's redelivery, a republish
after the lock expired) finds the row and stops. Whatever happens, the single-flight
lock is released and the task's channel notified, so waiters re-read at once instead
of at their timer.

When retention has removed the original (``IMAGEPIPE_KEEP_ORIGINALS``), the largest
stored ``contain`` variant is the source: a rendition larger than it is its size (no
upscaling), and the row (and the response's ``X-Rendered-From``) says so.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import secrets
import uuid
from typing import Literal, cast

import redis
from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.config import Settings
from imagepipe.db.models import DerivedRendition, Task, TaskStatus, Variant, live, utcnow
from imagepipe.errors import OriginalMissing
from imagepipe.imaging.crop import Box, FocalPoint
from imagepipe.imaging.formats import FORMATS, FormatName
from imagepipe.imaging.opening import Limits
from imagepipe.imaging.render import render_one
from imagepipe.services import hooks, tidy
from imagepipe.services.on_demand import flight, records
from imagepipe.services.on_demand.options import parse
from imagepipe.storage import Storage, keys

log = logging.getLogger(__name__)


class Outcome(enum.StrEnum):
    made = "made"
    cached = "cached"  # made already (a redelivery, or another worker won the race)
    skipped = "skipped"  # the task is gone or not succeeded
    failed = "failed"


def make(
    sessions: sessionmaker[Session],
    storage: Storage,
    settings: Settings,
    job: records.RenderJob,
    *,
    lock: redis.Redis | None = None,
) -> Outcome:
    try:
        return _make(sessions, storage, settings, job)
    except Exception:
        # Soft time limit, a source that no longer decodes, storage or database down:
        # the waiters answer 503 rendering, and the next request publishes again.
        log.exception("on-demand rendition not made", extra={"task_id": str(job.task_id)})
        return Outcome.failed
    finally:
        if lock is not None:
            try:
                flight.release(lock, job.task_id, job.cache_key)
            except redis.RedisError as error:  # it expires by itself
                log.warning("single-flight lock not released: %r", error)
        hooks.of(sessions).notify(job.task_id)


def _make(
    sessions: sessionmaker[Session], storage: Storage, settings: Settings, job: records.RenderJob
) -> Outcome:
    with sessions() as session:
        task = session.scalar(select(Task).where(Task.id == job.task_id, live()))
        if task is None or task.status != TaskStatus.succeeded:
            return Outcome.skipped
        session.expunge(task)
    options = parse(job.options, max_side=settings.on_demand_max_side)
    focal = records.focal_of(task)
    # Recomputed: a focal point moved since the request makes the current one's.
    key = records.cache_key(options, job.asked_format, focal, settings)
    with sessions() as session:
        if session.scalar(_row_of(task.id, key)) is not None:
            return Outcome.cached
    source_key, source = _source(task)
    width, height = options.box(settings.on_demand_max_side)
    asked = cast(FormatName | Literal["auto"], job.asked_format)
    with storage.open_seekable(source_key) as fp:
        made = render_one(
            fp,
            Box(width, height, options.fit, options.gravity),
            asked,
            quality=records.quality_for(options, job.asked_format, settings),
            focal=None if focal is None else FocalPoint(*focal),
            limits=_limits(settings),
        )
    token = secrets.token_hex(4)
    storage_key = keys.derived(task.id, key, token, FORMATS[made.format].extension)
    storage.put_bytes(storage_key, made.data, content_type=made.content_type)
    row = DerivedRendition(
        task_id=task.id,
        cache_key=key,
        options=options.canonical,
        format=made.format,
        content_type=made.content_type,
        storage_key=storage_key,
        size_bytes=len(made.data),
        etag=f'"{hashlib.sha256(made.data).hexdigest()[:32]}"',
        width=made.width,
        height=made.height,
        source=source,
        made_at=utcnow(),
    )
    if not _record(sessions, row):
        tidy.quietly(storage.delete, storage_key)
        return Outcome.cached
    log.info(
        "on-demand rendition made",
        extra={"task_id": str(task.id), "options": options.canonical, "format": made.format},
    )
    return Outcome.made


def _row_of(task_id: uuid.UUID, key: str) -> Select[int]:
    return select(DerivedRendition.id).where(
        DerivedRendition.task_id == task_id, DerivedRendition.cache_key == key
    )


def _record(sessions: sessionmaker[Session], row: DerivedRendition) -> bool:
    """Write the row if the task is still live and no other render won; False (our
    object is then removed) otherwise. A delete that tombstones the task after this
    commit removes the row by cascade and the object with the task's prefix."""
    try:
        with sessions.begin() as session:
            alive = session.scalar(select(Task.id).where(Task.id == row.task_id, live()))
            if alive is None:
                return False
            session.add(row)
    except IntegrityError:
        return False
    return True


def _source(task: Task) -> tuple[str, str]:
    """(storage key, what it is): the original, or the largest stored variant that
    keeps the original's aspect when retention removed the original."""
    if task.original_removed_at is None:
        return task.original_key, "original"
    whole = [v for v in task.variants if _same_aspect(v, task)]
    if not whole:
        raise OriginalMissing("The original was removed and no variant can stand in.")
    largest = max(whole, key=lambda v: v.width * v.height)
    return largest.storage_key, f"variant:{largest.name}"


def _same_aspect(variant: Variant, task: Task) -> bool:
    # Within a pixel of rounding: a contain variant, not a crop. Either way round: the
    # stored size may be the one before EXIF orientation.
    w, h, ow, oh = variant.width, variant.height, task.original_width, task.original_height
    slack = max(ow, oh)
    return abs(w * oh - h * ow) <= slack or abs(w * ow - h * oh) <= slack


def _limits(settings: Settings) -> Limits:
    return Limits(
        allowed_formats=settings.allowed_formats,
        max_pixels=settings.max_pixels,
        max_frames=settings.max_frames,
        max_decoded_bytes=settings.max_decoded_bytes,
    )
