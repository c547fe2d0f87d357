"""The task's report and placeholder, as stored when it succeeds and as shown.

Stored (``tasks.report``, JSON) when the task finishes, from what the render result
knows; the time spent queued is the row's own (claimed minus handed to the broker), so
it is added when the task is shown, from the same row, never guessed twice.
"""

from __future__ import annotations

import uuid
from typing import Any

from imagepipe.db.models import Task
from imagepipe.imaging import RenderResult


def build(
    result: RenderResult, *, store_seconds: float, deduplicated_from: uuid.UUID | None = None
) -> dict[str, Any]:
    """The report of a task whose previews are ``result`` (shape: docs/api-contract.md,
    "What the task says about itself"; ``queued`` is added by ``with_queued``)."""
    seconds = {**result.timings, "store": store_seconds}
    return {
        "source": result.source.as_dict() if result.source else None,
        "applied": list(result.applied),
        "removed_metadata": list(result.source.metadata) if result.source else [],
        "qa": {"passed": True, "checks": list(result.qa_checks)},
        "timings_ms": {stage: round(value * 1000) for stage, value in seconds.items()},
        "deduplicated_from": str(deduplicated_from) if deduplicated_from else None,
    }


def with_queued(task: Task) -> dict[str, Any] | None:
    """The stored report with ``timings_ms.queued`` first; None without a report."""
    if not task.report:
        return None
    timings = dict(task.report.get("timings_ms", {}))
    queued = queued_ms(task)
    shown = dict(task.report)
    shown["timings_ms"] = ({"queued": queued} if queued is not None else {}) | timings
    return shown


def queued_ms(task: Task) -> int | None:
    """From being handed to the broker (the upload, or the last retry) to the claim."""
    handed = task.enqueued_at or task.created_at
    if task.started_at is None or handed is None:
        return None
    waited = task.started_at - handed
    return max(0, round(waited.total_seconds() * 1000))
