"""What a finished task says about itself (placeholder, report) and content dedup, with
a real Celery worker process."""

from __future__ import annotations

import io
import uuid

import httpx
import pytest
from PIL import Image

from tests.harness.processes import WorkerProcess
from tests.harness.wait import wait_complete
from tests.images import photo

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

REPORT_KEYS = {"source", "applied", "removed_metadata", "qa", "timings_ms", "deduplicated_from"}


async def upload(client: httpx.AsyncClient, name: str, data: bytes) -> str:
    response = await client.post("/upload", files={"file": (name, data, "image/jpeg")})
    assert response.status_code == 202, response.text
    task_id: str = response.json()["task_id"]
    return task_id


async def variant_bytes(client: httpx.AsyncClient, status: dict[str, object]) -> dict[str, bytes]:
    """Every stored format of every variant, by variant name and content type."""
    variants = status["variants"]
    assert isinstance(variants, dict)
    out = {}
    for name, variant in variants.items():
        for content_type, rendition in variant["formats"].items():
            response = await client.get(rendition["url"])
            assert response.status_code == 200
            assert response.headers["content-type"] == content_type
            out[f"{name} {content_type}"] = response.content
    return out


async def test_placeholder_and_report_once_succeeded(
    any_db_client: httpx.AsyncClient, any_db_worker: WorkerProcess
) -> None:
    task_id = await upload(any_db_client, "photo.jpg", photo(1600, 1200))
    queued = (await any_db_client.get(f"/tasks/{task_id}")).json()
    if queued["status"] in ("queued", "processing"):
        assert queued["placeholder"] is None and queued["report"] is None
    status = await wait_complete(any_db_client, task_id, logs=any_db_worker.output)
    assert status["status"] == "succeeded", status

    placeholder = status["placeholder"]
    assert set(placeholder) == {"blurhash", "thumbhash", "dominant_color"}
    assert len(placeholder["blurhash"]) == 28  # 4x3 components
    assert placeholder["dominant_color"].startswith("#") and len(placeholder["dominant_color"]) == 7

    report = status["report"]
    assert set(report) == REPORT_KEYS
    assert report["source"] == {
        "format": "JPEG", "mode": "RGB", "bit_depth": 8, "frames": 1, "has_alpha": False,
        "orientation": 1, "icc_profile": None,
    }  # fmt: skip
    assert report["applied"] == ["resize"]
    assert report["qa"] == {
        "passed": True,
        "checks": ["dimensions", "not_blank", "not_inverted", "aspect", "alpha_kept"],
    }
    timings = report["timings_ms"]
    assert {"queued", "decode", "resize", "encode", "qa", "placeholder", "store"} <= set(timings)
    assert all(isinstance(value, int) and value >= 0 for value in timings.values())
    assert report["deduplicated_from"] is None


async def test_same_bytes_are_not_rendered_twice(
    any_db_client: httpx.AsyncClient, any_db_worker: WorkerProcess
) -> None:
    data = photo(2000, 1500)
    first_id = await upload(any_db_client, "first.jpg", data)
    first = await wait_complete(any_db_client, first_id, logs=any_db_worker.output)
    assert first["status"] == "succeeded", first
    second_id = await upload(any_db_client, "second.jpg", data)
    second = await wait_complete(any_db_client, second_id, logs=any_db_worker.output)
    assert second["status"] == "succeeded", second

    assert second["report"]["deduplicated_from"] == first_id
    timings = second["report"]["timings_ms"]
    assert "copy" in timings and not {"decode", "resize", "encode"} & set(timings)
    # The same facts, the same placeholder, the same bytes under the second task's URLs.
    for key in ("source", "applied", "removed_metadata", "qa"):
        assert second["report"][key] == first["report"][key]
    assert second["placeholder"] == first["placeholder"]
    assert second["original"]["filename"] == "second.jpg"
    first_bytes = await variant_bytes(any_db_client, first)
    second_bytes = await variant_bytes(any_db_client, second)
    assert first_bytes == second_bytes
    assert {"small image/webp", "small image/jpeg"} <= set(second_bytes)  # every format
    assert all(f"/tasks/{second_id}/" in v["url"] for v in second["variants"].values())

    # Deleting either one never breaks the other.
    assert (await any_db_client.delete(f"/tasks/{first_id}")).status_code == 204
    assert await variant_bytes(any_db_client, second) == second_bytes
    third_id = await upload(any_db_client, "third.jpg", data)
    third = await wait_complete(any_db_client, third_id, logs=any_db_worker.output)
    assert third["report"]["deduplicated_from"] == second_id
    assert (await any_db_client.delete(f"/tasks/{third_id}")).status_code == 204
    assert await variant_bytes(any_db_client, second) == second_bytes


async def test_other_bytes_are_rendered(client: httpx.AsyncClient, worker: WorkerProcess) -> None:
    first = await wait_complete(
        client, await upload(client, "a.jpg", photo(800, 600)), logs=worker.output
    )
    other = await wait_complete(
        client, await upload(client, "b.jpg", photo(800, 601)), logs=worker.output
    )
    assert first["status"] == other["status"] == "succeeded"
    assert other["report"]["deduplicated_from"] is None
    assert "decode" in other["report"]["timings_ms"]
    uuid.UUID(first["task_id"])
    with Image.open(io.BytesIO((await variant_bytes(client, other))["small image/jpeg"])) as image:
        assert image.size == (150, 113)
