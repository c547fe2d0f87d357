"""Re-render a succeeded task whose variants no longer match the settings (what
``imagepipe backfill`` queues).

The task stays ``succeeded`` and its old variants keep serving until the new ones
replace them in one commit. The re-render takes a fencing token as a claim does (it
bumps ``attempts``, which a finished task no longer spends), writes under that
attempt's keys, and swaps the rows only while its token is still the latest: two
re-renders of one task never mix, and the loser's objects are removed.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy import delete, update
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.config import Settings
from imagepipe.db.models import Task, TaskStatus, Variant, live
from imagepipe.services import backfill, renditions
from imagepipe.storage import Storage, keys
from imagepipe.worker import processing

log = logging.getLogger(__name__)


def refresh(
    sessions: sessionmaker[Session], storage: Storage, settings: Settings, task_id: uuid.UUID
) -> processing.Outcome:
    """Re-render ``task_id`` if it is succeeded and out of date; skipped otherwise.
    Render errors propagate (the old variants stay); transient ones are retried."""
    claim = _take(sessions, task_id, settings)
    if claim is None:
        return processing.Outcome.skipped
    try:
        result = processing.render(claim, storage, settings)
        rows = renditions.write(storage, task_id, claim.attempt, result.previews)
    except BaseException:
        renditions.tidy(storage.delete_prefix, keys.attempt_prefix(task_id, claim.attempt))
        raise
    with sessions.begin() as session:
        still_ours = session.execute(
            update(Task)
            .where(Task.id == task_id, live())
            .where(Task.status == TaskStatus.succeeded)
            .where(Task.attempts == claim.attempt)
            .values(attempts=claim.attempt)  # no change: takes the row lock for the swap
            .execution_options(synchronize_session=False)
        )
        swapped = still_ours.rowcount == 1  # type: ignore[attr-defined]
        if swapped:
            session.execute(delete(Variant).where(Variant.task_id == task_id))
            session.add_all(rows)
    if not swapped:
        # Deleted meanwhile, or another re-render took a newer token: ours go.
        renditions.tidy(storage.delete_prefix, keys.attempt_prefix(task_id, claim.attempt))
        return processing.Outcome.skipped
    renditions.tidy(renditions.remove_unreferenced, storage, task_id, rows)
    log.info("re-rendered to the current variant specs", extra={"task_id": str(task_id)})
    return processing.Outcome.succeeded


def _take(
    sessions: sessionmaker[Session], task_id: uuid.UUID, settings: Settings
) -> processing.Claim | None:
    """A fencing token on a succeeded, out-of-date task; None if there is nothing to do
    (gone, not succeeded, already up to date, or another re-render just took it)."""
    options = processing.render_options(settings)
    with sessions.begin() as session:
        task = session.get(Task, task_id)
        if task is None or task.deleted_at is not None or task.status != TaskStatus.succeeded:
            return None
        if not backfill.is_stale(task, options):
            return None  # a second backfill, or a duplicate message: done already
        taken = session.execute(
            update(Task)
            .where(Task.id == task_id)
            .where(Task.status == TaskStatus.succeeded)
            .where(Task.attempts == task.attempts)
            .values(attempts=Task.attempts + 1)
            .returning(Task.attempts, Task.original_key)
            .execution_options(synchronize_session=False)
        ).one_or_none()
    if taken is None:
        return None
    return processing.Claim(
        task_id=task_id, attempt=taken.attempts, original_key=taken.original_key
    )
