"""On-demand renditions through the API in this process, with real Redis: links,
signatures, options, caching headers, waiting states, presets, the rate limit, the
focal point in the cache key, delete. Renders run inline from the published messages
(``inline.render_published``); test_worker.py runs them in a real worker."""

from __future__ import annotations

import io
import uuid
from datetime import timedelta

import httpx
import pytest
import redis
from PIL import Image
from sqlalchemy import select, update

from imagepipe.api.app import create_app
from imagepipe.config import Settings
from imagepipe.db.models import DerivedRendition, Task, TaskStatus, utcnow
from imagepipe.services import retention
from imagepipe.services.on_demand import records, signing
from imagepipe.services.on_demand.making import Outcome
from imagepipe.storage import open_storage
from tests.harness.app import open_client, worker_sessions
from tests.harness.app import run_inline as run_task
from tests.images import photo
from tests.on_demand.inline import (
    SIGNING_KEY,
    SettingsWith,
    link,
    published,
    render,
    render_published,
    rendered_task,
)

pytestmark = pytest.mark.anyio

CHROMIUM_IMG = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"


def rows(settings: Settings) -> list[DerivedRendition]:
    with worker_sessions(settings) as sessions, sessions() as session:
        found = list(session.scalars(select(DerivedRendition)))
        session.expunge_all()
        return found


async def first_and_made(
    client: httpx.AsyncClient, settings: Settings, url: str, **headers: str
) -> httpx.Response:
    """The first request answers 503 rendering (no wait here); once the published
    render ran, the same request answers 200."""
    first = await client.get(url, headers=headers)
    assert first.status_code == 503, first.text
    assert first.json()["error"]["code"] == "rendering"
    assert first.headers["retry-after"] == str(settings.retry_after_seconds)
    assert first.headers["cache-control"] == "no-store"
    assert render_published(settings) == [Outcome.made]
    made = await client.get(url, headers=headers)
    assert made.status_code == 200, made.text
    return made


