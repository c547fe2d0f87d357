"""The bytes on the wire the client writes and reads by hand: the base URL, a streamed
multipart body, a ``text/event-stream``."""

from __future__ import annotations

import mimetypes
import re
import secrets
from collections.abc import AsyncIterator

import httpx


def normalise_url(url: str) -> str:
    return url if "://" in url else f"http://{url}"


# The same escaping browsers (and httpx) use for a multipart filename parameter.
_FORM_ESCAPES = {'"': "%22", "\\": "\\\\"} | {chr(c): f"%{c:02X}" for c in range(0x20) if c != 0x1B}
_FORM_ESCAPE_RE = re.compile("|".join(re.escape(c) for c in _FORM_ESCAPES))


def multipart_frame(filename: str) -> tuple[bytes, bytes, str]:
    """Bytes before and after the file in a one-part body, and its Content-Type."""
    boundary = secrets.token_hex(16)
    quoted = _FORM_ESCAPE_RE.sub(lambda m: _FORM_ESCAPES[m.group(0)], filename)
    part_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{quoted}"\r\n'
        f"Content-Type: {part_type}\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head, tail, f"multipart/form-data; boundary={boundary}"


async def server_sent_events(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """(event, data) pairs of a ``text/event-stream`` body; comments are skipped."""
    event, data = "message", list[str]()
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
