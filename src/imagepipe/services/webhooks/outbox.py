"""The delivery rows: written with the status change, handed to the broker, claimed
for an attempt, finished; replays and the per-owner bounds on them.

    status change ──(same transaction)──> webhook_deliveries row (pending)
    after the commit: the deliver task is published; if that publish is lost (the
    worker died right after the commit), the sweep finds the row
    claim: count the attempt and take a short lease, in one conditional UPDATE, before
    anything is sent; an attempt killed mid-way has spent its budget all the same
    finish: delivered / next attempt at now + backoff (with jitter) / failed after the
    last
"""

from __future__ import annotations

import json
import logging
import random
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.db.models import (
    DeliveryAttempt,
    DeliveryState,
    Task,
    Webhook,
    WebhookDelivery,
    utcnow,
)
from imagepipe.errors import TooManyReplays, WebhookLimit
from imagepipe.services.representation import task_out

log = logging.getLogger(__name__)

EVENTS = ("task.succeeded", "task.failed")
# Seconds after attempt n (1-based) before attempt n+1: the first retry within 10 s,
# 7 attempts spread over about 1 h 45 min. Each delay is jittered by ±20 %.
# The default retry schedule (IMAGEPIPE_WEBHOOK_RETRY_SCHEDULE): seconds before each
# retry. A delivery has one attempt more than the schedule has waits.
BACKOFF: tuple[float, ...] = (5, 30, 120, 600, 1800, 3600)
MAX_ATTEMPTS = len(BACKOFF) + 1
_JITTER = 0.2
# A delivery the sweep handed to the broker is not handed again for this long while
# the attempt it was published for is still the one due (the message is on its way).
_REPUBLISH_AFTER = timedelta(seconds=120)
# Recorded for an attempt that began (and was counted) but never recorded its end:
# the worker was killed, ran out of time or memory.
INTERRUPTED = "interrupted: the attempt ended without an outcome (worker stopped)"


def event_body(event: str, data: dict[str, object]) -> str:
    timestamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return json.dumps({"type": event, "timestamp": timestamp, "data": data})


def record(session: Session, task_id: uuid.UUID, event: str) -> list[uuid.UUID]:
    """Write the deliveries of ``event`` for the task, in the caller's transaction (the
    one changing its status); their ids, to publish after the commit."""
    # The task and its owner's subscriptions in one round trip (this runs inside every
    # status change's transaction): a row per subscription, or one without any.
    found = session.execute(
        select(Task.owner_scope, Task.callback_url, Webhook.id, Webhook.url, Webhook.events)
        .outerjoin(Webhook, Webhook.scope == Task.owner_scope)
        .where(Task.id == task_id)
        .order_by(Webhook.created_at)
    ).all()
    if not found:
        return []
    owner, callback_url = found[0].owner_scope, found[0].callback_url
    targets: list[tuple[uuid.UUID | None, str]] = []
    if callback_url:
        targets.append((None, callback_url))
    if owner:
        targets += [
            (hook.id, hook.url)
            for hook in found
            if hook.id is not None and event in hook.events.split()
        ]
    now = utcnow()
    rows = [
        WebhookDelivery(
            id=uuid.uuid4(),
            task_id=task_id,
            webhook_id=webhook_id,
            url=url,
            event=event,
            state=DeliveryState.pending,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
            owner=owner,
        )
        for webhook_id, url in targets
    ]
    session.add_all(rows)
    return [row.id for row in rows]