async def test_signed_link_renders_once_then_serves_from_storage(
    od_client: httpx.AsyncClient, od_settings: Settings
) -> None:
    task_id = await rendered_task(od_client, od_settings)
    response = await od_client.post(
        f"/tasks/{task_id}/links", json={"options": "h:300,g:smart,fit:cover,w:400"}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["options"] == "w:400,h:300,fit:cover,g:smart"
    url = body["url"]
    assert url.startswith("/r/") and url.endswith(f"/w:400,h:300,fit:cover,g:smart/{task_id}")

    made = await first_and_made(od_client, od_settings, url)
    assert made.headers["content-type"] == "image/jpeg"
    assert made.headers["cache-control"] == "public, max-age=86400"
    assert made.headers["vary"] == "Accept"
    assert made.headers["x-content-type-options"] == "nosniff"
    assert "x-rendered-from" not in made.headers
    with Image.open(io.BytesIO(made.content)) as image:
        assert image.size == (400, 300)
    etag = made.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")

    # Later requests: from storage, no render published, the same bytes and ETag.
    again = await od_client.get(url)
    assert again.status_code == 200 and again.content == made.content
    assert again.headers["etag"] == etag
    assert published(od_settings) == []
    assert len(rows(od_settings)) == 1

    not_modified = await od_client.get(url, headers={"If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert not_modified.headers["etag"] == etag and not_modified.headers["vary"] == "Accept"
    head = await od_client.head(url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(made.content))

    # Another Accept is another rendition (and another render), same URL.
    webp = await first_and_made(od_client, od_settings, url, Accept=CHROMIUM_IMG)
    assert webp.headers["content-type"] in ("image/webp", "image/avif")
    assert webp.headers["etag"] != etag


async def test_extension_links_fix_the_format(
    od_client: httpx.AsyncClient, od_settings: Settings
) -> None:
    task_id = await rendered_task(od_client, od_settings)
    url = await link(od_client, task_id, "w:200", extension="png")
    assert url.endswith(f"/w:200,fit:contain/{task_id}.png")
    made = await first_and_made(od_client, od_settings, url, Accept=CHROMIUM_IMG)
    assert made.headers["content-type"] == "image/png"
    assert "vary" not in made.headers
    with Image.open(io.BytesIO(made.content)) as image:
        # Only w: the height follows the aspect ratio.
        assert image.size == (200, 150)


async def test_the_signature_is_checked_before_the_task_is_looked_up(
    od_client: httpx.AsyncClient, od_settings: Settings
) -> None:
    task_id = await rendered_task(od_client, od_settings)
    url = await link(od_client, task_id, "w:100")
    _, _, signature, options, target = url.split("/")
    unknown = str(uuid.uuid4())
    cases = {
        f"/r/{signature}/w:101,fit:contain/{target}": 403,  # options tampered with
        f"/r/{signature}/{options}/{unknown}": 403,  # another task: not even looked up
        f"/r/{signature}/{options}/{target}.webp": 403,  # extension added
        f"/r/{signing.sign('foreign', options, target)}/{options}/{target}": 403,
        f"/r/{signing.sign(SIGNING_KEY, options, unknown)}/{options}/{unknown}": 404,
        f"/r/{signing.sign(SIGNING_KEY, 'w:9000', target)}/w:9000/{target}": 400,
        f"/r/{signing.sign(SIGNING_KEY, 'w:1,x:2', target)}/w:1,x:2/{target}": 400,
    }
    for path, status in cases.items():
        response = await od_client.get(path)
        assert response.status_code == status, (path, response.text)
        code = {403: "invalid_signature", 404: "task_not_found", 400: "invalid_options"}
        assert response.json()["error"]["code"] == code[status]


async def test_owner_route_and_bad_options(
    od_client: httpx.AsyncClient, od_settings: Settings
) -> None:
    task_id = await rendered_task(od_client, od_settings)
    for options in ("w:0", "w:4097", "fit:cover", "w:10,w:10", "w:10,zoom:2"):
        response = await od_client.get(f"/tasks/{task_id}/renditions/{options}")
        assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_options"
        response = await od_client.post(f"/tasks/{task_id}/links", json={"options": options})
        assert response.status_code == 400
    made = await first_and_made(od_client, od_settings, f"/tasks/{task_id}/renditions/h:60.webp")
    assert made.headers["content-type"] == "image/webp"
    # The owner URL and a signed link with the same options share one rendition.
    url = await link(od_client, task_id, "h:60", extension="webp")
    shared = await od_client.get(url)
    assert shared.status_code == 200 and shared.content == made.content


async def test_unfinished_failed_and_unknown_tasks(
    od_client: httpx.AsyncClient, od_settings: Settings
) -> None:
    response = await od_client.post("/upload", files={"file": ("a.jpg", photo(64, 48))})
    task_id = response.json()["task_id"]
    url = await link(od_client, task_id, "w:32")  # links may be made before the render
    queued = await od_client.get(url)
    assert queued.status_code == 503 and queued.json()["error"]["code"] == "rendering"
    assert "retry-after" in queued.headers
    with worker_sessions(od_settings) as sessions, sessions.begin() as session:
        session.execute(
            update(Task).where(Task.id == uuid.UUID(task_id)).values(status=TaskStatus.failed)
        )
    failed = await od_client.get(url)
    assert failed.status_code == 404
    assert published(od_settings) == []  # neither published a render


async def test_without_signing_keys(settings_with: SettingsWith) -> None:
    settings = settings_with(url_signing_keys=())
    async with open_client(create_app(settings)) as client:
        task_id = await rendered_task(client, settings)
        response = await client.post(f"/tasks/{task_id}/links", json={"options": "w:10"})
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "signing_disabled"
        signature = signing.sign("anything", "w:10", task_id)
        assert (await client.get(f"/r/{signature}/w:10/{task_id}")).status_code == 404


async def test_rotated_keys_and_absolute_links(settings_with: SettingsWith) -> None:
    settings = settings_with(
        url_signing_keys="new-key, old-key",  # as the environment gives it
        public_base_url="https://img.example.com/",
    )
    assert settings.url_signing_keys == ("new-key", "old-key")
    async with open_client(create_app(settings)) as client:
        task_id = await rendered_task(client, settings)
        url = await link(client, task_id, "w:50")
        assert url.startswith("https://img.example.com/r/")
        path = url.removeprefix("https://img.example.com")
        assert path.split("/")[2] == signing.sign("new-key", "w:50,fit:contain", task_id)
        old = (
            f"/r/{signing.sign('old-key', 'w:50,fit:contain', task_id)}/w:50,fit:contain/{task_id}"
        )
        for verified in (path, old):
            assert (await client.get(verified)).status_code == 503  # past the signature


async def test_presets_only_mode(settings_with: SettingsWith) -> None:
    settings = settings_with(on_demand_presets={"thumb": "w:80,h:80,fit:cover,g:smart"})
    async with open_client(create_app(settings)) as client:
        task_id = await rendered_task(client, settings)
        refused = await client.post(f"/tasks/{task_id}/links", json={"options": "w:80"})
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "preset_required"
        raw = f"/r/{signing.sign(SIGNING_KEY, 'w:80', task_id)}/w:80/{task_id}"
        assert (await client.get(raw)).json()["error"]["code"] == "preset_required"

        url = await link(client, task_id, "p:thumb")
        assert url.endswith(f"/p:thumb/{task_id}")
        made = await first_and_made(client, settings, url)
        with Image.open(io.BytesIO(made.content)) as image:
            assert image.size == (80, 80)
        # The owner's own URL is not restricted to presets.
        owned = await client.get(f"/tasks/{task_id}/renditions/w:80,h:80,fit:cover,g:smart")
        assert owned.status_code == 200 and owned.content == made.content
        assert (
            await client.post(f"/tasks/{task_id}/links", json={"options": "p:nope"})
        ).status_code == 400


async def test_first_renders_and_links_count_against_the_rate_limit(
    settings_with: SettingsWith,
) -> None:
    settings = settings_with(key_rate_limit="4/hour")
    async with open_client(create_app(settings)) as client:
        task_id = await rendered_task(client, settings)  # the upload: one unit
        url = await link(client, task_id, "w:40")  # two
        assert (await client.get(url)).status_code == 503  # a first render: three
        render_published(settings)
        for _ in range(3):  # cache hits cost nothing
            assert (await client.get(url)).status_code == 200
        other = f"/tasks/{task_id}/renditions/w:41"
        assert (await client.get(other)).status_code == 503  # four
        third = await client.get(f"/tasks/{task_id}/renditions/w:42")
        assert third.status_code == 429, third.text
        assert third.json()["error"]["code"] == "rate_limited"
        assert "retry-after" in third.headers and "ratelimit-policy" in third.headers
        assert [job.options for job in published(settings)] == ["w:41,fit:contain"]
        # The refused request left no lock behind: once admitted, it publishes.
        lock_keys = redis.Redis.from_url(settings.redis_url).keys("imagepipe:on-demand:*")
        assert len(lock_keys) == 1  # w:41's, published and not rendered


async def test_a_moved_focal_point_makes_a_new_rendition(
    od_client: httpx.AsyncClient, od_settings: Settings
) -> None:
    task_id = await rendered_task(od_client, od_settings)
    url = await link(od_client, task_id, "w:100,h:100,fit:cover,g:focal")
    plain = await link(od_client, task_id, "w:100,h:100,fit:cover,g:center")
    before = await first_and_made(od_client, od_settings, url)
    centre = await first_and_made(od_client, od_settings, plain)
    # No focal point: g:focal is the centre crop (same pixels, made apart).
    assert before.content == centre.content

    with worker_sessions(od_settings) as sessions, sessions.begin() as session:
        session.execute(
            update(Task).where(Task.id == uuid.UUID(task_id)).values(focal_x=0.05, focal_y=0.9)
        )
    after = await first_and_made(od_client, od_settings, url)
    assert after.headers["etag"] != before.headers["etag"]
    # The centre crop does not use the point: still cached, nothing published.
    assert (await od_client.get(plain)).headers["etag"] == centre.headers["etag"]
    assert published(od_settings) == []


async def test_delete_removes_derived_renditions(
    od_client: httpx.AsyncClient, od_settings: Settings
) -> None:
    task_id = await rendered_task(od_client, od_settings)
    keep = await rendered_task(od_client, od_settings)
    for tid in (task_id, keep):
        await first_and_made(od_client, od_settings, f"/tasks/{tid}/renditions/w:90")
    storage = open_storage(od_settings)
    try:
        assert len(list(storage.list(f"derived/{task_id}/"))) == 1
        assert (await od_client.delete(f"/tasks/{task_id}")).status_code == 204
        assert list(storage.list(f"derived/{task_id}/")) == []
        assert [row.task_id for row in rows(od_settings)] == [uuid.UUID(keep)]
        assert len(list(storage.list(f"derived/{keep}/"))) == 1
    finally:
        storage.close()


async def test_original_removed_by_retention_renders_from_the_largest_variant(
    od_client: httpx.AsyncClient, od_settings: Settings
) -> None:
    task_id = await rendered_task(od_client, od_settings, size=(2000, 1500))
    storage = open_storage(od_settings)
    try:
        storage.delete(f"originals/{task_id}")
    finally:
        storage.close()
    with worker_sessions(od_settings) as sessions, sessions.begin() as session:
        session.execute(
            update(Task)
            .where(Task.id == uuid.UUID(task_id))
            .values(original_removed_at=Task.created_at)
        )
    made = await first_and_made(od_client, od_settings, f"/tasks/{task_id}/renditions/w:1600.jpg")
    assert made.headers["x-rendered-from"] == "variant:large"
    with Image.open(io.BytesIO(made.content)) as image:
        assert image.size == (1200, 900)  # the variant's size: never upscaled


async def test_the_byte_budget_evicts_the_oldest_made(
    od_client: httpx.AsyncClient, od_settings: Settings
) -> None:
    task_id = await rendered_task(od_client, od_settings)
    for width in (100, 200, 300):
        await first_and_made(od_client, od_settings, f"/tasks/{task_id}/renditions/w:{width}")
    made = sorted(rows(od_settings), key=lambda row: row.made_at)
    newest = made[-1]
    storage = open_storage(od_settings)
    try:
        with worker_sessions(od_settings) as sessions:
            assert records.evict(sessions, storage, newest.size_bytes) == 2
        assert [row.options for row in rows(od_settings)] == [newest.options]
        assert [info.key for info in storage.list("derived/")] == [newest.storage_key]
    finally:
        storage.close()
    # An evicted rendition is simply made again.
    await first_and_made(od_client, od_settings, f"/tasks/{task_id}/renditions/w:100")


async def test_a_render_delivered_twice_is_made_once(
    od_client: httpx.AsyncClient, od_settings: Settings
) -> None:
    task_id = await rendered_task(od_client, od_settings)
    assert (await od_client.get(f"/tasks/{task_id}/renditions/w:70")).status_code == 503
    [job] = published(od_settings)
    # The broker's redelivery (or a republish after the lock expired) finds the row.
    assert render(od_settings, [job, job]) == [Outcome.made, Outcome.cached]
    assert len(rows(od_settings)) == 1
    storage = open_storage(od_settings)
    try:
        assert len(list(storage.list(f"derived/{task_id}/"))) == 1
    finally:
        storage.close()


async def test_with_api_keys_links_need_none_and_the_owner_route_is_private(
    settings_with: SettingsWith,
) -> None:
    settings = settings_with(api_keys={"tenant-a": ("key-a",), "tenant-b": ("key-b",)})
    a = {"Authorization": "Bearer key-a"}
    async with open_client(create_app(settings)) as client:
        response = await client.post("/upload", headers=a, files={"file": ("a.jpg", photo(80, 60))})
        task_id = response.json()["task_id"]
        assert run_task(settings, task_id).value == "succeeded"
        assert (
            await client.post(f"/tasks/{task_id}/links", json={"options": "w:40"})
        ).status_code == 401
        made = await client.post(f"/tasks/{task_id}/links", headers=a, json={"options": "w:40"})
        url = made.json()["url"]
        # The link needs no key (the access layer lets /r/ through), and renders.
        assert (await client.get(url)).json()["error"]["code"] == "rendering"
        assert render_published(settings) == [Outcome.made]
        public = await client.get(url)
        assert (
            public.status_code == 200 and public.headers["cache-control"] == "public, max-age=86400"
        )
        owned = await client.get(f"/tasks/{task_id}/renditions/w:40", headers=a)
        assert (
            owned.status_code == 200 and owned.headers["cache-control"] == "private, max-age=86400"
        )
        # Another tenant's key does not see the task, nor may it make links to it.
        b = {"Authorization": "Bearer key-b"}
        assert (await client.get(f"/tasks/{task_id}/renditions/w:40", headers=b)).status_code == 404
        other = await client.post(f"/tasks/{task_id}/links", headers=b, json={"options": "w:40"})
        assert other.status_code == 404


async def test_retention_removes_derived_renditions_with_their_task(
    od_client: httpx.AsyncClient, od_settings: Settings
) -> None:
    task_id = await rendered_task(od_client, od_settings)
    await first_and_made(od_client, od_settings, f"/tasks/{task_id}/renditions/w:90")
    expiring = od_settings.model_copy(update={"task_retention": "1h"})
    storage = open_storage(od_settings)
    try:
        with worker_sessions(od_settings) as sessions:
            later = utcnow() + timedelta(days=1)
            report = retention.purge(sessions, storage, expiring, now=later)
        assert report.tasks_removed == 1
        assert list(storage.list("derived/")) == [] and rows(od_settings) == []
    finally:
        storage.close()
