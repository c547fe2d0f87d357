"""Handing tasks to the broker. The database row is the record; this only delivers.

Publishing is blocking (kombu); async callers run it in a thread. Broker timeouts
are set on the Celery app, so a dead Redis fails the publish in seconds, not minutes.

The Celery app is configured here (``create_celery``), not in ``worker``: the API and
the CLI publish with it and must not import the worker to do so.

Reliability settings and why (see docs/reliability.md):
- acks_late + reject_on_worker_lost: a task whose process dies is delivered again.
- prefetch 1: a worker never sits on messages another worker could run.
- visibility_timeout above the hard time limit: Redis does not re-deliver a task
  that is still running.
- no result backend: the task row in the database is the record.
- max memory per child: a pool process left large by one image is replaced.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import Protocol

import redis
from celery import Celery

from imagepipe.config import Settings

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
# Make one on-demand rendition a request is waiting for (services/on_demand).
RENDER_ON_DEMAND = "imagepipe.render_on_demand"
# Keep the on-demand renditions within IMAGEPIPE_ON_DEMAND_MAX_BYTES.
EVICT_DERIVED = "imagepipe.evict_derived"

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
MAINTENANCE_TASKS = (RECONCILE, SWEEP_WEBHOOKS, PURGE, PURGE_IDEMPOTENCY_KEYS, EVICT_DERIVED)
FOLLOW_UP_TASKS = (MAKE_EXTRAS, DELIVER_WEBHOOK, REFRESH_TASK)
# Where each task is published; anything else is a render.
ROUTES = {
    **{name: MAINTENANCE_QUEUE for name in MAINTENANCE_TASKS},
    **{name: FOLLOW_UP_QUEUE for name in FOLLOW_UP_TASKS},
    RENDER_ON_DEMAND: ON_DEMAND_QUEUE,
}


def queue_for(task_name: str) -> str:
    """The queue a task of that name is published to."""
    return ROUTES.get(task_name, RENDER_QUEUE)


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


def create_celery(settings: Settings) -> Celery:
    app = Celery(
        "imagepipe",
        broker=settings.redis_url,
        include=[
            "imagepipe.worker.tasks",
            "imagepipe.worker.observe",
            "imagepipe.worker.webhooks",
            "imagepipe.worker.retention",
            "imagepipe.worker.housekeeping",
            "imagepipe.worker.on_demand",
        ],
    )
    timeout = settings.broker_timeout_seconds
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # Celery counts KiB; None leaves pool processes alone.
        worker_max_memory_per_child=settings.worker_max_memory_per_child_mb * 1024 or None,
        task_soft_time_limit=settings.task_soft_time_limit,
        task_time_limit=settings.task_hard_time_limit,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=timeout,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "retry_on_timeout": True,
            "health_check_interval": 10,
            # One Redis list per level (services.fairness), popped level 0 first.
            "priority_steps": list(range(PRIORITY_LEVELS)),
            "sep": PRIORITY_SEPARATOR,
        },
        broker_pool_limit=10,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        task_default_queue=RENDER_QUEUE,
        task_routes={name: {"queue": queue} for name, queue in ROUTES.items()},
        beat_schedule={
            "reconcile": {"task": RECONCILE, "schedule": settings.reconcile_interval_seconds},
            # Webhook deliveries whose publish was lost or whose retry is due.
            "sweep-webhooks": {
                "task": SWEEP_WEBHOOKS,
                "schedule": settings.reconcile_interval_seconds,
            },
            # Cheap when neither retention setting is set: it returns at once.
            "purge": {"task": PURGE, "schedule": settings.retention_interval_seconds},
            # Idempotency keys past their 24 h.
            "purge-idempotency-keys": {
                "task": PURGE_IDEMPOTENCY_KEYS,
                "schedule": settings.reconcile_interval_seconds,
            },
            # On-demand renditions over their byte budget (returns at once without one).
            "evict-derived": {
                "task": EVICT_DERIVED,
                "schedule": settings.reconcile_interval_seconds,
            },
        },
    )
    return app


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

    def enqueue_on_demand(self, args: list[str]) -> None:
        """Publish one on-demand render (its queue is served by render workers only)."""
        self.app.send_task(
            RENDER_ON_DEMAND,
            args=args,
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


@dataclass(frozen=True)
class Published:
    """One message as the broker holds it: what to run, with what, where, at which level."""

    task: str
    args: tuple[str, ...]
    queue: str
    priority: int


class MemoryQueue:
    """The double of CeleryQueue for tests without a broker: it keeps every message it
    is given, in the queue and at the priority level Celery would put it in (``ROUTES``),
    and counts depths from them. ``outage`` makes publishing and ``ping`` fail as a
    broker that does not answer does."""

    def __init__(self) -> None:
        self.published: list[Published] = []
        self.outage: Exception | None = None
        self._lock = threading.Lock()

    def _publish(self, task: str, subject: uuid.UUID, priority: int = 0) -> None:
        self._put(Published(task, (str(subject),), queue_for(task), priority))

    def _put(self, message: Published) -> None:
        if self.outage is not None:
            raise self.outage
        with self._lock:
            self.published.append(message)

    def enqueue(self, task_id: uuid.UUID, priority: int = 0) -> None:
        self._publish(PROCESS_TASK, task_id, priority)

    def enqueue_refresh(self, task_id: uuid.UUID) -> None:
        self._publish(REFRESH_TASK, task_id)

    def enqueue_extras(self, task_id: uuid.UUID) -> None:
        self._publish(MAKE_EXTRAS, task_id)

    def publish_delivery(self, delivery_id: uuid.UUID) -> None:
        self._publish(DELIVER_WEBHOOK, delivery_id)

    def enqueue_on_demand(self, args: list[str]) -> None:
        self._put(Published(RENDER_ON_DEMAND, tuple(args), queue_for(RENDER_ON_DEMAND), 0))

    def ping(self) -> None:
        if self.outage is not None:
            raise self.outage

    def depth(self) -> int:
        return sum(1 for message in self.published if message.queue == RENDER_QUEUE)

    def follow_up_depth(self) -> int:
        return sum(1 for message in self.published if message.queue == FOLLOW_UP_QUEUE)

    def close(self) -> None:
        return
