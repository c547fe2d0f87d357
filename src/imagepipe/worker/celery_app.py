"""The Celery application, configured from Settings.

Reliability settings and why (see docs/reliability.md):
- acks_late + reject_on_worker_lost: a task whose process dies is delivered again.
- prefetch 1: a worker never sits on messages another worker could run.
- visibility_timeout above the hard time limit: Redis does not re-deliver a task
  that is still running.
- no result backend: the task row in the database is the record.
- max memory per child: a pool process left large by one image is replaced.
"""

from __future__ import annotations

from celery import Celery

from imagepipe.config import Settings
from imagepipe.queue import (
    EVICT_DERIVED,
    FOLLOW_UP_QUEUE,
    FOLLOW_UP_TASKS,
    MAINTENANCE_QUEUE,
    MAINTENANCE_TASKS,
    ON_DEMAND_QUEUE,
    PRIORITY_LEVELS,
    PRIORITY_SEPARATOR,
    PURGE,
    PURGE_IDEMPOTENCY_KEYS,
    RECONCILE,
    RENDER_ON_DEMAND,
    RENDER_QUEUE,
    SWEEP_WEBHOOKS,
)


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
        task_routes={
            **{name: {"queue": MAINTENANCE_QUEUE} for name in MAINTENANCE_TASKS},
            **{name: {"queue": FOLLOW_UP_QUEUE} for name in FOLLOW_UP_TASKS},
            RENDER_ON_DEMAND: {"queue": ON_DEMAND_QUEUE},
        },
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
