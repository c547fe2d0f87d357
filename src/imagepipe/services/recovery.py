"""The reconciler's transitions: tasks the broker lost, claims whose lease expired,
direct uploads never completed, and tasks failed by transient causes queued again.

The rules of ``services.lifecycle`` hold here too: every UPDATE names the state it
moves from, leases are judged with the database's clock, and followers and webhooks
hear of a change only after its commit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.config import Settings
from imagepipe.db.clock import db_now
from imagepipe.db.models import Task, TaskStatus, live, utcnow
from imagepipe.errors import (
    CODES,
    ImagepipeError,
    InternalError,
    ProcessingTimeout,
    ServiceUnavailable,
    UploadExpired,
)
from imagepipe.services import hooks, webhooks
from imagepipe.services.lifecycle import spent

# Tasks handled per reconciler step; the rest wait for its next run.
RECOVER_BATCH = 500
EXPIRE_BATCH = 500


@dataclass
class Recovered:
    requeued: list[uuid.UUID] = field(default_factory=list)
    failed: list[uuid.UUID] = field(default_factory=list)


def recover(
    sessions: sessionmaker[Session],
    settings: Settings,
    now: datetime | None = None,
    *,
    republish_queued: bool = True,
    limit: int = RECOVER_BATCH,
) -> Recovered:
    """Find tasks the broker lost and hand them back; fail those out of attempts.

    - queued, never enqueued or enqueued longer ago than the grace period → again
      (only with ``republish_queued``: while the render queue is long, such a row is
      most likely still waiting in it, and publishing it again would only add a
      duplicate per run — the storm that grows with the backlog);
    - processing with an expired lease (database clock) → queued again, or failed
      once its counted attempts are used up.

    One batch of at most ``limit`` rows, oldest first; on PostgreSQL the rows are
    locked with SKIP LOCKED, so two reconcilers (or a slow one) never wait on each
    other or take the same rows. The caller publishes the requeued ids after the
    commit.
    """
    now = now or utcnow()
    grace = now - timedelta(seconds=settings.queued_grace_seconds)
    report = Recovered()
    deliveries: list[uuid.UUID] = []
    lease_expired = (Task.status == TaskStatus.processing) & (Task.lease_expires_at < db_now())
    lost_in_queue = (
        (Task.status == TaskStatus.queued)
        & or_(Task.enqueued_at.is_(None), Task.enqueued_at < grace)
        & (Task.created_at < grace)
    )
    lost = live() & (or_(lease_expired, lost_in_queue) if republish_queued else lease_expired)
    with sessions.begin() as session:
        rows = session.execute(
            select(Task.id, Task.status, spent())
            .where(lost)
            .order_by(Task.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        for task_id, status, used in rows:
            failing = used >= settings.max_attempts
            if failing:
                report.failed.append(task_id)
                error = _out_of_attempts(status, settings.max_attempts)
                values: dict[str, object] = {
                    "status": TaskStatus.failed,
                    "finished_at": db_now(),
                    "error_code": error.code,
                    "error_message": error.message,
                }
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
    announced = hooks.of(sessions)
    for task_id in report.requeued + report.failed:
        announced.notify(task_id)
    announced.dispatch(deliveries)
    return report


def _out_of_attempts(status: TaskStatus, max_attempts: int) -> ImagepipeError:
    if status == TaskStatus.processing:
        return ProcessingTimeout(
            f"The task did not finish in {max_attempts} attempts "
            "(the worker was killed or hit the time limit each time)."
        )
    return InternalError(f"The task failed {max_attempts} times.")


def gave_up() -> ServiceUnavailable:
    """What a task that failed for transient causes only says (``imagepipe requeue``
    queues such tasks again)."""
    return ServiceUnavailable("A backing service (storage or database) failed on every try.")


# Codes of failures that a later try may not repeat: a task failed with one of them
# can be queued again as it is.
REQUEUEABLE = tuple(code for code, spec in CODES.items() if spec.retryable)


def _failed_transiently() -> ColumnElement[bool]:
    # enqueued_at: it was queued once (a refused direct upload never was).
    return (
        (Task.status == TaskStatus.failed)
        & Task.error_code.in_(REQUEUEABLE)
        & Task.enqueued_at.is_not(None)
        & live()
    )


def requeueable(sessions: sessionmaker[Session]) -> list[uuid.UUID]:
    """Tasks failed by transient causes, oldest first (``imagepipe requeue --dry-run``)."""
    with sessions() as session:
        return list(
            session.scalars(select(Task.id).where(_failed_transiently()).order_by(Task.finished_at))
        )


def requeue(sessions: sessionmaker[Session], limit: int = RECOVER_BATCH) -> list[uuid.UUID]:
    """failed (transient cause) → queued, one batch, oldest first. Counted attempts
    stay as they were: the budget still stops a poison image. The caller publishes
    the ids after the commit."""
    moved: list[uuid.UUID] = []
    with sessions.begin() as session:
        ids = session.scalars(
            select(Task.id).where(_failed_transiently()).order_by(Task.finished_at).limit(limit)
        ).all()
        for task_id in ids:
            done = session.execute(
                update(Task)
                .where(Task.id == task_id, _failed_transiently())
                .values(
                    status=TaskStatus.queued,
                    enqueued_at=utcnow(),
                    finished_at=None,
                    error_code=None,
                    error_message=None,
                )
                .execution_options(synchronize_session=False)
            )
            if done.rowcount == 1:  # type: ignore[attr-defined]
                moved.append(task_id)
    for task_id in moved:
        hooks.of(sessions).notify(task_id)
    return moved


def expire_uploads(
    sessions: sessionmaker[Session], now: datetime, limit: int = EXPIRE_BATCH
) -> list[str]:
    """Fail direct uploads still awaiting their bytes past their expiry (one batch,
    oldest first); returns the original keys the caller deletes after the commit.

    A failure like any other: ``task.failed`` deliveries in the same transaction,
    followers and the broker told after the commit."""
    expired = (Task.status == TaskStatus.awaiting_upload) & (Task.upload_expires_at < now) & live()
    error = UploadExpired()
    keys_to_delete: list[str] = []
    failed: list[uuid.UUID] = []
    deliveries: list[uuid.UUID] = []
    with sessions.begin() as session:
        rows = session.execute(
            select(Task.id, Task.original_key)
            .where(expired)
            .order_by(Task.upload_expires_at)
            .limit(limit)
        ).all()
        for task_id, key in rows:
            # Re-checked in the update: a completion may have won meanwhile.
            done = session.execute(
                update(Task)
                .where(Task.id == task_id, expired)
                .values(
                    status=TaskStatus.failed,
                    finished_at=now,
                    error_code=error.code,
                    error_message=error.message,
                )
                .execution_options(synchronize_session=False)
            )
            if done.rowcount:  # type: ignore[attr-defined]
                keys_to_delete.append(key)
                failed.append(task_id)
                deliveries += webhooks.record(session, task_id, "task.failed")
    announced = hooks.of(sessions)
    for task_id in failed:
        announced.notify(task_id)
    announced.dispatch(deliveries)
    return keys_to_delete
