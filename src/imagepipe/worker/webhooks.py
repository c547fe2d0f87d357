"""Celery tasks that deliver webhooks (see imagepipe.services.webhooks)."""

from __future__ import annotations

import logging
import uuid

from sqlalchemy.orm import Session

from imagepipe.db.models import DeliveryState
from imagepipe.queue import DELIVER_WEBHOOK, SWEEP_WEBHOOKS
from imagepipe.services import webhooks
from imagepipe.worker.app import celery_app
from imagepipe.worker.tasks import runtime

log = logging.getLogger(__name__)
# Retries due sooner than this ride on a broker countdown; later ones on the sweep
# (a countdown is held unacknowledged in Redis, which must stay well under the
# visibility timeout).
_COUNTDOWN_LIMIT = 60.0


def _payload(session: Session, task_id: uuid.UUID, event: str) -> str:
    return webhooks.event_payload(session, task_id, event, runtime().settings.variants)


@celery_app.task(name=DELIVER_WEBHOOK, ignore_result=True)
def deliver_webhook(delivery_id: str) -> str | None:
    rt = runtime()
    options = webhooks.DeliverySettings.from_settings(rt.settings)
    parsed = uuid.UUID(delivery_id)
    state = webhooks.deliver(rt.sessions, parsed, options, payload_for=_payload)
    if state == DeliveryState.pending:
        delay = webhooks.retry_delay(rt.sessions, parsed)
        if delay is not None and delay <= _COUNTDOWN_LIMIT:
            deliver_webhook.apply_async(args=(delivery_id,), countdown=delay)
    return state.value if state else None


@celery_app.task(name=SWEEP_WEBHOOKS, ignore_result=True)
def sweep_webhooks() -> int:
    """Publish deliveries that are due (lost publishes and later retries), a bounded
    number per run and per owner."""
    rt = runtime()
    due = webhooks.due(
        rt.sessions,
        limit=rt.settings.webhook_sweep_limit,
        per_owner=rt.settings.webhook_sweep_per_owner,
    )
    for delivery_id in due:
        deliver_webhook.delay(str(delivery_id))
    return len(due)
