"""Crop modes through the service: cover variants get their box's exact size, the
focal point is set with PATCH /tasks/{id} (owner only, rate limited, validated), a
changed point re-renders the cover/focal variants, and dedup matches only tasks with
the same point."""

from __future__ import annotations

import io
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_lib
from PIL import Image

from imagepipe.api.app import create_app
from imagepipe.config import Settings
from imagepipe.db.models import Task, utcnow
from imagepipe.queue import FOLLOW_UP_QUEUE, REFRESH_TASK, MemoryQueue
from imagepipe.services import backfill, extras, lifecycle, reconciler, refresh, rendering
from imagepipe.services.spool import Spool
from imagepipe.storage import LocalStorage
from tests.harness.app import (
    CROP_VARIANTS,
    make_settings,
    open_client,
    run_inline,
    worker_sessions,
)
from tests.images import photo

pytestmark = pytest.mark.anyio

ALICE, BOB = "alice-key-0123456789abcdef", "bob-key-0123456789abcdef0"


async def upload(client: httpx.AsyncClient, data: bytes, **headers: str) -> str:
    response = await client.post("/upload", files={"file": ("a.jpg", data)}, headers=headers)
    assert response.status_code == 202, response.text
    task_id: str = response.json()["task_id"]
    return task_id


async def rendered(client: httpx.AsyncClient, settings: Settings, task_id: str) -> dict[str, Any]:
    assert run_inline(settings, task_id) == rendering.Outcome.succeeded
    task: dict[str, Any] = (await client.get(f"/tasks/{task_id}")).json()
    assert task["status"] == "succeeded", task
    return task


async def fetched(client: httpx.AsyncClient, url: str) -> httpx.Response:
    response = await client.get(url)
    assert response.status_code == 200, response.text
    return response


