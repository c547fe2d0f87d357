"""The task as clients see it (``GET /tasks/{id}``, the event stream, webhook bodies),
exactly as docs/api-contract.md shows it. Built here, not in the API, because the
worker sends it too (webhooks) and the worker never imports the API."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

from pydantic import BaseModel, field_serializer

from imagepipe.db.models import Task, TaskStatus
from imagepipe.services import renditions, report


class ErrorDetail(BaseModel):
    code: str
    message: str


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


class PlaceholderOut(BaseModel):
    blurhash: str
    thumbhash: str  # base64
    dominant_color: str  # "#rrggbb"


class SourceOut(BaseModel):
    format: str
    mode: str
    bit_depth: int
    frames: int
    has_alpha: bool
    orientation: int
    icc_profile: str | None


class QaOut(BaseModel):
    passed: bool
    checks: list[str]


class ReportOut(BaseModel):
    source: SourceOut | None
    applied: list[str]
    removed_metadata: list[str]
    qa: QaOut
    # Milliseconds per stage: queued, decode, resize, qa, encode, placeholder, store
    # (a duplicate has copy instead of the imaging stages).
    timings_ms: dict[str, int]
    deduplicated_from: uuid.UUID | None


class FocalPointOut(BaseModel):
    x: float
    y: float


class TaskOut(BaseModel):
    task_id: uuid.UUID
    status: TaskStatus
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    original: OriginalOut
    variants: dict[str, VariantOut]
    error: ErrorDetail | None
    # Null until the task has ended (and for tasks finished before they were made).
    placeholder: PlaceholderOut | None = None
    report: ReportOut | None = None
    # The owner's point of interest (PATCH /tasks/{id}), fractions of the upright
    # original; null when none is set.
    focal_point: FocalPointOut | None = None

    @field_serializer("created_at", "started_at", "finished_at")
    def _iso_z(self, value: datetime | None) -> str | None:
        return None if value is None else iso_z(value)


def iso_z(moment: datetime) -> str:
    """A moment as the API writes it: UTC, whole seconds, ``Z`` (``2026-12-06T21:50:00Z``).
    A naive moment is UTC already (the codebase's rule)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None, microsecond=0).isoformat() + "Z"


def status_url(task_id: uuid.UUID) -> str:
    return f"/tasks/{task_id}"


def variant_url(task_id: uuid.UUID, name: str) -> str:
    return f"{status_url(task_id)}/variants/{name}"


def task_out(task: Task, order: Iterable[str] = ()) -> TaskOut:
    """The task as the API shows it; variants in ``order`` (the configured one), then
    any others (a variant no longer configured) by size."""
    succeeded = task.status == TaskStatus.succeeded
    ended = task.status in (TaskStatus.succeeded, TaskStatus.failed)
    rank = {name: index for index, name in enumerate(order)}
    variants = sorted(task.variants, key=lambda v: (rank.get(v.name, len(rank)), v.width))
    shown_report = report.with_queued(task) if ended else None
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
        placeholder=PlaceholderOut.model_validate(task.placeholder)
        if ended and task.placeholder
        else None,
        report=ReportOut.model_validate(shown_report) if shown_report else None,
        focal_point=FocalPointOut(x=task.focal_x, y=task.focal_y)
        if task.focal_x is not None and task.focal_y is not None
        else None,
    )
