"""What a worker does with one task, and what the reconciler does with stuck ones.

Every step is safe to run twice. A worker *claims* a task with a conditional update
that bumps ``attempts``; that attempt number is its fencing token: only the holder of
the latest claim may mark the task finished, so a worker whose lease was taken back
cannot overwrite a newer result.
"""

from __future__ import annotations

import enum
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import ColumnElement, Row, delete, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.config import Settings
from imagepipe.db.models import Task, TaskStatus, Variant, utcnow
from imagepipe.errors import ImageTooLarge, InvalidImage, OriginalMissing, UploadExpired
from imagepipe.imaging import RenderOptions, RenderResult, render_previews
from imagepipe.metrics import STAGE_DURATION
from imagepipe.services import events, renditions, webhooks
from imagepipe.storage import ObjectNotFound, Storage, StorageUnavailable, keys
from imagepipe.worker.holder import current_holder, holder_is_dead

log = logging.getLogger(__name__)

# A storage temp file untouched for this long was left by a process that died: an
# upload being received or a write in progress touches its file all the time.
STALE_TEMP_SECONDS = 3600.0


class Outcome(enum.StrEnum):
    succeeded = "succeeded"
    failed = "failed"
    skipped = "skipped"  # already finished, deleted, or another worker holds the claim


@dataclass(frozen=True)
class Claim:
    task_id: uuid.UUID
    attempt: int
    original_key: str


