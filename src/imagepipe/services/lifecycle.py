"""The task lifecycle: every change of a task's status is one function here.

    awaiting_upload ──complete──▶ queued ──claim──▶ processing ──finish──▶ succeeded
          │ refuse, expire          ▲  │ give_up    │  │ fail
          ▼                         │  ▼            │  ▼
        failed                      │ failed        │ failed
                                    └── release, recover (lease expired) ─┘
    any status ──delete──▶ deleted (a tombstone: invisible) ──purge──▶ no row
                            (services.deletion)

The rules every transition keeps:

- Each UPDATE names the state it moves from in its WHERE clause: a compare-and-swap,
  so of two processes racing, one moves the row and the other sees rowcount 0.
- A claim bumps ``attempts``; that number is the claim's fencing token and only ever
  grows. The poison-image budget counts only claims that ended without the worker
  giving them back for a transient cause: ``attempts - transient_releases``. Finishing,
  failing or releasing a claimed task requires ``attempts`` to still be that number,
  so a worker whose lease was taken back cannot overwrite a newer result.
- A claim stays ONE ``UPDATE … RETURNING`` in the usual case (a queued task).
- Leases are set and judged with the database's clock (``db.clock``), never a
  worker's: workers' clocks disagree, the database's is one.
- Followers hear of a change and webhooks are published (``services.hooks``) only
  after the commit that made it.

Worker-side functions take a ``sessionmaker`` and own their transaction. API-side
ones take a ``Session`` and work inside the caller's transaction (the async API runs
them with ``AsyncSession.run_sync``), so a route commits its own work at once.
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Row, delete, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.config import Settings
from imagepipe.db.clock import db_now, db_now_plus
from imagepipe.db.models import Task, TaskStatus, Variant, live, utcnow
from imagepipe.errors import (
    ImagepipeError,
)
from imagepipe.imaging import ImageInfo
from imagepipe.imaging.crop import FocalPoint
from imagepipe.services import hooks, renditions, webhooks
from imagepipe.services.holder import current_holder, holder_is_dead

log = logging.getLogger(__name__)

# Longest message stored with a failed task (the column's width).
MAX_MESSAGE = 1024


_UNFINISHED = (TaskStatus.queued, TaskStatus.processing)


@dataclass(frozen=True)
class Claim:
    task_id: uuid.UUID
    attempt: int
    original_key: str
    # Empty for a direct upload until a worker has read the original and recorded it.
    original_sha256: str = ""
    # A direct upload's object as checked at completion (empty: no check).
    original_etag: str = ""
    # The task's focal point as the claim found it: what this render's crops follow.
    focal: FocalPoint | None = None
    # The task's owner (its tenant's scope): whose earlier tasks it may be a copy of.
    owner: str | None = None


# --- creating (API) ---------------------------------------------------------------


def create(session: Session, task: Task, *, awaiting_upload: bool = False) -> None:
    """Add a new task in the caller's transaction: queued (its original stored and
    checked), or awaiting the client's direct upload."""
    now = utcnow()
    task.created_at = now
    if awaiting_upload:
        task.status = TaskStatus.awaiting_upload
    else:
        task.status = TaskStatus.queued
        # Set before the publish: if the process dies between commit and publish,
        # the reconciler finds the row after its grace period and publishes it.
        task.enqueued_at = now
    session.add(task)


