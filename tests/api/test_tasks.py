"""GET/DELETE /tasks/..., the task list, variant downloads and error rendering."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from imagepipe.api import delivery
from imagepipe.config import Settings
from imagepipe.db.engine import make_sync_engine, sync_session_factory
from imagepipe.db.models import Rendition, Task, TaskStatus, utcnow
from imagepipe.services import deletion, lifecycle, rendering
from imagepipe.storage import LocalStorage
from tests.harness.app import run_inline
from tests.images import photo

pytestmark = pytest.mark.anyio


async def upload(client: httpx.AsyncClient, data: bytes | None = None) -> str:
    response = await client.post(
        "/upload", files={"file": ("a.jpg", data or photo(1600, 1200), "image/jpeg")}
    )
    assert response.status_code == 202, response.text
    return str(response.json()["task_id"])


UNKNOWN_ID = "5f0c3f51-0000-4000-8000-000000000000"


@pytest.mark.parametrize("task_id", [UNKNOWN_ID, "not-a-uuid", "1' OR '1'='1", "%00"])
async def test_unknown_and_malformed_ids_are_404(
    fast_client: httpx.AsyncClient, task_id: str
) -> None:
    for method, path in [
        ("GET", f"/tasks/{task_id}"),
        ("DELETE", f"/tasks/{task_id}"),
        ("GET", f"/tasks/{task_id}/variants/small"),
    ]:
        response = await fast_client.request(method, path)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["code"] == "task_not_found"


async def test_variants_are_listed_in_the_configured_order(
    fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    # 600x400: medium and large are both stored at 600x400, so sorting by size cannot
    # tell them apart; the configured order must win.
    task_id = await upload(fast_client, photo(600, 400))
    assert run_inline(fast_settings, task_id) == rendering.Outcome.succeeded
    task = (await fast_client.get(f"/tasks/{task_id}")).json()
    assert list(task["variants"]) == list(fast_settings.variants) == ["small", "medium", "large"]
    listed = (await fast_client.get("/tasks")).json()["tasks"][0]
    assert list(listed["variants"]) == ["small", "medium", "large"]


async def test_variant_before_success_is_404(fast_client: httpx.AsyncClient) -> None:
    task_id = await upload(fast_client)
    response = await fast_client.get(f"/tasks/{task_id}/variants/small")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "variant_not_found"


async def test_succeeded_task_serves_variants(
    fast_any_db_client: httpx.AsyncClient, fast_any_db_settings: Settings
) -> None:
    task_id = await upload(fast_any_db_client)
    assert run_inline(fast_any_db_settings, task_id) == rendering.Outcome.succeeded
    status = (await fast_any_db_client.get(f"/tasks/{task_id}")).json()
    assert status["status"] == "succeeded"
    assert status["started_at"] and status["finished_at"]
    sizes = {name: (v["width"], v["height"]) for name, v in status["variants"].items()}
    assert sizes == {"small": (150, 113), "medium": (600, 450), "large": (1200, 900)}

    url = status["variants"]["medium"]["url"]
    response = await fast_any_db_client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert int(response.headers["content-length"]) == len(response.content)
    assert len(response.content) == status["variants"]["medium"]["size_bytes"]
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert response.headers["x-content-type-options"] == "nosniff"
    etag = response.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")

    head = await fast_any_db_client.head(url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["etag"] == etag
    for if_none_match in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        cached = await fast_any_db_client.get(url, headers={"If-None-Match": if_none_match})
        assert cached.status_code == 304 and cached.content == b"", if_none_match
    assert (
        await fast_any_db_client.get(url, headers={"If-None-Match": '"other"'})
    ).status_code == 200

    unknown = await fast_any_db_client.get(f"/tasks/{task_id}/variants/huge")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "variant_not_found"

    # Running the same task again changes nothing.
    assert run_inline(fast_any_db_settings, task_id) == rendering.Outcome.skipped


async def test_delete_removes_row_original_and_variants(
    fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    task_id = await upload(fast_client)
    run_inline(fast_settings, task_id)
    root = fast_settings.resolved_storage_root
    assert (root / "originals" / task_id).exists()
    # Three variants, each as JPEG and WebP.
    assert len([p for p in (root / "variants" / task_id).rglob("*") if p.is_file()]) == 6
    response = await fast_client.delete(f"/tasks/{task_id}")
    assert response.status_code == 204
    assert (await fast_client.get(f"/tasks/{task_id}")).status_code == 404
    assert not (root / "originals" / task_id).exists()
    assert not (root / "variants" / task_id).exists()
    assert (await fast_client.delete(f"/tasks/{task_id}")).status_code == 404


async def test_delete_interrupted_after_the_tombstone_is_finished_by_the_reconciler(
    fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    """A delete that stopped after its first step (the API process died, or the storage
    failed): the task is gone for readers, its files are still named by the tombstone,
    and the reconciler removes the files and then the row."""
    task_id = await upload(fast_client)
    run_inline(fast_settings, task_id)
    root = fast_settings.resolved_storage_root
    engine = make_sync_engine(fast_settings.resolved_database_url)
    sessions = sync_session_factory(engine)
    try:
        with sessions.begin() as session:
            assert deletion.mark_deleted(session, uuid.UUID(task_id))
        # Step 1 only: no reader sees it, no worker claims it, its files remain.
        assert (await fast_client.get(f"/tasks/{task_id}")).status_code == 404
        assert task_id not in {
            t["task_id"] for t in (await fast_client.get("/tasks")).json()["tasks"]
        }
        assert lifecycle.claim(sessions, uuid.UUID(task_id), fast_settings) is None
        assert (root / "originals" / task_id).exists()
        assert deletion.tombstones(sessions) == [uuid.UUID(task_id)]

        storage = LocalStorage(root)
        assert deletion.finish_deletes(sessions, storage) == 1
        assert not (root / "originals" / task_id).exists()
        assert not (root / "variants" / task_id).exists()
        assert deletion.tombstones(sessions) == []
        with sessions() as session:
            assert session.get(Task, uuid.UUID(task_id)) is None
    finally:
        engine.dispose()


async def test_task_deleted_while_rendering_leaves_no_files(
    fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    task_id = await upload(fast_client)
    engine = make_sync_engine(fast_settings.resolved_database_url)
    sessions = sync_session_factory(engine)
    storage = LocalStorage(fast_settings.resolved_storage_root)
    try:
        held = lifecycle.claim(sessions, uuid.UUID(task_id), fast_settings)
        assert held is not None
        result = rendering.render(held, storage, fast_settings)
        assert (await fast_client.delete(f"/tasks/{task_id}")).status_code == 204
        assert rendering.store_and_finish(sessions, storage, held, result) is False
    finally:
        engine.dispose()
    assert not (fast_settings.resolved_storage_root / "variants" / task_id).exists()


async def test_list_is_newest_first_and_paginated(
    fast_any_db_client: httpx.AsyncClient, fast_any_db_settings: Settings
) -> None:
    ids = [await upload(fast_any_db_client, photo(60, 40)) for _ in range(5)]
    # Make creation times distinct and known.
    engine = make_sync_engine(fast_any_db_settings.resolved_database_url)
    with sync_session_factory(engine).begin() as session:
        for offset, task_id in enumerate(ids):
            session.execute(
                update(Task)
                .where(Task.id == uuid.UUID(task_id))
                .values(created_at=utcnow() - timedelta(minutes=10 - offset))
            )
        session.execute(
            update(Task).where(Task.id == uuid.UUID(ids[0])).values(status=TaskStatus.failed)
        )
    engine.dispose()

    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await fast_any_db_client.get("/tasks", params=params)).json()
        seen += [t["task_id"] for t in page["tasks"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))

    failed = (await fast_any_db_client.get("/tasks", params={"status": "failed"})).json()
    assert [t["task_id"] for t in failed["tasks"]] == [ids[0]]

    bad = await fast_any_db_client.get("/tasks", params={"cursor": "!!!"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"
    bad = await fast_any_db_client.get("/tasks", params={"limit": 0})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"


async def test_unknown_route_uses_error_shape(fast_client: httpx.AsyncClient) -> None:
    response = await fast_client.get("/nope")
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "Not Found"}}


async def test_a_variant_replaced_during_the_request_serves_the_new_file(
    fast_client: httpx.AsyncClient, fast_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A re-render swaps the rows and removes the old objects; a request that read the
    old row just before opens a missing file, and answers with the new one."""
    task_id = await upload(fast_client)
    assert run_inline(fast_settings, task_id) == rendering.Outcome.succeeded
    url = f"/tasks/{task_id}/variants/medium.jpg"
    before = await fast_client.get(url)
    assert before.status_code == 200
    storage = LocalStorage(fast_settings.resolved_storage_root)
    engine = make_sync_engine(fast_settings.resolved_database_url)
    sessions = sync_session_factory(engine)
    real = delivery.deliver
    opened: list[str] = []

    async def racing(*args: Any, key: str, **kwargs: Any) -> Any:
        if not opened:  # the re-render lands between this request's read and its open
            moved = f"{key}.rerendered"
            storage.copy(key, moved)
            storage.delete(key)
            with sessions.begin() as session:
                session.execute(
                    update(Rendition).where(Rendition.storage_key == key).values(storage_key=moved)
                )
        opened.append(key)
        return await real(*args, key=key, **kwargs)

    monkeypatch.setattr(delivery, "deliver", racing)
    try:
        after = await fast_client.get(url)
    finally:
        engine.dispose()
    assert after.status_code == 200, after.text
    assert after.content == before.content
    assert opened[1] == f"{opened[0]}.rerendered"
