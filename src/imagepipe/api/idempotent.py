"""The HTTP side of ``Idempotency-Key``: read the header, answer a replay."""

from __future__ import annotations

from fastapi import Request, Response

from imagepipe.api.scope import key_scope
from imagepipe.api.state import app_state
from imagepipe.config import Settings
from imagepipe.services.idempotency import (
    HEADER,
    REPLAYED_HEADER,
    Replay,
    Reservation,
    parse_key,
)


def reservation_for(request: Request, settings: Settings) -> Reservation | None:
    """A reservation for the request's key, or None when it carries none.

    Raises InvalidRequest for a malformed key (before any byte of the body is read)."""
    key = parse_key(request.headers.get(HEADER))
    if key is None:
        return None
    return Reservation(
        app_state(request.app).services.sessions,
        scope=key_scope(request),
        key=key,
        ttl_seconds=settings.idempotency_ttl_seconds,
    )


def replay_response(replay: Replay, status_url: str | None) -> Response:
    """The first answer again, byte for byte, marked as a replay."""
    headers = {REPLAYED_HEADER: "true"}
    if status_url:
        headers["Location"] = status_url
    return Response(
        content=replay.body,
        status_code=replay.status_code,
        media_type="application/json",
        headers=headers,
    )
