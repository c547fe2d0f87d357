"""End to end: images per second from upload to `succeeded`, 1 and 2 worker processes.

A real API, a real Redis and a real Celery worker (prefork, concurrency 1 then 2).
Two measures per round: the worker draining a queued batch (its own throughput), and
upload → succeeded with the worker running (API, load and workers share 2 cores).

    python -m bench.e2e [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from bench.pipeline import RESULTS, photo_like
from bench.servers import api_server, env_for, postgres_database, redis_server, worker


def photo_jpeg(size: tuple[int, int], seed: int) -> bytes:
    buffer = io.BytesIO()
    photo_like(size, seed=seed).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


async def wait_all(client: httpx.AsyncClient, ids: list[str], within: float) -> None:
    """Wait for every task, asking about one at a time: polling all of them would load
    the API on the cores the workers are measured on."""
    deadline = time.monotonic() + within
    for task_id in ids:
        while (status := (await client.get(f"/tasks/{task_id}")).json()["status"]) != "succeeded":
            if status == "failed":
                raise RuntimeError(f"task {task_id} failed")
            if time.monotonic() > deadline:
                raise TimeoutError(f"task {task_id} unfinished")
            await asyncio.sleep(0.02)


async def upload_all(client: httpx.AsyncClient, images: list[bytes]) -> list[str]:
    uploads = [
        client.post("/upload", files={"file": (f"{i}.jpg", data)}) for i, data in enumerate(images)
    ]
    return [r.json()["task_id"] for r in await asyncio.gather(*uploads)]


async def end_to_end(url: str, images: list[bytes]) -> float:
    """Worker already running: upload the batch at once, wait for every success."""
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        warm = await upload_all(client, images[:1])
        await wait_all(client, warm, within=60)
        started = time.perf_counter()
        await wait_all(client, await upload_all(client, images), within=600)
        return time.perf_counter() - started


async def first_processing(client: httpx.AsyncClient, ids: list[str]) -> float:
    while (await client.get(f"/tasks/{ids[0]}")).json()["status"] == "queued":  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    return time.perf_counter()


def drain(url: str, env: dict[str, str], images: list[bytes], workers: int, log: Path) -> float:
    """Queue the batch with no worker running, then time the worker draining it, from
    its first claim to the last success: the worker's own throughput, without the
    upload traffic that shares these two cores in `end_to_end`."""

    async def queue() -> list[str]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            return await upload_all(client, images)

    async def measure(ids: list[str]) -> float:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            started = await first_processing(client, ids)
            await wait_all(client, ids, within=600)
            return time.perf_counter() - started

    ids = asyncio.run(queue())
    with worker(env, workers, log):
        return asyncio.run(measure(ids))


def run(quick: bool = False) -> dict[str, Any]:
    count = 16 if quick else 48
    # 12 MP photo-like JPEGs: a phone camera's output.
    images = [photo_jpeg((4000, 3000), seed=100 + i % 4) for i in range(count)]
    results: dict[str, Any] = {"images": count, "image_size": "4000x3000 JPEG", "runs": []}
    with (
        ExitStack() as stack,
        tempfile.TemporaryDirectory(prefix="imagepipe-e2e-") as tmp,
        redis_server() as redis,
    ):
        root = Path(tmp)
        # PostgreSQL, as in compose: the production path.
        database = stack.enter_context(postgres_database())
        env = env_for(root / "data", redis.url, database)
        with api_server(env, root / "api.log") as url:
            for workers in (1, 2, 1, 2):  # alternate: drift hits both
                log = root / f"worker{workers}.log"
                seconds = drain(url, env, images, workers, log)
                with worker(env, workers, log):
                    e2e_seconds = asyncio.run(end_to_end(url, images))
                row = {
                    "workers": workers,
                    "drain_images_per_s": count / seconds,
                    "e2e_images_per_s": count / e2e_seconds,
                }
                results["runs"].append(row)
                print(json.dumps(row), flush=True)
    for metric in ("drain_images_per_s", "e2e_images_per_s"):
        results[metric] = {
            str(n): max(r[metric] for r in results["runs"] if r["workers"] == n) for n in (1, 2)
        }
    return results


def markdown(results: dict[str, Any]) -> str:
    drain, e2e = results["drain_images_per_s"], results["e2e_images_per_s"]
    return "\n".join(
        [
            f"{results['images']} photo-like {results['image_size']}s, best of two rounds each.",
            "",
            "| worker processes | worker throughput (queue drained), images/s | scaling "
            "| upload → succeeded (API, client and workers on the same 2 cores), images/s "
            "| scaling |",
            "| ---: | ---: | ---: | ---: | ---: |",
            f"| 1 | {drain['1']:.2f} | 1.00 | {e2e['1']:.2f} | 1.00 |",
            f"| 2 | {drain['2']:.2f} | {drain['2'] / drain['1']:.2f} | {e2e['2']:.2f} "
            f"| {e2e['2'] / e2e['1']:.2f} |",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    results = run(parser.parse_args().quick)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "e2e.json").write_text(json.dumps(results, indent=2))
    print(markdown(results))


if __name__ == "__main__":
    main()
