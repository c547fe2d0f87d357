"""Which secrets sign a delivery, and each owner's own secret.

A subscription signs with the secret it was given at creation. An upload's
``callback_url`` is signed with its owner's own secret (``GET /webhooks/secret``), or,
for an owner that has none, with IMAGEPIPE_WEBHOOK_SECRET: one key's uploads cannot
get deliveries signed for another key's receiver once that key has its own. For
24 hours after a secret is made or rotated, the one it replaces signs too (Standard
Webhooks puts several signatures in one header), so receivers switch without a gap.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks import Webhook as Signer

from imagepipe.db.models import Webhook, WebhookSecret, utcnow
from imagepipe.errors import ServiceUnavailable
from imagepipe.services.webhooks.outbox import Claimed

OVERLAP = timedelta(hours=24)


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def valid_secret(secret: str) -> bool:
    try:
        Signer(secret)
    except Exception:
        return False
    return secret.startswith("whsec_")


def signatures(signing: list[str], message_id: str, timestamp: datetime, payload: str) -> str:
    """The ``webhook-signature`` header: one ``v1,…`` per secret, space-separated."""
    return " ".join(Signer(secret).sign(message_id, timestamp, payload) for secret in signing)


def secrets_for(
    sessions: sessionmaker[Session], claimed: Claimed, service_secret: str | None
) -> list[str]:
    """The secrets signing ``claimed`` now, the current one first (none: unsigned,
    the attempt fails)."""
    with sessions() as session:
        if claimed.webhook_id is not None:
            hook = session.get(Webhook, claimed.webhook_id)
            return [hook.secret] if hook else []
        own = session.get(WebhookSecret, claimed.owner) if claimed.owner else None
    return _signing(own, service_secret, utcnow())


def _signing(own: WebhookSecret | None, service_secret: str | None, now: datetime) -> list[str]:
    if own is None:
        return [service_secret] if service_secret else []
    found = [own.secret]
    if own.previous_until is not None and own.previous_until > now:
        # No previous secret of its own: the service's signed before this one.
        previous = own.previous_secret or service_secret
        if previous and previous != own.secret:
            found.append(previous)
    return found


# --- the owner's own secret (the API) --------------------------------------------------


@dataclass(frozen=True)
class OwnSecret:
    secret: str
    created_at: datetime
    # Until then the secret it replaced signs too; None when that is over.
    previous_valid_until: datetime | None


def _own(row: WebhookSecret, now: datetime) -> OwnSecret:
    until = row.previous_until if row.previous_until is not None else None
    return OwnSecret(row.secret, row.created_at, until if until and until > now else None)


async def has_own_secret(session: AsyncSession, owner: str) -> bool:
    return await session.get(WebhookSecret, owner) is not None


async def own_secret(session: AsyncSession, owner: str) -> OwnSecret:
    """``owner``'s own secret, made on first use (the service's keeps signing beside it
    for 24 hours)."""
    row = await session.get(WebhookSecret, owner)
    if row is None:
        now = utcnow()
        row = WebhookSecret(
            owner=owner,
            secret=new_secret(),
            created_at=now,
            previous_secret=None,
            previous_until=now + OVERLAP,
        )
        session.add(row)
        try:
            await session.commit()
        except IntegrityError:  # made at the same moment by another request
            await session.rollback()
            row = await session.get(WebhookSecret, owner, populate_existing=True)
            assert row is not None
    return _own(row, utcnow())


async def rotate(session: AsyncSession, owner: str) -> OwnSecret:
    """A new secret for ``owner``; the one it replaces signs beside it for 24 hours
    (a rotation within those hours ends the overlap of the secret before)."""
    await own_secret(session, owner)
    for _ in range(5):
        current = await session.scalar(
            select(WebhookSecret.secret).where(WebhookSecret.owner == owner)
        )
        now = utcnow()
        fresh = new_secret()
        changed = await session.execute(
            update(WebhookSecret)
            .where(WebhookSecret.owner == owner, WebhookSecret.secret == current)
            .values(
                secret=fresh,
                created_at=now,
                previous_secret=current,
                previous_until=now + OVERLAP,
            )
            .execution_options(synchronize_session=False)
        )
        await session.commit()
        if changed.rowcount == 1:  # type: ignore[attr-defined]
            return OwnSecret(fresh, now, now + OVERLAP)
        # Another rotation won the race: rotate from the secret it made.
    raise ServiceUnavailable("The secret kept changing under this rotation; try again.")