def due(
    sessions: sessionmaker[Session], *, limit: int = 500, per_owner: int = 20
) -> list[uuid.UUID]:
    """The pending deliveries the sweep hands to the broker now, marked as handed.

    At most ``per_owner`` of one owner (its longest due first) and ``limit`` in all,
    every owner's first before any owner's second: one owner with thousands of
    failing deliveries neither floods the broker nor delays the others. A delivery
    handed recently for the attempt still due is left alone (its message is queued).
    """
    now = utcnow()
    due_at = func.coalesce(WebhookDelivery.next_attempt_at, WebhookDelivery.created_at)
    ranked = (
        select(
            WebhookDelivery.id.label("id"),
            due_at.label("due_at"),
            func.row_number()
            .over(
                partition_by=func.coalesce(WebhookDelivery.owner, ""),
                order_by=(due_at, WebhookDelivery.id),
            )
            .label("rank"),
        )
        .where(WebhookDelivery.state == DeliveryState.pending)
        .where(
            or_(
                WebhookDelivery.next_attempt_at.is_(None),
                WebhookDelivery.next_attempt_at <= now,
            )
        )
        .where(
            or_(
                WebhookDelivery.published_at.is_(None),
                WebhookDelivery.published_at < WebhookDelivery.next_attempt_at,
                WebhookDelivery.published_at <= now - _REPUBLISH_AFTER,
            )
        )
        .subquery()
    )
    with sessions.begin() as session:
        ids = list(
            session.scalars(
                select(ranked.c.id)
                .where(ranked.c.rank <= per_owner)
                .order_by(ranked.c.rank, ranked.c.due_at, ranked.c.id)
                .limit(limit)
            )
        )
        if ids:
            session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(ids))
                .values(published_at=now)
                .execution_options(synchronize_session=False)
            )
    return ids


# --- one attempt's rows -------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    delivery_id: uuid.UUID
    attempt: int
    url: str
    webhook_id: uuid.UUID | None
    owner: str | None
    payload: str
    event: str


def claim(
    sessions: sessionmaker[Session],
    delivery_id: uuid.UUID,
    payload_for: Callable[[Session, uuid.UUID, str], str],
    *,
    lease: timedelta,
    backoff: tuple[float, ...] = BACKOFF,
) -> Claimed | DeliveryState | None:
    """Count the next attempt and lease the delivery, before anything is sent: what is
    claimed then ends recorded, or (killed) is recorded as interrupted by the next
    claim. Out of attempts: the delivery ends ``failed`` (returned) and nothing is
    sent. None: not ours to send now."""
    now = utcnow()
    with sessions.begin() as session:
        row = session.get(WebhookDelivery, delivery_id)
        if row is None or row.state != DeliveryState.pending:
            return None
        if row.next_attempt_at is not None and row.next_attempt_at > now:
            return None
        exhausted = row.attempts >= len(backoff) + 1
        values: dict[str, object] = (
            {"state": DeliveryState.failed, "next_attempt_at": None}
            if exhausted
            else {"attempts": row.attempts + 1, "next_attempt_at": now + lease}
        )
        taken = session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id)
            .where(WebhookDelivery.attempts == row.attempts)
            .where(WebhookDelivery.state == DeliveryState.pending)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            return None
        _record_interrupted(session, delivery_id, row.attempts, None if exhausted else now)
        if exhausted:
            log.warning("delivery %s failed: its last attempt was interrupted", delivery_id)
            return DeliveryState.failed
        payload = row.payload or payload_for(session, row.task_id, row.event)
        if row.payload is None:
            session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery_id)
                .values(payload=payload)
                .execution_options(synchronize_session=False)
            )
        return Claimed(
            delivery_id, row.attempts + 1, row.url, row.webhook_id, row.owner, payload, row.event
        )


def _record_interrupted(
    session: Session, delivery_id: uuid.UUID, attempts: int, next_at: datetime | None
) -> None:
    """A log entry for each attempt begun but never recorded."""
    recorded = set(
        session.scalars(
            select(DeliveryAttempt.attempt).where(DeliveryAttempt.delivery_id == delivery_id)
        )
    )
    now = utcnow()
    for attempt in range(1, attempts + 1):
        if attempt not in recorded:
            session.add(
                DeliveryAttempt(
                    delivery_id=delivery_id,
                    attempt=attempt,
                    status_code=None,
                    error=INTERRUPTED,
                    at=now,
                    next_attempt_at=next_at,
                )
            )


