"""Subscriptions: one owner's webhooks, made, listed and removed.

A subscription hears of every task of its owner (``scope``), for the events it names,
and signs with the secret it was given when it was made. The URL is checked before it
gets here (``urls``); the per-owner bound is ``outbox.check_webhook_limit``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from imagepipe.db.models import Webhook, utcnow
from imagepipe.errors import WebhookNotFound
from imagepipe.services.webhooks.signing import new_secret


async def subscribe(session: AsyncSession, owner: str, url: str, events: Iterable[str]) -> Webhook:
    """A new subscription of ``owner`` to ``events`` (each once) at ``url``, with a
    new secret; committed."""
    hook = Webhook(
        id=uuid.uuid4(),
        scope=owner,
        url=url,
        events=" ".join(dict.fromkeys(events)),
        secret=new_secret(),
        created_at=utcnow(),
    )
    session.add(hook)
    await session.commit()
    return hook


async def of_owner(session: AsyncSession, owner: str) -> list[Webhook]:
    """``owner``'s subscriptions, oldest first."""
    rows = await session.scalars(
        select(Webhook).where(Webhook.scope == owner).order_by(Webhook.created_at)
    )
    return list(rows)


async def unsubscribe(session: AsyncSession, owner: str, webhook_id: uuid.UUID) -> None:
    """Remove ``owner``'s subscription ``webhook_id`` (committed), or WebhookNotFound:
    another owner's is not found either."""
    hook = await session.get(Webhook, webhook_id)
    if hook is None or hook.scope != owner:
        raise WebhookNotFound()
    await session.delete(hook)
    await session.commit()
