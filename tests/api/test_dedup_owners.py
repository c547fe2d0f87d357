"""Content dedup stays within one owner: identical bytes uploaded with two API keys are
rendered for each, and neither task names (or reveals) the other."""

from __future__ import annotations

import json

import httpx
import pytest

from imagepipe.api.app import create_app
from imagepipe.api.parts import Parts
from imagepipe.config import Settings
from tests.harness.app import open_client, run_inline
from tests.images import photo

pytestmark = pytest.mark.anyio

ALICE, BOB = "alice-key-0123456789", "bob-key-0123456789ab"


def as_key(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def upload(client: httpx.AsyncClient, settings: Settings, key: str, data: bytes) -> str:
    response = await client.post("/upload", files={"file": ("a.jpg", data)}, headers=as_key(key))
    assert response.status_code == 202, response.text
    task_id: str = response.json()["task_id"]
    assert run_inline(settings, task_id).value == "succeeded"
    return task_id


async def test_identical_bytes_of_two_keys_are_rendered_for_each(
    fast_any_db_settings: Settings,
) -> None:
    settings = fast_any_db_settings.model_copy(update={"api_keys": (ALICE, BOB)})
    data = photo(800, 600)
    async with open_client(create_app(settings, parts=Parts())) as client:
        alices = await upload(client, settings, ALICE, data)
        bobs = await upload(client, settings, BOB, data)
        task = (await client.get(f"/tasks/{bobs}", headers=as_key(BOB))).json()
        assert task["report"]["deduplicated_from"] is None
        assert "decode" in task["report"]["timings_ms"]  # rendered, not copied
        assert alices not in json.dumps(task)
        # The same key's identical bytes are still copied from its own task.
        again = await upload(client, settings, BOB, data)
        copy = (await client.get(f"/tasks/{again}", headers=as_key(BOB))).json()
        assert copy["report"]["deduplicated_from"] == bobs
        assert "copy" in copy["report"]["timings_ms"]
