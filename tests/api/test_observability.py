"""Prometheus metrics of the API and structured logs that carry the task id."""

from __future__ import annotations

import logging

import httpx
import pytest

from tests.images import photo
from tests.observe import Samples, metric_samples

pytestmark = pytest.mark.anyio


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return metric_samples(response.text)


async def test_metrics_count_requests_uploads_rejections_and_queue(
    fast_client: httpx.AsyncClient,
) -> None:
    before = await scrape(fast_client)
    data = photo(64, 48)
    assert (await fast_client.post("/upload", files={"file": ("a.jpg", data)})).status_code == 202
    assert (
        await fast_client.post("/upload", files={"file": ("a.jpg", b"text")})
    ).status_code == 415
    after = await scrape(fast_client)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("imagepipe_upload_bytes_total") == len(data)
    assert delta("imagepipe_uploads_rejected_total", code="unsupported_media_type") == 1
    labels = {"method": "POST", "route": "/upload"}
    assert delta("imagepipe_http_requests_total", status="202", **labels) == 1
    assert delta("imagepipe_http_requests_total", status="415", **labels) == 1
    # The queue holds the one accepted task (no worker runs in this test).
    assert after[("imagepipe_queue_depth", ())] == 1


async def test_route_label_is_the_template_not_the_path(fast_client: httpx.AsyncClient) -> None:
    await fast_client.get("/tasks/00000000-0000-0000-0000-000000000000")
    text = (await fast_client.get("/metrics")).text
    assert 'route="/tasks/{task_id}"' in text
    assert "00000000-0000" not in text


async def test_upload_log_carries_task_id(
    fast_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="imagepipe"):
        response = await fast_client.post("/upload", files={"file": ("a.jpg", photo(64, 48))})
    task_id = response.json()["task_id"]
    assert any(getattr(r, "task_id", None) == task_id for r in caplog.records)
