"""What a worker does with one task: claim, render, store, finish.

Every step is safe to run twice. The state changes (and their fencing rules) are
``services.lifecycle``'s; removing what a lost claim wrote is ``services.tidy``'s.
This module only decides which transition a render's outcome calls for.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, NoReturn

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.config import Settings
from imagepipe.db.models import utcnow
from imagepipe.errors import (
    ImageTooLarge,
    InternalError,
    InvalidImage,
    OriginalChanged,
    OriginalMissing,
    ProcessingTimeout,
    QualityCheckFailed,
)
from imagepipe.imaging import RenderOptions, RenderResult, render_variants, shapes
from imagepipe.imaging.crop import FocalPoint
from imagepipe.imaging.render import EncodedRendition
from imagepipe.metrics import STAGE_DURATION
from imagepipe.services import dedup, extras, lifecycle, renditions, rerender, tidy
from imagepipe.services.lifecycle import Claim, Finished
from imagepipe.services.report import build as build_report
from imagepipe.services.spool import Spool
from imagepipe.services.transient import is_transient
from imagepipe.storage import ObjectChanged, ObjectNotFound, Storage

log = logging.getLogger(__name__)

HASH_CHUNK = 1024 * 1024

# What the process's runner raises into a render that ran out of time (Celery's
# SoftTimeLimitExceeded, given by the worker's task): no runner here, none expected.
TimeLimit = tuple[type[BaseException], ...]

__all__ = [
    "Claim",
    "Outcome",
    "describe",
    "process",
    "render",
    "render_options",
    "store_and_finish",
]


class Outcome(enum.StrEnum):
    succeeded = "succeeded"
    failed = "failed"
    skipped = "skipped"  # already finished, deleted, or another worker holds the claim


def render_options(settings: Settings, focal: FocalPoint | None = None) -> RenderOptions:
    """What the settings render; ``focal``: the task's point (its cover/focal crops)."""
    return RenderOptions(
        boxes=dict(shapes.largest_first(settings.variants)),
        focal=focal,
        output_format=settings.output_format,
        jpeg_quality=settings.jpeg_quality,
        webp_quality=settings.webp_quality,
        avif_quality=settings.avif_quality,
        extra_formats=settings.extra_formats,
        max_animation_frames=settings.max_animation_frames,
        max_pixels=settings.max_pixels,
        allowed_formats=settings.allowed_formats,
        max_frames=settings.max_frames,
        max_decoded_bytes=settings.max_decoded_bytes,
    )


def render(
    claim: Claim,
    storage: Storage,
    settings: Settings,
    on_rendition: Callable[[str, EncodedRendition], None] | None = None,
    *,
    spool: Spool | None = None,
    base_only: bool = False,
    on_source: Callable[[], None] | None = None,
) -> RenderResult:
    """Read the original through the storage (a local file, or a download of it) and
    render. Raises ObjectNotFound if the original is gone, StorageError if unreadable.
    An original whose digest is not known yet (a direct upload) is hashed on the way,
    and must be the version its completion checked (ObjectChanged otherwise).

    ``base_only``: the base renditions only (the extras follow the task's success);
    each variant's pixels are then kept in ``spool`` for them. ``on_source``: called
    once the original is here, before the imaging starts."""
    on_image = None
    if base_only and spool is not None and spool.enabled and settings.extra_formats:
        on_image = functools.partial(spool.put, claim.task_id, claim.attempt)
    # Until its digest is recorded; after that, renders read what the first one hashed.
    expected = claim.original_etag if claim.original_etag and not claim.original_sha256 else None
    with storage.open_seekable(claim.original_key, etag=expected) as source:
        if on_source is not None:
            on_source()
        digest = None if claim.original_sha256 else _sha256(source)
        result = render_variants(
            source,
            render_options(settings, claim.focal),
            on_rendition,
            extras=not base_only,
            on_image=on_image,
        )
    result.source_sha256 = digest
    return result


