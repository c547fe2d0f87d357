"""Health, readiness, OpenAPI and the offline Swagger UI."""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import httpx
import pytest

from imagepipe.api.app import create_app
from imagepipe.api.readiness import FRESH_SECONDS
from imagepipe.api.state import app_state
from tests.harness.app import make_settings, open_client
from tests.harness.server import free_port

pytestmark = pytest.mark.anyio


async def test_healthz(fast_client: httpx.AsyncClient) -> None:
    response = await fast_client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_readyz_ok(fast_any_db_client: httpx.AsyncClient) -> None:
    response = await fast_any_db_client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"database": "ok", "broker": "ok", "storage": "ok"}


async def test_readyz_names_what_failed(tmp_path: Path, sqlite_url: str) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    settings = make_settings(tmp_path, sqlite_url, dead_redis, broker_timeout_seconds=1)
    async with open_client(create_app(settings)) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["error"]["code"] == "service_unavailable"
    assert "broker" in body["error"]["message"]
    assert body["checks"]["database"] == "ok" and body["checks"]["broker"].startswith("failed")
    assert response.headers["retry-after"]


async def test_swagger_ui_is_served_locally(fast_client: httpx.AsyncClient) -> None:
    page = await fast_client.get("/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower()
    asset_paths = [p for p in page.text.split('"') if p.endswith((".js", ".css"))]
    assert asset_paths, page.text
    for path in asset_paths:
        assert path.startswith("/"), path  # served by the app, not a CDN
        asset = await fast_client.get(path)
        assert asset.status_code == 200 and len(asset.content) > 1000


async def test_openapi_describes_the_upload_form(fast_client: httpx.AsyncClient) -> None:
    spec = (await fast_client.get("/openapi.json")).json()
    body = spec["paths"]["/upload"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert body["schema"]["properties"]["file"] == {"type": "string", "format": "binary"}


async def test_readyz_writes_nothing_and_a_hung_disk_holds_one_thread(
    tmp_path: Path, sqlite_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path, sqlite_url, redis_url, broker_timeout_seconds=0.2)
    app = create_app(settings)
    temp_dir = settings.resolved_storage_root / "tmp"
    async with open_client(app) as client:
        before = temp_dir.stat().st_mtime_ns
        for _ in range(5):
            assert (await client.get("/readyz")).status_code == 200
        # No file made and removed per probe (either would change the directory).
        assert temp_dir.stat().st_mtime_ns == before and list(temp_dir.iterdir()) == []

        # A disk that stops answering: the check blocks its thread until released.
        release, calls = threading.Event(), []

        def hung() -> None:
            calls.append(1)
            release.wait(60)

        monkeypatch.setattr(app_state(app).services.storage, "check", hung)
        await anyio.sleep(FRESH_SECONDS + 0.1)  # the cached answer ages out
        try:
            for _ in range(4):
                response = await client.get("/readyz")
                assert response.status_code == 503
                assert response.json()["checks"]["storage"] == "failed: TimeoutError"
            assert len(calls) == 1  # one stuck thread, however many probes
        finally:
            release.set()
