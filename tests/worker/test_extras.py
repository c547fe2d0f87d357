"""Extra formats follow the base: the task succeeds with its base renditions only, the
follow-up adds the extras (from the spool's pixels, or a fresh decode), an encoder
failure leaves the task succeeded and the format due, the reconciler republishes due
extras, and serving answers for a format not made yet."""

from __future__ import annotations

import io
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from prometheus_client import REGISTRY

from imagepipe.api.app import create_app
from imagepipe.config import Settings
from imagepipe.db.models import Task, utcnow
from imagepipe.imaging import extras as imaging_extras
from imagepipe.services import backfill, extras, reconciler, refresh, rendering, retention
from imagepipe.services.spool import Spool
from imagepipe.storage import LocalStorage
from tests.harness.app import make_settings, open_client, run_inline, worker_sessions
from tests.images import photo

pytestmark = pytest.mark.anyio

CHROMIUM_IMG = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"


async def upload(client: httpx.AsyncClient, data: bytes, name: str = "a.jpg") -> str:
    response = await client.post("/upload", files={"file": (name, data)})
    assert response.status_code == 202, response.text
    task_id: str = response.json()["task_id"]
    return task_id


def make_extras(settings: Settings, task_id: str, spool: Spool | None = None) -> extras.Outcome:
    with worker_sessions(settings) as sessions:
        return extras.make(
            sessions,
            LocalStorage(settings.resolved_storage_root),
            rendering.render_options(settings),
            uuid.UUID(task_id),
            spool,
        )


def row(settings: Settings, task_id: str) -> Task:
    with worker_sessions(settings) as sessions, sessions() as session:
        task = session.get(Task, uuid.UUID(task_id))
        assert task is not None
        session.expunge(task)
        return task


