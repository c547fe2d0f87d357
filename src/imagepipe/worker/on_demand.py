"""The Celery shell of on-demand renditions (queue ``imagepipe.on_demand``, served by
render workers, never the follow-up pool: a request is waiting for it)."""

from __future__ import annotations

import logging
import uuid
from functools import cache

import redis

from imagepipe.queue import RENDER_ON_DEMAND
from imagepipe.services.on_demand import making
from imagepipe.services.on_demand.records import RenderJob
from imagepipe.worker.app import celery_app
from imagepipe.worker.tasks import runtime

log = logging.getLogger(__name__)


@cache
def _locks() -> redis.Redis:
    """The process's client for releasing single-flight locks (built after the fork)."""
    settings = runtime().settings
    timeout = settings.broker_timeout_seconds
    return redis.Redis.from_url(
        settings.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout
    )


# Not retried by Celery: waiters give up within seconds, and the next request
# publishes again once the lock is released (which happens whatever the outcome).
@celery_app.task(name=RENDER_ON_DEMAND, ignore_result=True)
def render_on_demand(task_id: str, options: str, asked_format: str, cache_key: str) -> str:
    rt = runtime()
    try:
        job = RenderJob(uuid.UUID(task_id), options, asked_format, cache_key)
    except ValueError:
        log.error("dropping an on-demand render with a malformed task id")
        return making.Outcome.skipped.value
    outcome = making.make(rt.sessions, rt.storage, rt.settings, job, lock=_locks())
    log.info("on-demand render %s", outcome.value, extra={"task_id": task_id})
    return outcome.value
