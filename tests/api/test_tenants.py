"""Tenants: several keys, one owner. A task, a webhook subscription and an
Idempotency-Key made with one key of a tenant are the tenant's, so another key of it
(a rotation) sees them; another tenant does not. Keys grouped into a tenant later
keep what they made. Without keys, every client is one scope whatever it sends.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import select

from imagepipe.api.app import create_app
from imagepipe.api.parts import Parts
from imagepipe.config import Settings
from imagepipe.db.engine import make_sync_engine
from imagepipe.db.models import IdempotencyKey, Task, Webhook
from tests.harness.app import SettingsWith, make_settings, open_client
from tests.images import photo

pytestmark = pytest.mark.anyio

OLD, NEW, OTHER, ADMIN = (
    "tenant-a-old-key-0123456789",
    "tenant-a-new-key-0123456789",
    "tenant-b-key-0123456789abcd",
    "admin-key-0123456789abcdefg",
)
HOOK = {"url": "http://127.0.0.1:9/hook", "events": ["task.succeeded"]}


def key_digest(key: str) -> str:
    """The owner id every release has stored for a list-form key."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def as_key(key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


async def upload(client: httpx.AsyncClient, key: str, **headers: str) -> httpx.Response:
    return await client.post(
        "/upload", files={"file": ("a.jpg", photo(200, 150))}, headers=as_key(key, **headers)
    )


async def listed(client: httpx.AsyncClient, key: str) -> set[str]:
    response = await client.get("/tasks", headers=as_key(key))
    assert response.status_code == 200, response.text
    return {task["task_id"] for task in response.json()["tasks"]}


def owners(settings: Settings) -> dict[str, set[str]]:
    engine = make_sync_engine(settings.resolved_database_url)
    try:
        with engine.connect() as connection:
            return {
                "tasks": set(connection.scalars(select(Task.owner_scope))),
                "webhooks": set(connection.scalars(select(Webhook.scope))),
                "idempotency": set(connection.scalars(select(IdempotencyKey.scope))),
            }
    finally:
        engine.dispose()


async def test_keys_of_one_tenant_share_its_tasks_webhooks_and_idempotency_keys(
    fast_any_db_settings: Settings,
) -> None:
    settings = fast_any_db_settings.model_copy(
        update={
            "api_keys": {"tenant-a": (OLD, NEW), "tenant-b": (OTHER,)},
            "admin_api_keys": (ADMIN,),
            "webhook_allow_private": True,
        }
    )
    async with open_client(create_app(settings, parts=Parts())) as client:
        first = await upload(client, OLD, **{"Idempotency-Key": "order-1"})
        assert first.status_code == 202, first.text
        task_id = first.json()["task_id"]
        hook = await client.post("/webhooks", json=HOOK, headers=as_key(OLD))
        assert hook.status_code == 201, hook.text

        # The other key of the tenant: the same task, the same subscriptions, and the
        # same Idempotency-Key answer.
        assert (await client.get(f"/tasks/{task_id}", headers=as_key(NEW))).status_code == 200
        assert task_id in await listed(client, NEW)
        hooks = (await client.get("/webhooks", headers=as_key(NEW))).json()["webhooks"]
        assert [h["id"] for h in hooks] == [hook.json()["id"]]
        again = await upload(client, NEW, **{"Idempotency-Key": "order-1"})
        assert again.headers.get("Idempotent-Replayed") == "true", again.text
        assert again.json()["task_id"] == task_id

        # Another tenant: nothing.
        assert (await client.get(f"/tasks/{task_id}", headers=as_key(OTHER))).status_code == 404
        assert await listed(client, OTHER) == set()
        assert (await client.get("/webhooks", headers=as_key(OTHER))).json()["webhooks"] == []
        mine = await upload(client, OTHER, **{"Idempotency-Key": "order-1"})
        assert mine.status_code == 202 and mine.json()["task_id"] != task_id
        # An admin sees both tenants' tasks.
        assert await listed(client, ADMIN) == {task_id, mine.json()["task_id"]}
        removed = await client.delete(f"/webhooks/{hook.json()['id']}", headers=as_key(NEW))
        assert removed.status_code == 204

    # Stored under the tenant's name, never a key or a key's digest.
    stored = owners(settings)
    assert stored["tasks"] == {"tenant-a", "tenant-b"}
    assert stored["idempotency"] == {"tenant-a", "tenant-b"}


