"""Domain errors: each has a stable ``code`` and the HTTP status it maps to.

    ImagepipeError
    ├── InvalidRequest          400 invalid_request
    ├── Unauthorized            401 unauthorized
    ├── TaskNotFound            404 task_not_found
    ├── VariantNotFound         404 variant_not_found
    ├── FileTooLarge            413 file_too_large
    ├── UnsupportedMediaType    415 unsupported_media_type
    ├── ImageTooLarge           422 image_too_large
    ├── InvalidImage            422 invalid_image
    ├── ServiceUnavailable      503 service_unavailable (+ Retry-After)
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


class Unauthorized(ImagepipeError):
    code = "unauthorized"
    status_code = 401
    default_message = "A valid API key is required (Authorization: Bearer <key>)."


class TaskNotFound(ImagepipeError):
    code = "task_not_found"
    status_code = 404
    default_message = "No task with this id."


class VariantNotFound(ImagepipeError):
    code = "variant_not_found"
    status_code = 404
    default_message = "No such variant for this task."


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


class ServiceUnavailable(ImagepipeError):
    code = "service_unavailable"
    status_code = 503
    default_message = "A backing service is unavailable; try again shortly."


class OriginalMissing(ImagepipeError):
    """The original is gone from storage: the task can never be rendered."""

    code = "original_missing"
    status_code = 500
    default_message = "The original image is missing from storage."
