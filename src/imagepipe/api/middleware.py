"""Pure ASGI middleware: security headers and request metrics on every response, and
the rendering of unexpected errors (so a 500 carries the headers too)."""

from __future__ import annotations

import logging
import time
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagepipe.api.errors import unexpected_error_response
from imagepipe.config import Settings
from imagepipe.metrics import HTTP_DURATION, HTTP_REQUESTS

log = logging.getLogger(__name__)

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


# The page and Swagger UI load only what the app serves (and, on S3 storage, what the
# bucket serves: the page PUTs direct uploads there, and redirected previews come
# from it); Swagger's page has inline script, so it alone gets 'unsafe-inline'.
def page_csp(storage_origins: tuple[str, ...] = ()) -> str:
    storage = "".join(f" {origin}" for origin in storage_origins)
    return (
        f"default-src 'self'; img-src 'self' data: blob:{storage}; style-src 'self'; "
        f"script-src 'self'; connect-src 'self'{storage}; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'"
    )


def storage_origins(settings: Settings) -> tuple[str, ...]:
    """Where a browser reaches the storage's presigned URLs: none on file://."""
    if urlsplit(settings.resolved_storage_url).scheme != "s3":
        return ()
    endpoint = settings.s3_public_endpoint_url or settings.s3_endpoint_url
    if not endpoint:
        return ("https://*.amazonaws.com",)  # AWS itself
    parts = urlsplit(endpoint)
    return (f"{parts.scheme}://{parts.netloc}",)


CSP_DOCS = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'"
)


class ObservedMiddleware:
    def __init__(self, app: ASGIApp, storage_origins: tuple[str, ...] = ()) -> None:
        self.app = app
        self.page_csp = page_csp(storage_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        response_started = False
        csp = CSP_DOCS if scope["path"].startswith(("/docs", "/redoc")) else self.page_csp

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                headers.setdefault("Content-Security-Policy", csp)
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if response_started:
                raise  # the status line already went out: nothing better can be sent
            await unexpected_error_response()(scope, receive, send_with_headers)
        finally:
            route = scope.get("route")
            # The route template, never the raw path: ids would explode the label set.
            label = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            HTTP_REQUESTS.labels(method, label, str(status)).inc()
            HTTP_DURATION.labels(method, label).observe(time.perf_counter() - started)
