"""Sending one stored rendition: the ETag and ``If-None-Match`` (304), ``HEAD`` (a
stat, never a read), ``IMAGEPIPE_VARIANT_DELIVERY=redirect`` (307 to a presigned URL)
or the bytes streamed from storage. Variants and on-demand renditions both answer
through here; each route decides its own cache headers."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

import anyio
from anyio import to_thread
from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from imagepipe.config import Settings
from imagepipe.storage import ObjectReader, Storage

# Bytes per read while streaming a rendition from storage to the client.
STREAM_CHUNK = 256 * 1024


async def deliver(
    request: Request,
    storage: Storage,
    settings: Settings,
    *,
    key: str,
    etag: str,
    content_type: str,
    headers: dict[str, str],
) -> Response:
    """The answer for the object at ``key``; ``headers`` (Cache-Control, Vary…) go on
    every answer but the redirect's. Raises ObjectNotFound when the object is gone:
    the route says what that means."""
    headers = {**headers, "ETag": etag}
    if matches(request.headers.get("if-none-match", ""), etag):
        return Response(status_code=304, headers=headers)
    if settings.variant_delivery == "redirect":
        presign = functools.partial(
            storage.presign_get, key, expires_seconds=settings.presigned_url_seconds
        )
        if url := await to_thread.run_sync(presign):
            # The URL expires: the redirect itself must not be cached past it.
            redirect = {"Location": url, "Cache-Control": "no-store", "ETag": etag}
            if "Vary" in headers:
                redirect["Vary"] = headers["Vary"]
            return Response(status_code=307, headers=redirect)
    if request.method == "HEAD":
        info = await to_thread.run_sync(storage.stat, key)
        headers["Content-Length"] = str(info.size)
        return Response(media_type=content_type, headers=headers)
    reader = await to_thread.run_sync(storage.open, key)
    # The size of the object we opened, so Content-Length and body always agree.
    headers["Content-Length"] = str(reader.info.size)
    return StreamingResponse(stream(reader), media_type=content_type, headers=headers)


async def stream(reader: ObjectReader) -> AsyncIterator[bytes]:
    """The object's bytes, read in a thread chunk by chunk (never on the event loop)."""
    try:
        while chunk := await to_thread.run_sync(reader.read, STREAM_CHUNK):
            yield chunk
    finally:
        with anyio.CancelScope(shield=True):
            await to_thread.run_sync(reader.close)


def matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 weak comparison, as If-None-Match requires: W/ is ignored, * matches."""
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return etag in tags or "*" in tags
