"""With API keys, a task belongs to the key that created it: another key gets 404 for
it everywhere and does not see it in lists; admin keys see everything. Without keys
every caller sees every task. Production refuses to start open unless told to.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import update

from imagepipe.api.app import create_app
from imagepipe.api.parts import Parts
from imagepipe.config import Settings
from imagepipe.db.engine import make_sync_engine
from imagepipe.db.models import Task, WebhookDelivery, utcnow
from tests.harness.app import make_settings, open_client, run_inline
from tests.harness.processes import imagepipe, settings_env
from tests.harness.server import free_port
from tests.images import photo

pytestmark = pytest.mark.anyio

ALICE, BOB, ADMIN = "alice-key-0123456789", "bob-key-0123456789ab", "admin-key-0123456789"


def as_key(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def keyed_settings(tmp_path: Path, any_db_settings: Settings) -> Settings:
    return any_db_settings.model_copy(update={"api_keys": (ALICE, BOB), "admin_api_keys": (ADMIN,)})


@pytest.fixture
async def keyed(keyed_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with open_client(create_app(keyed_settings)) as client:
        yield client


async def upload(client: httpx.AsyncClient, key: str | None) -> str:
    headers = as_key(key) if key else {}
    response = await client.post(
        "/upload", files={"file": ("a.jpg", photo(300, 200))}, headers=headers
    )
    assert response.status_code == 202, response.text
    task_id: str = response.json()["task_id"]
    return task_id


def add_delivery(settings: Settings, task_id: str) -> str:
    """A delivery row of the task, as the worker's outbox would write it."""
    engine = make_sync_engine(settings.resolved_database_url)
    delivery_id = uuid.uuid4()
    with engine.begin() as connection:
        connection.execute(
            WebhookDelivery.__table__.insert().values(
                id=delivery_id,
                task_id=uuid.UUID(task_id),
                url="https://example.com/hook",
                event="task.succeeded",
                state="delivered",
                attempts=1,
                created_at=utcnow(),
            )
        )
    engine.dispose()
    return str(delivery_id)


def forget_owner(settings: Settings, task_id: str) -> None:
    """Make the row look like one written before owners were recorded."""
    engine = make_sync_engine(settings.resolved_database_url)
    with engine.begin() as connection:
        connection.execute(
            update(Task).where(Task.id == uuid.UUID(task_id)).values(owner_scope=None)
        )
    engine.dispose()


def task_urls(task_id: str) -> list[tuple[str, str]]:
    return [
        ("GET", f"/tasks/{task_id}"),
        ("GET", f"/tasks/{task_id}?wait=1"),
        ("GET", f"/tasks/{task_id}/events"),
        ("GET", f"/tasks/{task_id}/deliveries"),
        ("GET", f"/tasks/{task_id}/variants/small"),
        ("HEAD", f"/tasks/{task_id}/variants/small"),
        ("POST", f"/tasks/{task_id}/complete"),
    ]


async def listed(client: httpx.AsyncClient, key: str, **params: str) -> set[str]:
    response = await client.get("/tasks", headers=as_key(key), params=params)
    assert response.status_code == 200, response.text
    return {task["task_id"] for task in response.json()["tasks"]}


async def test_another_key_never_sees_a_task(
    keyed: httpx.AsyncClient, keyed_settings: Settings
) -> None:
    task_id = await upload(keyed, ALICE)
    run_inline(keyed_settings, task_id)
    delivery = add_delivery(keyed_settings, task_id)

    for method, url in task_urls(task_id):
        response = await keyed.request(method, url, headers=as_key(BOB))
        assert response.status_code == 404, (method, url, response.text)
        if method != "HEAD":
            assert response.json()["error"]["code"] == "task_not_found", url
    replay = await keyed.post(f"/deliveries/{delivery}/replay", headers=as_key(BOB))
    assert replay.status_code == 404
    assert task_id not in await listed(keyed, BOB)
    assert task_id not in await listed(keyed, BOB, status="succeeded")
    assert (await keyed.delete(f"/tasks/{task_id}", headers=as_key(BOB))).status_code == 404

    # The owner sees it everywhere (events: the stream of an ended task ends at once).
    for method, url in task_urls(task_id):
        if url.endswith("/complete"):
            continue  # completing an uploaded task answers its 202 again
        response = await keyed.request(method, url, headers=as_key(ALICE))
        assert response.status_code == 200, (method, url, response.text)
    assert task_id in await listed(keyed, ALICE)
    assert task_id in await listed(keyed, ALICE, status="succeeded")
    preview = await keyed.get(f"/tasks/{task_id}/variants/small", headers=as_key(ALICE))
    assert preview.headers["cache-control"].startswith("private,")
    replay = await keyed.post(f"/deliveries/{delivery}/replay", headers=as_key(ALICE))
    assert replay.status_code == 202
    assert (await keyed.delete(f"/tasks/{task_id}", headers=as_key(ALICE))).status_code == 204


