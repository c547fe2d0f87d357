"""A re-render (``imagepipe backfill``) swaps the task's report, placeholder and render
spec together with its previews: afterwards the task says what a render under the new
settings says, not what the replaced previews were made with."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.config import Settings
from imagepipe.db.engine import make_sync_engine, sync_session_factory
from imagepipe.db.models import Task
from imagepipe.services import refresh
from imagepipe.services.rendering import render_options
from imagepipe.storage import LocalStorage
from tests.harness.app import run_inline
from tests.images import photo

pytestmark = pytest.mark.anyio


@pytest.fixture
def sessions(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_sync_engine(settings.resolved_database_url)
    yield sync_session_factory(engine)
    engine.dispose()


async def upload(client: httpx.AsyncClient, settings: Settings, data: bytes) -> str:
    response = await client.post("/upload", files={"file": ("a.jpg", data)})
    assert response.status_code == 202, response.text
    task_id: str = response.json()["task_id"]
    assert run_inline(settings, task_id).value == "succeeded"
    return task_id


async def test_a_re_render_describes_the_previews_it_made(
    client: httpx.AsyncClient, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    data = photo(1600, 1200)
    rendered = await upload(client, settings, data)
    copied = await upload(client, settings, data)
    before = {t: (await client.get(f"/tasks/{t}")).json() for t in (rendered, copied)}
    assert before[copied]["report"]["deduplicated_from"] == rendered

    new = settings.model_copy(update={"variants": {"small": 24, "medium": 500, "large": 1200}})
    # What a task rendered under the new settings says (no task has their spec yet, so
    # this one is rendered, not copied).
    reference = (await client.get(f"/tasks/{await upload(client, new, data)}")).json()
    assert reference["report"]["deduplicated_from"] is None
    assert reference["placeholder"] != before[rendered]["placeholder"]

    storage = LocalStorage(settings.resolved_storage_root)
    for task_id in (rendered, copied):
        assert refresh.refresh(sessions, storage, new, uuid.UUID(task_id)).value == "succeeded"
        after = (await client.get(f"/tasks/{task_id}")).json()
        assert after["variants"]["small"]["width"] == 24
        assert after["placeholder"] == reference["placeholder"]
        report = after["report"]
        assert report["deduplicated_from"] is None  # rendered now, not a copy
        assert {"decode", "resize", "encode", "store"} <= set(report["timings_ms"])
        for key in ("source", "applied", "removed_metadata", "qa"):
            assert report[key] == reference["report"][key]
    # The spec recorded is the new one: a task re-rendered is a source for dedup under
    # the new settings, as a task rendered under them is.
    with sessions() as session:
        specs = {session.get_one(Task, uuid.UUID(t)).render_spec for t in (rendered, copied)}
    assert specs == {render_options(new).render_spec}
