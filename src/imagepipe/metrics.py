"""Prometheus metrics of the API and of the worker, named ``imagepipe_*``.

The worker runs prefork children, so its metrics use prometheus-client's
multiprocess mode: ``imagepipe worker`` points PROMETHEUS_MULTIPROC_DIR at a fresh
directory before anything imports prometheus_client, and serves the merged view.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# API
HTTP_REQUESTS = Counter(
    "imagepipe_http_requests_total",
    "HTTP requests by route and status.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "imagepipe_http_request_duration_seconds",
    "Time to answer, by route.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
UPLOAD_BYTES = Counter("imagepipe_upload_bytes_total", "Bytes of accepted originals.")
UPLOADS_REJECTED = Counter(
    "imagepipe_uploads_rejected_total", "Uploads refused, by error code.", ["code"]
)

# Worker
TASK_OUTCOMES = Counter(
    "imagepipe_tasks_total", "Tasks run by the worker, by outcome.", ["outcome"]
)
STAGE_DURATION = Histogram(
    "imagepipe_task_stage_duration_seconds",
    "Time per processing stage.",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

# An extra format that failed to encode: the task stays succeeded, the format stays due.
EXTRA_FORMAT_FAILURES = Counter(
    "imagepipe_extra_format_failures",
    "Extra formats that failed to encode (left due for the reconciler and backfill).",
    ["format"],
)


class QueueDepthCollector(Collector):
    """Reads the broker's queue length at scrape time (a gauge nobody has to update)."""

    def __init__(self, read_depth: Callable[[], int]) -> None:
        self.read_depth = read_depth

    def collect(self) -> Iterable[GaugeMetricFamily]:
        gauge = GaugeMetricFamily("imagepipe_queue_depth", "Tasks waiting in the broker queue.")
        try:
            gauge.add_metric([], float(self.read_depth()))
        except Exception:  # broker down: report no sample rather than fail the scrape
            return
        yield gauge
