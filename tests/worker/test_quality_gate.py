"""A preview that fails the output gate fails its task with quality_check_failed: the
render service called in-process with a deliberately broken conversion."""

from __future__ import annotations

import uuid

import httpx
import pytest
from PIL import Image, ImageChops

from imagepipe.config import Settings
from imagepipe.imaging import colour, render
from imagepipe.services import rendering
from imagepipe.storage import keys, open_storage
from tests.harness.app import run_inline
from tests.images import photo

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def test_inverted_previews_fail_the_task(
    fast_client: httpx.AsyncClient, fast_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    response = await fast_client.post("/upload", files={"file": ("a.jpg", photo(1600, 1200))})
    assert response.status_code == 202, response.text
    task_id = response.json()["task_id"]
    real = colour.to_srgb

    def inverting(image: Image.Image, **options: object) -> Image.Image:
        return ImageChops.invert(real(image, **options))  # type: ignore[arg-type]

    monkeypatch.setattr(render.colour, "to_srgb", inverting)
    assert run_inline(fast_settings, task_id) == rendering.Outcome.failed

    status = (await fast_client.get(f"/tasks/{task_id}")).json()
    assert status["status"] == "failed"
    assert status["error"]["code"] == "quality_check_failed"
    assert "not_inverted" in status["error"]["message"]
    assert status["variants"] == {} and status["placeholder"] is None
    assert (await fast_client.get(f"/tasks/{task_id}/variants/small")).status_code == 404
    # Renditions are stored as they are encoded, before the gate has judged them all:
    # the failed task's are removed again.
    storage = open_storage(fast_settings)
    assert list(storage.list(keys.variants_prefix(uuid.UUID(task_id)))) == []


async def test_the_same_upload_passes_with_the_real_conversion(
    fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    response = await fast_client.post("/upload", files={"file": ("a.jpg", photo(1600, 1200))})
    task_id = response.json()["task_id"]
    assert run_inline(fast_settings, task_id) == rendering.Outcome.succeeded
    status = (await fast_client.get(f"/tasks/{task_id}")).json()
    assert status["report"]["qa"]["passed"] is True