def render_options(settings: Settings) -> RenderOptions:
    return RenderOptions(
        boxes=dict(settings.variant_boxes_desc()),
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


def claim(sessions: sessionmaker[Session], task_id: uuid.UUID, settings: Settings) -> Claim | None:
    """Take the task if it is queued, its lease expired, or its holder process died on
    this host; None if it is not ours.

    The usual case (queued) is one ``UPDATE … RETURNING``: one round trip. Only when
    that takes nothing does it look at the row, to take a task whose holder died."""
    now = utcnow()
    with sessions.begin() as session:
        claimable = or_(
            Task.status == TaskStatus.queued,
            (Task.status == TaskStatus.processing) & (Task.lease_expires_at < now),
        )
        row = _take(session, task_id, settings, claimable, now)
        if row is None:
            seen = session.execute(
                select(Task.status, Task.attempts, Task.claimed_by).where(Task.id == task_id)
            ).one_or_none()
            if (
                seen is None
                or seen.status != TaskStatus.processing
                or not holder_is_dead(seen.claimed_by)
            ):
                return None
            # Compare-and-swap on what we saw: a live worker that took the task
            # meanwhile changed attempts and claimed_by, so this no longer matches.
            row = _take(
                session,
                task_id,
                settings,
                (Task.status == TaskStatus.processing)
                & (Task.attempts == seen.attempts)
                & (Task.claimed_by == seen.claimed_by),
                now,
            )
            if row is None:
                return None
    events.notify(task_id)
    return Claim(task_id=task_id, attempt=row.attempts, original_key=row.original_key)


def _take(
    session: Session,
    task_id: uuid.UUID,
    settings: Settings,
    claimable: ColumnElement[bool],
    now: datetime,
) -> Row[int, str] | None:
    """The claiming update under ``claimable``; the new attempt and the original's key,
    or None if it matched nothing."""
    return session.execute(
        update(Task)
        .where(Task.id == task_id)
        .where(Task.attempts < settings.max_attempts)
        .where(claimable)
        .values(
            status=TaskStatus.processing,
            attempts=Task.attempts + 1,
            started_at=now,
            lease_expires_at=now + timedelta(seconds=settings.lease_seconds),
            claimed_by=current_holder(),
        )
        .returning(Task.attempts, Task.original_key)
        .execution_options(synchronize_session=False)
    ).one_or_none()


def render(claim: Claim, storage: Storage, settings: Settings) -> RenderResult:
    """Read the original through the storage (a local file, or a download of it) and
    render. Raises ObjectNotFound if the original is gone, StorageError if unreadable."""
    with storage.open_seekable(claim.original_key) as source:
        return render_previews(source, render_options(settings))


def store_and_finish(
    sessions: sessionmaker[Session], storage: Storage, claim: Claim, result: RenderResult
) -> bool:
    """Write the previews, then record them and mark the task succeeded in one commit.

    Objects are written first (atomically, under keys that carry this claim's attempt),
    so a row never points at a missing object, and a claim that was taken over writes
    beside the winner's objects, never over them. Returns False if this claim was
    superseded (its result is dropped, and so are its objects).
    """
    rows = renditions.write(storage, claim.task_id, claim.attempt, result.previews)
    with sessions.begin() as session:
        done = session.execute(
            update(Task)
            .where(Task.id == claim.task_id)
            .where(Task.status == TaskStatus.processing)
            .where(Task.attempts == claim.attempt)
            .values(status=TaskStatus.succeeded, finished_at=utcnow(), lease_expires_at=None)
            .execution_options(synchronize_session=False)
        )
        deliveries: list[uuid.UUID] = []
        if done.rowcount != 1:  # type: ignore[attr-defined]
            gone = session.get(Task, claim.task_id) is None
            superseded = True
        else:
            gone = superseded = False
            session.execute(delete(Variant).where(Variant.task_id == claim.task_id))
            session.add_all(rows)
            deliveries = webhooks.record(session, claim.task_id, "task.succeeded")
    if gone:
        # Deleted (DELETE /tasks/{id}) while we rendered: the objects just written
        # belong to nothing; nobody else will ever remove them.
        renditions.tidy(storage.delete_prefix, keys.variants_prefix(claim.task_id))
    elif superseded:
        # Our objects sit under our own attempt: the winner's are untouched.
        renditions.tidy(storage.delete_prefix, keys.attempt_prefix(claim.task_id, claim.attempt))
    if superseded:
        return False
    events.notify(claim.task_id)
    webhooks.dispatch(deliveries)
    if claim.attempt > 1:
        # Only a task claimed before can hold other attempts' objects: the first
        # attempt skips the LIST (one S3 request per task saved on the hot path).
        # What earlier claims wrote (a killed worker's previews, a re-render's old set):
        # only the winner's objects are referenced by rows now.
        renditions.tidy(renditions.remove_unreferenced, storage, claim.task_id, rows)
    return True


def fail(
    sessions: sessionmaker[Session],
    task_id: uuid.UUID,
    code: str,
    message: str,
    *,
    attempt: int | None = None,
    only_queued: bool = False,
) -> bool:
    """Mark the task failed unless it already finished. Given ``attempt``, only while
    that claim is the latest; with ``only_queued``, only while nobody holds it."""
    unfinished = [TaskStatus.queued] if only_queued else [TaskStatus.queued, TaskStatus.processing]
    with sessions.begin() as session:
        statement = update(Task).where(Task.id == task_id).where(Task.status.in_(unfinished))
        if attempt is not None:
            statement = statement.where(Task.attempts == attempt)
        result = session.execute(
            statement.values(
                status=TaskStatus.failed,
                finished_at=utcnow(),
                lease_expires_at=None,
                error_code=code,
                error_message=message[:1024],
            ).execution_options(synchronize_session=False)
        )
        failed = bool(result.rowcount == 1)  # type: ignore[attr-defined]
        deliveries = webhooks.record(session, task_id, "task.failed") if failed else []
    if failed:
        events.notify(task_id)
        webhooks.dispatch(deliveries)
    return failed


def release(sessions: sessionmaker[Session], claim: Claim, *, counted: bool = True) -> None:
    """Give the claim back (status queued) so a retry can take it at once.

    ``counted=False`` also gives the attempt back: the storage service was unreachable,
    which says nothing about the image, so it must not spend the poison-image budget.
    The next claim then takes the same attempt number again; that is safe because this
    claim has ended (only its own holder releases it, and it stops working on it).
    """
    values: dict[str, object] = {
        "status": TaskStatus.queued,
        "lease_expires_at": None,
        "enqueued_at": utcnow(),
    }
    if not counted:
        values["attempts"] = Task.attempts - 1
    with sessions.begin() as session:
        session.execute(
            update(Task)
            .where(Task.id == claim.task_id)
            .where(Task.status == TaskStatus.processing)
            .where(Task.attempts == claim.attempt)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    events.notify(claim.task_id)


def process(
    sessions: sessionmaker[Session], storage: Storage, settings: Settings, task_id: uuid.UUID
) -> Outcome:
    """Claim, render, store, finish. Bad images and the soft time limit fail the task at
    once (fenced by the claim); other errors propagate to the caller (the Celery task),
    which retries them."""
    current = claim(sessions, task_id, settings)
    if current is None:
        return Outcome.skipped
    try:
        result = render(current, storage, settings)
        for stage, seconds in result.timings.items():
            STAGE_DURATION.labels(stage).observe(seconds)
    except SoftTimeLimitExceeded:
        return _timed_out(sessions, current, settings)
    except (InvalidImage, ImageTooLarge) as error:
        fail(sessions, task_id, error.code, error.message, attempt=current.attempt)
        return Outcome.failed
    except ObjectNotFound:
        # No retry brings a missing original back: say so, for good.
        log.error("original missing from storage", extra={"task_id": str(task_id)})
        fail(
            sessions,
            task_id,
            OriginalMissing.code,
            OriginalMissing.default_message,
            attempt=current.attempt,
        )
        return Outcome.failed
    except StorageUnavailable:
        _release_quietly(sessions, current, counted=False)
        raise
    except (OSError, SQLAlchemyError):
        # Reading the original failed (storage): transient, the caller retries — but
        # not while we hold the lease.
        _release_quietly(sessions, current)
        raise
    except Exception as error:
        # A bug in rendering repeats on every attempt: fail now, not after three.
        log.exception("render failed", extra={"task_id": str(task_id)})
        message = f"Rendering failed: {type(error).__name__}."
        fail(sessions, task_id, "internal_error", message, attempt=current.attempt)
        return Outcome.failed
    except BaseException:
        _release_quietly(sessions, current)
        raise
    try:
        started = time.perf_counter()
        finished = store_and_finish(sessions, storage, current, result)
        STAGE_DURATION.labels("store").observe(time.perf_counter() - started)
    except SoftTimeLimitExceeded:
        return _timed_out(sessions, current, settings)
    except StorageUnavailable:
        _release_quietly(sessions, current, counted=False)
        raise
    except BaseException:
        _release_quietly(sessions, current)
        raise
    return Outcome.succeeded if finished else Outcome.skipped


def _timed_out(sessions: sessionmaker[Session], current: Claim, settings: Settings) -> Outcome:
    """Fail the task we hold for the soft time limit: the same image would time out again.

    Fenced by our attempt, so a delivery that never held the task (or whose claim was
    taken over) cannot fail it under the worker that is doing it.
    """
    message = f"Rendering took longer than {settings.task_soft_time_limit:g} s."
    fail(sessions, current.task_id, "processing_timeout", message, attempt=current.attempt)
    return Outcome.failed


def _release_quietly(
    sessions: sessionmaker[Session], current: Claim, *, counted: bool = True
) -> None:
    try:
        release(sessions, current, counted=counted)
    except Exception:  # the database may be what failed; the lease then expires
        log.warning("could not release claim", extra={"task_id": str(current.task_id)})


@dataclass
class ReconcileReport:
    requeued: list[uuid.UUID]
    failed: list[uuid.UUID]
    # Direct uploads failed with upload_expired: their original keys, to delete.
    expired: list[str] = field(default_factory=list)


UPLOAD_EXPIRED = UploadExpired.code
# Expired direct uploads handled per reconciler run; the rest wait for the next one.
EXPIRE_BATCH = 500


def reconcile(
    sessions: sessionmaker[Session], settings: Settings, now: datetime | None = None
) -> ReconcileReport:
    """Find tasks the broker lost and hand them back; fail those out of attempts.

    - queued, never enqueued or enqueued longer ago than the grace period → again;
    - processing with an expired lease → queued again, or failed after max_attempts.
    The caller publishes the requeued ids after this commits.
    """
    now = now or utcnow()
    grace = now - timedelta(seconds=settings.queued_grace_seconds)
    report = ReconcileReport(requeued=[], failed=[])
    deliveries: list[uuid.UUID] = []
    lost = or_(
        (Task.status == TaskStatus.queued)
        & or_(Task.enqueued_at.is_(None), Task.enqueued_at < grace)
        & (Task.created_at < grace),
        (Task.status == TaskStatus.processing) & (Task.lease_expires_at < now),
    )
    with sessions.begin() as session:
        for task_id, status, attempts in session.execute(
            select(Task.id, Task.status, Task.attempts).where(lost)
        ).all():
            failing = attempts >= settings.max_attempts
            if failing:
                report.failed.append(task_id)
                values = _out_of_attempts(status, settings.max_attempts, now)
            else:
                report.requeued.append(task_id)
                values = {"status": TaskStatus.queued, "enqueued_at": now}
            # Re-check the condition in the update: a worker may have moved on since.
            changed = session.execute(
                update(Task)
                .where(Task.id == task_id, lost)
                .values(lease_expires_at=None, **values)
                .execution_options(synchronize_session=False)
            )
            if failing and changed.rowcount == 1:  # type: ignore[attr-defined]
                deliveries += webhooks.record(session, task_id, "task.failed")
    for task_id in report.requeued + report.failed:
        events.notify(task_id)
    webhooks.dispatch(deliveries)
    report.expired = expire_uploads(sessions, now)
    return report


def expire_uploads(sessions: sessionmaker[Session], now: datetime) -> list[str]:
    """Fail direct uploads still awaiting their bytes past their expiry (one batch,
    oldest first); returns the original keys the caller deletes after the commit.

    A failure like any other: ``task.failed`` deliveries in the same transaction,
    followers and the broker told after the commit."""
    expired = (Task.status == TaskStatus.awaiting_upload) & (Task.upload_expires_at < now)
    keys_to_delete: list[str] = []
    failed: list[uuid.UUID] = []
    deliveries: list[uuid.UUID] = []
    with sessions.begin() as session:
        rows = session.execute(
            select(Task.id, Task.original_key)
            .where(expired)
            .order_by(Task.upload_expires_at)
            .limit(EXPIRE_BATCH)
        ).all()
        for task_id, key in rows:
            # Re-checked in the update: a completion may have won meanwhile.
            done = session.execute(
                update(Task)
                .where(Task.id == task_id, expired)
                .values(
                    status=TaskStatus.failed,
                    finished_at=now,
                    error_code=UPLOAD_EXPIRED,
                    error_message="The upload was not completed in time.",
                    upload_token_sha256=None,
                )
                .execution_options(synchronize_session=False)
            )
            if done.rowcount:  # type: ignore[attr-defined]
                keys_to_delete.append(key)
                failed.append(task_id)
                deliveries += webhooks.record(session, task_id, "task.failed")
    for task_id in failed:
        events.notify(task_id)
    webhooks.dispatch(deliveries)
    return keys_to_delete


def _out_of_attempts(status: TaskStatus, max_attempts: int, now: datetime) -> dict[str, object]:
    if status == TaskStatus.processing:
        code = "processing_timeout"
        message = (
            f"The task did not finish in {max_attempts} attempts "
            "(the worker was killed or hit the time limit each time)."
        )
    else:
        code = "internal_error"
        message = f"The task failed {max_attempts} times with transient errors."
    return {
        "status": TaskStatus.failed,
        "finished_at": now,
        "error_code": code,
        "error_message": message,
    }
