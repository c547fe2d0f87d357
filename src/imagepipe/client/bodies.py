"""The JSON bodies the client reads, as the API contract (docs/api-contract.md) gives
them."""

from __future__ import annotations

from typing import TypedDict


class ErrorDetail(TypedDict):
    code: str
    message: str


class VariantBody(TypedDict):
    url: str
    width: int
    height: int
    size_bytes: int
    content_type: str


class OriginalBody(TypedDict):
    filename: str
    format: str
    width: int
    height: int
    size_bytes: int
    sha256: str


class TaskBody(TypedDict):
    task_id: str
    status: str
    created_at: str
    started_at: str | None
    finished_at: str | None
    original: OriginalBody
    variants: dict[str, VariantBody]
    error: ErrorDetail | None
