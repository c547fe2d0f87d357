"""On-demand renditions over HTTP: the first request of a signed URL (a worker renders
it) and a cached one, on local files and on S3, beside libvips and a stored variant.

One 12 MP JPEG is uploaded; each first request is a new signed 640x480 ``cover``
WebP (the quality differs per URL, so every one is a render: the work is the same).
The worker (concurrency 1) is pinned to core 0 and the API to core 1; pyvips runs on
core 0 in this process, between the rounds, doing what imgproxy does per request
(``thumbnail_buffer(crop=attention)`` + ``webpsave``). A cached request is timed
against a download of the task's stored ``large`` variant. Medians of the rounds.

    python -m bench.on_demand [--quick] [--rounds N] [--backends local,s3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

import httpx
import pyvips

from bench.e2e import distinct_photos, stacks, wait_all
from bench.pipeline import save
from bench.servers import wait_worker_idle, worker

BACKENDS = ("local", "s3")
WORKER_CPU, API_CPU = 0, 1
SETTINGS = {"IMAGEPIPE_URL_SIGNING_KEYS": "bench-signing-key"}


def _ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


async def _timed_get(client: httpx.AsyncClient, url: str) -> float:
    started = time.perf_counter()
    response = await client.get(url)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"GET {url}: {response.status_code} {response.text[:200]}")
    return elapsed


async def _round(url: str, task_id: str, first_quality: int, count: int) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        firsts, links = [], []
        for quality in range(first_quality, first_quality + count):
            options = f"w:640,h:480,fit:cover,g:smart,q:{quality}"
            # The extension is part of what is signed: ask for a link that has it.
            body = {"options": options, "extension": "webp"}
            made = await client.post(f"/tasks/{task_id}/links", json=body)
            if made.status_code != 201:
                raise RuntimeError(f"links: {made.status_code} {made.text[:200]}")
            link = str(made.json()["url"])
            links.append(link)
            firsts.append(await _timed_get(client, link))
        cached = [await _timed_get(client, link) for link in links for _ in range(5)]
        variant = [
            await _timed_get(client, f"/tasks/{task_id}/variants/large") for _ in range(len(cached))
        ]
    return {"first_ms": _ms(firsts), "cached_ms": _ms(cached), "variant_ms": _ms(variant)}


def _pyvips_ms(data: bytes, calls: int) -> float:
    os.sched_setaffinity(0, {WORKER_CPU})
    try:
        times = []
        for quality in range(70, 70 + calls):
            started = time.perf_counter()
            image = pyvips.Image.thumbnail_buffer(data, 640, height=480, crop="attention")
            image.webpsave_buffer(Q=quality, effort=4, strip=True)
            times.append(time.perf_counter() - started)
        return _ms(times)
    finally:
        os.sched_setaffinity(0, range(os.cpu_count() or 1))


def run(quick: bool, rounds: int, backends: tuple[str, ...]) -> dict[str, Any]:
    count = 5 if quick else 10
    pyvips.cache_set_max(0)
    results: dict[str, Any] = {"rounds": rounds, "per_round": count, "runs": []}
    photo = distinct_photos(1, "on-demand")[0]
    for stack in stacks("imagepipe-on-demand-", backends, api_cpu=API_CPU, settings=SETTINGS):
        log = stack.root / f"worker-{stack.backend}.log"
        with worker(stack.env, 1, log, cpu=WORKER_CPU) as process:
            wait_worker_idle(process.pid)
            task_id = asyncio.run(_upload(stack.api_url, photo))
            for round_ in range(rounds):
                row: dict[str, Any] = asyncio.run(
                    _round(stack.api_url, task_id, 10 + round_ * count, count)
                )
                row |= {"backend": stack.backend, "round": round_}
                row["pyvips_ms"] = _pyvips_ms(photo, count)
                results["runs"].append(row)
                print(row, flush=True)
    results["summary"] = _summary(results["runs"])
    return results


async def _upload(url: str, photo: bytes) -> str:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        response = await client.post("/upload", files={"file": ("photo.jpg", photo)})
        response.raise_for_status()
        task_id = str(response.json()["task_id"])
        await wait_all(client, [task_id], within=120)
        return task_id


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for backend in sorted({r["backend"] for r in runs}):
        rows = [r for r in runs if r["backend"] == backend]
        keys = ("first_ms", "pyvips_ms", "cached_ms", "variant_ms")
        cell = {key: statistics.median(r[key] for r in rows) for key in keys}
        cell["first_over_pyvips"] = cell["first_ms"] / cell["pyvips_ms"]
        cell["cached_over_variant"] = cell["cached_ms"] / cell["variant_ms"]
        summary[backend] = cell
    return summary


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"One 12 MP JPEG; 640x480 cover WebP (g:smart), {results['per_round']} first requests "
        f"per round, median of {results['rounds']} rounds. Worker on core {WORKER_CPU}, API on "
        f"core {API_CPU}; pyvips on core {WORKER_CPU} in the benchmark's process.",
        "",
        "| storage | first request p50 | pyvips, same work | ratio | cached p50 | stored "
        "variant p50 | ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for backend, c in results["summary"].items():
        lines.append(
            f"| {backend} | {c['first_ms']:.1f} ms | {c['pyvips_ms']:.1f} ms | "
            f"{c['first_over_pyvips']:.2f}x | {c['cached_ms']:.2f} ms | {c['variant_ms']:.2f} ms "
            f"| {c['cached_over_variant']:.2f}x |"
        )
    lines += [
        "",
        "The first request includes the queue, the worker's download of the original, the "
        "render, the store and the API's wait; pyvips times the imaging alone.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    args = parser.parse_args()
    backends = tuple(args.backends.split(","))
    save("on_demand", run(args.quick, args.rounds, backends))


if __name__ == "__main__":
    main()
