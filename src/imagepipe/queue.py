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
SWEEP_WEBHOOKS = "imagepipe.sweep_webhooks"
# Retention: originals and finished tasks past their settings (services.retention).
PURGE = "imagepipe.purge"
PURGE_IDEMPOTENCY_KEYS = "imagepipe.purge_idempotency_keys"

# Where renders wait (Celery's default queue): its length is the queue depth that
# back-pressure and the reconciler look at.
RENDER_QUEUE = "celery"
# The periodic passes (reconciler, webhook sweep, retention) have their own queue: a
# long render queue never delays them, and they never add to its length.
MAINTENANCE_QUEUE = "imagepipe.maintenance"
MAINTENANCE_TASKS = (RECONCILE, SWEEP_WEBHOOKS, PURGE, PURGE_IDEMPOTENCY_KEYS)


class TaskQueue(Protocol):
    def enqueue(self, task_id: uuid.UUID) -> None:
        """Publish one task; raise an exception if the broker did not take it."""

    def ping(self) -> None:
        """Raise if the broker does not answer."""

    def depth(self) -> int:
        """How many tasks wait in the broker."""


class CeleryQueue:
    def __init__(self, app: Celery) -> None:
        self.app = app
        timeout = float(app.conf.broker_connection_timeout)
        # For health checks and queue depth; connects lazily, on first use.
        self._redis = redis.Redis.from_url(
            str(app.conf.broker_url), socket_timeout=timeout, socket_connect_timeout=timeout
        )

    def enqueue(self, task_id: uuid.UUID) -> None:
        # A couple of quick retries re-open a pooled connection that went stale
        # after a Redis restart; the socket timeouts bound each attempt.
        self.app.send_task(
            PROCESS_TASK,
            args=[str(task_id)],
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2},
        )

    def enqueue_refresh(self, task_id: uuid.UUID) -> None:
        """Hand one out-of-date task to the workers for a re-render."""
        self.app.send_task(REFRESH_TASK, args=[str(task_id)])

    def publish_delivery(self, delivery_id: uuid.UUID) -> None:
        """Hand one webhook delivery to the workers."""
        self.app.send_task(DELIVER_WEBHOOK, args=[str(delivery_id)])

    def ping(self) -> None:
        self._redis.ping()

    def depth(self) -> int:
        """Messages waiting in the default queue (Celery's Redis list)."""
        return int(self._redis.llen(self.app.conf.task_default_queue))

    def close(self) -> None:
        self._redis.close()
        self.app.close()
