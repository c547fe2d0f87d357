"""Checking a webhook URL given to the API. The host look-up runs on the webhook
resolver's own threads with a deadline, never in the shared thread pool."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from imagepipe.config import Settings
from imagepipe.errors import InvalidCallbackUrl
from imagepipe.services.webhooks import check_url, signing


async def accept_url(url: str, settings: Settings) -> str:
    """``url`` if it may receive webhooks; raises InvalidCallbackUrl (422)."""
    return await check_url(
        url.strip(),
        allow_private=settings.webhook_allow_private,
        lookup_seconds=settings.webhook_resolve_timeout_seconds,
    )


async def accept_callback_url(
    url: str | None, settings: Settings, session: AsyncSession, owner: str
) -> str | None:
    """An upload's ``callback_url`` field, checked; None when absent or empty. Its
    deliveries are signed with the owner's own secret, or the service's: one of them
    must exist (the database is asked only when the service has none)."""
    if not url or not url.strip():
        return None
    if not settings.webhook_secret and not await signing.has_own_secret(session, owner):
        raise InvalidCallbackUrl(
            "callback_url needs a signing secret: GET /webhooks/secret makes this key's "
            "own, or set IMAGEPIPE_WEBHOOK_SECRET on the service."
        )
    return await accept_url(url, settings)
