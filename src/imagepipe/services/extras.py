"""Extra formats after success: a task is ``succeeded`` once its base renditions are
stored; its extra formats (``IMAGEPIPE_EXTRA_FORMATS``, and an animation's animated
WebP) are made afterwards by one follow-up task.

What is due is recorded on the task (``tasks.extras_due``) in the commit that makes it
succeeded, so nothing depends on the follow-up's message arriving: the reconciler
republishes due extras whose follow-up never finished (worker killed, publish lost),
and ``imagepipe backfill`` sees their formats missing.

The follow-up writes under the keys of the render it completes (its claim attempt),
and records each format, for every variant at once, in one commit fenced by that
attempt: a re-render (backfill) or a delete that came meanwhile wins, and what the
follow-up wrote is removed. A format whose encoder fails is logged, counted
(``imagepipe_extra_format_failures_total``) and left due; the task stays succeeded.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO

from PIL import Image
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.config import Settings
from imagepipe.db.models import Rendition, Task, TaskStatus, Variant, live, utcnow
from imagepipe.imaging import animation
from imagepipe.imaging.crop import FocalPoint
from imagepipe.imaging.extras import Resized, encode_extra, resized
from imagepipe.imaging.formats import FORMATS, FormatName
from imagepipe.imaging.render import EncodedRendition, RenderOptions
from imagepipe.metrics import EXTRA_FORMAT_FAILURES
from imagepipe.services import due, hooks, tidy
from imagepipe.services.renditions import decode_due, encode_due
from imagepipe.services.spool import Spool
from imagepipe.storage import Storage, keys

log = logging.getLogger(__name__)

# Tasks whose due extras the reconciler republishes per run.
REPUBLISH_BATCH = 500


class Outcome(enum.StrEnum):
    made = "made"  # every due format is stored
    partial = "partial"  # some format failed to encode: it stays due
    skipped = "skipped"  # nothing due, the task is gone, or a re-render took over


@dataclass
class Job:
    task_id: uuid.UUID
    attempt: int  # the claim whose render these extras complete
    original_key: str
    animated: bool
    due: list[FormatName]
    focal: FocalPoint | None  # the task's, as the render that made the base used it
    # Variant name -> (row id, formats stored), largest first as the render makes them.
    variants: dict[str, tuple[int, set[str]]] = field(default_factory=dict)


def take(sessions: sessionmaker[Session], task_id: uuid.UUID) -> Job | None:
    """The due extras of a succeeded task, counting this try; None if nothing is due."""
    with sessions.begin() as session:
        task = session.scalar(
            select(Task).where(
                Task.id == task_id,
                live(),
                Task.status == TaskStatus.succeeded,
                Task.extras_due.is_not(None),
            )
        )
        if task is None:
            return None
        session.execute(
            update(Task)
            .where(Task.id == task_id)
            .values(extras_attempts=Task.extras_attempts + 1)
            .execution_options(synchronize_session=False)
        )
        variants = sorted(task.variants, key=lambda v: v.width, reverse=True)
        return Job(
            task_id=task.id,
            attempt=task.attempts,
            original_key=task.original_key,
            animated=animation.is_animated(task.original_format, task.original_frames),
            due=decode_due(task.extras_due),
            focal=_focal_made_with(variants),
            variants={v.name: (v.id, {r.format for r in v.renditions}) for v in variants},
        )


def _focal_made_with(variants: Sequence[Variant]) -> FocalPoint | None:
    """The focal point the stored renditions were made with (their specs keep it where
    it placed a crop); None when none of them followed one."""
    for variant in variants:
        for row in variant.renditions:
            point = json.loads(row.spec).get("focal") if row.spec else None
            if point:
                return FocalPoint(*point)
    return None


def make(
    sessions: sessionmaker[Session],
    storage: Storage,
    options: RenderOptions,
    task_id: uuid.UUID,
    spool: Spool | None = None,
) -> Outcome:
    """Make and store every due extra format of ``task_id``. Transient errors (storage,
    database) propagate for the caller to retry; the formats stay due meanwhile."""
    job = take(sessions, task_id)
    if job is None:
        return Outcome.skipped
    # The extras complete the base: crops (a decode's) and specs follow the point the
    # base was made with, whatever the task says now (a changed point re-renders the
    # task under a new attempt, and what this makes is then refused at _record).
    options = dataclasses.replace(options, focal=job.focal)
    failed = False
    with ExitStack() as stack:
        pixels = _Pixels(job, storage, options, spool, stack)
        for fmt in job.due:
            made = _one_format(job, storage, options, pixels, fmt)
            if made is None:
                failed = True
                continue
            if not _record(sessions, storage, job, fmt, made):
                log.info("extras dropped: task re-rendered or deleted", extra=_extra(job))
                return Outcome.skipped
            hooks.of(sessions).notify(task_id)
    if spool is not None:
        spool.discard(job.task_id, job.attempt)
    return Outcome.partial if failed else Outcome.made


def _extra(job: Job) -> dict[str, str]:
    return {"task_id": str(job.task_id)}


class _Pixels:
    """Each variant's resized pixels: the spool's, or a decode of the original (made
    at most once, when the spool lacks one, and always for an animation's frames)."""

    def __init__(
        self,
        job: Job,
        storage: Storage,
        options: RenderOptions,
        spool: Spool | None,
        stack: ExitStack,
    ) -> None:
        self._job, self._storage, self._options = job, storage, options
        self._spool, self._stack = spool, stack
        self._images: dict[str, Image.Image] = {}
        self._decoded: tuple[BinaryIO, Resized] | None = None

    def image(self, name: str) -> Image.Image:
        if name not in self._images and self._decoded is None and not self._job.animated:
            spooled = (
                self._spool.get(self._job.task_id, self._job.attempt, name) if self._spool else None
            )
            if spooled is not None:
                self._images[name] = spooled
        if name not in self._images:
            self._decode()
        return self._images[name]

    def _decode(self) -> tuple[BinaryIO, Resized]:
        if self._decoded is None:
            source = self._stack.enter_context(self._storage.open_seekable(self._job.original_key))
            decoded = resized(source, self._options)
            self._decoded = (source, decoded)
            self._images.update(decoded.images)  # replaces what the spool gave: one source
        return self._decoded

    def animation_of(self) -> tuple[BinaryIO, Resized] | None:
        return self._decode() if self._job.animated else None


def _one_format(
    job: Job, storage: Storage, options: RenderOptions, pixels: _Pixels, fmt: FormatName
) -> dict[str, tuple[str, EncodedRendition]] | None:
    """Encode and store ``fmt`` for every variant that lacks it: variant name -> (key,
    rendition). None if its encoder failed (logged, counted; nothing of it is kept)."""
    written: dict[str, tuple[str, EncodedRendition]] = {}
    try:
        for name, (_, stored) in job.variants.items():
            if fmt in stored or name not in options.boxes:
                continue
            # Reading the pixels (spool, or the original) and storing are not the
            # encoder: their errors propagate (a transient one is retried).
            image = pixels.image(name)
            animation_of = pixels.animation_of() if fmt == "WEBP" else None
            try:
                encoded = encode_extra(image, name, fmt, options, animation_of)
            except Exception:
                EXTRA_FORMAT_FAILURES.labels(fmt).inc()
                log.exception("extra format %s failed; it stays due", fmt, extra=_extra(job))
                _forget(storage, written)
                return None
            key = keys.variant(job.task_id, job.attempt, name, FORMATS[fmt].extension)
            storage.put_bytes(key, encoded.data, content_type=encoded.content_type)
            written[name] = (key, encoded)
    except BaseException:
        _forget(storage, written)
        raise
    return written


def _forget(storage: Storage, written: dict[str, tuple[str, EncodedRendition]]) -> None:
    for key, _ in written.values():
        tidy.quietly(storage.delete, key)


def _record(
    sessions: sessionmaker[Session],
    storage: Storage,
    job: Job,
    fmt: FormatName,
    written: dict[str, tuple[str, EncodedRendition]],
) -> bool:
    """Add ``fmt``'s renditions and take it off the due list, in one commit, while the
    render these extras complete is still the task's. False (and what was written is
    removed) if a re-render or a delete came first."""
    with sessions.begin() as session:
        # Locks the row (PostgreSQL): two follow-ups of one task record one at a time.
        current = session.execute(
            select(Task.extras_due)
            .where(Task.id == job.task_id, live(), Task.status == TaskStatus.succeeded)
            .where(Task.attempts == job.attempt)
            .with_for_update()
        ).one_or_none()
        if current is None:
            _forget(storage, written)
            return False
        due = decode_due(current.extras_due)
        stored = {
            (row.variant_id, row.format)
            for row in session.scalars(
                select(Rendition).where(
                    Rendition.variant_id.in_([vid for vid, _ in job.variants.values()])
                )
            )
        }
        for name, (key, encoded) in written.items():
            variant_id = job.variants[name][0]
            if (variant_id, fmt) in stored:
                continue  # another follow-up of this task recorded it first (same key)
            session.add(
                Rendition(
                    variant_id=variant_id,
                    format=fmt,
                    content_type=encoded.content_type,
                    storage_key=key,
                    size_bytes=len(encoded.data),
                    sha256=hashlib.sha256(encoded.data).hexdigest(),
                    frames=encoded.frames,
                    spec=encoded.spec.as_json(),
                    spec_digest=encoded.spec.digest,
                )
            )
        left = [f for f in due if f != fmt]
        session.execute(
            update(Task)
            .where(Task.id == job.task_id)
            .values(extras_due=encode_due(left))
            .execution_options(synchronize_session=False)
        )
    return True


# --- what is due, and finding what was never made ------------------------------------


def due_after_render(expected: Sequence[str], variants: Sequence[Variant]) -> list[str]:
    """The ``expected`` extra formats some variant lacks (in their configured order)."""
    present = [{r.format for r in v.renditions} for v in variants]
    return [f for f in expected if any(f not in formats for formats in present)]


def due_pending(
    sessions: sessionmaker[Session],
    settings: Settings,
    now: datetime | None = None,
    limit: int = REPUBLISH_BATCH,
) -> list[uuid.UUID]:
    """Succeeded tasks with extras due whose follow-up was published longer ago than
    the grace period (or never) and that have tries left, oldest first; marked as
    published now (the caller publishes them after this commit)."""
    now = now or utcnow()
    grace = due.grace_start(settings, now)
    lost = (
        live()
        & (Task.status == TaskStatus.succeeded)
        & Task.extras_due.is_not(None)
        & or_(Task.extras_enqueued_at.is_(None), Task.extras_enqueued_at < grace)
        & (Task.extras_attempts < settings.max_attempts)
    )
    return due.take(sessions, lost, Task.finished_at, {"extras_enqueued_at": now}, limit)
