"""What a committed change to a task tells the world: its followers (the status
notifier) and its webhook receivers (deliveries handed to the broker).

The hooks belong to the runtime that built the database sessions and travel with them
(``Session.info``): a service that commits a change announces it through the runtime
that gave it the session. So there is no process-wide setting an entry point could
forget, and two runtimes in one process (a test's API and its worker) never cross.
Sessions built outside a runtime (a test or a script calling a service directly)
announce nothing; the database row stays the record either way, followers also
re-read on a timer and the webhook sweep finds deliveries that were not handed over.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.services.events import Notifier

log = logging.getLogger(__name__)

_KEY = "imagepipe.hooks"


class _Silent:
    def notify(self, task_id: uuid.UUID) -> None:
        return

    def close(self) -> None:
        return


@dataclass(frozen=True)
class Hooks:
    notifier: Notifier = field(default_factory=_Silent)
    # Hands one delivery to the broker (the queue's ``publish_delivery``); None: the
    # webhook sweep hands them over later.
    publish_delivery: Callable[[uuid.UUID], object] | None = None

    def session_info(self) -> dict[str, Any]:
        """The ``info`` of the session factory that carries these hooks."""
        return {_KEY: self}

    def notify(self, task_id: uuid.UUID) -> None:
        """Tell followers the task's row changed. After the commit; never raises."""
        self.notifier.notify(task_id)

    def dispatch(self, delivery_ids: Iterable[uuid.UUID]) -> None:
        """Hand deliveries written with a change to the broker, after the commit. Best
        effort: one not handed over is found by the sweep."""
        if self.publish_delivery is None:
            return
        for delivery_id in delivery_ids:
            try:
                self.publish_delivery(delivery_id)
            except Exception as error:
                log.warning("delivery %s not published: %s", delivery_id, error)

    def announce(self, task_id: uuid.UUID, deliveries: Iterable[uuid.UUID] = ()) -> None:
        """After the commit of a status change: wake followers, hand over deliveries."""
        self.notify(task_id)
        self.dispatch(deliveries)


SILENT = Hooks()

SessionsOrSession = (
    Session | AsyncSession | sessionmaker[Session] | async_sessionmaker[AsyncSession]
)


def of(source: SessionsOrSession) -> Hooks:
    """The hooks of the runtime that built ``source`` (a session or its factory)."""
    if isinstance(source, Session | AsyncSession):
        info = source.info
    else:
        info = source.kw.get("info") or {}
    hooks = info.get(_KEY, SILENT)
    assert isinstance(hooks, Hooks)
    return hooks
