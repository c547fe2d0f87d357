"""End to end: images per second from upload to `succeeded`, 1 and 2 worker processes.

A real API, a real Redis and a real Celery worker (prefork, concurrency 1 then 2).
Each round warms the worker with one image, then uploads a batch as fast as it can and
waits for every task to succeed; throughput = batch / (last success - first upload).

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
    pending = set(ids)
    deadline = time.monotonic() + within
    while pending:
        for task_id in list(pending):
            status = (await client.get(f"/tasks/{task_id}")).json()["status"]
            if status == "failed":
                raise RuntimeError(f"task {task_id} failed")
            if status == "succeeded":
                pending.discard(task_id)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} tasks unfinished")
        await asyncio.sleep(0.05)


async def round_trip(url: str, images: list[bytes]) -> float:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        warm = await client.post("/upload", files={"file": ("w.jpg", images[0])})
        await wait_all(client, [warm.json()["task_id"]], within=60)
        started = time.perf_counter()
        uploads = [
            client.post("/upload", files={"file": (f"{i}.jpg", data)})
            for i, data in enumerate(images)
        ]
        responses = await asyncio.gather(*uploads)
        ids = [r.json()["task_id"] for r in responses]
        await wait_all(client, ids, within=600)
        return time.perf_counter() - started


def run(quick: bool = False) -> dict[str, Any]:
    count = 12 if quick else 40
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
            for concurrency in (1, 2, 1, 2):  # alternate: drift hits both
                with worker(env, concurrency, root / f"worker{concurrency}.log"):
                    seconds = asyncio.run(round_trip(url, images))
                row = {"workers": concurrency, "seconds": seconds, "images_per_s": count / seconds}
                results["runs"].append(row)
                print(json.dumps(row))
    best = {n: max(r["images_per_s"] for r in results["runs"] if r["workers"] == n) for n in (1, 2)}
    results["images_per_s"] = best
    results["scaling"] = best[2] / best[1]
    return results


def markdown(results: dict[str, Any]) -> str:
    one, two = results["images_per_s"][1], results["images_per_s"][2]
    return "\n".join(
        [
            "| worker processes | images/s (upload → succeeded) | scaling |",
            "| ---: | ---: | ---: |",
            f"| 1 | {one:.2f} | 1.00 |",
            f"| 2 | {two:.2f} | {two / one:.2f} |",
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
