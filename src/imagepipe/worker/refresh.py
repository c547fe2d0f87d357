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

from sqlalchemy.orm import Session, sessionmaker

from imagepipe.config import Settings
from imagepipe.services import backfill, lifecycle, renditions
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
    swapped = lifecycle.swap_variants(sessions, claim, rows)
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
    options = processing.render_options(settings)
    return lifecycle.take_for_rerender(
        sessions, task_id, lambda task: backfill.is_stale(task, options)
    )
