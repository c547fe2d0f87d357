"""Checking a webhook URL given to the API: the resolution runs in a thread."""

from __future__ import annotations

from functools import partial

from anyio import to_thread

from imagepipe.config import Settings
from imagepipe.errors import InvalidCallbackUrl
from imagepipe.services.webhooks import check_url


async def accept_url(url: str, settings: Settings) -> str:
    """``url`` if it may receive webhooks; raises InvalidCallbackUrl (422)."""
    check = partial(check_url, url.strip(), allow_private=settings.webhook_allow_private)
    return await to_thread.run_sync(check)


async def accept_callback_url(url: str | None, settings: Settings) -> str | None:
    """An upload's ``callback_url`` field, checked; None when absent or empty."""
    if not url or not url.strip():
        return None
    if not settings.webhook_secret:
        raise InvalidCallbackUrl(
            "callback_url needs IMAGEPIPE_WEBHOOK_SECRET to be set on the service."
        )
    return await accept_url(url, settings)
