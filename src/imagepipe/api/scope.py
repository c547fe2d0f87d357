"""Whose request this is: the scope that idempotency keys (and webhooks) belong to."""

from __future__ import annotations

import hashlib

from fastapi import Request

ANONYMOUS = "anonymous"


def key_scope(request: Request) -> str:
    """A digest of the bearer key (never the key itself), or ``anonymous``.

    The key's validity is checked by ``require_api_key``; this only names its owner.
    """
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return ANONYMOUS
    return hashlib.sha256(token.encode()).hexdigest()[:32]
