"""What each route costs its tenant: one table, read by the access layer
(``api/access.py``) before any body is read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Limits:
    """What a route costs its tenant."""

    rate: bool = False  # one unit of IMAGEPIPE_KEY_RATE_LIMIT
    quota: bool = False  # creates a task: IMAGEPIPE_KEY_MAX_ACTIVE_TASKS
    slot: Literal["uploads", "followers", "followers_if_waiting", None] = None


# Where a request that passed the quota finds its tenant's unfinished tasks, counted
# before it (request.state): what the upload route publishes its fair-share level from.
ACTIVE_TASKS_STATE = "active_tasks"

RATE = Limits(rate=True)
# Which routes (method, path template) cost what. A new mutating route joins with one
# line, e.g. ("PATCH", "/tasks/{task_id}"): RATE. GETs are never rate limited.
ROUTE_LIMITS: dict[tuple[str, str], Limits] = {
    ("POST", "/upload"): Limits(rate=True, quota=True, slot="uploads"),
    ("POST", "/uploads"): Limits(rate=True, quota=True),
    ("POST", "/tasks/{task_id}/complete"): RATE,
    ("PATCH", "/tasks/{task_id}"): RATE,
    ("POST", "/webhooks"): RATE,
    ("DELETE", "/webhooks/{webhook_id}"): RATE,
    ("POST", "/deliveries/{delivery_id}/replay"): RATE,
    ("POST", "/tasks/{task_id}/links"): RATE,
    # First renders of on-demand renditions cost a unit too, charged by the route
    # (``charge_rate``) once it knows the request is one: cache hits are free.
    ("GET", "/tasks/{task_id}/events"): Limits(slot="followers"),
    ("GET", "/tasks/{task_id}"): Limits(slot="followers_if_waiting"),
}
# Routes that read their own (large) bodies, under their own limits and deadlines.
STREAMED_BODIES = frozenset({("POST", "/upload")})
