"""Domain errors: each has a stable ``code`` and the HTTP status it maps to.

    ImagepipeError
    ├── InvalidRequest          400 invalid_request
    │   └── UnprocessableRequest 422 invalid_request (a JSON body with a bad field)
    ├── Unauthorized            401 unauthorized
    ├── UploadForbidden         403 invalid_upload_token / upload_expired
    ├── TaskNotFound            404 task_not_found
    ├── UploadIncomplete        409 upload_incomplete
    ├── UploadClosed            409 (the task's own error code: the upload was refused)
    ├── VariantNotFound         404 variant_not_found
    ├── FormatNotFound          404 format_not_found (a variant not stored in that format)
    ├── NotAcceptable           406 not_acceptable (Accept rules out every stored format)
    ├── WebhookNotFound         404 webhook_not_found
    ├── DeliveryNotFound        404 delivery_not_found
    ├── IdempotencyKeyInUse     409 idempotency_key_in_use
    ├── UploadTimeout           408 upload_timeout (the body stalled or took too long)
    ├── FileTooLarge            413 file_too_large
    ├── UnsupportedMediaType    415 unsupported_media_type
    ├── ImageTooLarge           422 image_too_large
    ├── InvalidImage            422 invalid_image
    ├── IdempotencyKeyReused    422 idempotency_key_reused
    ├── InvalidCallbackUrl      422 invalid_callback_url
    ├── ServiceUnavailable      503 service_unavailable (+ Retry-After)
    │   ├── TooManyUploads      503 too_many_uploads
    │   └── InsufficientStorage 503 insufficient_storage
    └── OriginalMissing         (a task's error only) original_missing

Nothing here imports FastAPI: the imaging code and the worker raise these too, and
one handler in the API renders them as ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations


class ImagepipeError(Exception):
    code: str = "internal_error"
    status_code: int = 500
    default_message: str = "Internal error."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class InvalidRequest(ImagepipeError):
    code = "invalid_request"
    status_code = 400
    default_message = "Expected multipart/form-data with one part named 'file'."


class UnprocessableRequest(InvalidRequest):
    status_code = 422
    default_message = "The request body is not valid."


class Unauthorized(ImagepipeError):
    code = "unauthorized"
    status_code = 401
    default_message = "A valid API key is required (Authorization: Bearer <key>)."


class TaskNotFound(ImagepipeError):
    code = "task_not_found"
    status_code = 404
    default_message = "No task with this id."


class UploadForbidden(ImagepipeError):
    """The upload token is wrong, spent, or past its expiry."""

    code = "invalid_upload_token"
    status_code = 403
    default_message = "The upload URL is not valid for this task."


class UploadExpired(UploadForbidden):
    code = "upload_expired"
    default_message = "The upload was not completed in time."


class UploadIncomplete(ImagepipeError):
    code = "upload_incomplete"
    status_code = 409
    default_message = "The original has not been uploaded (or not all of it) yet."


class UploadClosed(ImagepipeError):
    """Completing a direct upload that was already refused: answers the same code."""

    status_code = 409

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


class VariantNotFound(ImagepipeError):
    code = "variant_not_found"
    status_code = 404
    default_message = "No such variant for this task."


class FormatNotFound(ImagepipeError):
    code = "format_not_found"
    status_code = 404
    default_message = "This variant is not stored in that format."


class NotAcceptable(ImagepipeError):
    code = "not_acceptable"
    status_code = 406
    default_message = "No stored format of this variant is acceptable (Accept header)."


class WebhookNotFound(ImagepipeError):
    code = "webhook_not_found"
    status_code = 404
    default_message = "No webhook with this id."


class DeliveryNotFound(ImagepipeError):
    code = "delivery_not_found"
    status_code = 404
    default_message = "No delivery with this id."


class IdempotencyKeyInUse(ImagepipeError):
    code = "idempotency_key_in_use"
    status_code = 409
    default_message = "A request with this Idempotency-Key is still running; retry shortly."


class UploadTimeout(ImagepipeError):
    code = "upload_timeout"
    status_code = 408
    default_message = "The upload was too slow; nothing was kept."


class FileTooLarge(ImagepipeError):
    code = "file_too_large"
    status_code = 413
    default_message = "The upload is larger than the configured byte limit."


class UnsupportedMediaType(ImagepipeError):
    code = "unsupported_media_type"
    status_code = 415
    default_message = "File is not a supported image."


class ImageTooLarge(ImagepipeError):
    code = "image_too_large"
    status_code = 422
    default_message = "The image has more pixels than the configured cap."


class InvalidImage(ImagepipeError):
    code = "invalid_image"
    status_code = 422
    default_message = "The image could not be decoded."


class IdempotencyKeyReused(ImagepipeError):
    code = "idempotency_key_reused"
    status_code = 422
    default_message = "This Idempotency-Key was used with a different request body."


class InvalidCallbackUrl(ImagepipeError):
    code = "invalid_callback_url"
    status_code = 422
    default_message = "The webhook URL is not allowed."


class ServiceUnavailable(ImagepipeError):
    code = "service_unavailable"
    status_code = 503
    default_message = "A backing service is unavailable; try again shortly."


class TooManyUploads(ServiceUnavailable):
    code = "too_many_uploads"
    default_message = "Too many uploads are being received; try again shortly."


class InsufficientStorage(ServiceUnavailable):
    """Too little free disk to receive the upload: refused before any byte is read."""

    code = "insufficient_storage"
    default_message = "The server is low on disk space; try again later."


class OriginalMissing(ImagepipeError):
    """The original is gone from storage: the task can never be rendered."""

    code = "original_missing"
    status_code = 500
    default_message = "The original image is missing from storage."
