"""Who is asking: the one notion of an owner. A task belongs to the tenant that created
it (``tasks.owner_scope``); idempotency keys and webhook subscriptions are scoped by
the same value.

The owner is a tenant's name, a digest of a list-form key (never the key itself), or
``anonymous`` on a service without keys. ``imagepipe.api.access`` decides it before the
route runs, from the bearer key, and leaves it in the request's scope.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from sqlalchemy import ColumnElement
from starlette.types import Scope

from imagepipe.db.models import Task
from imagepipe.services.tenancy import ANONYMOUS, key_digest

__all__ = ["ANONYMOUS", "Caller", "caller_of", "key_digest", "key_scope"]

# Where the access layer leaves the request's Caller in the ASGI scope.
SCOPE_KEY = "imagepipe.caller"


@dataclass(frozen=True)
class Caller:
    """An authenticated request: the owner it acts as, and whether it sees every task
    (an admin key, or a service without keys)."""

    owner: str
    sees_all: bool

    def may_see(self, task: Task) -> bool:
        # A row with no owner (written before owners were recorded, or while keys were
        # off) matches no tenant: with keys on, only admin keys see it.
        return self.sees_all or task.owner_scope == self.owner

    def visible_tasks(self) -> ColumnElement[bool] | None:
        """The WHERE clause for listing tasks; None when every task is visible."""
        return None if self.sees_all else Task.owner_scope == self.owner


def caller_of(scope: Scope) -> Caller | None:
    caller = scope.get(SCOPE_KEY)
    return caller if isinstance(caller, Caller) else None


def key_scope(request: Request) -> str:
    """The owner a request speaks for: its tenant, as the access layer found it; a
    request it did not authenticate speaks for no tenant: ``anonymous``."""
    caller = caller_of(request.scope)
    return caller.owner if caller else ANONYMOUS
