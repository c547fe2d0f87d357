"""Back-pressure: uploads refused with 503 ``queue_full`` while the render queue (a real
Redis list) is longer than IMAGEPIPE_MAX_QUEUE_DEPTH; the depth costs Redis one LLEN
per cache period, not one per request."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib

from imagepipe.api.app import create_app
from imagepipe.queue import RENDER_LISTS, RENDER_QUEUE
from tests.harness.app import make_settings, open_client
from tests.images import photo
from tests.observe import stored_files

pytestmark = pytest.mark.anyio


@pytest.fixture
def broker(redis_url: str) -> Iterator[redis_lib.Redis]:
    client = redis_lib.Redis.from_url(redis_url)
    yield client
    client.close()


def _llen_calls(broker: redis_lib.Redis) -> int:
    stats = broker.info("commandstats").get("cmdstat_llen", {})
    return int(stats.get("calls", 0))


async def test_uploads_are_refused_while_the_render_queue_is_full(
    tmp_path: Path, sqlite_url: str, redis_url: str, broker: redis_lib.Redis
) -> None:
    settings = make_settings(
        tmp_path, sqlite_url, redis_url, max_queue_depth=3, queue_depth_cache_seconds=0
    )
    async with open_client(create_app(settings)) as client:
        broker.rpush(RENDER_QUEUE, *[b"waiting"] * 4)  # one over the limit
        refused = await client.post("/upload", files={"file": ("a.jpg", photo(64, 48))})
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"] == {
            "code": "queue_full",
            "message": "Too many tasks are waiting; try again shortly.",
        }
        assert int(refused.headers["retry-after"]) > 0
        direct = await client.post(
            "/uploads", json={"filename": "a.jpg", "size_bytes": 10, "content_type": "image/jpeg"}
        )
        assert direct.status_code == 503 and direct.json()["error"]["code"] == "queue_full"
        assert stored_files(settings) == []
        assert (await client.get("/tasks")).json()["tasks"] == []
        # Reading and the health checks are not refused.
        assert (await client.get("/readyz")).status_code == 200

        broker.lpop(RENDER_QUEUE)  # exactly at the limit: accepted
        accepted = await client.post("/upload", files={"file": ("a.jpg", photo(64, 48))})
        assert accepted.status_code == 202, accepted.text


async def test_queue_depth_is_read_once_per_cache_period(
    tmp_path: Path, sqlite_url: str, redis_url: str, broker: redis_lib.Redis
) -> None:
    settings = make_settings(tmp_path, sqlite_url, redis_url, queue_depth_cache_seconds=600)
    async with open_client(create_app(settings)) as client:
        before = _llen_calls(broker)
        for _ in range(10):
            response = await client.post("/upload", files={"file": ("a.jpg", photo(32, 24))})
            assert response.status_code == 202
        # One read: an LLEN per list of the render queue, in one round trip.
        assert _llen_calls(broker) - before == len(RENDER_LISTS)
