"""Thin Celery tasks: they pass ids, call a service, retry what is transient.

The worker's engine and storage are built lazily once per process (after the fork),
so nothing connects at import time and no connection crosses a fork.
"""

from __future__ import annotations

import logging
import uuid
from functools import cache
from typing import Any

from celery import Task as CeleryTask
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_init, worker_process_shutdown
from sqlalchemy.orm import configure_mappers

from imagepipe.imaging import plugins, resample
from imagepipe.metrics import TASK_OUTCOMES
from imagepipe.queue import (
    MAKE_EXTRAS,
    PROCESS_TASK,
    RECONCILE,
    REFRESH_TASK,
)
from imagepipe.runtime import Runtime, open_runtime
from imagepipe.services import extras, lifecycle, reconciler, recovery, refresh, rendering
from imagepipe.services.transient import MAYBE_TRANSIENT, RetryPolicy, is_transient
from imagepipe.storage import ObjectNotFound
from imagepipe.worker.app import celery_app
from imagepipe.worker.app import settings as app_settings

log = logging.getLogger(__name__)


@cache
def runtime() -> Runtime:
    """This pool process's runtime, built once after the fork."""
    return open_runtime(app_settings, celery=celery_app)


@cache
def retry_policy() -> RetryPolicy:
    return RetryPolicy.from_settings(app_settings)


@worker_process_init.connect
def _warm(**_: object) -> None:
    """Build the runtime and the ORM's mappings in a new pool process, before its first
    task: that work (≈ 0.1 s) otherwise lands on the first task's time. Builds clients,
    opens no connection (a database or S3 that is down fails the task, not the pool)."""
    runtime()
    configure_mappers()
    plugins.register()  # every Pillow format plugin and HEIF, registered once
    resample.opencv()  # the SIMD resize behind a scaled JPEG decode


@worker_process_shutdown.connect
def _dispose(**_: object) -> None:
    """A pool process that ends closes its database connections and storage clients
    (only if it built them: nothing connects at import)."""
    if runtime.cache_info().currsize:
        runtime().close()
        runtime.cache_clear()


# Retries are counted by hand (RetryPolicy, from IMAGEPIPE_TRANSIENT_RETRIES): no
# Celery cap on any task here.
@celery_app.task(name=PROCESS_TASK, bind=True, max_retries=None)
def process_task(self: CeleryTask[Any, Any], task_id: str) -> str:
    rt = runtime()
    try:
        parsed = uuid.UUID(task_id)
    except ValueError:
        log.error("dropping message with a malformed task id", extra={"task_id": task_id})
        return rendering.Outcome.skipped.value
    try:
        outcome = rendering.process(
            rt.sessions,
            rt.storage,
            rt.settings,
            parsed,
            publish_extras=rt.queue.enqueue_extras,
            spool=rt.spool,
            time_limit=(SoftTimeLimitExceeded,),
        )
    except SoftTimeLimitExceeded:
        # process() fails the task it holds when its render times out; this is the
        # soft limit striking outside a claim (while claiming, or a cold start): the
        # task is not ours to fail. Retry; the claim decides who works on it.
        log.warning("soft time limit outside a claim, retrying", extra={"task_id": task_id})
        raise self.retry(countdown=1) from None
    except MAYBE_TRANSIENT as error:
        if not is_transient(error):
            raise
        # Checked here: given ``exc``, Celery's retry() re-raises that exception once
        # the retries are used up, never MaxRetriesExceededError.
        if retry_policy().exhausted(self.request.retries):
            # Only a task nobody holds: its claim was given back when the error struck.
            # One another worker claimed meanwhile is that worker's to finish. The
            # detail is logged; the task stores the fixed message.
            log.error("giving up after transient errors: %r", error, extra={"task_id": task_id})
            lifecycle.fail(rt.sessions, parsed, recovery.gave_up(), only_queued=True)
            TASK_OUTCOMES.labels(rendering.Outcome.failed.value).inc()
            return rendering.Outcome.failed.value
        countdown = retry_policy().delay(self.request.retries)
        log.warning(
            "transient error, retrying in %ss: %r", countdown, error, extra={"task_id": task_id}
        )
        raise self.retry(exc=error, countdown=countdown) from error
    TASK_OUTCOMES.labels(outcome.value).inc()
    log.info("task %s", outcome.value, extra={"task_id": task_id, "outcome": outcome.value})
    return outcome.value


@celery_app.task(name=REFRESH_TASK, bind=True, max_retries=None)
def refresh_task(self: CeleryTask[Any, Any], task_id: str) -> str:
    """Re-render one succeeded task to the current variant specs (``imagepipe backfill``).

    Its old variants keep serving whatever happens here; a transient error is retried,
    any other is logged and the next backfill tries again."""
    rt = runtime()
    try:
        outcome = refresh.refresh(rt.sessions, rt.storage, rt.settings, uuid.UUID(task_id))
    except ObjectNotFound:
        log.error("cannot re-render: the original is gone", extra={"task_id": task_id})
        return rendering.Outcome.failed.value
    except MAYBE_TRANSIENT as error:
        if not is_transient(error):
            log.exception("re-render failed; the old variants stay", extra={"task_id": task_id})
            return rendering.Outcome.failed.value
        if retry_policy().exhausted(self.request.retries):
            log.error("gave up re-rendering: %r", error, extra={"task_id": task_id})
            return rendering.Outcome.failed.value
        raise self.retry(exc=error, countdown=retry_policy().delay(self.request.retries)) from error
    except Exception:
        log.exception("re-render failed; the old variants stay", extra={"task_id": task_id})
        return rendering.Outcome.failed.value
    return outcome.value


@celery_app.task(name=MAKE_EXTRAS, bind=True, max_retries=None)
def make_extras(self: CeleryTask[Any, Any], task_id: str) -> str:
    """Make the extra formats of a task that succeeded with its base renditions.

    Whatever happens here the task stays succeeded; what is not made stays due (the
    reconciler republishes it, backfill re-renders it)."""
    rt = runtime()
    options = rendering.render_options(rt.settings)
    try:
        outcome = extras.make(rt.sessions, rt.storage, options, uuid.UUID(task_id), rt.spool)
    except ObjectNotFound:
        log.error("cannot make extras: the original is gone", extra={"task_id": task_id})
        return extras.Outcome.skipped.value
    except MAYBE_TRANSIENT as error:
        if not is_transient(error) or retry_policy().exhausted(self.request.retries):
            log.exception("extras not made; they stay due", extra={"task_id": task_id})
            return extras.Outcome.partial.value
        raise self.retry(exc=error, countdown=retry_policy().delay(self.request.retries)) from error
    except Exception:  # the original no longer decodes, a bug: the formats stay due
        log.exception("extras not made; they stay due", extra={"task_id": task_id})
        return extras.Outcome.partial.value
    log.info("extras %s", outcome.value, extra={"task_id": task_id})
    return outcome.value


@celery_app.task(name=RECONCILE, ignore_result=True)
def reconcile() -> dict[str, int]:
    rt = runtime()
    return reconciler.run(rt.sessions, rt.storage, rt.queue, rt.settings)