async def test_task_succeeds_with_the_base_and_the_extras_follow(
    fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    task_id = await upload(fast_client, photo(800, 600))
    assert run_inline(fast_settings, task_id, extras=False) == rendering.Outcome.succeeded

    task = (await fast_client.get(f"/tasks/{task_id}")).json()
    assert task["status"] == "succeeded"
    variant = task["variants"]["medium"]
    assert list(variant["formats"]) == ["image/jpeg"]
    assert row(fast_settings, task_id).extras_due == "WEBP"

    # The explicit URL of the missing format: not ready, retry soon, cache nothing.
    not_ready = await fast_client.get(f"{variant['url']}.webp")
    assert not_ready.status_code == 404
    assert not_ready.json()["error"]["code"] == "format_not_ready"
    assert not_ready.headers["retry-after"] == str(fast_settings.retry_after_seconds)
    assert not_ready.headers["cache-control"] == "no-store"
    # Negotiation serves the base meanwhile, briefly cacheable, never immutable.
    interim = await fast_client.get(variant["url"], headers={"Accept": CHROMIUM_IMG})
    assert interim.status_code == 200
    assert interim.headers["content-type"] == "image/jpeg"
    assert interim.headers["vary"] == "Accept"
    assert interim.headers["cache-control"] == "public, max-age=60"
    # A client that wants only the base is not affected.
    plain = await fast_client.get(variant["url"])
    assert "immutable" in plain.headers["cache-control"]

    assert make_extras(fast_settings, task_id) == extras.Outcome.made
    task = (await fast_client.get(f"/tasks/{task_id}")).json()
    for variant in task["variants"].values():
        assert list(variant["formats"]) == ["image/jpeg", "image/webp"]
    webp = await fast_client.get(variant["url"], headers={"Accept": CHROMIUM_IMG})
    assert webp.headers["content-type"] == "image/webp"
    assert webp.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert (await fast_client.get(f"{variant['url']}.webp")).status_code == 200
    assert row(fast_settings, task_id).extras_due is None
    # Made once: a second follow-up (a republished message) has nothing to do.
    assert make_extras(fast_settings, task_id) == extras.Outcome.skipped


async def test_extras_reuse_the_spooled_pixels(
    fast_client: httpx.AsyncClient, fast_settings: Settings, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "spool", 64 * 1024 * 1024)
    task_id = await upload(fast_client, photo(800, 600))
    with worker_sessions(fast_settings) as sessions:
        storage = LocalStorage(fast_settings.resolved_storage_root)
        outcome = rendering.process(
            sessions, storage, fast_settings, uuid.UUID(task_id), spool=spool
        )
    assert outcome == rendering.Outcome.succeeded
    assert len(list((tmp_path / "spool").glob("*.px"))) == 3
    # Without the original, only the spool can give the pixels.
    original = fast_settings.resolved_storage_root / row(fast_settings, task_id).original_key
    original.unlink()
    assert make_extras(fast_settings, task_id, spool) == extras.Outcome.made
    task = (await fast_client.get(f"/tasks/{task_id}")).json()
    large = task["variants"]["large"]
    assert "image/webp" in large["formats"]
    webp = await fast_client.get(f"{large['url']}.webp")
    assert Image.open(io.BytesIO(webp.content)).size == (800, 600)
    assert list((tmp_path / "spool").glob("*.px")) == []  # removed once used


async def test_without_the_spool_the_extras_decode_the_original(
    fast_client: httpx.AsyncClient, fast_settings: Settings, tmp_path: Path
) -> None:
    task_id = await upload(fast_client, photo(800, 600))
    assert run_inline(fast_settings, task_id, extras=False) == rendering.Outcome.succeeded
    empty = Spool(tmp_path / "elsewhere", 64 * 1024 * 1024)  # another host's spool
    assert make_extras(fast_settings, task_id, empty) == extras.Outcome.made
    task = (await fast_client.get(f"/tasks/{task_id}")).json()
    sizes = {name: v["formats"]["image/webp"]["size_bytes"] for name, v in task["variants"].items()}
    assert all(size > 0 for size in sizes.values())


def test_spool_is_capped_oldest_evicted_first(tmp_path: Path) -> None:
    image = Image.new("RGB", (100, 100), (10, 20, 30))  # 30 000 bytes of pixels
    spool = Spool(tmp_path, 70_000)
    ids = [uuid.uuid4() for _ in range(3)]
    for task_id in ids:
        assert spool.put(task_id, 1, "small", image)
    assert spool.used_bytes() <= 70_000
    assert spool.get(ids[0], 1, "small") is None  # evicted
    kept = spool.get(ids[2], 1, "small")
    assert kept is not None and kept.tobytes() == image.tobytes()
    assert spool.get(ids[2], 2, "small") is None  # another attempt's render
    assert not Spool(tmp_path, 10).put(uuid.uuid4(), 1, "small", image)  # larger than the cap
    spool.discard(ids[2], 1)
    assert spool.get(ids[2], 1, "small") is None
    assert not Spool(tmp_path, 0).enabled


async def test_failing_extra_encoder_leaves_the_task_succeeded(
    fast_client: httpx.AsyncClient, fast_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = await upload(fast_client, photo(800, 600))
    assert run_inline(fast_settings, task_id, extras=False) == rendering.Outcome.succeeded

    def broken(*args: Any, **kwargs: Any) -> bytes:
        raise RuntimeError("encoder crashed")

    monkeypatch.setattr(imaging_extras, "encode", broken)
    before = _failures("WEBP")
    assert make_extras(fast_settings, task_id) == extras.Outcome.partial
    assert _failures("WEBP") == before + 1
    task = (await fast_client.get(f"/tasks/{task_id}")).json()
    assert task["status"] == "succeeded"
    assert all(list(v["formats"]) == ["image/jpeg"] for v in task["variants"].values())
    assert row(fast_settings, task_id).extras_due == "WEBP"  # left due
    leftovers = fast_settings.resolved_storage_root.rglob("*.webp")
    assert list(leftovers) == []
    # Backfill finds the missing format too.
    with worker_sessions(fast_settings) as sessions:
        options = rendering.render_options(fast_settings)
        assert [t for b in backfill.scan(sessions, options) for t in b.stale] == [
            uuid.UUID(task_id)
        ]


def _failures(fmt: str) -> float:
    value = REGISTRY.get_sample_value("imagepipe_extra_format_failures_total", {"format": fmt})
    return value or 0.0


class FakeQueue:
    def __init__(self, follow_up_waiting: int = 0) -> None:
        self.extras: list[uuid.UUID] = []
        self.waiting = follow_up_waiting

    def enqueue(self, task_id: uuid.UUID, priority: int = 0) -> None:
        raise AssertionError("no render is lost here")

    def ping(self) -> None:
        pass

    def depth(self) -> int:
        return 0

    def enqueue_extras(self, task_id: uuid.UUID) -> None:
        self.extras.append(task_id)

    def follow_up_depth(self) -> int:
        return self.waiting


async def test_reconciler_republishes_extras_never_made(
    fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    """The follow-up was published, then lost (worker killed, broker lost it)."""
    lost, recent = (
        await upload(fast_client, photo(800, 600)),
        await upload(fast_client, photo(640, 480)),
    )
    for task_id in (lost, recent):
        assert run_inline(fast_settings, task_id, extras=False) == rendering.Outcome.succeeded
    with worker_sessions(fast_settings) as sessions:
        with sessions.begin() as session:
            task = session.get(Task, uuid.UUID(lost))
            assert task is not None
            task.extras_enqueued_at = utcnow() - timedelta(seconds=fast_settings.lease_seconds + 1)
        # A long follow-up queue: they are waiting, not lost.
        busy = FakeQueue(follow_up_waiting=extras.REPUBLISH_BATCH)
        assert reconciler.republish_extras(sessions, busy, fast_settings) == 0
        queue = FakeQueue()
        assert reconciler.republish_extras(sessions, queue, fast_settings) == 1
        assert queue.extras == [uuid.UUID(lost)]
        # Published again just now: not again before its grace has passed.
        assert reconciler.republish_extras(sessions, FakeQueue(), fast_settings) == 0
    assert make_extras(fast_settings, lost) == extras.Outcome.made
    assert (
        "image/webp"
        in (await fast_client.get(f"/tasks/{lost}")).json()["variants"]["small"]["formats"]
    )


async def test_reconciler_stops_after_the_attempts(
    fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    task_id = await upload(fast_client, photo(800, 600))
    assert run_inline(fast_settings, task_id, extras=False) == rendering.Outcome.succeeded
    with worker_sessions(fast_settings) as sessions:
        with sessions.begin() as session:
            task = session.get(Task, uuid.UUID(task_id))
            assert task is not None
            task.extras_enqueued_at = None
            task.extras_attempts = fast_settings.max_attempts
        assert reconciler.republish_extras(sessions, FakeQueue(), fast_settings) == 0


async def test_duplicate_copies_what_exists_and_leaves_the_rest_due(
    fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    data = photo(800, 600)
    first = await upload(fast_client, data)
    assert run_inline(fast_settings, first, extras=False) == rendering.Outcome.succeeded
    second = await upload(fast_client, data, "again.jpg")
    assert run_inline(fast_settings, second, extras=False) == rendering.Outcome.succeeded
    task = (await fast_client.get(f"/tasks/{second}")).json()
    assert task["report"]["deduplicated_from"] == first
    assert all(list(v["formats"]) == ["image/jpeg"] for v in task["variants"].values())
    assert row(fast_settings, second).extras_due == "WEBP"
    assert make_extras(fast_settings, second) == extras.Outcome.made

    # A duplicate of a task that has every format copies them all: nothing due.
    third = await upload(fast_client, data, "third.jpg")
    assert run_inline(fast_settings, third, extras=False) == rendering.Outcome.succeeded
    assert row(fast_settings, third).extras_due is None
    task = (await fast_client.get(f"/tasks/{third}")).json()
    assert all(
        list(v["formats"]) == ["image/jpeg", "image/webp"] for v in task["variants"].values()
    )


async def test_each_format_is_listed_as_it_lands(
    avif_client: httpx.AsyncClient, avif_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = await upload(avif_client, photo(800, 600))
    assert run_inline(avif_settings, task_id, extras=False) == rendering.Outcome.succeeded
    assert row(avif_settings, task_id).extras_due == "AVIF WEBP"
    real = imaging_extras.encode

    def no_avif(image: Image.Image, fmt: str, **kwargs: Any) -> bytes:
        if fmt == "AVIF":
            raise RuntimeError("no AVIF today")
        return real(image, fmt, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(imaging_extras, "encode", no_avif)
    assert make_extras(avif_settings, task_id) == extras.Outcome.partial
    variant = (await avif_client.get(f"/tasks/{task_id}")).json()["variants"]["small"]
    assert list(variant["formats"]) == ["image/jpeg", "image/webp"]
    assert row(avif_settings, task_id).extras_due == "AVIF"
    # AVIF preferred and still missing: WebP now, briefly cacheable.
    served = await avif_client.get(variant["url"], headers={"Accept": CHROMIUM_IMG})
    assert served.headers["content-type"] == "image/webp"
    assert served.headers["cache-control"] == "public, max-age=60"
    monkeypatch.setattr(imaging_extras, "encode", real)
    assert make_extras(avif_settings, task_id) == extras.Outcome.made
    variant = (await avif_client.get(f"/tasks/{task_id}")).json()["variants"]["small"]
    assert list(variant["formats"]) == ["image/jpeg", "image/webp", "image/avif"]


async def test_an_animation_gets_its_animated_webp_afterwards(
    fast_client: httpx.AsyncClient, fast_settings: Settings, tmp_path: Path
) -> None:
    from tests.imaging.images import animated

    path = animated(tmp_path / "a.gif", [80, 80, 80, 80])
    task_id = await upload(fast_client, path.read_bytes(), "a.gif")
    assert run_inline(fast_settings, task_id, extras=False) == rendering.Outcome.succeeded
    assert row(fast_settings, task_id).extras_due == "WEBP"
    task = (await fast_client.get(f"/tasks/{task_id}")).json()
    assert list(task["variants"]["small"]["formats"]) == ["image/jpeg"]
    assert make_extras(fast_settings, task_id) == extras.Outcome.made
    task = (await fast_client.get(f"/tasks/{task_id}")).json()
    webp = await fast_client.get(task["variants"]["small"]["formats"]["image/webp"]["url"])
    with Image.open(io.BytesIO(webp.content)) as image:
        assert image.n_frames == 4


async def test_an_original_stays_while_its_extras_are_due(
    tmp_path: Path, sqlite_url: str, redis_url: str
) -> None:
    settings = make_settings(tmp_path, sqlite_url, redis_url, keep_originals="never")
    async with open_client(create_app(settings)) as client:
        task_id = await upload(client, photo(800, 600))
    assert run_inline(settings, task_id, extras=False) == rendering.Outcome.succeeded
    storage = LocalStorage(settings.resolved_storage_root)
    later = utcnow() + timedelta(seconds=5)
    with worker_sessions(settings) as sessions:
        assert retention.purge(sessions, storage, settings, now=later).originals_removed == 0
    assert make_extras(settings, task_id) == extras.Outcome.made
    with worker_sessions(settings) as sessions:
        assert retention.purge(sessions, storage, settings, now=later).originals_removed == 1


async def test_a_rerender_that_came_first_wins_over_the_extras(
    fast_client: httpx.AsyncClient, fast_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Backfill re-renders the task (every format, a new attempt) while its follow-up
    runs: the follow-up's writes under the old attempt are dropped and removed."""
    task_id = await upload(fast_client, photo(800, 600))
    assert run_inline(fast_settings, task_id, extras=False) == rendering.Outcome.succeeded
    storage = LocalStorage(fast_settings.resolved_storage_root)
    taken = extras.take

    def take_then_rerender(sessions: Any, task: uuid.UUID) -> extras.Job | None:
        job = taken(sessions, task)
        assert refresh.refresh(sessions, storage, fast_settings, task).value == "succeeded"
        return job

    monkeypatch.setattr(extras, "take", take_then_rerender)
    assert make_extras(fast_settings, task_id) == extras.Outcome.skipped
    variants = fast_settings.resolved_storage_root / "variants" / task_id
    assert sorted(p.parent.name for p in variants.rglob("*.*")) == ["2"] * 6  # jpg + webp
    task = (await fast_client.get(f"/tasks/{task_id}")).json()
    assert all(
        list(v["formats"]) == ["image/jpeg", "image/webp"] for v in task["variants"].values()
    )
    assert row(fast_settings, task_id).extras_due is None
