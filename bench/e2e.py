"""End to end: images per second from upload to `succeeded`, 1 and 2 worker processes,
on local files and on S3 (a private SeaweedFS), side by side.

A real API, a real Redis, a real PostgreSQL and a real Celery worker (prefork,
concurrency 1 then 2). Two measures per round: the worker draining a queued batch (its
own throughput), and upload → succeeded with the worker running (API, load and workers
share 2 cores). Each figure is the median of the rounds, never the best.

    python -m bench.e2e [--quick] [--rounds N] [--backends local,s3]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import psycopg
from PIL import Image

from bench.pipeline import photo_like, save
from bench.servers import api_server, env_for, postgres_database, redis_server, worker


def photo_jpeg(size: tuple[int, int], seed: int) -> bytes:
    buffer = io.BytesIO()
    photo_like(size, seed=seed).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@cache
def _scene(seed: int) -> Image.Image:
    return photo_like((4000, 3000), seed=seed)


def distinct_photos(count: int, batch: str = "") -> list[bytes]:
    """``count`` 12 MP photo-like JPEGs (a phone camera's output) whose bytes are their
    own: four scenes, told apart by a JPEG comment naming the batch and the image.
    Bytes uploaded before would be copies (content dedup), not renders, and the
    benchmark would time the copy; every batch that is uploaded needs its own name."""
    photos = []
    for i in range(count):
        buffer = io.BytesIO()
        comment = f"{batch} photo {i}".encode()
        _scene(100 + i % 4).save(buffer, "JPEG", quality=90, comment=comment)
        photos.append(buffer.getvalue())
    return photos


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


# Uploads in flight at once: under the API's default IMAGEPIPE_MAX_CONCURRENT_UPLOADS
# (16), over which it answers 503 too_many_uploads.
UPLOADS_IN_FLIGHT = 8


async def upload_all(client: httpx.AsyncClient, images: list[bytes]) -> list[str]:
    slots = asyncio.Semaphore(UPLOADS_IN_FLIGHT)

    async def one(index: int, data: bytes) -> str:
        async with slots:
            response = await client.post("/upload", files={"file": (f"{index}.jpg", data)})
        if response.status_code != 202:
            raise RuntimeError(f"upload refused: {response.status_code} {response.text}")
        return str(response.json()["task_id"])

    return list(await asyncio.gather(*(one(i, data) for i, data in enumerate(images))))


async def end_to_end(url: str, images: list[bytes]) -> float:
    """Worker already running: warm it with the first image, then upload the rest at
    once and wait for every success."""
    warm_up, images = images[:1], images[1:]
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        await wait_all(client, await upload_all(client, warm_up), within=60)
        started = time.perf_counter()
        await wait_all(client, await upload_all(client, images), within=600)
        return time.perf_counter() - started


def span(database_url: str, ids: list[str]) -> float:
    """Seconds from the first claim to the last success, from the tasks' own
    timestamps in the database (the API rounds them to seconds; the queue's order is
    not the upload order)."""
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT EXTRACT(EPOCH FROM max(finished_at) - min(started_at))"
            " FROM tasks WHERE id = ANY(%s)",
            ([uuid.UUID(i) for i in ids],),
        ).fetchone()
    assert row is not None
    return float(row[0])


def drain_tasks(
    url: str,
    env: dict[str, str],
    images: list[bytes],
    workers: int,
    log: Path,
    cpu: int | None = None,
) -> tuple[float, list[str]]:
    """Queue the batch with no worker running, then time the worker draining it, from
    its first claim to the last success: the worker's own throughput, without the
    upload traffic that shares these two cores in `end_to_end`. Returns the seconds
    and the ids of the tasks drained."""

    async def queue() -> list[str]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            return await upload_all(client, images)

    async def wait(ids: list[str]) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            await wait_all(client, ids, within=600)

    ids = asyncio.run(queue())
    with worker(env, workers, log, cpu):
        asyncio.run(wait(ids))
    return span(env["IMAGEPIPE_DATABASE_URL"], ids), ids


BACKENDS = ("local", "s3")
METRICS = ("drain_images_per_s", "e2e_images_per_s")


@contextmanager
def storage_env(backend: str, root: Path) -> Iterator[dict[str, str]]:
    """What API and worker need to use ``backend``: nothing for local files (the data
    directory), a private SeaweedFS (the tests' harness) for S3."""
    if backend == "local":
        yield {}
        return
    from tests.harness.seaweedfs import seaweedfs

    directory = root / "seaweedfs"
    directory.mkdir()
    with seaweedfs(directory) as server:
        yield server.client_env()


@dataclass(frozen=True)
class Stack:
    backend: str
    env: dict[str, str]  # of the API and of any worker started for it
    api_url: str
    root: Path  # a temp directory for logs


def stacks(
    prefix: str,
    backends: Iterable[str],
    *,
    api_cpu: int | None = None,
    settings: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """Redis and PostgreSQL (as in compose: the production path), then for each storage
    backend in turn its environment and a running API; each is stopped once the next
    is asked for. ``settings``: extra IMAGEPIPE_* variables for API and workers."""
    with (
        tempfile.TemporaryDirectory(prefix=prefix) as tmp,
        redis_server() as redis,
        postgres_database() as database,
    ):
        root = Path(tmp)
        for backend in backends:
            with storage_env(backend, root) as extra:
                env = env_for(
                    root / f"data-{backend}", redis.url, database, **extra, **(settings or {})
                )
                with api_server(env, root / f"api-{backend}.log", cpu=api_cpu) as url:
                    yield Stack(backend, env, url, root)


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of the rounds (never the best) per backend, metric and worker count, and
    the 2-vs-1 ratio of those medians."""
    summary: dict[str, Any] = {}
    for backend in sorted({r["backend"] for r in runs}):
        summary[backend] = {}
        for metric in METRICS:
            cell = {
                str(n): statistics.median(
                    r[metric] for r in runs if r["backend"] == backend and r["workers"] == n
                )
                for n in (1, 2)
            }
            cell["ratio"] = cell["2"] / cell["1"]
            summary[backend][metric] = cell
    return summary


def run(
    quick: bool = False, rounds: int = 3, backends: tuple[str, ...] = BACKENDS
) -> dict[str, Any]:
    count = 12 if quick else 24
    # 12 MP photo-like JPEGs: a phone camera's output.
    results: dict[str, Any] = {
        "images": count,
        "image_size": "4000x3000 JPEG",
        "rounds": rounds,
        "runs": [],
    }
    for stack in stacks("imagepipe-e2e-", backends):
        for round_ in range(rounds):
            for workers in (1, 2):  # alternate: drift hits both
                log = stack.root / f"worker-{stack.backend}-{workers}.log"
                batch = f"{stack.backend} round {round_} workers {workers}"
                queued = distinct_photos(count, f"{batch} drain")
                seconds, _ = drain_tasks(stack.api_url, stack.env, queued, workers, log)
                uploaded = distinct_photos(count + 1, f"{batch} e2e")
                with worker(stack.env, workers, log):
                    e2e_seconds = asyncio.run(end_to_end(stack.api_url, uploaded))
                row = {
                    "backend": stack.backend,
                    "round": round_,
                    "workers": workers,
                    "drain_images_per_s": count / seconds,
                    "e2e_images_per_s": count / e2e_seconds,
                }
                results["runs"].append(row)
                print(json.dumps(row), flush=True)
    results["summary"] = summarise(results["runs"])
    return results


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"{results['images']} photo-like {results['image_size']}s per round, PostgreSQL, "
        f"median of {results['rounds']} rounds (the rounds alternate 1 and 2 workers). "
        "*Worker throughput*: the batch queued with no worker running, then timed from "
        "the first claim to the last success. *Upload → succeeded*: the worker running, "
        "the batch uploaded at once, timed to the last success (API, client and workers "
        "share the 2 cores).",
        "",
        "| storage | worker processes | worker throughput, images/s | 2 vs 1 "
        "| upload → succeeded, images/s | 2 vs 1 |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for backend, cells in results["summary"].items():
        drain, e2e = cells["drain_images_per_s"], cells["e2e_images_per_s"]
        lines.append(f"| {backend} | 1 | {drain['1']:.2f} | | {e2e['1']:.2f} | |")
        lines.append(
            f"| {backend} | 2 | {drain['2']:.2f} | {drain['ratio']:.2f}x "
            f"| {e2e['2']:.2f} | {e2e['ratio']:.2f}x |"
        )
    lines += [
        "",
        "Placement: nothing is pinned here. With one worker process, the API, PostgreSQL, "
        "Redis and SeaweedFS have the other core; with two, the second worker shares a "
        "core with all of them, so the 2-vs-1 ratio measures this machine, not the "
        "worker. For a capacity plan, use the worker's CPU per image (section 13): "
        "images per second per core = 1000 / worker CPU ms.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    args = parser.parse_args()
    results = run(args.quick, args.rounds, tuple(args.backends.split(",")))
    save("e2e", results)
    print(markdown(results))


if __name__ == "__main__":
    main()
