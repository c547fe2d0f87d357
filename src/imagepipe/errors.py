"""Every client-visible error code, defined once.

``CODES`` is the one table: for each stable code, its HTTP status, whether a client
(or an operator, with ``imagepipe requeue``) may retry, and its fixed public message.
The exception classes below take their status and message from it; the API renders
any of them as ``{"error": {"code", "message"}}``, and a failed task stores the same
code and a fixed message. Raw exception text (SQL, hosts, paths, library internals)
is logged, never stored or sent.

Nothing here imports FastAPI or a driver: the imaging code, the services and the
worker raise these too. What counts as transient is ``services.transient``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class ErrorSpec:
    status: int
    retryable: bool
    message: str


CODES: Final[dict[str, ErrorSpec]] = {
    # The request is wrong: retrying the same request gets the same answer.
    "invalid_request": ErrorSpec(
        400, False, "Expected multipart/form-data with one part named 'file'."
    ),
    "unauthorized": ErrorSpec(
        401, False, "A valid API key is required (Authorization: Bearer <key>)."
    ),
    "invalid_upload_token": ErrorSpec(403, False, "The upload URL is not valid for this task."),
    "upload_expired": ErrorSpec(403, False, "The upload was not completed in time."),
    "not_found": ErrorSpec(404, False, "Not found."),
    "task_not_found": ErrorSpec(404, False, "No task with this id."),
    "variant_not_found": ErrorSpec(404, False, "No such variant for this task."),
    "webhook_not_found": ErrorSpec(404, False, "No webhook with this id."),
    "delivery_not_found": ErrorSpec(404, False, "No delivery with this id."),
    "format_not_found": ErrorSpec(404, False, "This variant is not stored in that format."),
    "format_not_ready": ErrorSpec(
        404, True, "This format of the variant is not made yet; try again shortly."
    ),
    "method_not_allowed": ErrorSpec(405, False, "Method not allowed."),
    "not_acceptable": ErrorSpec(
        406, False, "No stored format of this variant is acceptable (Accept header)."
    ),
    "upload_incomplete": ErrorSpec(
        409, True, "The original has not been uploaded (or not all of it) yet."
    ),
    "idempotency_key_in_use": ErrorSpec(
        409, True, "A request with this Idempotency-Key is still running; retry shortly."
    ),
    "upload_timeout": ErrorSpec(408, True, "The upload was too slow; nothing was kept."),
    "file_too_large": ErrorSpec(413, False, "The upload is larger than the configured byte limit."),
    "unsupported_media_type": ErrorSpec(415, False, "File is not a supported image."),
    "image_too_large": ErrorSpec(422, False, "The image has more pixels than the configured cap."),
    "invalid_image": ErrorSpec(422, False, "The image could not be decoded."),
    "idempotency_key_reused": ErrorSpec(
        422, False, "This Idempotency-Key was used with a different request body."
    ),
    "invalid_callback_url": ErrorSpec(422, False, "The webhook URL is not allowed."),
    "invalid_focal_point": ErrorSpec(
        422, False, 'focal_point must be null or {"x": 0..1, "y": 0..1}.'
    ),
    # Ours, not the request's.
    "internal_error": ErrorSpec(500, False, "Internal error."),
    "original_missing": ErrorSpec(500, False, "The original image is missing from storage."),
    "processing_timeout": ErrorSpec(500, False, "Rendering took longer than the time limit."),
    # A preview failed the output gate (imaging/qa.py): the same render fails again.
    "quality_check_failed": ErrorSpec(500, False, "A preview failed the output quality checks."),
    # A backing service did not answer: the same request later may well succeed.
    "service_unavailable": ErrorSpec(
        503, True, "A backing service is unavailable; try again shortly."
    ),
    "too_many_uploads": ErrorSpec(
        503, True, "Too many uploads are being received; try again shortly."
    ),
    "insufficient_storage": ErrorSpec(
        503, True, "The server is low on disk space; try again later."
    ),
    "queue_full": ErrorSpec(503, True, "Too many tasks are waiting; try again shortly."),
    # Per-tenant limits (services/tenancy.py), each answered before any body is read.
    "request_too_large": ErrorSpec(413, False, "The request body is larger than 64 KiB."),
    "request_timeout": ErrorSpec(408, True, "The request body was too slow to arrive."),
    "quota_exceeded": ErrorSpec(429, True, "Too many unfinished tasks for this key."),
    "rate_limited": ErrorSpec(429, True, "Too many requests for this key; slow down."),
    "too_many_followers": ErrorSpec(429, True, "Too many open task followers for this key."),
    "too_many_concurrent_uploads": ErrorSpec(429, True, "Too many uploads at once for this key."),
    "webhook_limit": ErrorSpec(409, False, "This key has as many webhooks as it may have."),
    "too_many_replays": ErrorSpec(
        429, True, "Too many replays of this key wait to be delivered; try again later."
    ),
    "webhook_secret_configured": ErrorSpec(
        409, False, "Without API keys, deliveries are signed with IMAGEPIPE_WEBHOOK_SECRET."
    ),
    "upload_closed": ErrorSpec(409, False, "The upload is closed: the task no longer takes bytes."),
    "original_changed": ErrorSpec(
        409, False, "The original was replaced after the upload was completed."
    ),
    # On-demand renditions (services/on_demand).
    "invalid_options": ErrorSpec(400, False, "The rendition options are not valid."),
    "invalid_signature": ErrorSpec(403, False, "The link's signature is not valid."),
    "preset_required": ErrorSpec(403, False, "Only named presets (p:<name>) are served here."),
    "signing_disabled": ErrorSpec(
        409, False, "Signed links are off: IMAGEPIPE_URL_SIGNING_KEYS is not set."
    ),
    "rendering": ErrorSpec(503, True, "The rendition is being made; try again shortly."),
}
# Any other HTTP error Starlette raises (it has no code of its own).
HTTP_ERROR = "http_error"
HTTP_STATUS_CODES: Final[dict[int, str]] = {
    400: "invalid_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "file_too_large",
    415: "unsupported_media_type",
}


def spec(code: str) -> ErrorSpec:
    """The table's row for ``code``; an unknown code (an old row) is an internal error."""
    return CODES.get(code, CODES["internal_error"])