def _sha256(source: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := source.read(HASH_CHUNK):
        digest.update(chunk)
    source.seek(0)
    return digest.hexdigest()


def describe(
    result: RenderResult, *, store_seconds: float, deduplicated_from: uuid.UUID | None = None
) -> dict[str, Any]:
    """The task columns that say what ``result`` made: stored with its previews."""
    return {
        "report": build_report(
            result, store_seconds=store_seconds, deduplicated_from=deduplicated_from
        ),
        "placeholder": result.placeholder.as_dict() if result.placeholder else None,
        "render_spec": result.render_spec,
    }


def store_and_finish(
    sessions: sessionmaker[Session],
    storage: Storage,
    claim: Claim,
    result: RenderResult,
    *,
    deduplicated_from: uuid.UUID | None = None,
    writer: renditions.Writer | None = None,
    publish_extras: Callable[[uuid.UUID], None] | None = None,
) -> bool:
    """Write the previews, then record them and mark the task succeeded in one commit.

    Objects are written first (atomically, under keys that carry this claim's attempt),
    so a row never points at a missing object, and a claim that was taken over writes
    beside the winner's objects, never over them. Returns False if this claim was
    superseded (its result is dropped, and so are its objects). ``writer``: the one the
    render already stored through (what it stored is waited for, the rest written);
    without it every rendition is written here.

    The extra formats the previews lack are recorded as due in the same commit, and
    handed to ``publish_extras`` after it (a lost publish is found by the reconciler).
    """
    started = time.perf_counter()
    if writer is None:
        rows = renditions.write(storage, claim.task_id, claim.attempt, result.variants)
    else:
        rows = writer.rows(result.variants)
        # From here the objects are the rows': a commit whose outcome we cannot know
        # (the connection lost during COMMIT) may have recorded them.
        writer.hand_over()
    stored = time.perf_counter() - started
    described = describe(result, store_seconds=stored, deduplicated_from=deduplicated_from)
    if result.source_sha256:  # a direct upload's digest, first known now
        described["original_sha256"] = result.source_sha256
    due = extras.due_after_render(result.extras_due, rows)
    described |= {
        "extras_due": renditions.encode_due(due),
        "extras_enqueued_at": utcnow() if due and publish_extras else None,
        "extras_attempts": 0,
        # A point PATCHed while this rendered keeps its re-render due; else none is.
        **rerender.settled(claim.focal),
    }
    finished = lifecycle.finish(sessions, claim, rows, described)
    if finished == Finished.gone:
        # Deleted (DELETE /tasks/{id}) while we rendered: the objects just written
        # belong to nothing; nobody else will ever remove them.
        tidy.quietly(tidy.variants, storage, claim.task_id)
        return False
    if finished == Finished.superseded:
        # Our objects sit under our own attempt: the winner's are untouched.
        tidy.quietly(tidy.one_attempt, storage, claim.task_id, claim.attempt)
        return False
    if claim.attempt > 1:
        # Only a task claimed before can hold other attempts' objects: the first
        # attempt skips the LIST (one S3 request per task saved on the hot path).
        # What earlier claims wrote (a killed worker's previews, a re-render's old set):
        # only the winner's objects are referenced by rows now.
        tidy.quietly(renditions.remove_unreferenced, storage, claim.task_id, rows)
    if due and publish_extras is not None:
        try:
            publish_extras(claim.task_id)
        except Exception as error:  # recorded as due: the reconciler publishes it
            log.warning(
                "could not publish extras: %r", error, extra={"task_id": str(claim.task_id)}
            )
    return True


def process(
    sessions: sessionmaker[Session],
    storage: Storage,
    settings: Settings,
    task_id: uuid.UUID,
    *,
    publish_extras: Callable[[uuid.UUID], None] | None = None,
    spool: Spool | None = None,
    time_limit: TimeLimit = (),
) -> Outcome:
    """Claim, render the base renditions, store, finish; the extra formats are due
    then, and handed to ``publish_extras``. Bad images and the time limit (an error of
    a ``time_limit`` type raised into the render) fail the task at once (fenced by the
    claim); transient errors give the claim back and propagate to the caller (the
    Celery task), which retries them."""
    duplicate = _Duplicate(settings)
    current = lifecycle.claim(sessions, task_id, settings, inside=duplicate)
    if current is None:
        return Outcome.skipped
    # Stores each rendition as it is encoded; removes them if the task does not finish.
    with renditions.Writer(storage, task_id, current.attempt) as writer:
        follow = _FollowUp(publish_extras, spool, duplicate.source)
        return _render_and_finish(sessions, storage, settings, current, writer, follow, time_limit)


class _Duplicate:
    """The dedup look-up, run inside the claim's transaction (one transaction per claim,
    not two): the rows of an earlier identical task, or None. Its objects are copied
    after the claim commits, like a render's work."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.source: dedup.Source | None = None

    def __call__(self, session: Session, claim: Claim) -> None:
        try:
            spec = render_options(self._settings, claim.focal).render_spec
            self.source = dedup.look_up(
                session, claim.task_id, claim.original_sha256, claim.owner, spec
            )
        except DBAPIError:
            raise  # the transaction is spoilt: the claim rolls back (transient: retried)
        except Exception:
            # Dedup only saves work: a bug in it must not keep the task from rendering
            # (nor leave it queued for the reconciler to publish again and again).
            log.exception("dedup look-up failed; rendering", extra={"task_id": str(claim.task_id)})
            self.source = None


@dataclass(frozen=True)
class _FollowUp:
    publish: Callable[[uuid.UUID], None] | None
    spool: Spool | None
    duplicate: dedup.Source | None  # what the claim's look-up found


def _render_and_finish(
    sessions: sessionmaker[Session],
    storage: Storage,
    settings: Settings,
    current: Claim,
    writer: renditions.Writer,
    follow: _FollowUp,
    time_limit: TimeLimit,
) -> Outcome:
    task_id = current.task_id
    imaging = _Imaging()
    try:
        # The same bytes already rendered with the same spec: copy, do not render.
        options = render_options(settings, current.focal)
        reused = dedup.reuse(storage, follow.duplicate, options) if follow.duplicate else None
        result = (
            reused.result
            if reused
            else render(
                current,
                storage,
                settings,
                writer.put,
                spool=follow.spool,
                base_only=True,
                on_source=imaging.start,
            )
        )
        for stage, seconds in result.timings.items():
            STAGE_DURATION.labels(stage).observe(seconds)
    except time_limit:
        if not imaging.started:  # still downloading the original, or copying a duplicate
            _waited_too_long(sessions, current, settings)
        return _timed_out(sessions, current, settings)
    except (InvalidImage, ImageTooLarge, QualityCheckFailed) as error:
        log.info(
            "image refused: %s (%r)", error.code, error.__cause__, extra={"task_id": str(task_id)}
        )
        lifecycle.fail(sessions, task_id, error, attempt=current.attempt)
        return Outcome.failed
    except ObjectNotFound:
        # No retry brings a missing original back: say so, for good.
        log.error("original missing from storage", extra={"task_id": str(task_id)})
        lifecycle.fail(sessions, task_id, OriginalMissing(), attempt=current.attempt)
        return Outcome.failed
    except ObjectChanged:
        # Not the bytes the completion probed (and recorded the format of): refuse
        # them rather than render something nobody checked.
        log.error("original replaced after completion", extra={"task_id": str(task_id)})
        lifecycle.fail(sessions, task_id, OriginalChanged(), attempt=current.attempt)
        return Outcome.failed
    except Exception as error:
        if is_transient(error):
            # Reading the original failed (storage, database): the caller retries —
            # but not while we hold the lease.
            _release_quietly(sessions, current, transient=True)
            raise
        # A bug in rendering repeats on every attempt: fail now, not after three.
        log.exception("render failed", extra={"task_id": str(task_id)})
        message = f"Rendering failed: {type(error).__name__}."
        lifecycle.fail(sessions, task_id, InternalError(message), attempt=current.attempt)
        return Outcome.failed
    except BaseException:
        _release_quietly(sessions, current, transient=False)
        raise
    try:
        started = time.perf_counter()
        finished = store_and_finish(
            sessions,
            storage,
            current,
            result,
            deduplicated_from=reused.source_task if reused else None,
            writer=writer,
            publish_extras=follow.publish,
        )
        STAGE_DURATION.labels("store").observe(time.perf_counter() - started)
    except time_limit:
        _waited_too_long(sessions, current, settings)  # the image was done
    except BaseException as error:
        _release_quietly(sessions, current, transient=is_transient(error))
        raise
    return Outcome.succeeded if finished else Outcome.skipped


class _Imaging:
    """Whether the render's imaging has started: the soft time limit is the image's
    fault only from then on."""

    def __init__(self) -> None:
        self.started = False

    def start(self) -> None:
        self.started = True


def _waited_too_long(
    sessions: sessionmaker[Session], current: Claim, settings: Settings
) -> NoReturn:
    """The soft time limit struck while the task waited on storage or the database (the
    download of the original, the writes, the finishing commit), not on its image: an
    outage like any other. Give the claim back without spending an attempt and raise
    a transient error, which the caller retries; the same image would not time out."""
    _release_quietly(sessions, current, transient=True)
    raise TimeoutError(
        f"Storage or the database did not answer within the soft time limit "
        f"({settings.task_soft_time_limit:g} s)."
    )


def _timed_out(sessions: sessionmaker[Session], current: Claim, settings: Settings) -> Outcome:
    """Fail the task we hold for the soft time limit: the same image would time out again.

    Fenced by our attempt, so a delivery that never held the task (or whose claim was
    taken over) cannot fail it under the worker that is doing it.
    """
    error = ProcessingTimeout(f"Rendering took longer than {settings.task_soft_time_limit:g} s.")
    lifecycle.fail(sessions, current.task_id, error, attempt=current.attempt)
    return Outcome.failed


def _release_quietly(sessions: sessionmaker[Session], current: Claim, *, transient: bool) -> None:
    try:
        lifecycle.release(sessions, current, transient=transient)
    except Exception:  # the database may be what failed; the lease then expires
        log.warning("could not release claim", extra={"task_id": str(current.task_id)})
