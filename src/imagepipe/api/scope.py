"""Who is asking: the one notion of an owner. A task belongs to the owner that created
it (``tasks.owner_scope``); idempotency keys and webhook subscriptions are scoped by
the same value.

The owner is a digest of the bearer key (never the key itself), or ``anonymous``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from fastapi import Request
from sqlalchemy import ColumnElement

from imagepipe.db.models import Task

ANONYMOUS = "anonymous"


def key_digest(key: str) -> str:
    return hashlib.sha256(key.strip().encode()).hexdigest()[:32]


def key_scope(request: Request) -> str:
    """The owner a request speaks for, from its bearer key; ``anonymous`` without one.

    Whether the key is valid is ``require_api_key``'s business; this only names it.
    """
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return ANONYMOUS
    return key_digest(token)


@dataclass(frozen=True)
class Caller:
    """An authenticated request: the owner it acts as, and whether it sees every task
    (an admin key, or a service without keys)."""

    owner: str
    sees_all: bool

    def may_see(self, task: Task) -> bool:
        # A row with no owner (written before owners were recorded, or while keys were
        # off) matches no key's digest: with keys on, only admin keys see it.
        return self.sees_all or task.owner_scope == self.owner

    def visible_tasks(self) -> ColumnElement[bool] | None:
        """The WHERE clause for listing tasks; None when every task is visible."""
        return None if self.sees_all else Task.owner_scope == self.owner
