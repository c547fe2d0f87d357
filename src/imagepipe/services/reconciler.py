"""The reconciler: the periodic pass that repairs what crashes and lost messages left.

One run: hand lost tasks back (``recovery.recover``), expire abandoned direct
uploads, sweep what closed direct-upload URLs wrote, finish interrupted deletes, sweep
storage temp files, then publish what it requeued. Every step works in bounded
batches; the next run takes the rest.
"""

from __future__ import annotations

import itertools
import logging
import uuid
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.config import Settings
from imagepipe.db.models import Task, TaskStatus, live, utcnow
from imagepipe.queue import FollowUpQueue, TaskQueue
from imagepipe.services import deletion, extras, fairness, recovery, rerender, tidy
from imagepipe.services.spool import Spool
from imagepipe.services.transient import MAYBE_TRANSIENT, is_transient
from imagepipe.storage import Storage, keys

log = logging.getLogger(__name__)

# Staging objects looked up in the database per query.
STAGING_BATCH = 500


def run(
    sessions: sessionmaker[Session], storage: Storage, queue: FollowUpQueue, settings: Settings
) -> dict[str, int]:
    now = utcnow()
    # Queued rows past the grace period are republished only while the render queue
    # is short: in a long one they are waiting, not lost (and an unknown depth, the
    # broker down, publishes nothing anyway).
    depth = _depth(queue)
    republish = depth is not None and depth < recovery.RECOVER_BATCH
    recovered = recovery.recover(sessions, settings, now, republish_queued=republish)
    expired = recovery.expire_uploads(sessions, now)
    tidy.stale_temp_files(storage)
    tidy.quietly(Spool.from_settings(settings).sweep)
    for key in expired:
        # After the commit: the row says failed before the partial object goes.
        tidy.quietly(storage.delete, key)
    if expired:
        log.warning("expired %d direct uploads", len(expired))
    # After the expiry: the uploads it just closed are swept in the same run.
    sweep_staging(sessions, storage)
    purged = deletion.finish_deletes(sessions, storage)
    with sessions() as session:
        levels = fairness.priorities(session, recovered.requeued)
    for task_id in recovered.requeued:
        queue.enqueue(task_id, levels[task_id])
    extras_published = republish_extras(sessions, queue, settings)
    rerenders = republish_rerenders(sessions, queue, settings)
    if recovered.requeued or recovered.failed:
        log.warning(
            "reconciled: %d requeued, %d failed", len(recovered.requeued), len(recovered.failed)
        )
    return {
        "requeued": len(recovered.requeued),
        "failed": len(recovered.failed),
        "expired": len(expired),
        "purged": purged,
        "extras": extras_published,
        "rerenders": rerenders,
    }


def republish_extras(
    sessions: sessionmaker[Session], queue: FollowUpQueue, settings: Settings
) -> int:
    """Publish again the extras of tasks whose follow-up never finished (worker killed,
    publish lost)."""
    return _republish(
        queue,
        lambda: extras.due_pending(sessions, settings),
        queue.enqueue_extras,
        "the extra formats",
    )


def republish_rerenders(
    sessions: sessionmaker[Session], queue: FollowUpQueue, settings: Settings
) -> int:
    """Publish again the re-renders a new focal point asked for that never finished."""
    return _republish(
        queue,
        lambda: rerender.due_pending(sessions, settings),
        queue.enqueue_refresh,
        "the focal re-render",
    )


def _republish(
    queue: FollowUpQueue,
    due_pending: Callable[[], list[uuid.UUID]],
    publish: Callable[[uuid.UUID], None],
    what: str,
) -> int:
    """Follow-up work found due in the database, published again; only while the
    follow-up queue is short: in a long one (a burst's extras) it is waiting, not lost."""
    try:
        waiting = queue.follow_up_depth()
    except MAYBE_TRANSIENT as error:
        if not is_transient(error):
            raise
        log.warning("follow-up queue depth unknown: %r", error)
        return 0
    if waiting >= extras.REPUBLISH_BATCH:
        return 0
    due = due_pending()
    for task_id in due:
        publish(task_id)
    if due:
        log.warning("republished %s of %d tasks", what, len(due))
    return len(due)


def _depth(queue: TaskQueue) -> int | None:
    try:
        return queue.depth()
    except MAYBE_TRANSIENT as error:
        if not is_transient(error):
            raise
        log.warning("render queue depth unknown: %r", error)
        return None


def sweep_staging(sessions: sessionmaker[Session], storage: Storage) -> int:
    """Remove staging objects whose task no longer awaits its upload (completed,
    refused, expired, deleted); returns how many.

    They are what a direct-upload URL wrote after its task moved on, and a presigned
    PUT cannot be revoked: it may write again after this run until it expires. So
    every run lists what is staged rather than asking which tasks closed lately, and
    finds anything written back since the last one. The listing holds little more
    than the uploads in progress (the rest is removed as it is found)."""
    removed = 0
    try:
        listing = storage.list(keys.STAGING)
        while batch := list(itertools.islice(listing, STAGING_BATCH)):
            staged = {
                task_id: info.key
                for info in batch
                if (task_id := keys.staged_task(info.key)) is not None
            }
            still_open = _awaiting_upload(sessions, set(staged))
            for task_id, key in staged.items():
                # A task awaiting its upload keeps its object: completing moves it.
                if task_id not in still_open:
                    storage.delete(key)
                    removed += 1
    except MAYBE_TRANSIENT as error:
        log.warning("could not sweep staged uploads: %r", error)
    if removed:
        log.info("removed %d staged uploads of closed tasks", removed)
    return removed


def _awaiting_upload(sessions: sessionmaker[Session], ids: set[uuid.UUID]) -> set[uuid.UUID]:
    if not ids:
        return set()
    with sessions() as session:
        return set(
            session.scalars(
                select(Task.id).where(
                    Task.id.in_(ids), Task.status == TaskStatus.awaiting_upload, live()
                )
            )
        )