def finish(
    sessions: sessionmaker[Session],
    delivery_id: uuid.UUID,
    attempt: int,
    status_code: int | None,
    error: str | None,
    *,
    backoff: tuple[float, ...] = BACKOFF,
) -> DeliveryState:
    """Record the attempt's outcome and the delivery's next state."""
    now = utcnow()
    if error is None:
        state, next_at = DeliveryState.delivered, None
    elif attempt >= len(backoff) + 1:
        state, next_at = DeliveryState.failed, None
    else:
        delay = backoff[attempt - 1] * random.uniform(1 - _JITTER, 1 + _JITTER)
        state, next_at = DeliveryState.pending, now + timedelta(seconds=delay)
    with sessions.begin() as session:
        ours = session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, WebhookDelivery.attempts == attempt)
            .where(WebhookDelivery.state == DeliveryState.pending)
            .values(state=state, next_attempt_at=next_at)
            .execution_options(synchronize_session=False)
        )
        # Past its lease, another claim took it over and logged this one as interrupted.
        if ours.rowcount == 1:  # type: ignore[attr-defined]
            session.add(
                DeliveryAttempt(
                    delivery_id=delivery_id,
                    attempt=attempt,
                    status_code=status_code,
                    error=error,
                    at=now,
                    next_attempt_at=next_at,
                )
            )
    return state


def retry_delay(sessions: sessionmaker[Session], delivery_id: uuid.UUID) -> float | None:
    """Seconds until a pending delivery's next attempt (for a short broker countdown);
    None when none is set."""
    with sessions() as session:
        next_at = session.scalar(
            select(WebhookDelivery.next_attempt_at).where(WebhookDelivery.id == delivery_id)
        )
    if next_at is None:
        return None
    return max(0.0, (next_at - utcnow()).total_seconds())


def event_payload(session: Session, task_id: uuid.UUID, event: str, variants: Iterable[str]) -> str:
    """The body of ``event`` for ``task_id``: the task as the API shows it now (just its
    id once it is gone), read when the delivery is attempted."""
    task = session.get(Task, task_id)
    if task is None:
        data: dict[str, object] = {"task_id": str(task_id)}
    else:
        data = task_out(task, variants).model_dump(mode="json")
    return event_body(event, data)


# --- what the API asks for ------------------------------------------------------------


async def check_webhook_limit(session: AsyncSession, owner: str, limit: int) -> None:
    """WebhookLimit if ``owner`` has ``limit`` subscriptions already (concurrent
    requests may overshoot by their number)."""
    count = await session.scalar(
        select(func.count()).select_from(Webhook).where(Webhook.scope == owner)
    )
    if (count or 0) >= limit:
        raise WebhookLimit(f"This key has {limit} webhooks, as many as it may have.")


async def replay(
    session: AsyncSession, original: WebhookDelivery, owner: str | None, *, max_pending: int
) -> tuple[uuid.UUID, bool]:
    """A new delivery of ``original``'s event (the task as it is now, a new message id),
    committed; and whether it is new. While an earlier replay of the same delivery is
    pending, that one is the answer. TooManyReplays when ``owner`` has ``max_pending``
    replays pending."""
    first = original.replay_of or original.id
    waiting = await session.scalar(
        select(WebhookDelivery.id)
        .where(WebhookDelivery.replay_of == first)
        .where(WebhookDelivery.state == DeliveryState.pending)
        .limit(1)
    )
    if waiting is not None:
        return waiting, False
    pending = await session.scalar(
        select(func.count())
        .select_from(WebhookDelivery)
        .where(_owned_by(owner))
        .where(WebhookDelivery.state == DeliveryState.pending)
        .where(WebhookDelivery.replay_of.is_not(None))
    )
    if (pending or 0) >= max_pending:
        raise TooManyReplays()
    now = utcnow()
    again = WebhookDelivery(
        id=uuid.uuid4(),
        task_id=original.task_id,
        webhook_id=original.webhook_id,
        url=original.url,
        event=original.event,
        payload=None,  # re-rendered: the task as it is now, under a new message id
        state=DeliveryState.pending,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
        owner=owner,
        replay_of=first,
    )
    session.add(again)
    await session.commit()
    return again.id, True


def _owned_by(owner: str | None) -> ColumnElement[bool]:
    if owner is None:
        return WebhookDelivery.owner.is_(None)
    return WebhookDelivery.owner == owner
