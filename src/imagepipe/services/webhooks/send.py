"""One delivery attempt: claim it (the attempt counted first), sign, POST, record.

Before connecting, the target host is resolved and every address checked; the request
then goes to the checked address (the Host header and TLS name stay the URL's), so a
DNS answer that changes between the check and the connect cannot reach a private
network. Redirects are never followed, and no proxy from the environment is used.

The attempt is bounded as a whole, not per read: connect, send and the answer's head
must all be done within ``timeout_seconds``, so a receiver that drips bytes cannot
hold a worker. The answer's body is never read (the status is the answer): a receiver
sending hundreds of megabytes costs at most a socket buffer.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import anyio
import httpx
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.config import Settings
from imagepipe.db.models import DeliveryState
from imagepipe.errors import InvalidCallbackUrl
from imagepipe.services.webhooks import outbox, signing, urls

log = logging.getLogger(__name__)

_USER_AGENT = "imagepipe-webhooks"
# A claimed delivery is not swept again for this long (a worker is sending it); at
# least twice what an attempt may take.
_MIN_LEASE = timedelta(seconds=120)


@dataclass(frozen=True)
class DeliverySettings:
    default_secret: str | None
    allow_private: bool
    timeout_seconds: float
    resolve_timeout_seconds: float = 5.0
    # Seconds before each retry; attempts end after len(backoff) + 1.
    backoff: tuple[float, ...] = outbox.BACKOFF

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliverySettings:
        return cls(
            default_secret=settings.webhook_secret,
            allow_private=settings.webhook_allow_private,
            timeout_seconds=settings.webhook_timeout_seconds,
            resolve_timeout_seconds=settings.webhook_resolve_timeout_seconds,
            backoff=settings.webhook_retry_schedule,
        )

    @property
    def lease(self) -> timedelta:
        longest = timedelta(seconds=self.timeout_seconds + self.resolve_timeout_seconds)
        return max(_MIN_LEASE, 2 * longest)


def deliver(
    sessions: sessionmaker[Session],
    delivery_id: uuid.UUID,
    options: DeliverySettings,
    *,
    payload_for: Callable[[Session, uuid.UUID, str], str],
) -> DeliveryState | None:
    """Make one attempt if the delivery is due and nobody else holds it; its new state
    (None: not ours to send now). Blocking: call it where no event loop runs."""
    claimed = outbox.claim(
        sessions, delivery_id, payload_for, lease=options.lease, backoff=options.backoff
    )
    if not isinstance(claimed, outbox.Claimed):
        return claimed
    secrets = signing.secrets_for(sessions, claimed, options.default_secret)
    status_code, error = anyio.run(_attempt, claimed, secrets, options)
    return outbox.finish(
        sessions, delivery_id, claimed.attempt, status_code, error, backoff=options.backoff
    )


async def _attempt(
    claimed: outbox.Claimed, secrets: list[str], options: DeliverySettings
) -> tuple[int | None, str | None]:
    if not secrets:
        return None, "no signing secret"
    try:
        target = urls.parse(claimed.url)
        address = await urls.resolve(
            target,
            allow_private=options.allow_private,
            lookup_seconds=options.resolve_timeout_seconds,
        )
    except InvalidCallbackUrl as error:
        return None, error.message[:255]
    timestamp = datetime.now(UTC)
    message_id = f"msg_{claimed.delivery_id.hex}"  # stable: receivers deduplicate on it
    headers = {
        "content-type": "application/json",
        "user-agent": _USER_AGENT,
        "host": target.netloc.rpartition("@")[2],
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signing.signatures(secrets, message_id, timestamp, claimed.payload),
    }
    try:
        with anyio.fail_after(options.timeout_seconds):
            status = await _post(target, address, headers, claimed.payload, options)
    except (TimeoutError, httpx.TimeoutException):
        return None, "timeout"
    except httpx.HTTPError as error:
        return None, f"{type(error).__name__}: {error}"[:255]
    if 200 <= status < 300:
        return status, None
    return status, f"HTTP {status}"


async def _post(
    target: urls.Target,
    address: urls.Address,
    headers: dict[str, str],
    payload: str,
    options: DeliverySettings,
) -> int:
    async with (
        httpx.AsyncClient(
            timeout=options.timeout_seconds, follow_redirects=False, trust_env=False
        ) as client,
        client.stream(
            "POST",
            target.pinned(address),
            content=payload.encode(),
            headers=headers,
            extensions={"sni_hostname": target.host},
        ) as response,
    ):
        # Leaving without reading the body closes the connection.
        return response.status_code
