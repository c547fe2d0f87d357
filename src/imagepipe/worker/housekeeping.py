"""Periodic tidying that no request waits for (scheduled by beat, queue.create_celery)."""

from __future__ import annotations

import logging

from imagepipe.queue import PURGE_IDEMPOTENCY_KEYS
from imagepipe.services import idempotency
from imagepipe.worker.app import celery_app
from imagepipe.worker.tasks import runtime

log = logging.getLogger(__name__)


@celery_app.task(name=PURGE_IDEMPOTENCY_KEYS, ignore_result=True)
def purge_idempotency_keys() -> int:
    """Idempotency keys older than their 24 h are never replayed again: delete them."""
    purged = idempotency.purge_expired(runtime().sessions)
    if purged:
        log.info("purged %d expired idempotency keys", purged)
    return purged
