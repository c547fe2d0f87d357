"""The lingering close on a connection the peer has already reset."""

from __future__ import annotations

import asyncio
import errno

from imagepipe.api.protocol import LimitedHttpToolsProtocol, _LingeringTransport


class _ResetTransport:
    """A transport whose peer reset the connection: shutting our side fails."""

    def __init__(self) -> None:
        self.closed = False

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")

    def close(self) -> None:
        self.closed = True


def test_lingering_on_a_reset_connection_just_closes_it() -> None:
    protocol = object.__new__(LimitedHttpToolsProtocol)
    transport = _ResetTransport()
    protocol._real_transport = transport  # type: ignore[assignment]
    protocol.lingering = False
    protocol._body_unread = True  # an answer given before the body was read
    protocol.linger()  # raised OSError out of the response, into the app's log
    assert transport.closed
    assert not protocol.lingering


class _RecordingTransport(_ResetTransport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.shut = False

    def write_eof(self) -> None:
        self.shut = True

    def write(self, data: bytes) -> None:
        if self.shut:
            raise RuntimeError("Cannot call write() after write_eof()")  # as uvloop
        self.written.append(data)


def test_a_response_sent_after_the_lingering_close_began_is_dropped() -> None:
    """A parse error on bytes after the request closes (lingers) the connection while
    the request's own handler is still running; its late response must not raise."""
    protocol = object.__new__(LimitedHttpToolsProtocol)
    transport = _RecordingTransport()
    protocol._real_transport = transport  # type: ignore[assignment]
    protocol.lingering = False
    protocol._body_unread = True
    protocol.loop = asyncio.new_event_loop()
    try:
        wrapper = _LingeringTransport(protocol, transport)  # type: ignore[arg-type]
        wrapper.write(b"before")
        wrapper.close()  # lingers: our side is shut
        wrapper.write(b"HTTP/1.1 413 ...")  # raised RuntimeError into the app
    finally:
        protocol.loop.close()
    assert transport.shut and transport.written == [b"before"]
