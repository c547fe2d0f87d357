"""Response bodies, exactly as docs/api-contract.md shows them."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

from pydantic import BaseModel, field_serializer

from imagepipe.db.models import Task, TaskStatus
from imagepipe.services import renditions


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class UploadAccepted(BaseModel):
    task_id: uuid.UUID
    status: TaskStatus
    status_url: str


class OriginalOut(BaseModel):
    filename: str
    format: str
    width: int
    height: int
    # Animation frames or pages (1 for a still image).
    frames: int
    size_bytes: int
    sha256: str


class FormatOut(BaseModel):
    url: str  # this format only (``{name}.{ext}``)
    size_bytes: int


class VariantOut(BaseModel):
    url: str  # negotiates the format on Accept
    width: int
    height: int
    size_bytes: int  # of the base format
    content_type: str  # of the base format
    # Every stored format by content type, the base first.
    formats: dict[str, FormatOut]


class TaskOut(BaseModel):
    task_id: uuid.UUID
    status: TaskStatus
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    original: OriginalOut
    variants: dict[str, VariantOut]
    error: ErrorDetail | None

    @field_serializer("created_at", "started_at", "finished_at")
    def _iso_z(self, value: datetime | None) -> str | None:
        # SQLite hands back naive datetimes; every stored time is UTC.
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None, microsecond=0).isoformat() + "Z"


class TaskPage(BaseModel):
    tasks: list[TaskOut]
    next_cursor: str | None


def status_url(task_id: uuid.UUID) -> str:
    return f"/tasks/{task_id}"


def variant_url(task_id: uuid.UUID, name: str) -> str:
    return f"{status_url(task_id)}/variants/{name}"


def task_out(task: Task, order: Iterable[str] = ()) -> TaskOut:
    """The task as the API shows it; variants in ``order`` (the configured one), then
    any others (a variant no longer configured) by size."""
    succeeded = task.status == TaskStatus.succeeded
    rank = {name: index for index, name in enumerate(order)}
    variants = sorted(task.variants, key=lambda v: (rank.get(v.name, len(rank)), v.width))
    return TaskOut(
        task_id=task.id,
        status=task.status,
        created_at=task.created_at,
        started_at=task.started_at,
        finished_at=task.finished_at,
        original=OriginalOut(
            filename=task.filename,
            format=task.original_format,
            width=task.original_width,
            height=task.original_height,
            frames=task.original_frames,
            size_bytes=task.original_size_bytes,
            sha256=task.original_sha256,
        ),
        variants={
            v.name: VariantOut(
                url=variant_url(task.id, v.name),
                width=v.width,
                height=v.height,
                size_bytes=v.size_bytes,
                content_type=v.content_type,
                formats={
                    r.content_type: FormatOut(
                        url=f"{variant_url(task.id, v.name)}.{r.extension}",
                        size_bytes=r.size_bytes,
                    )
                    for r in renditions.stored(v)
                },
            )
            for v in variants
        }
        if succeeded
        else {},
        error=ErrorDetail(code=task.error_code, message=task.error_message or "")
        if task.error_code
        else None,
    )
