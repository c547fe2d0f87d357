"""The HTTP/1.1 protocol ``imagepipe api`` serves with: uvicorn's httptools protocol,
plus two limits it lacks.

- Request head (request line + headers) over ``MAX_HEAD_BYTES`` → ``431``. httptools
  itself accepts a header of any size, buffering it all.
- A request head not complete within ``head_timeout`` of its first byte (or of the
  connection opening) → ``408`` and the connection is closed. Without this an idle
  socket or half a request line stays open for ever: uvicorn's keep-alive timer runs
  only between requests and is cancelled by the first byte of the next one.

And one courtesy it lacks: a **lingering close**. An answer given before the request's
body was read (a wrong key, a body over its cap: ``Connection: close``) used to be
followed by a plain close with the body's bytes still unread, which makes the kernel
reset the connection, and a client still sending (httpx, a browser) lost the answer
and saw a connection error. Now the server shuts its side, reads and drops what is
still coming for at most ``LINGER_SECONDS`` or ``LINGER_BYTES`` (as nginx does), then
closes: the client reads the answer.

Request bodies are bounded where they are read (``imagepipe.api.receive``): only the
route knows whether a pause is the client's or its own.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

# The contract's limit on a request head; larger heads are refused with 431.
MAX_HEAD_BYTES = 64 * 1024
# A lingering close drops at most this much of a body it did not read, for at most
# this long, before it closes anyway (a reset, then, for a client still sending).
LINGER_SECONDS = 5.0
LINGER_BYTES = 2 * 1024 * 1024

log = logging.getLogger(__name__)


class _HeadTooLarge(Exception):
    """Raised inside a parser callback; httptools turns it into a parser error."""


class _LingeringTransport:
    """The transport as a request's response cycle sees it: its ``close`` lingers."""

    def __init__(self, protocol: LimitedHttpToolsProtocol, transport: asyncio.Transport) -> None:
        self._protocol = protocol
        self._transport = transport

    def close(self) -> None:
        self._protocol.linger()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        # Once our side is shut, nothing more can reach the peer: a response still
        # being sent when the connection was closed under it (a parse error on
        # bytes that followed the request, say) is dropped, as after a plain close,
        # instead of raising "write() after write_eof()" into the app.
        if not self._protocol.lingering:
            self._transport.write(data)

    def is_closing(self) -> bool:
        return self._protocol.lingering or self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    # Set once per process by ``configure`` (the app factory runs in every server
    # process, including each of ``--workers N``).
    head_timeout: float = 10.0

    @classmethod
    def configure(cls, *, head_timeout: float) -> None:
        cls.head_timeout = head_timeout

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._real_transport = transport
        self.transport = cast(asyncio.Transport, _LingeringTransport(self, transport))
        self.lingering = False
        self._lingered_bytes = 0
        self._linger_deadline: asyncio.TimerHandle | None = None
        self._body_unread = False
        self._reading_head = True
        self._head_bytes = 0
        self._parsed_head_bytes = 0
        self._head_too_large = False
        self._head_deadline: asyncio.TimerHandle | None = None
        # An idle connection that never sends a byte is closed too.
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        if self._linger_deadline is not None:
            self._linger_deadline.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            self._lingered_bytes += len(data)  # dropped unparsed
            if self._lingered_bytes > LINGER_BYTES:
                self._real_transport.close()
            return
        if self._head_too_large:
            return
        if self._reading_head:
            self._head_bytes += len(data)
            self._arm_head_deadline()
        super().data_received(data)
        # Still inside the head after this chunk (a huge header still arriving): httptools
        # would buffer it all before calling back, so count the raw bytes.
        if self._reading_head and self._head_bytes > MAX_HEAD_BYTES:
            self._head_too_large = True
            self._refuse(431, "Request header fields too large.")

    # --- parser callbacks --------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._parsed_head_bytes = 0
        self._body_unread = True

    def on_url(self, url: bytes) -> None:
        self._count_parsed(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_parsed(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._disarm_head_deadline()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._body_unread = False
        super().on_message_complete()
        # The next bytes on this connection are the next request's head; until they
        # come, uvicorn's keep-alive timer bounds the wait.
        self._reading_head = True
        self._head_bytes = 0

    # --- closing -----------------------------------------------------------------

    def eof_received(self) -> None:
        if self.lingering:  # the client has sent everything: now close
            self._real_transport.close()
            return
        super().eof_received()

    def linger(self) -> None:
        """Close after a response. With the request's body read (the usual case) at
        once; with some of it still unread, shut our side, drop what comes, close on
        the client's end of sending or at the linger bounds."""
        if self.lingering or self._real_transport.is_closing():
            return
        if not self._body_unread or not self._real_transport.can_write_eof():
            self._real_transport.close()
            return
        try:
            # The peer may have reset the connection since: shutting our side then
            # fails (ENOTCONN, EPIPE), and there is nothing left to linger for.
            self._real_transport.write_eof()
        except (OSError, RuntimeError):
            self._real_transport.close()
            return
        self.lingering = True
        self._linger_deadline = self.loop.call_later(LINGER_SECONDS, self._real_transport.close)

    # --- limits ----------------------------------------------------------------

    def _count_parsed(self, size: int) -> None:
        self._parsed_head_bytes += size
        if self._parsed_head_bytes > MAX_HEAD_BYTES:
            self._head_too_large = True
            raise _HeadTooLarge

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers every parser error with 400; one raised by our own count is a 431.
        if self._head_too_large:
            self._refuse(431, "Request header fields too large.")
        else:
            super().send_400_response(msg)

    def _arm_head_deadline(self) -> None:
        if self._head_deadline is None:
            self._head_deadline = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing() or not self._reading_head:
            return
        if self._head_bytes == 0 and self.cycle is not None:
            # Between requests on a keep-alive connection: uvicorn's own timer owns this.
            return
        log.info("closing a connection whose request head did not arrive in time")
        responding = self.cycle is not None and not self.cycle.response_complete
        if responding:
            self._real_transport.close()  # a pipelined response is still being written
        else:
            self._refuse(408, "Request header timeout.")

    def _refuse(self, status: int, message: str) -> None:
        if self.transport.is_closing():
            return
        body = message.encode("ascii")
        self.transport.write(
            b"".join(
                [
                    STATUS_LINE[status],
                    b"content-type: text/plain; charset=utf-8\r\n",
                    b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                    b"connection: close\r\n\r\n",
                    body,
                ]
            )
        )
        self._real_transport.close()  # an abusive head: no lingering for it
