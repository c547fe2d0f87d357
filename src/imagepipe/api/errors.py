"""One place that turns every error into ``{"error": {"code", "message"}}``.

Codes, statuses and messages come from ``imagepipe.errors.CODES``; what is transient
from ``imagepipe.services.transient``. Anything else is a bug: a 500 whose details
go to the log only.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from imagepipe.api.state import app_state
from imagepipe.errors import (
    HTTP_ERROR,
    HTTP_STATUS_CODES,
    FormatNotReady,
    ImagepipeError,
    InternalError,
    Rendering,
    ServiceUnavailable,
    UnprocessableRequest,
    UploadTimeout,
)
from imagepipe.services.transient import MAYBE_TRANSIENT, is_transient

log = logging.getLogger(__name__)


def error_body(error: ImagepipeError) -> dict[str, dict[str, str]]:
    return {"error": {"code": error.code, "message": error.message}}


def error_response(error: ImagepipeError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(error), status_code=error.status_code, headers=headers)


def headers_for(error: ImagepipeError, retry_after_seconds: int) -> dict[str, str] | None:
    if isinstance(error, ServiceUnavailable) and not isinstance(error, Rendering):
        return {"Retry-After": str(retry_after_seconds)}
    if isinstance(error, FormatNotReady | Rendering):
        # Made within seconds: no cache may keep this answer past them.
        return {"Retry-After": str(retry_after_seconds), "Cache-Control": "no-store"}
    if error.status_code == 401:
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(error, UploadTimeout):
        # The rest of the body may still be on its way: this connection is done.
        return {"Connection": "close"}
    return None


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ImagepipeError)
    return error_response(
        exc, headers_for(exc, app_state(request.app).settings.retry_after_seconds)
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_STATUS_CODES.get(exc.status_code, HTTP_ERROR)
    headers = dict(exc.headers) if exc.headers else None
    return JSONResponse(
        {"error": {"code": code, "message": str(exc.detail)}},
        status_code=exc.status_code,
        headers=headers,
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}" for err in exc.errors()
    )
    return error_response(UnprocessableRequest(problems or "Invalid request."))


async def _maybe_transient(request: Request, exc: Exception) -> JSONResponse:
    if is_transient(exc):
        # A backing service did not answer: a condition to retry, not a bug. The
        # detail (hosts, SQL) goes to the log only.
        log.warning("backend unavailable on %s %s: %r", request.method, request.url.path, exc)
        return await _domain_error(request, ServiceUnavailable())
    # Not transient (a FileNotFoundError, an IntegrityError): a bug. Re-raised, so
    # ObservedMiddleware logs it and answers 500.
    raise exc


def unexpected_error_response() -> JSONResponse:
    """The body of every 500; the stack trace goes to the log, never to the client."""
    return error_response(InternalError())


def install(app: FastAPI) -> None:
    app.add_exception_handler(ImagepipeError, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for maybe_transient in MAYBE_TRANSIENT:
        app.add_exception_handler(maybe_transient, _maybe_transient)
    # Anything else is a bug: ObservedMiddleware renders it, so that even a 500 gets
    # the security headers (Starlette's outermost error middleware would skip them).