def centre_colour(data: bytes) -> tuple[int, ...]:
    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
        return tuple(rgb.getpixel((rgb.width // 2, rgb.height // 2)))  # type: ignore[arg-type]


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


async def test_cover_variants_have_their_box_size_and_contain_ones_keep_the_aspect(
    fast_crop_client: httpx.AsyncClient, fast_crop_settings: Settings
) -> None:
    task = await rendered(
        fast_crop_client, fast_crop_settings, await upload(fast_crop_client, photo(800, 600))
    )
    sizes = {name: (v["width"], v["height"]) for name, v in task["variants"].items()}
    assert sizes == {"small": (150, 113), "avatar": (200, 200), "banner": (300, 100)}
    for name, variant in task["variants"].items():
        assert list(variant["formats"]) == ["image/jpeg", "image/webp"]
        for url in (variant["url"], variant["formats"]["image/webp"]["url"]):
            assert size_of((await fetched(fast_crop_client, url)).content) == sizes[name]
    # Configured order, whatever order the cascade made them in.
    assert list(task["variants"]) == ["small", "avatar", "banner"]
    assert task["focal_point"] is None
    assert task["report"]["qa"]["passed"] is True


async def test_patch_validates_the_point(fast_crop_client: httpx.AsyncClient) -> None:
    task_id = await upload(fast_crop_client, photo(400, 300))
    url = f"/tasks/{task_id}"
    for body, code in [
        ({"focal_point": {"x": 1.5, "y": 0.5}}, "invalid_focal_point"),
        ({"focal_point": {"x": -0.1, "y": 0.5}}, "invalid_focal_point"),
        ({"focal_point": {"x": "0.3", "y": 0.5}}, "invalid_focal_point"),
        ({"focal_point": {"x": True, "y": 0.5}}, "invalid_focal_point"),
        ({"focal_point": {"x": 0.3}}, "invalid_focal_point"),
        ({"focal_point": [0.3, 0.5]}, "invalid_focal_point"),
        ({"focal": {"x": 0.3, "y": 0.5}}, "invalid_request"),
        ([], "invalid_request"),
    ]:
        response = await fast_crop_client.patch(url, json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["code"] == code, body
    not_json = await fast_crop_client.patch(
        url, content=b"{x", headers={"Content-Type": "text/plain"}
    )
    assert not_json.json()["error"]["code"] == "invalid_request"

    # A task not rendered yet keeps the point (its render reads it); null clears it.
    response = await fast_crop_client.patch(url, json={"focal_point": {"x": 0, "y": 1}})
    assert response.status_code == 200, response.text
    assert response.json()["focal_point"] == {"x": 0.0, "y": 1.0}
    assert (await fast_crop_client.get(url)).json()["focal_point"] == {"x": 0.0, "y": 1.0}
    cleared = await fast_crop_client.patch(url, json={"focal_point": None})
    assert cleared.json()["focal_point"] is None
    unknown = await fast_crop_client.patch(f"/tasks/{uuid.uuid4()}", json={"focal_point": None})
    assert unknown.status_code == 404


async def test_patch_is_the_owners_and_rate_limited(
    tmp_path: Path, sqlite_url: str, redis_url: str
) -> None:
    settings = make_settings(
        tmp_path, sqlite_url, redis_url, variants=CROP_VARIANTS, api_keys=(ALICE, BOB),
        key_rate_limit="2/minute",
    )  # fmt: skip
    alice, bob = {"Authorization": f"Bearer {ALICE}"}, {"Authorization": f"Bearer {BOB}"}
    async with open_client(create_app(settings)) as client:
        task_id = await upload(client, photo(400, 300), **alice)  # one unit of the rate
        body = {"focal_point": {"x": 0.5, "y": 0.5}}
        other = await client.patch(f"/tasks/{task_id}", json=body, headers=bob)
        assert other.status_code == 404  # another key's task is not found
        assert (await client.patch(f"/tasks/{task_id}", json=body)).status_code == 401
        allowed = await client.patch(f"/tasks/{task_id}", json=body, headers=alice)
        assert allowed.status_code == 200, allowed.text
        assert allowed.headers["ratelimit-policy"] == '"default";q=2;w=60'
        refused = await client.patch(f"/tasks/{task_id}", json=body, headers=alice)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"


async def test_a_new_point_re_renders_the_focal_variants_only(
    fast_crop_client: httpx.AsyncClient, fast_crop_settings: Settings
) -> None:
    # Wide, red at the left end and blue elsewhere: the avatar's window can move along
    # the whole width, and its colour says where it is.
    image = Image.new("RGB", (1200, 400), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 300, 400))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    task_id = await upload(fast_crop_client, buffer.getvalue())
    before = await rendered(fast_crop_client, fast_crop_settings, task_id)
    old = {
        name: await fetched(fast_crop_client, v["url"]) for name, v in before["variants"].items()
    }

    response = await fast_crop_client.patch(
        f"/tasks/{task_id}", json={"focal_point": {"x": 0.05, "y": 0.5}}
    )
    assert response.status_code == 200, response.text
    assert response.json()["focal_point"] == {"x": 0.05, "y": 0.5}
    # The old variants serve until the re-render (a follow-up) replaces them.
    assert (await fetched(fast_crop_client, before["variants"]["avatar"]["url"])).content == (
        old["avatar"].content
    )
    options = rendering.render_options(fast_crop_settings)
    with worker_sessions(fast_crop_settings) as sessions:
        stale = [t for batch in backfill.scan(sessions, options) for t in batch.stale]
        assert stale == [uuid.UUID(task_id)]
        storage = LocalStorage(fast_crop_settings.resolved_storage_root)
        outcome = refresh.refresh(sessions, storage, fast_crop_settings, uuid.UUID(task_id))
        assert outcome == rendering.Outcome.succeeded
        # Backfill keeps the task's point: it is up to date now.
        assert [t for batch in backfill.scan(sessions, options) for t in batch.stale] == []

    after = (await fast_crop_client.get(f"/tasks/{task_id}")).json()
    new = {name: await fetched(fast_crop_client, v["url"]) for name, v in after["variants"].items()}
    assert new["avatar"].content != old["avatar"].content
    assert new["avatar"].headers["etag"] != old["avatar"].headers["etag"]
    assert size_of(new["avatar"].content) == (200, 200)
    # The avatar shows the left end now (red), not the centre (blue).
    assert centre_colour(new["avatar"].content)[0] > 200
    assert centre_colour(old["avatar"].content)[2] > 200
    # Variants the point does not place are the same pixels and the same ETag.
    for name in ("small", "banner"):
        assert new[name].content == old[name].content
        assert new[name].headers["etag"] == old[name].headers["etag"]


async def test_dedup_matches_only_the_same_focal_point(
    fast_crop_client: httpx.AsyncClient, fast_crop_settings: Settings
) -> None:
    data = photo(900, 600)
    point = {"focal_point": {"x": 0.2, "y": 0.3}}

    async def with_point(body: dict[str, Any]) -> dict[str, Any]:
        task_id = await upload(fast_crop_client, data)
        assert (await fast_crop_client.patch(f"/tasks/{task_id}", json=body)).status_code == 200
        return await rendered(fast_crop_client, fast_crop_settings, task_id)

    first = await with_point(point)
    elsewhere = await with_point({"focal_point": {"x": 0.8, "y": 0.3}})
    assert elsewhere["report"]["deduplicated_from"] is None
    same = await with_point(point)
    assert same["report"]["deduplicated_from"] == first["task_id"]
    first_avatar = await fetched(fast_crop_client, first["variants"]["avatar"]["url"])
    same_avatar = await fetched(fast_crop_client, same["variants"]["avatar"]["url"])
    assert same_avatar.content == first_avatar.content


@pytest.mark.parametrize("spooled", [True, False], ids=["spool", "decode"])
async def test_extra_formats_of_cover_variants_follow_the_base(
    fast_crop_client: httpx.AsyncClient, fast_crop_settings: Settings, tmp_path: Path, spooled: bool
) -> None:
    """From the spool's pixels or from a fresh decode: the box's size, and the point
    the base was made with (so backfill finds every format up to date)."""
    spool = Spool(tmp_path / "spool", 64 * 1024 * 1024) if spooled else None
    task_id = await upload(fast_crop_client, photo(1200, 400))
    point = {"focal_point": {"x": 0.1, "y": 0.5}}
    assert (await fast_crop_client.patch(f"/tasks/{task_id}", json=point)).status_code == 200
    options = rendering.render_options(fast_crop_settings)
    with worker_sessions(fast_crop_settings) as sessions:
        storage = LocalStorage(fast_crop_settings.resolved_storage_root)
        outcome = rendering.process(
            sessions, storage, fast_crop_settings, uuid.UUID(task_id), spool=spool
        )
        assert outcome == rendering.Outcome.succeeded
        made = extras.make(sessions, storage, options, uuid.UUID(task_id), spool)
        assert made == extras.Outcome.made
        assert [t for batch in backfill.scan(sessions, options) for t in batch.stale] == []
    task = (await fast_crop_client.get(f"/tasks/{task_id}")).json()
    for name, size in {"avatar": (200, 200), "banner": (300, 100)}.items():
        webp = task["variants"][name]["formats"]["image/webp"]["url"]
        assert size_of((await fetched(fast_crop_client, webp)).content) == size


def rerender_due(settings: Settings, task_id: str) -> datetime | None:
    with worker_sessions(settings) as sessions, sessions() as session:
        task = session.get(Task, uuid.UUID(task_id))
        assert task is not None
        return task.rerender_enqueued_at


def age_rerender(settings: Settings, task_id: str) -> None:
    """As if the re-render was published longer ago than the grace period."""
    with worker_sessions(settings) as sessions, sessions.begin() as session:
        task = session.get(Task, uuid.UUID(task_id))
        assert task is not None
        task.rerender_enqueued_at = utcnow() - timedelta(seconds=settings.lease_seconds + 1)


async def test_a_point_set_before_the_render_is_settled_by_it(
    fast_crop_client: httpx.AsyncClient, fast_crop_settings: Settings
) -> None:
    task_id = await upload(fast_crop_client, photo(800, 600))
    point = {"focal_point": {"x": 0.3, "y": 0.3}}
    assert (await fast_crop_client.patch(f"/tasks/{task_id}", json=point)).status_code == 200
    assert rerender_due(fast_crop_settings, task_id) is not None
    await rendered(fast_crop_client, fast_crop_settings, task_id)
    assert rerender_due(fast_crop_settings, task_id) is None


async def test_a_lost_re_render_is_published_again_by_the_reconciler(
    crop_client: httpx.AsyncClient, crop_settings: Settings, redis_url: str
) -> None:
    task_id = await upload(crop_client, photo(1200, 400))
    avatar = (await rendered(crop_client, crop_settings, task_id))["variants"]["avatar"]["url"]
    old_etag = (await fetched(crop_client, avatar)).headers["etag"]
    point = {"focal_point": {"x": 0.05, "y": 0.5}}
    assert (await crop_client.patch(f"/tasks/{task_id}", json=point)).status_code == 200
    redis_lib.Redis.from_url(redis_url).flushall()  # the message is lost
    with worker_sessions(crop_settings) as sessions:
        queue = MemoryQueue()
        # Published just now: waiting, not lost.
        assert reconciler.republish_rerenders(sessions, queue, crop_settings) == 0
        age_rerender(crop_settings, task_id)
        assert reconciler.republish_rerenders(sessions, queue, crop_settings) == 1
        assert [(m.task, m.args, m.queue) for m in queue.published] == [
            (REFRESH_TASK, (task_id,), FOLLOW_UP_QUEUE)
        ]
        storage = LocalStorage(crop_settings.resolved_storage_root)
        outcome = refresh.refresh(sessions, storage, crop_settings, uuid.UUID(task_id))
        assert outcome == rendering.Outcome.succeeded
    assert rerender_due(crop_settings, task_id) is None
    assert (await fetched(crop_client, avatar)).headers["etag"] != old_etag


async def test_a_point_set_while_the_task_renders_is_re_rendered_afterwards(
    fast_crop_client: httpx.AsyncClient, fast_crop_settings: Settings
) -> None:
    """The worker claimed the task (and read its point) before the PATCH: the render
    finishes with the old point, the re-render of the new one stays due."""
    task_id = await upload(fast_crop_client, photo(1200, 400))
    with worker_sessions(fast_crop_settings) as sessions:
        claim = lifecycle.claim(sessions, uuid.UUID(task_id), fast_crop_settings)
        assert claim is not None and claim.focal is None
        point = {"focal_point": {"x": 0.05, "y": 0.5}}
        assert (await fast_crop_client.patch(f"/tasks/{task_id}", json=point)).status_code == 200
        storage = LocalStorage(fast_crop_settings.resolved_storage_root)
        result = rendering.render(claim, storage, fast_crop_settings)
        assert rendering.store_and_finish(sessions, storage, claim, result)
        assert rerender_due(fast_crop_settings, task_id) is not None
        options = rendering.render_options(fast_crop_settings)
        assert [t for batch in backfill.scan(sessions, options) for t in batch.stale] == [
            uuid.UUID(task_id)
        ]
        age_rerender(fast_crop_settings, task_id)
        queue = MemoryQueue()
        assert reconciler.republish_rerenders(sessions, queue, fast_crop_settings) == 1
        outcome = refresh.refresh(sessions, storage, fast_crop_settings, uuid.UUID(task_id))
        assert outcome == rendering.Outcome.succeeded
        assert rerender_due(fast_crop_settings, task_id) is None
        # A duplicate message finds it up to date: nothing re-rendered.
        assert refresh.refresh(sessions, storage, fast_crop_settings, uuid.UUID(task_id)) == (
            rendering.Outcome.skipped
        )
