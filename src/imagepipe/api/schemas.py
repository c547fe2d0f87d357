"""Response bodies, exactly as docs/api-contract.md shows them. The task itself is
built in services/representation.py (the worker's webhooks send it too)."""

from __future__ import annotations

import uuid

from pydantic import BaseModel

from imagepipe.db.models import TaskStatus
from imagepipe.services.representation import (
    ErrorDetail,
    TaskOut,
    status_url,
    task_out,
)

__all__ = [
    "ErrorBody",
    "ErrorDetail",
    "TaskOut",
    "TaskPage",
    "UploadAccepted",
    "status_url",
    "task_out",
]


class ErrorBody(BaseModel):
    error: ErrorDetail


class UploadAccepted(BaseModel):
    task_id: uuid.UUID
    status: TaskStatus
    status_url: str


class TaskPage(BaseModel):
    tasks: list[TaskOut]
    next_cursor: str | None
