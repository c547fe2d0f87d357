"""The worker's Prometheus endpoint (merged across prefork children) and JSON logs."""

from __future__ import annotations

import json
from collections.abc import Iterator

import anyio
import httpx
import pytest

from imagepipe.config import Settings
from tests.harness.processes import WorkerProcess, settings_env
from tests.harness.server import free_port, wait_for_port
from tests.harness.wait import wait_finished, wait_until
from tests.images import photo
from tests.observe import listening_addresses, metric_samples

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@pytest.fixture
def observed_worker(settings: Settings) -> Iterator[tuple[WorkerProcess, int]]:
    port = free_port()
    env = settings_env(settings)
    env.update(IMAGEPIPE_WORKER_METRICS_PORT=str(port), IMAGEPIPE_LOG_FORMAT="json")
    process = WorkerProcess(env, concurrency=2)
    process.start()
    wait_for_port(port, timeout=30)
    yield process, port
    process.stop()


async def test_worker_metrics_and_logs(
    client: httpx.AsyncClient, observed_worker: tuple[WorkerProcess, int]
) -> None:
    worker, port = observed_worker
    # Loopback unless told otherwise (compose and Kubernetes set 0.0.0.0).
    assert listening_addresses(port) == {"127.0.0.1"}
    ids = []
    # Three different images: an identical upload would be deduplicated, not rendered.
    for width in (1600, 1601, 1602):
        response = await client.post("/upload", files={"file": ("a.jpg", photo(width, 1200))})
        ids.append(response.json()["task_id"])
    for task_id in ids:
        assert (await wait_finished(client, task_id, logs=worker.output))["status"] == "succeeded"

    # A task is counted and logged after the commit that made it succeeded (which is
    # what the poll saw): wait for the last one's count, bounded, before comparing.
    succeeded = ("imagepipe_tasks_total", (("outcome", "succeeded"),))
    async with httpx.AsyncClient() as scraper:
        for _ in range(100):
            values = metric_samples((await scraper.get(f"http://127.0.0.1:{port}/metrics")).text)
            if values.get(succeeded, 0) >= 3:
                break
            await anyio.sleep(0.1)
    # Summed over both pool children: every task counted once, whichever ran it.
    assert values[("imagepipe_tasks_total", (("outcome", "succeeded"),))] == 3
    for stage in ("decode", "resize", "encode", "store"):
        key = ("imagepipe_task_stage_duration_seconds_count", (("stage", stage),))
        assert values[key] == 3, stage

    def finished() -> set[str]:
        lines = worker.output().splitlines()
        records = [json.loads(line) for line in lines if line.startswith("{")]
        return {r.get("task_id") for r in records if r.get("outcome") == "succeeded"}

    wait_until(
        lambda: finished() >= set(ids) or None,
        within=10,
        what="the last task's log line",
        logs=worker.output,
    )
    assert finished() == set(ids)
