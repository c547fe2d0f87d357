"""Handing tasks to the broker. The database row is the record; this only delivers.

Publishing is blocking (kombu); async callers run it in a thread. Broker timeouts
are set on the Celery app, so a dead Redis fails the publish in seconds, not minutes.
"""

from __future__ import annotations

import uuid
from typing import Protocol

import redis
from celery import Celery

PROCESS_TASK = "imagepipe.process_task"
# Re-render a succeeded task whose variants no longer match the settings (backfill).
REFRESH_TASK = "imagepipe.refresh_task"
RECONCILE = "imagepipe.reconcile"
DELIVER_WEBHOOK = "imagepipe.deliver_webhook"
# Make the extra formats of a task that succeeded with its base renditions.
MAKE_EXTRAS = "imagepipe.make_extras"
SWEEP_WEBHOOKS = "imagepipe.sweep_webhooks"
# Retention: originals and finished tasks past their settings (services.retention).
PURGE = "imagepipe.purge"
PURGE_IDEMPOTENCY_KEYS = "imagepipe.purge_idempotency_keys"

# The queue layout. Four queues, so that no kind of work can delay a render:
# - render: uploads' base renditions, in priority lists that give every owner a fair
#   share of the workers (services.fairness);
# - on_demand: renditions asked for by a request that is waiting for them;
# - follow_up: work that follows a finished task (extra formats, webhook deliveries,
#   re-renders for backfill), served by a pool of its own: under a burst every task's
#   base renditions come before any task's extras;
# - maintenance: the periodic passes (reconciler, webhook sweep, retention).
RENDER_QUEUE = "imagepipe.render"
ON_DEMAND_QUEUE = "imagepipe.on_demand"
FOLLOW_UP_QUEUE = "imagepipe.follow_up"
MAINTENANCE_QUEUE = "imagepipe.maintenance"
# Where earlier releases published renders (Celery's default queue). Render workers
# drain it too, so messages published before an upgrade are not stranded.
LEGACY_RENDER_QUEUE = "celery"
QUEUES = {
    "render": RENDER_QUEUE,
    "on_demand": ON_DEMAND_QUEUE,
    "follow_up": FOLLOW_UP_QUEUE,
    "maintenance": MAINTENANCE_QUEUE,
}
# What the render pool serves and what the follow-up pool serves.
RENDER_POOL_QUEUES = (RENDER_QUEUE, ON_DEMAND_QUEUE, LEGACY_RENDER_QUEUE)
FOLLOW_UP_POOL_QUEUES = (FOLLOW_UP_QUEUE, MAINTENANCE_QUEUE)
MAINTENANCE_TASKS = (RECONCILE, SWEEP_WEBHOOKS, PURGE, PURGE_IDEMPOTENCY_KEYS)
FOLLOW_UP_TASKS = (MAKE_EXTRAS, DELIVER_WEBHOOK, REFRESH_TASK)

# Redis has no priority queue: kombu keeps one list per priority level and pops them
# in order, level 0 first. Ten levels, one per step.
PRIORITY_LEVELS = 10
PRIORITY_SEPARATOR = "\x06\x16"  # kombu's own, between a queue's name and its level


def priority_lists(queue: str) -> list[str]:
    """The Redis lists a queue with priority levels is made of, level 0 first."""
    return [queue] + [f"{queue}{PRIORITY_SEPARATOR}{level}" for level in range(1, PRIORITY_LEVELS)]


# Every list whose messages count as waiting renders: back-pressure and the reconciler
# read this one depth.
RENDER_LISTS = (*priority_lists(RENDER_QUEUE), LEGACY_RENDER_QUEUE)
FOLLOW_UP_LISTS = tuple(priority_lists(FOLLOW_UP_QUEUE))


class TaskQueue(Protocol):
    def enqueue(self, task_id: uuid.UUID, priority: int = 0) -> None:
        """Publish one task at ``priority`` (0 first); raise an exception if the broker
        did not take it."""

    def ping(self) -> None:
        """Raise if the broker does not answer."""

    def depth(self) -> int:
        """How many renders wait in the broker."""


class FollowUpQueue(TaskQueue, Protocol):
    def enqueue_extras(self, task_id: uuid.UUID) -> None:
        """Publish the making of one task's extra formats (follow-up work)."""

    def enqueue_refresh(self, task_id: uuid.UUID) -> None:
        """Publish the re-render of one task (follow-up work)."""

    def follow_up_depth(self) -> int:
        """How many follow-up messages wait in the broker."""


class CeleryQueue:
    def __init__(self, app: Celery) -> None:
        self.app = app
        timeout = float(app.conf.broker_connection_timeout)
        # For health checks and queue depth; connects lazily, on first use.
        self._redis = redis.Redis.from_url(
            str(app.conf.broker_url), socket_timeout=timeout, socket_connect_timeout=timeout
        )

    def enqueue(self, task_id: uuid.UUID, priority: int = 0) -> None:
        # A couple of quick retries re-open a pooled connection that went stale
        # after a Redis restart; the socket timeouts bound each attempt.
        self.app.send_task(
            PROCESS_TASK,
            args=[str(task_id)],
            priority=priority,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2},
        )

    def enqueue_refresh(self, task_id: uuid.UUID) -> None:
        """Hand one out-of-date task to the workers for a re-render."""
        self.app.send_task(
            REFRESH_TASK,
            args=[str(task_id)],
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2},
        )

    def enqueue_extras(self, task_id: uuid.UUID) -> None:
        self.app.send_task(
            MAKE_EXTRAS,
            args=[str(task_id)],
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2},
        )

    def publish_delivery(self, delivery_id: uuid.UUID) -> None:
        """Hand one webhook delivery to the workers."""
        self.app.send_task(DELIVER_WEBHOOK, args=[str(delivery_id)])

    def ping(self) -> None:
        self._redis.ping()

    def depth(self) -> int:
        """Renders waiting: every list of the render queue, in one round trip."""
        return self._length(RENDER_LISTS)

    def follow_up_depth(self) -> int:
        return self._length(FOLLOW_UP_LISTS)

    def _length(self, lists: tuple[str, ...]) -> int:
        with self._redis.pipeline(transaction=False) as pipe:
            for name in lists:
                pipe.llen(name)
            return sum(int(length) for length in pipe.execute())

    def close(self) -> None:
        self._redis.close()
        self.app.close()