def public_message(code: str) -> str:
    return spec(code).message


class ImagepipeError(Exception):
    code: str = "internal_error"

    def __init__(self, message: str | None = None) -> None:
        # ``message`` is ours (built from limits and ids), never an exception's text.
        self.message = message or self.default_message
        super().__init__(self.message)

    @property
    def status_code(self) -> int:
        return spec(self.code).status

    @property
    def default_message(self) -> str:
        return spec(self.code).message

    @property
    def retryable(self) -> bool:
        return spec(self.code).retryable


class InternalError(ImagepipeError):
    code = "internal_error"


class InvalidRequest(ImagepipeError):
    code = "invalid_request"


class UnprocessableRequest(InvalidRequest):
    """A JSON body with a bad field: the same code as any invalid request, 422."""

    @property
    def status_code(self) -> int:
        return 422

    @property
    def default_message(self) -> str:
        return "The request body is not valid."


class Unauthorized(ImagepipeError):
    code = "unauthorized"


class NotFound(ImagepipeError):
    code = "not_found"


class TaskNotFound(ImagepipeError):
    code = "task_not_found"


class UploadForbidden(ImagepipeError):
    """The upload token is wrong, spent, or past its expiry."""

    code = "invalid_upload_token"


class UploadExpired(UploadForbidden):
    code = "upload_expired"


class UploadIncomplete(ImagepipeError):
    code = "upload_incomplete"


class UploadClosed(ImagepipeError):
    """Completing a direct upload that was already refused: answers the same code."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code  # the refused task's own code
        super().__init__(message)

    @property
    def status_code(self) -> int:
        return 409


class UploadNotOpen(ImagepipeError):
    """The direct upload's URL after its task left awaiting_upload."""

    code = "upload_closed"


