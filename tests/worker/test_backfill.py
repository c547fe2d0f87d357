"""Versioned variant specs: what is out of date, and the re-render that brings it up to
date (in this process; tests/integration/test_backfill.py runs it through a real
worker and the command line)."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.api.app import create_app
from imagepipe.config import Settings
from imagepipe.db.engine import make_sync_engine, sync_session_factory
from imagepipe.db.models import Task
from imagepipe.imaging.crop import Box, FocalPoint
from imagepipe.imaging.spec import PIPELINE_VERSION, make_spec
from imagepipe.services import backfill, refresh, rendering
from imagepipe.services.rendering import render_options
from imagepipe.storage import LocalStorage
from tests.harness.app import make_settings, open_client, run_inline
from tests.images import photo

pytestmark = pytest.mark.anyio


@pytest.fixture
def sessions(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_sync_engine(settings.resolved_database_url)
    yield sync_session_factory(engine)
    engine.dispose()


def changed(settings: Settings, **values: Any) -> Settings:
    return settings.model_copy(update=values)


def stale(sessions: sessionmaker[Session], settings: Settings) -> list[uuid.UUID]:
    return [
        task_id
        for batch in backfill.scan(sessions, render_options(settings), batch_size=2)
        for task_id in batch.stale
    ]


def test_the_spec_digest_covers_box_format_quality_options_and_pipeline() -> None:
    spec = make_spec(600, "WEBP", 80)
    assert json.loads(spec.as_json()) == {
        "width": 600,
        "height": 600,
        "fit": "contain",
        "gravity": "center",
        "focal": None,
        "format": "WEBP",
        "quality": 80,
        "options": {"method": 4},
        "pipeline": PIPELINE_VERSION,
    }
    others = [
        make_spec(500, "WEBP", 80),
        make_spec(600, "AVIF", 80),
        make_spec(600, "WEBP", 81),
        dataclasses.replace(spec, pipeline=PIPELINE_VERSION + 1),
    ]
    assert len({spec.digest, *(other.digest for other in others)}) == 5
    assert make_spec(600, "PNG", 10).digest == make_spec(600, "PNG", 90).digest  # no quality


def test_the_spec_digest_covers_the_box_shape_and_a_cover_focal_point() -> None:
    point, elsewhere = FocalPoint(0.3, 0.4), FocalPoint(0.7, 0.4)
    shapes = [
        Box.square(600),
        Box(600, 400),
        Box(600, 600, "cover"),
        Box(600, 600, "cover", "smart"),
        Box(600, 600, "cover", "focal"),
    ]
    digests = {make_spec(box, "WEBP", 80).digest for box in shapes}
    assert len(digests) == len(shapes)
    # The point is part of a cover/focal spec only: moving it changes nothing else.
    focal = Box(600, 600, "cover", "focal")
    assert make_spec(focal, "WEBP", 80, point).digest != make_spec(focal, "WEBP", 80).digest
    assert (
        make_spec(focal, "WEBP", 80, point).digest != make_spec(focal, "WEBP", 80, elsewhere).digest
    )
    for box in shapes[:4]:
        assert make_spec(box, "WEBP", 80, point) == make_spec(box, "WEBP", 80)
    # A number is the square contain box it always was.
    assert make_spec(600, "JPEG", 85) == make_spec(Box.square(600), "JPEG", 85)


async def test_a_changed_setting_makes_tasks_stale_and_refresh_brings_them_up_to_date(
    client: httpx.AsyncClient, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    ids = []
    for data in (photo(1600, 1200), photo(900, 300, "PNG", "RGBA"), photo(800, 600)):
        response = await client.post("/upload", files={"file": ("a", data)})
        ids.append(response.json()["task_id"])
        assert run_inline(settings, ids[-1]) == rendering.Outcome.succeeded
    assert stale(sessions, settings) == []
    before = (await client.get(f"/tasks/{ids[0]}")).json()["variants"]
    etag = (await client.get(before["medium"]["url"])).headers["etag"]

    # Each of these settings changes what would be stored, for every task.
    for values in [
        {"variants": {"small": 150, "medium": 500, "large": 1200}},
        {"variants": {"small": 150, "medium": 600}},
        {"extra_formats": ("AVIF", "WEBP")},
        {"extra_formats": ()},
        {"webp_quality": 70},
    ]:
        assert sorted(stale(sessions, changed(settings, **values))) == sorted(map(uuid.UUID, ids))
    # The JPEG quality does not touch the PNG (transparent) task's renditions.
    assert len(stale(sessions, changed(settings, jpeg_quality=70))) == 2

    new = changed(settings, variants={"small": 150, "medium": 500, "large": 1200})
    storage = LocalStorage(settings.resolved_storage_root)
    for task_id in ids:
        outcome = refresh.refresh(sessions, storage, new, uuid.UUID(task_id))
        assert outcome == rendering.Outcome.succeeded
        # A second message for the same task (backfill run twice) finds nothing to do.
        assert refresh.refresh(sessions, storage, new, uuid.UUID(task_id)).value == "skipped"
    assert stale(sessions, new) == []

    task = (await client.get(f"/tasks/{ids[0]}")).json()
    assert task["status"] == "succeeded"
    assert (task["variants"]["medium"]["width"], task["variants"]["large"]["width"]) == (500, 1200)
    response = await client.get(task["variants"]["medium"]["url"])
    assert response.status_code == 200 and response.headers["etag"] != etag
    # Only the new renditions' objects are left.
    with sessions() as session:
        rows = session.get_one(Task, uuid.UUID(ids[0])).variants
        referenced = {r.storage_key for v in rows for r in v.renditions}
    on_disk = {
        str(path.relative_to(settings.resolved_storage_root))
        for path in (settings.resolved_storage_root / "variants" / ids[0]).rglob("*")
        if path.is_file()
    }
    assert on_disk == referenced and len(on_disk) == 6


async def test_etag_changes_with_the_spec_even_when_the_bytes_do_not(
    client: httpx.AsyncClient, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    # 100x80 fits every box: a larger box changes the spec of "small", not its pixels.
    response = await client.post("/upload", files={"file": ("a", photo(100, 80))})
    task_id = response.json()["task_id"]
    assert run_inline(settings, task_id) == rendering.Outcome.succeeded
    url = (await client.get(f"/tasks/{task_id}")).json()["variants"]["small"]["url"]
    first = await client.get(url)
    new = changed(settings, variants={"small": 160, "medium": 600, "large": 1200})
    storage = LocalStorage(settings.resolved_storage_root)
    assert refresh.refresh(sessions, storage, new, uuid.UUID(task_id)).value == "succeeded"
    second = await client.get(url)
    assert second.content == first.content
    assert second.headers["etag"] != first.headers["etag"]


def test_tasks_not_succeeded_or_gone_are_not_refreshed(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    storage = LocalStorage(settings.resolved_storage_root)
    assert refresh.refresh(sessions, storage, settings, uuid.uuid4()).value == "skipped"


async def test_dry_run_counts_and_queues_nothing(
    tmp_path: Path, sqlite_url: str, redis_url: str
) -> None:
    settings = make_settings(tmp_path, sqlite_url, redis_url)
    async with open_client(create_app(settings)) as client:
        for _ in range(3):
            response = await client.post("/upload", files={"file": ("a", photo(300, 200))})
            assert run_inline(settings, response.json()["task_id"]).value == "succeeded"
    engine = make_sync_engine(settings.resolved_database_url)
    try:
        sessions = sync_session_factory(engine)
        new = render_options(changed(settings, webp_quality=50))
        batches: list[backfill.Batch] = []
        checked, count = backfill.run(sessions, new, None, batch_size=2, progress=batches.append)
        assert (checked, count) == (3, 3)
        assert [len(b.stale) for b in batches] == [2, 1]
        # Resuming after the first batch sees only the rest.
        queued: list[uuid.UUID] = []
        assert backfill.run(sessions, new, queued.append, after=batches[0].last) == (1, 1)
        assert queued == batches[1].stale
    finally:
        engine.dispose()
