"""Each key signs its uploads' callback_url deliveries with a secret of its own: a key
holder cannot get deliveries signed for another key's receiver. Keys that made none
stay on IMAGEPIPE_WEBHOOK_SECRET; a rotation signs with both secrets for 24 hours."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError

from imagepipe.api.app import create_app
from imagepipe.config import Settings
from imagepipe.db.models import WebhookDelivery, utcnow
from imagepipe.errors import InternalError
from imagepipe.services import lifecycle, webhooks
from tests.harness.app import make_settings, open_client, worker_sessions
from tests.images import photo
from tests.webhooks.local import Received, deliver, options, recording_receiver

pytestmark = [pytest.mark.anyio]

SERVICE_SECRET = webhooks.new_secret()
ALICE, BOB = "alice-key-0123456789", "bob-key-0123456789ab"


def as_key(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def verifies(secret: str, call: Received) -> bool:
    try:
        Verifier(secret).verify(call.body, call.headers)
    except WebhookVerificationError:
        return False
    return True


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def delivered(
    client: httpx.AsyncClient,
    sessions: sessionmaker[Session],
    key: str,
    url: str,
    calls: list[Received],
    settings: Settings,
) -> Received:
    """An upload of ``key`` with ``url`` as callback_url, failed, its delivery made:
    what the receiver got."""
    upload = await client.post(
        "/upload",
        files={"file": ("a.jpg", photo(80, 60))},
        data={"callback_url": url},
        headers=as_key(key),
    )
    assert upload.status_code == 202, upload.text
    task_id = uuid.UUID(upload.json()["task_id"])
    assert lifecycle.fail(sessions, task_id, InternalError("Stopped."))
    with sessions() as session:
        delivery_id = session.scalars(
            select(WebhookDelivery.id).where(WebhookDelivery.task_id == task_id)
        ).one()
    before = len(calls)
    assert await deliver(sessions, delivery_id, options(settings)) == "delivered"
    assert len(calls) == before + 1
    return calls[-1]


async def test_each_key_signs_with_its_own_secret_and_rotates(
    tmp_path: Path, sqlite_url: str, redis_url: str
) -> None:
    settings = make_settings(
        tmp_path,
        sqlite_url,
        redis_url,
        api_keys=(ALICE, BOB),
        webhook_secret=SERVICE_SECRET,
        webhook_allow_private=True,
    )
    async with open_client(create_app(settings)) as client:
        with recording_receiver() as (url, calls), worker_sessions(settings) as sessions:
            # Before any key made its own, the service's secret signs (as it always did).
            first = await delivered(client, sessions, ALICE, url, calls, settings)
            assert verifies(SERVICE_SECRET, first)

            made = await client.get("/webhooks/secret", headers=as_key(ALICE))
            assert made.status_code == 200, made.text
            alice = made.json()["secret"]
            assert webhooks.valid_secret(alice) and alice != SERVICE_SECRET
            overlap = _at(made.json()["previous_valid_until"]) - _at(made.json()["created_at"])
            assert timedelta(hours=23) < overlap <= timedelta(hours=24, seconds=1)
            again = await client.get("/webhooks/secret", headers=as_key(ALICE))
            assert again.json()["secret"] == alice  # made once
            bob = (await client.get("/webhooks/secret", headers=as_key(BOB))).json()["secret"]
            assert bob not in (alice, SERVICE_SECRET)

            # Alice's receiver, verifying with Alice's secret, accepts Alice's
            # deliveries and none of Bob's: Bob cannot reach it with a valid signature.
            alices = await delivered(client, sessions, ALICE, url, calls, settings)
            assert verifies(alice, alices)
            bobs = await delivered(client, sessions, BOB, url, calls, settings)
            assert verifies(bob, bobs) and not verifies(alice, bobs)

            # A rotation: the new secret and the one it replaced both sign, for 24 h.
            rotated = await client.post("/webhooks/secret/rotate", headers=as_key(ALICE))
            assert rotated.status_code == 200, rotated.text
            alice2 = rotated.json()["secret"]
            assert alice2 not in (alice, bob) and webhooks.valid_secret(alice2)
            assert (await client.get("/webhooks/secret", headers=as_key(ALICE))).json()[
                "secret"
            ] == alice2
            during = await delivered(client, sessions, ALICE, url, calls, settings)
            assert len(during.headers["webhook-signature"].split(" ")) == 2
            assert verifies(alice2, during) and verifies(alice, during)
            assert not verifies(bob, during) and not verifies(SERVICE_SECRET, during)

            # 24 hours on, only the new secret signs.
            with sessions.begin() as session:
                session.execute(
                    text("UPDATE webhook_secrets SET previous_until = :past"),
                    {"past": utcnow() - timedelta(seconds=1)},
                )
            after = await delivered(client, sessions, ALICE, url, calls, settings)
            assert len(after.headers["webhook-signature"].split(" ")) == 1
            assert verifies(alice2, after) and not verifies(alice, after)
            shown = (await client.get("/webhooks/secret", headers=as_key(ALICE))).json()
            assert shown["previous_valid_until"] is None


async def test_without_keys_the_service_secret_is_the_one(
    tmp_path: Path, sqlite_url: str, redis_url: str
) -> None:
    settings = make_settings(tmp_path, sqlite_url, redis_url, webhook_secret=SERVICE_SECRET)
    async with open_client(create_app(settings)) as client:
        for method, path in (("GET", "/webhooks/secret"), ("POST", "/webhooks/secret/rotate")):
            response = await client.request(method, path)
            assert response.status_code == 409, response.text
            assert response.json()["error"]["code"] == "webhook_secret_configured"
            assert SERVICE_SECRET not in response.text


async def test_a_key_with_its_own_secret_needs_no_service_secret(
    tmp_path: Path, sqlite_url: str, redis_url: str
) -> None:
    """Keys on and no IMAGEPIPE_WEBHOOK_SECRET: a key's callback_url is refused until it
    has a secret of its own, then accepted and signed with it."""
    settings = make_settings(
        tmp_path, sqlite_url, redis_url, api_keys=(ALICE, BOB), webhook_allow_private=True
    )
    async with open_client(create_app(settings)) as client:
        with recording_receiver() as (url, calls), worker_sessions(settings) as sessions:
            refused = await client.post(
                "/upload",
                files={"file": ("a.jpg", photo(80, 60))},
                data={"callback_url": url},
                headers=as_key(ALICE),
            )
            assert refused.status_code == 422, refused.text
            assert refused.json()["error"]["code"] == "invalid_callback_url"
            alice = (await client.get("/webhooks/secret", headers=as_key(ALICE))).json()["secret"]
            signed = await delivered(client, sessions, ALICE, url, calls, settings)
            assert verifies(alice, signed)
            direct = await client.post(
                "/uploads",
                json={"filename": "a.jpg", "size_bytes": 100, "callback_url": url},
                headers=as_key(BOB),  # Bob has none yet
            )
            assert direct.status_code == 422, direct.text
