"""Webhooks, at least once: an outbox written with the status change, then delivery.

    status change ──(same transaction)──> webhook_deliveries row (pending)
    after the commit: the deliver task is published; if that publish is lost (the
    worker died right after the commit), the reconciler's sweep finds the row
    deliver: claim the row (a short lease), POST once, record the attempt, then
    delivered / next attempt at now + backoff (with jitter) / failed after the last

Each delivery is signed the Standard Webhooks way by the ``standardwebhooks`` library.
Before connecting, the target host is resolved and every address checked; the request
then goes to the checked address (the Host header and TLS name stay the URL's), so a
DNS answer that changes between the check and the connect cannot reach a private
network. Redirects are never followed.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import random
import secrets
import socket
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import httpx
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks import Webhook as Signer

from imagepipe.db.models import (
    DeliveryAttempt,
    DeliveryState,
    Task,
    Webhook,
    WebhookDelivery,
    utcnow,
)
from imagepipe.errors import InvalidCallbackUrl

log = logging.getLogger(__name__)

EVENTS = ("task.succeeded", "task.failed")
# Seconds after attempt n (1-based) before attempt n+1: the first retry within 10 s,
# 7 attempts spread over about 1 h 45 min. Each delay is jittered by ±20 %.
BACKOFF = (5, 30, 120, 600, 1800, 3600)
MAX_ATTEMPTS = len(BACKOFF) + 1
_JITTER = 0.2
# A claimed delivery is not swept again for this long (a worker is sending it).
_LEASE = timedelta(seconds=120)
_USER_AGENT = "imagepipe-webhooks"


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def valid_secret(secret: str) -> bool:
    try:
        Signer(secret)
    except Exception:
        return False
    return secret.startswith("whsec_")


# --- where a URL may point ------------------------------------------------------


def _refused(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or address in ipaddress.ip_network("100.64.0.0/10")  # shared (carrier) space
    )


def resolve_allowed(url: str, *, allow_private: bool) -> str:
    """The address to connect to for ``url``, after checking every address its host
    resolves to. Raises InvalidCallbackUrl."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidCallbackUrl("The webhook URL must be an absolute http(s) URL.")
    if parts.username or parts.password:
        raise InvalidCallbackUrl("The webhook URL must not carry credentials.")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise InvalidCallbackUrl(f"The host {parts.hostname!r} does not resolve.") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not allow_private and any(_refused(a) for a in addresses):
        raise InvalidCallbackUrl(
            "The webhook URL resolves to a loopback, private, link-local or metadata address."
        )
    return str(addresses[0])


def check_url(url: str, *, allow_private: bool) -> str:
    """Validate a URL given to the API (length, scheme, where it resolves); the URL."""
    if len(url) > 2048:
        raise InvalidCallbackUrl("The webhook URL is longer than 2048 characters.")
    resolve_allowed(url, allow_private=allow_private)
    return url


# --- the outbox -------------------------------------------------------------------


def record(session: Session, task_id: uuid.UUID, event: str) -> list[uuid.UUID]:
    """Write the deliveries of ``event`` for the task, in the caller's transaction (the
    one changing its status); their ids, to publish after the commit."""
    task = session.execute(
        select(Task.owner_scope, Task.callback_url).where(Task.id == task_id)
    ).one_or_none()
    if task is None:
        return []
    targets: list[tuple[uuid.UUID | None, str]] = []
    if task.callback_url:
        targets.append((None, task.callback_url))
    if task.owner_scope:
        for hook in session.scalars(select(Webhook).where(Webhook.scope == task.owner_scope)):
            if event in hook.events.split():
                targets.append((hook.id, hook.url))
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
        )
        for webhook_id, url in targets
    ]
    session.add_all(rows)
    return [row.id for row in rows]


# After the commit, deliveries are handed to the broker by the process's dispatcher
# (the worker sets it); without one, the reconciler's sweep picks them up.
_dispatch: Callable[[uuid.UUID], object] | None = None


def configure(dispatch: Callable[[uuid.UUID], object] | None) -> None:
    global _dispatch
    _dispatch = dispatch


def dispatch(delivery_ids: Iterable[uuid.UUID]) -> None:
    if _dispatch is None:
        return
    for delivery_id in delivery_ids:
        try:
            _dispatch(delivery_id)
        except Exception as error:
            log.warning("delivery %s not published: %s", delivery_id, error)


def due(sessions: sessionmaker[Session], *, limit: int = 500) -> list[uuid.UUID]:
    """Pending deliveries whose next attempt is due (the sweep)."""
    with sessions() as session:
        return list(
            session.scalars(
                select(WebhookDelivery.id)
                .where(WebhookDelivery.state == DeliveryState.pending)
                .where(
                    or_(
                        WebhookDelivery.next_attempt_at.is_(None),
                        WebhookDelivery.next_attempt_at <= utcnow(),
                    )
                )
                .order_by(WebhookDelivery.next_attempt_at)
                .limit(limit)
            )
        )


