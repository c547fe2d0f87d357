"""The lingering close on a connection the peer has already reset."""

from __future__ import annotations

import errno

from imagepipe.api.protocol import LimitedHttpToolsProtocol


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
