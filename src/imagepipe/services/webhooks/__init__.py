"""Webhooks, at least once: an outbox written with the status change, then delivery.

- ``subscriptions``: each owner's webhooks, made, listed and removed;
- ``outbox``: the delivery rows (written with the status change, swept, claimed,
  finished), replays, and the per-owner bounds on subscriptions, replays and sweeps;
- ``history``: a task's delivery attempts, and a replay published;
- ``send``: one attempt, bounded as a whole, to the address that was checked;
- ``signing``: which secrets sign a delivery, and each owner's own secret;
- ``urls``: where a webhook may be sent, and the bounded host look-up.

Each delivery is signed the Standard Webhooks way by the ``standardwebhooks`` library.
"""

from __future__ import annotations

from imagepipe.services.webhooks.outbox import (
    EVENTS,
    MAX_ATTEMPTS,
    due,
    event_body,
    event_payload,
    record,
    retry_delay,
)
from imagepipe.services.webhooks.send import DeliverySettings, deliver
from imagepipe.services.webhooks.signing import new_secret, valid_secret
from imagepipe.services.webhooks.urls import check_url

__all__ = [
    "EVENTS",
    "MAX_ATTEMPTS",
    "DeliverySettings",
    "check_url",
    "deliver",
    "due",
    "event_body",
    "event_payload",
    "new_secret",
    "record",
    "retry_delay",
    "valid_secret",
]
