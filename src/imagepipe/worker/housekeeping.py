"""Periodic tidying that no request waits for (scheduled by beat, queue.create_celery)."""

from __future__ import annotations

import logging

from imagepipe.queue import EVICT_DERIVED, PURGE_IDEMPOTENCY_KEYS
from imagepipe.services import idempotency
from imagepipe.services.on_demand import records
from imagepipe.worker.app import celery_app
from imagepipe.worker.tasks import runtime

log = logging.getLogger(__name__)


@celery_app.task(name=PURGE_IDEMPOTENCY_KEYS, ignore_result=True)
def purge_idempotency_keys() -> int:
    """Idempotency keys older than their 24 h are never replayed again: delete them."""
    purged = idempotency.drop_expired(runtime().sessions)
    if purged:
        log.info("purged %d expired idempotency keys", purged)
    return purged


@celery_app.task(name=EVICT_DERIVED, ignore_result=True)
def evict_derived() -> int:
    """On-demand renditions over IMAGEPIPE_ON_DEMAND_MAX_BYTES, oldest made first."""
    rt = runtime()
    if rt.settings.on_demand_max_bytes is None:
        return 0
    return records.evict(rt.sessions, rt.storage, rt.settings.on_demand_max_bytes)
