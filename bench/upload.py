"""Upload acknowledgement: time to 202 under 1, 16 and 64 concurrent clients.

imagepipe's POST /upload (stream to storage, sha256, header probe, fsync, database
commit, publish to Redis) against a bare FastAPI endpoint that only writes the file to
disk — same uvicorn settings, same client, measured alternately in one run. Servers
are pinned to CPU 0, the load generator to CPU 1. A /healthz probe runs during every
load to show the event loop never blocks.

    python -m bench.upload [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from bench.pipeline import photo_like, save
from bench.servers import api_server, bare_server, env_for, postgres_database, redis_server

BOUNDARY = "benchboundary0123456789"


def jpeg_of_about(megabytes: float, seed: int) -> bytes:
    """A photo-like JPEG close to the requested size (quality tuned to get there)."""
    side = 3000 if megabytes < 4 else 5000
    image = photo_like((side, side * 3 // 4), seed=seed)
    best = b""
    for quality in (70, 80, 88, 92, 95, 97):
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        best = buffer.getvalue()
        if len(best) >= megabytes * 1e6:
            break
    return best


def multipart(data: bytes) -> bytes:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="b.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def load(url: str, body: bytes, clients: int, requests: int) -> dict[str, Any]:
    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    latencies: list[float] = []
    health: list[float] = []
    statuses: dict[int, int] = {}
    remaining = requests
    done = asyncio.Event()
    limits = httpx.Limits(max_connections=clients + 1)

    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def one_client() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                response = await client.post("/upload", content=body, headers=headers)
                latencies.append(time.perf_counter() - started)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        async def probe() -> None:
            async with httpx.AsyncClient(base_url=url, timeout=30) as prober:
                while not done.is_set():
                    started = time.perf_counter()
                    await prober.get("/healthz")
                    health.append(time.perf_counter() - started)
                    await asyncio.sleep(0.02)

        prober = asyncio.create_task(probe())
        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        wall = time.perf_counter() - started
        done.set()
        await prober

    return {
        "clients": clients,
        "requests": len(latencies),
        "statuses": statuses,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "rps": len(latencies) / wall,
        "healthz_p50_ms": statistics.median(health) * 1000 if health else None,
        "healthz_p99_ms": percentile(health, 0.99) * 1000 if health else None,
        "healthz_samples": len(health),
    }


def run(quick: bool = False) -> dict[str, Any]:
    os.sched_setaffinity(0, {1})  # the load generator on CPU 1; servers on CPU 0
    sizes = {"2MB": jpeg_of_about(2, seed=11), "7MB": jpeg_of_about(7, seed=12)}
    plan = [(1, 8 if quick else 30), (16, 32 if quick else 96), (64, 64 if quick else 192)]
    results: dict[str, Any] = {"sizes": {k: len(v) for k, v in sizes.items()}, "runs": []}
    with (
        ExitStack() as stack,
        tempfile.TemporaryDirectory(prefix="imagepipe-bench-") as tmp,
        redis_server() as redis,
    ):
        root = Path(tmp)
        # PostgreSQL, as in compose: the production path.
        database = stack.enter_context(postgres_database())
        # The admission limits (per process, per key) at the most clients here, so no
        # request is refused: this measures the upload path against a bare endpoint;
        # section 11 measures what the per-key checks cost, and the API's own tests what
        # it answers past them.
        limits = str(max(clients for clients, _ in plan))
        env = env_for(
            root / "data", redis.url, database,
            IMAGEPIPE_MAX_CONCURRENT_UPLOADS=limits, IMAGEPIPE_KEY_MAX_CONCURRENT_UPLOADS=limits,
        )  # fmt: skip
        with (
            api_server(env, root / "api.log", cpu=0) as api,
            bare_server(root / "bare", root / "bare.log", cpu=0) as bare,
        ):
            for label, data in sizes.items():
                body = multipart(data)
                for clients, requests in plan:
                    # Alternate the two servers so drift on this noisy machine hits both.
                    for server, url in (("bare", bare), ("imagepipe", api), ("bare", bare),
                                        ("imagepipe", api)):  # fmt: skip
                        row = asyncio.run(load(url, body, clients, requests // 2))
                        row.update(server=server, size=label)
                        results["runs"].append(row)
                        print(json.dumps(row))
    results["summary"] = summarise(results["runs"])
    return results


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge the two alternating halves of each (size, clients, server) cell."""
    cells: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for row in runs:
        cells.setdefault((row["size"], row["clients"], row["server"]), []).append(row)
    summary = []
    for (size, clients, server), rows in sorted(cells.items()):
        summary.append(
            {
                "size": size,
                "clients": clients,
                "server": server,
                "p50_ms": statistics.mean(r["p50_ms"] for r in rows),
                "p99_ms": max(r["p99_ms"] for r in rows),
                "rps": statistics.mean(r["rps"] for r in rows),
                "healthz_p99_ms": max((r["healthz_p99_ms"] or 0) for r in rows),
                "non_202": sum(n for r in rows for s, n in r["statuses"].items() if s != 202),
            }
        )
    return summary


def markdown(results: dict[str, Any]) -> str:
    by_key = {(r["size"], r["clients"], r["server"]): r for r in results["summary"]}
    lines = [
        "| file | clients | bare p50 / p99 ms | imagepipe p50 / p99 ms | p50 ratio | "
        "bare req/s | imagepipe req/s | /healthz p99 ms under load, bare / imagepipe |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for size, clients, _ in sorted({(s, c, "") for s, c, _ in by_key}):
        bare, ours = by_key[(size, clients, "bare")], by_key[(size, clients, "imagepipe")]
        ratio = ours["p50_ms"] / bare["p50_ms"]
        lines.append(
            f"| {size} | {clients} | {bare['p50_ms']:.0f} / {bare['p99_ms']:.0f} | "
            f"{ours['p50_ms']:.0f} / {ours['p99_ms']:.0f} | {ratio:.2f} | "
            f"{bare['rps']:.1f} | {ours['rps']:.1f} | "
            f"{bare['healthz_p99_ms']:.1f} / {ours['healthz_p99_ms']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    results = run(args.quick)
    save("upload", results)
    print(markdown(results))


if __name__ == "__main__":
    main()
