"""The worker's Prometheus endpoint, merged across its prefork children."""

from __future__ import annotations

import logging
import os

from celery.signals import worker_init, worker_process_shutdown
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

log = logging.getLogger(__name__)


@worker_init.connect
def _serve_metrics(**_: object) -> None:
    from imagepipe.worker.app import settings  # the app imports this module (include)

    port, host = settings.worker_metrics_port, settings.worker_metrics_host
    if not port or "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as error:  # a second worker on the same host: keep working
        log.warning("worker metrics not served on port %s: %s", port, error)
        return
    log.info("worker metrics on %s:%s/metrics", host, port)


@worker_process_shutdown.connect
def _forget_child(pid: int | None = None, **_: object) -> None:
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        mark_process_dead(pid or os.getpid())  # type: ignore[no-untyped-call]