class OriginalChanged(ImagepipeError):
    """The stored original is not the object checked when the upload completed."""

    code = "original_changed"


class VariantNotFound(ImagepipeError):
    code = "variant_not_found"


class FormatNotFound(ImagepipeError):
    """A variant not stored in that format."""

    code = "format_not_found"


class FormatNotReady(ImagepipeError):
    """A configured extra format still being made after the task succeeded."""

    code = "format_not_ready"


class NotAcceptable(ImagepipeError):
    """The Accept header rules out every stored format."""

    code = "not_acceptable"


class WebhookNotFound(ImagepipeError):
    code = "webhook_not_found"


class DeliveryNotFound(ImagepipeError):
    code = "delivery_not_found"


class WebhookLimit(ImagepipeError):
    code = "webhook_limit"


class TooManyReplays(ImagepipeError):
    code = "too_many_replays"


class WebhookSecretConfigured(ImagepipeError):
    code = "webhook_secret_configured"


class IdempotencyKeyInUse(ImagepipeError):
    code = "idempotency_key_in_use"


class UploadTimeout(ImagepipeError):
    """The body stalled or took too long."""

    code = "upload_timeout"


class FileTooLarge(ImagepipeError):
    code = "file_too_large"


class UnsupportedMediaType(ImagepipeError):
    code = "unsupported_media_type"


class ImageTooLarge(ImagepipeError):
    code = "image_too_large"


class InvalidImage(ImagepipeError):
    code = "invalid_image"


class IdempotencyKeyReused(ImagepipeError):
    code = "idempotency_key_reused"


class InvalidCallbackUrl(ImagepipeError):
    code = "invalid_callback_url"


class InvalidFocalPoint(ImagepipeError):
    code = "invalid_focal_point"


class ServiceUnavailable(ImagepipeError):
    """Answered with ``Retry-After``."""

    code = "service_unavailable"


class TooManyUploads(ServiceUnavailable):
    code = "too_many_uploads"


class InsufficientStorage(ServiceUnavailable):
    """Too little free disk to receive the upload: refused before any byte is read."""

    code = "insufficient_storage"


class QueueFull(ServiceUnavailable):
    code = "queue_full"


class RequestTooLarge(ImagepipeError):
    code = "request_too_large"


class RequestTimeout(ImagepipeError):
    code = "request_timeout"


class TenantLimit(ImagepipeError):
    """A per-tenant limit: 429 with ``Retry-After``."""


class QuotaExceeded(TenantLimit):
    code = "quota_exceeded"


class RateLimited(TenantLimit):
    code = "rate_limited"


class TooManyFollowers(TenantLimit):
    code = "too_many_followers"


class TooManyConcurrentUploads(TenantLimit):
    code = "too_many_concurrent_uploads"


class InvalidOptions(ImagepipeError):
    code = "invalid_options"


class InvalidSignature(ImagepipeError):
    code = "invalid_signature"


class PresetRequired(ImagepipeError):
    code = "preset_required"


class SigningDisabled(ImagepipeError):
    code = "signing_disabled"


class Rendering(ServiceUnavailable):
    """An on-demand rendition not made yet (or its task not finished): ``Retry-After``."""

    code = "rendering"


class OriginalMissing(ImagepipeError):
    """The original is gone from storage: the task can never be rendered."""

    code = "original_missing"


class ProcessingTimeout(ImagepipeError):
    """A task's error only: the render ran out of time (or killed its worker)."""

    code = "processing_timeout"


class QualityCheckFailed(ImagepipeError):
    """A task's error only: a preview failed the output gate (imaging/qa.py), so the
    task fails and nothing is served. A broken conversion fails again on every
    attempt: never retried. The message names the variants and checks (ours, not an
    exception's text)."""

    code = "quality_check_failed"

    def __init__(self, failures: dict[str, list[str]]) -> None:
        self.failures = failures  # variant name -> the checks it failed
        detail = "; ".join(f"{name}: {', '.join(checks)}" for name, checks in failures.items())
        super().__init__(f"A preview failed the output quality checks ({detail}).")
