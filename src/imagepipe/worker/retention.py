"""The periodic retention run (beat schedules it; ``imagepipe purge`` runs the same)."""

from __future__ import annotations

import dataclasses

from imagepipe.queue import PURGE
from imagepipe.services import retention
from imagepipe.worker.app import celery_app
from imagepipe.worker.tasks import runtime


@celery_app.task(name=PURGE, ignore_result=True)
def purge() -> dict[str, object]:
    rt = runtime()
    report = retention.purge(rt.sessions, rt.storage, rt.settings)
    return dataclasses.asdict(report)