def complete_upload(
    session: Session, task_id: uuid.UUID, image: ImageInfo, size: int, etag: str
) -> bool:
    """A direct upload's bytes are in and checked: awaiting_upload → queued. False if
    another completion (or the expiry, or a delete) moved the task first. Its sha256
    stays empty until the worker, which reads the whole object, records it with the
    result; ``etag`` (the checked object's version tag) is what the worker must read.
    The upload token's digest stays: its holder is told the upload is closed."""
    moved = session.execute(
        update(Task)
        .where(Task.id == task_id, Task.status == TaskStatus.awaiting_upload, live())
        .values(
            status=TaskStatus.queued,
            enqueued_at=utcnow(),
            original_format=image.format,
            original_width=image.width,
            original_height=image.height,
            original_frames=image.frames,
            original_size_bytes=size,
            original_etag=etag,
            upload_expires_at=None,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(moved.rowcount == 1)  # type: ignore[attr-defined]


def refuse_upload(
    session: Session, task_id: uuid.UUID, error: ImagepipeError
) -> list[uuid.UUID] | None:
    """A direct upload's object was refused (too large, not an image, expired):
    awaiting_upload → failed with the refusal's code, a failure like any other. Returns
    the ``task.failed`` deliveries written beside it, or None if another process moved
    the task first (its object is then not the refusal's to delete); after the commit
    the caller calls ``announce`` with them and deletes the object."""
    moved = session.execute(
        update(Task)
        .where(Task.id == task_id, Task.status == TaskStatus.awaiting_upload)
        .values(
            status=TaskStatus.failed,
            finished_at=utcnow(),
            error_code=error.code,
            error_message=error.message[:MAX_MESSAGE],
        )
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return webhooks.record(session, task_id, "task.failed")


def announce(
    sessions: hooks.SessionsOrSession, task_id: uuid.UUID, deliveries: list[uuid.UUID]
) -> None:
    """After the commit of a status change: wake the task's followers and hand its
    deliveries to the broker, through the hooks of the runtime that made ``sessions``
    (both best effort: followers re-read on a timer, the sweep finds the deliveries)."""
    hooks.of(sessions).announce(task_id, deliveries)


def forget(session: Session, task_id: uuid.UUID) -> None:
    """Remove a task the client was never told of (its publish failed, the client got
    a 503 and retries). The caller deletes the original after the commit."""
    session.execute(delete(Task).where(Task.id == task_id))


# --- claiming and working (worker) --------------------------------------------------


def claim(
    sessions: sessionmaker[Session],
    task_id: uuid.UUID,
    settings: Settings,
    *,
    inside: Callable[[Session, Claim], None] | None = None,
) -> Claim | None:
    """Take the task if it is queued, its lease expired, or its holder process died on
    this host; None if it is not ours.

    The usual case (queued) is one ``UPDATE … RETURNING``: one round trip. Only when
    that takes nothing does it look at the row, to take a task whose holder died.
    ``inside``: reads the worker needs next (the dedup look-up), run in the claim's own
    transaction once the task is taken, saving a transaction (a connection checkout, a
    BEGIN and a ROLLBACK) per task; if it raises, nothing was claimed."""
    with sessions.begin() as session:
        claimable = or_(
            Task.status == TaskStatus.queued,
            (Task.status == TaskStatus.processing) & (Task.lease_expires_at < db_now()),
        )
        row = _take(session, task_id, settings, claimable)
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
            )
            if row is None:
                return None
        taken = Claim(
            task_id,
            row.attempts,
            row.original_key,
            row.original_sha256,
            row.original_etag or "",
            focal_of(row.focal_x, row.focal_y),
            row.owner_scope,
        )
        if inside is not None:
            inside(session, taken)
    hooks.of(sessions).notify(task_id)
    return taken


def focal_of(x: float | None, y: float | None) -> FocalPoint | None:
    """The focal point of a task row's two columns (None: unset)."""
    return None if x is None or y is None else FocalPoint(x, y)


def _take(
    session: Session, task_id: uuid.UUID, settings: Settings, claimable: ColumnElement[bool]
) -> Row[int, str, str, str | None, float | None, float | None, str | None] | None:
    """The claiming update under ``claimable``; the new attempt, the original's key, its
    digest and its checked version tag, the focal point and the owner, or None if it
    matched nothing."""
    return session.execute(
        update(Task)
        .where(Task.id == task_id, live())
        .where(spent() < settings.max_attempts)
        .where(claimable)
        .values(
            status=TaskStatus.processing,
            attempts=Task.attempts + 1,
            started_at=db_now(),
            lease_expires_at=db_now_plus(settings.lease_seconds),
            claimed_by=current_holder(),
        )
        .returning(
            Task.attempts,
            Task.original_key,
            Task.original_sha256,
            Task.original_etag,
            Task.focal_x,
            Task.focal_y,
            Task.owner_scope,
        )
        .execution_options(synchronize_session=False)
    ).one_or_none()


class Finished(enum.StrEnum):
    """What ``finish`` found: the claim won, was superseded, or the task was deleted."""

    succeeded = "succeeded"
    superseded = "superseded"
    gone = "gone"


def finish(
    sessions: sessionmaker[Session],
    claim: Claim,
    variants: list[Variant],
    described: Mapping[str, Any] | None = None,
) -> Finished:
    """Record the previews (already written) and mark the task succeeded, in one
    commit, fenced by the claim. Returns a ``Finished`` value; on anything but
    ``succeeded`` the caller removes what this claim wrote. ``described``: the task
    columns that say what was made (report, placeholder, render spec), in the same
    commit."""
    with sessions.begin() as session:
        done = session.execute(
            update(Task)
            .where(Task.id == claim.task_id, live())
            .where(Task.status == TaskStatus.processing)
            .where(Task.attempts == claim.attempt)
            .values(
                status=TaskStatus.succeeded,
                finished_at=db_now(),
                lease_expires_at=None,
                **(described or {}),
            )
            .execution_options(synchronize_session=False)
        )
        if done.rowcount != 1:  # type: ignore[attr-defined]
            exists = session.scalar(select(Task.id).where(Task.id == claim.task_id, live()))
            return Finished.superseded if exists is not None else Finished.gone
        if claim.attempt > 1:
            # Only an earlier claim can have recorded variants (attempts only grow,
            # and only a finish under the claim's own attempt writes rows): the first
            # attempt saves the round trip.
            session.execute(delete(Variant).where(Variant.task_id == claim.task_id))
        renditions.insert_rows(session, variants)
        deliveries = webhooks.record(session, claim.task_id, "task.succeeded")
    announce(sessions, claim.task_id, deliveries)
    return Finished.succeeded


def fail(
    sessions: sessionmaker[Session],
    task_id: uuid.UUID,
    error: ImagepipeError,
    *,
    attempt: int | None = None,
    only_queued: bool = False,
) -> bool:
    """Mark the task failed with ``error``'s code and message, unless it already
    finished. Given ``attempt``, only while that claim is the latest; with
    ``only_queued``, only while nobody holds it.

    The message stored is the error's own (built by this code from limits and ids),
    never an exception's text: what is stored is what clients read."""
    unfinished = [TaskStatus.queued] if only_queued else list(_UNFINISHED)
    with sessions.begin() as session:
        statement = (
            update(Task).where(Task.id == task_id, live()).where(Task.status.in_(unfinished))
        )
        if attempt is not None:
            statement = statement.where(Task.attempts == attempt)
        result = session.execute(
            statement.values(
                status=TaskStatus.failed,
                finished_at=db_now(),
                lease_expires_at=None,
                error_code=error.code,
                error_message=error.message[:MAX_MESSAGE],
            ).execution_options(synchronize_session=False)
        )
        failed = bool(result.rowcount == 1)  # type: ignore[attr-defined]
        deliveries = webhooks.record(session, task_id, "task.failed") if failed else []
    if failed:
        announce(sessions, task_id, deliveries)
    return failed


def spent() -> ColumnElement[int]:
    """Claims that count towards ``max_attempts``: lease expiries, kills, and releases
    for causes that are not transient."""
    return Task.attempts - Task.transient_releases


def release(sessions: sessionmaker[Session], claim: Claim, *, transient: bool) -> None:
    """Give the claim back (status queued) so a retry can take it at once.

    ``transient``: a backing service failed (``services.transient``), which says
    nothing about the image, so the claim does not spend the poison-image budget.
    The attempt number is not reused: the next claim takes a new fencing token.
    """
    values: dict[str, object] = {
        "status": TaskStatus.queued,
        "lease_expires_at": None,
        "enqueued_at": utcnow(),
    }
    if transient:
        values["transient_releases"] = Task.transient_releases + 1
    with sessions.begin() as session:
        session.execute(
            update(Task)
            .where(Task.id == claim.task_id)
            .where(Task.status == TaskStatus.processing)
            .where(Task.attempts == claim.attempt)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    hooks.of(sessions).notify(claim.task_id)
