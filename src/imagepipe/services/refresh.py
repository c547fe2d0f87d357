"""Re-render a succeeded task whose variants no longer match the settings (what
``imagepipe backfill`` queues).

The task stays ``succeeded`` and its old variants keep serving until the new ones
replace them in one commit, with the report, placeholder and render spec that describe
them. The re-render takes a fencing token as a claim does (it bumps ``attempts``, which
a finished task no longer spends), writes under that attempt's keys, and swaps the rows
only while its token is still the latest: two re-renders of one task never mix, and the
loser's objects are removed.
"""

from __future__ import annotations

import logging
import time
import uuid

from sqlalchemy.orm import Session, sessionmaker

from imagepipe.config import Settings
from imagepipe.db.models import Task, TaskStatus
from imagepipe.services import backfill, rendering, renditions, rerender
from imagepipe.storage import Storage, keys

log = logging.getLogger(__name__)


def refresh(
    sessions: sessionmaker[Session], storage: Storage, settings: Settings, task_id: uuid.UUID
) -> rendering.Outcome:
    """Re-render ``task_id`` if it is succeeded and out of date; skipped otherwise.
    Render errors propagate (the old variants stay); transient ones are retried."""
    claim = _take(sessions, task_id, settings)
    if claim is None:
        _up_to_date(sessions, task_id, settings)
        return rendering.Outcome.skipped
    try:
        result = rendering.render(claim, storage, settings)
        started = time.perf_counter()
        rows = renditions.write(storage, task_id, claim.attempt, result.variants)
        stored = time.perf_counter() - started
    except BaseException:
        renditions.tidy(storage.delete_prefix, keys.attempt_prefix(task_id, claim.attempt))
        raise
    # The report, placeholder and spec go with the previews they describe (a copy's
    # report stops naming the task it was copied from: these were rendered).
    described = rendering.describe(result, store_seconds=stored)
    described |= rerender.settled(claim.focal)
    swapped = rerender.swap_variants(sessions, claim, rows, described)
    if not swapped:
        # Deleted meanwhile, or another re-render took a newer token: ours go.
        renditions.tidy(storage.delete_prefix, keys.attempt_prefix(task_id, claim.attempt))
        return rendering.Outcome.skipped
    renditions.tidy(renditions.remove_unreferenced, storage, task_id, rows)
    log.info("re-rendered to the current variant specs", extra={"task_id": str(task_id)})
    return rendering.Outcome.succeeded


def _up_to_date(sessions: sessionmaker[Session], task_id: uuid.UUID, settings: Settings) -> None:
    """Nothing to re-render (a duplicate message, or a point PATCHed back): a focal
    re-render recorded as due is done, if the task is up to date with its point."""
    options = rendering.render_options(settings)
    with sessions() as session:
        task = session.get(Task, task_id)
        if task is None or task.rerender_enqueued_at is None:
            return
        if task.status != TaskStatus.succeeded or backfill.is_stale(task, options):
            return  # another re-render holds it, or it is not ours to finish
        focal = task.focal_point
    rerender.done(sessions, task_id, focal)


def _take(
    sessions: sessionmaker[Session], task_id: uuid.UUID, settings: Settings
) -> rendering.Claim | None:
    options = rendering.render_options(settings)
    return rerender.take_for_rerender(
        sessions, task_id, lambda task: backfill.is_stale(task, options)
    )