async def test_admin_keys_see_and_delete_every_task(keyed: httpx.AsyncClient) -> None:
    alices, bobs = await upload(keyed, ALICE), await upload(keyed, BOB)
    assert await listed(keyed, ADMIN) >= {alices, bobs}
    assert await listed(keyed, ALICE) == {alices}
    assert await listed(keyed, BOB) == {bobs}
    response = await keyed.get(f"/tasks/{bobs}", headers=as_key(ADMIN))
    assert response.status_code == 200
    assert (await keyed.delete(f"/tasks/{bobs}", headers=as_key(ADMIN))).status_code == 204
    assert (await keyed.get(f"/tasks/{bobs}", headers=as_key(BOB))).status_code == 404
    # An admin's own uploads belong to the admin key like any other.
    admins = await upload(keyed, ADMIN)
    assert admins not in await listed(keyed, ALICE)


async def test_rows_without_an_owner_are_for_admins_when_keys_are_on(
    keyed: httpx.AsyncClient, keyed_settings: Settings
) -> None:
    task_id = await upload(keyed, ALICE)
    forget_owner(keyed_settings, task_id)
    for key in (ALICE, BOB):
        assert (await keyed.get(f"/tasks/{task_id}", headers=as_key(key))).status_code == 404
        assert task_id not in await listed(keyed, key)
    assert (await keyed.get(f"/tasks/{task_id}", headers=as_key(ADMIN))).status_code == 200
    assert task_id in await listed(keyed, ADMIN)


async def test_without_keys_every_caller_sees_every_task(fast_any_db_settings: Settings) -> None:
    async with open_client(create_app(fast_any_db_settings, parts=Parts())) as client:
        mine = await upload(client, None)
        tokened = await upload(client, "some-token-the-open-service-ignores")
        forget_owner(fast_any_db_settings, mine)
        for task_id in (mine, tokened):
            assert (await client.get(f"/tasks/{task_id}")).status_code == 200
            response = await client.get(f"/tasks/{task_id}", headers=as_key("another"))
            assert response.status_code == 200
        listing = await client.get("/tasks")
        assert {t["task_id"] for t in listing.json()["tasks"]} == {mine, tokened}


async def test_the_stored_owner_is_a_digest_not_the_key(
    keyed: httpx.AsyncClient, keyed_settings: Settings
) -> None:
    task_id = await upload(keyed, ALICE)
    engine = make_sync_engine(keyed_settings.resolved_database_url)
    with engine.connect() as connection:
        owner = (
            connection.execute(Task.__table__.select().where(Task.id == uuid.UUID(task_id)))
            .one()
            ._mapping["owner_scope"]
        )
    engine.dispose()
    assert owner and ALICE not in owner and len(owner) == 32


# --- production refuses to start open -----------------------------------------------


def test_production_settings_need_keys_or_an_explicit_allowance(tmp_path: Path) -> None:
    base = {"environment": "production", "data_dir": tmp_path}
    with pytest.raises(ValidationError, match="IMAGEPIPE_API_KEYS"):
        Settings(**base)  # type: ignore[arg-type]
    assert Settings(**base, api_keys=("k",)).keys_required  # type: ignore[arg-type]
    assert Settings(**base, admin_api_keys=("k",)).keys_required  # type: ignore[arg-type]
    assert not Settings(**base, allow_anonymous=True).keys_required  # type: ignore[arg-type]


def test_imagepipe_api_in_production_without_keys_exits(
    tmp_path: Path, sqlite_url: str, redis_url: str
) -> None:
    settings = make_settings(tmp_path, sqlite_url, redis_url)
    env = {**settings_env(settings), "IMAGEPIPE_ENVIRONMENT": "production"}
    result = subprocess.run(
        imagepipe("api", "--port", str(free_port())),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "IMAGEPIPE_API_KEYS" in result.stderr + result.stdout
