"""`imagepipe sign` as a user runs it, against a real API that holds the signing key."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.cli.test_client import imagepipe
from tests.harness.processes import live_api
from tests.harness.redis import RedisServer
from tests.images import photo


def test_sign_prints_a_link_the_service_verifies(tmp_path: Path, shared_redis: RedisServer) -> None:
    with (
        live_api(
            tmp_path, shared_redis.url, url_signing_keys=("cli-test-key",), on_demand_wait_seconds=0
        ) as api,
        api.client() as client,
    ):
        response = client.post("/upload", files={"file": ("a.jpg", photo(64, 48))})
        task_id = response.json()["task_id"]

        result = imagepipe(
            "sign", task_id, "h:20,w:30,fit:cover", "--format", "webp", "--url", api.url
        )
        assert result.returncode == 0, result.stderr
        link = result.stdout.strip()
        assert link.startswith(f"{api.url}/r/")
        assert link.endswith(f"/w:30,h:20,fit:cover,g:center/{task_id}.webp")
        # Past the signature (no worker here: the task is still queued).
        answer = httpx.get(link, timeout=10)
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "rendering"

        refused = imagepipe("sign", task_id, "w:0", "--url", api.url)
        assert refused.returncode == 1
        assert "invalid_options" in refused.stderr