# --- one attempt ------------------------------------------------------------------


@dataclass(frozen=True)
class DeliverySettings:
    default_secret: str | None
    allow_private: bool
    timeout_seconds: float


@dataclass(frozen=True)
class _Claimed:
    attempt: int
    url: str
    webhook_id: uuid.UUID | None
    payload: str
    event: str


def deliver(
    sessions: sessionmaker[Session],
    delivery_id: uuid.UUID,
    options: DeliverySettings,
    *,
    payload_for: Callable[[Session, uuid.UUID, str], str],
) -> DeliveryState | None:
    """Make one attempt if the delivery is due and nobody else holds it; its new state
    (None: not ours to send now)."""
    claimed = _claim(sessions, delivery_id, payload_for)
    if claimed is None:
        return None
    status_code, error = _send(sessions, delivery_id, claimed, options)
    return _finish(sessions, delivery_id, claimed.attempt, status_code, error)


def _claim(
    sessions: sessionmaker[Session],
    delivery_id: uuid.UUID,
    payload_for: Callable[[Session, uuid.UUID, str], str],
) -> _Claimed | None:
    now = utcnow()
    with sessions.begin() as session:
        row = session.get(WebhookDelivery, delivery_id)
        if row is None or row.state != DeliveryState.pending:
            return None
        if row.next_attempt_at is not None and _aware(row.next_attempt_at) > now:
            return None
        taken = session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id)
            .where(WebhookDelivery.attempts == row.attempts)
            .where(WebhookDelivery.state == DeliveryState.pending)
            .values(attempts=row.attempts + 1, next_attempt_at=now + _LEASE)
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            return None
        payload = row.payload or payload_for(session, row.task_id, row.event)
        if row.payload is None:
            session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery_id)
                .values(payload=payload)
                .execution_options(synchronize_session=False)
            )
        return _Claimed(row.attempts + 1, row.url, row.webhook_id, payload, row.event)


def _send(
    sessions: sessionmaker[Session],
    delivery_id: uuid.UUID,
    claimed: _Claimed,
    options: DeliverySettings,
) -> tuple[int | None, str | None]:
    secret = options.default_secret
    if claimed.webhook_id is not None:
        with sessions() as session:
            hook = session.get(Webhook, claimed.webhook_id)
            secret = hook.secret if hook else None
    if not secret:
        return None, "no signing secret"
    try:
        address = resolve_allowed(claimed.url, allow_private=options.allow_private)
    except InvalidCallbackUrl as error:
        return None, error.message[:255]
    timestamp = datetime.now(UTC)
    message_id = f"msg_{delivery_id.hex}"  # stable: receivers deduplicate on it
    headers = {
        "content-type": "application/json",
        "user-agent": _USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": Signer(secret).sign(message_id, timestamp, claimed.payload),
    }
    parts = urlsplit(claimed.url)
    host = f"[{address}]" if ":" in address else address
    netloc = f"{host}:{parts.port}" if parts.port else host
    pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    headers["host"] = parts.netloc.rpartition("@")[2]
    try:
        with httpx.Client(timeout=options.timeout_seconds, follow_redirects=False) as client:
            response = client.post(
                pinned,
                content=claimed.payload.encode(),
                headers=headers,
                extensions={"sni_hostname": parts.hostname or ""},
            )
    except httpx.TimeoutException:
        return None, "timeout"
    except httpx.HTTPError as error:
        return None, f"{type(error).__name__}: {error}"[:255]
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"HTTP {response.status_code}"


def _finish(
    sessions: sessionmaker[Session],
    delivery_id: uuid.UUID,
    attempt: int,
    status_code: int | None,
    error: str | None,
) -> DeliveryState:
    now = utcnow()
    if error is None:
        state, next_at = DeliveryState.delivered, None
    elif attempt >= MAX_ATTEMPTS:
        state, next_at = DeliveryState.failed, None
    else:
        delay = BACKOFF[attempt - 1] * random.uniform(1 - _JITTER, 1 + _JITTER)
        state, next_at = DeliveryState.pending, now + timedelta(seconds=delay)
    with sessions.begin() as session:
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
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, WebhookDelivery.attempts == attempt)
            .values(state=state, next_attempt_at=next_at)
            .execution_options(synchronize_session=False)
        )
    return state


def retry_delay(delivery_next: datetime | None) -> float | None:
    """Seconds until a pending delivery's next attempt (for a short broker countdown)."""
    if delivery_next is None:
        return None
    return max(0.0, (_aware(delivery_next) - utcnow()).total_seconds())


def event_body(event: str, data: dict[str, object]) -> str:
    timestamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return json.dumps({"type": event, "timestamp": timestamp, "data": data})


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