async def test_keys_grouped_later_keep_what_they_made(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    """List form first (each key its own tenant, owner = the key's digest), then the
    same key named in a tenant beside a new key: nothing is orphaned."""
    listed_form = make_settings(
        tmp_path, database_url, redis_url, api_keys=(OLD, OTHER), webhook_allow_private=True
    )
    async with open_client(create_app(listed_form)) as client:
        made = await upload(client, OLD, **{"Idempotency-Key": "order-7"})
        assert made.status_code == 202, made.text
        theirs = await upload(client, OTHER)
        hook = await client.post("/webhooks", json=HOOK, headers=as_key(OLD))
        assert hook.status_code == 201
    assert owners(listed_form)["tasks"] == {key_digest(OLD), key_digest(OTHER)}

    grouped = listed_form.model_copy(update={"api_keys": {"tenant-a": [OLD, NEW], "b": [OTHER]}})
    for _ in range(2):  # adoption at every start changes nothing the second time
        async with open_client(create_app(grouped)) as client:
            task_id = made.json()["task_id"]
            for key in (OLD, NEW):
                assert (
                    await client.get(f"/tasks/{task_id}", headers=as_key(key))
                ).status_code == 200
                assert await listed(client, key) == {task_id}
                hooks = (await client.get("/webhooks", headers=as_key(key))).json()["webhooks"]
                assert [h["id"] for h in hooks] == [hook.json()["id"]]
            replay = await upload(client, NEW, **{"Idempotency-Key": "order-7"})
            assert replay.headers.get("Idempotent-Replayed") == "true", replay.text
            # Tenant b's key was grouped too; its task followed it.
            assert await listed(client, OTHER) == {theirs.json()["task_id"]}
    assert owners(grouped) == {
        "tasks": {"tenant-a", "b"},
        "webhooks": {"tenant-a"},
        "idempotency": {"tenant-a"},
    }


async def test_without_keys_every_client_is_one_scope(fast_client: httpx.AsyncClient) -> None:
    """Whatever Authorization says: one Idempotency-Key space, one set of webhooks."""
    first = await upload(fast_client, "some-token", **{"Idempotency-Key": "k-1"})
    again = await upload(fast_client, "another-token", **{"Idempotency-Key": "k-1"})
    assert again.headers.get("Idempotent-Replayed") == "true", again.text
    assert again.json()["task_id"] == first.json()["task_id"]
    bare = await fast_client.post(
        "/upload", files={"file": ("a.jpg", photo(200, 150))}, headers={"Idempotency-Key": "k-1"}
    )
    assert bare.json()["task_id"] == first.json()["task_id"]


async def test_without_keys_webhooks_belong_to_the_one_scope(
    fast_settings_with: SettingsWith,
) -> None:
    settings = fast_settings_with(webhook_allow_private=True)
    async with open_client(create_app(settings, parts=Parts())) as client:
        made = await client.post("/webhooks", json=HOOK, headers=as_key("whatever"))
        assert made.status_code == 201
        seen = (await client.get("/webhooks")).json()["webhooks"]
        assert [h["id"] for h in seen] == [made.json()["id"]]
    assert owners(settings)["webhooks"] == {"anonymous"}


@pytest.mark.parametrize(
    "keys",
    [
        '{"tenant a": ["k1"]}',  # a space
        '{"anonymous": ["k1"]}',  # the keyless scope's name
        '{"' + "0" * 32 + '": ["k1"]}',  # looks like a list-form key's digest
        '{"t": []}',  # a tenant without keys
        '{"t": ["k1"], "u": ["k1"]}',  # one key, two tenants
        '{"t": [""]}',
    ],
)
def test_malformed_tenants_are_refused(monkeypatch: pytest.MonkeyPatch, keys: str) -> None:
    monkeypatch.setenv("IMAGEPIPE_API_KEYS", keys)
    with pytest.raises(ValidationError):
        Settings()


def test_tenants_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEPIPE_API_KEYS", '{"tenant-a": ["k1", "k2"], "b.2": ["k3"]}')
    monkeypatch.setenv("IMAGEPIPE_ADMIN_API_KEYS", '{"ops": ["k4"]}')
    settings = Settings()
    assert settings.api_keys == {"tenant-a": ("k1", "k2"), "b.2": ("k3",)}
    assert settings.keys_required
    assert Settings(**settings.model_dump()) == settings


async def test_the_api_description_stays_public_with_keys(
    fast_settings_with: SettingsWith,
) -> None:
    """/docs and /openapi.json describe the API, not a tenant's data: no key needed."""
    settings = fast_settings_with(api_keys=(OLD,))
    async with open_client(create_app(settings, parts=Parts())) as client:
        assert (await client.get("/openapi.json")).status_code == 200
        assert (await client.get("/docs")).status_code == 200
        assert (await client.get("/tasks")).status_code == 401
