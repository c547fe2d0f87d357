"""One place that turns every error into ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from imagepipe.api.state import app_state
from imagepipe.errors import ImagepipeError, ServiceUnavailable, UploadTimeout

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "file_too_large",
    415: "unsupported_media_type",
}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ImagepipeError)
    headers = None
    if isinstance(exc, ServiceUnavailable):
        headers = {"Retry-After": str(app_state(request.app).settings.retry_after_seconds)}
    elif exc.status_code == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    elif isinstance(exc, UploadTimeout):
        # The rest of the body may still be on its way: this connection is done.
        headers = {"Connection": "close"}
    return error_response(exc.status_code, exc.code, exc.message, headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    headers = dict(exc.headers) if exc.headers else None
    return error_response(exc.status_code, code, str(exc.detail), headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}" for err in exc.errors()
    )
    return error_response(422, "invalid_request", problems or "Invalid request.")


async def _backend_down(request: Request, exc: Exception) -> JSONResponse:
    # The database (or the disk under it) did not answer: a condition to retry, not a bug.
    log.warning("backend unavailable on %s %s: %r", request.method, request.url.path, exc)
    return await _domain_error(request, ServiceUnavailable())


def unexpected_error_response() -> JSONResponse:
    """The body of every 500; the stack trace goes to the log, never to the client."""
    return error_response(500, "internal_error", "Internal error.")


def install(app: FastAPI) -> None:
    app.add_exception_handler(ImagepipeError, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for backend_error in (DBAPIError, SQLAlchemyTimeoutError, OSError):
        app.add_exception_handler(backend_error, _backend_down)
    # Anything else is a bug: ObservedMiddleware renders it, so that even a 500 gets
    # the security headers (Starlette's outermost error middleware would skip them).
