"""Cost per task, counted: database statements and transactions, Redis commands, S3
requests and bytes, API CPU time per upload — on local files and on S3.

A real API, a real worker (one process), a private Redis, PostgreSQL and SeaweedFS.
The worker runs and is warm; N uploads go through the proxied path (`POST /upload`) or
the direct one (`POST /uploads`, PUT, complete); the bench waits for every task by
asking PostgreSQL directly (asking the API would add its own statements). What is
counted, and where:

- statements: every SQL statement the API and the worker execute, counted by a
  SQLAlchemy `before_cursor_execute` listener that `bench/count_hook/sitecustomize.py`
  installs in those processes only (BEGIN/COMMIT issued by the drivers are not
  statements there: they are the transactions below);
- transactions: the same listener's `commit` events;
- Redis commands: `INFO commandstats` of the private redis-server, reset before; the
  idle worker's polling, measured first over a quiet interval, is subtracted;
- S3 requests and bytes: botocore `before-send`/`after-call` hooks (the same hook file);
- API CPU: utime + stime of the API process from /proc, before and after.

    python -m bench.cost [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

from bench.e2e import BACKENDS, distinct_photos, save, storage_env, upload_all
from bench.servers import API_PIDS, api_server, env_for, postgres_database, redis_server, worker

HOOK = Path(__file__).parent / "count_hook"
TICK = os.sysconf("SC_CLK_TCK")


def counted(env: dict[str, str], directory: Path, role: str) -> dict[str, str]:
    """``env`` with the counting hook loaded at interpreter start."""
    path = os.pathsep.join(p for p in (str(HOOK), env.get("PYTHONPATH", "")) if p)
    return {
        **env,
        "PYTHONPATH": path,
        "IMAGEPIPE_BENCH_COUNT_DIR": str(directory),
        "IMAGEPIPE_BENCH_ROLE": role,
    }


def hook_counts(directory: Path) -> Counter[str]:
    """Totals over every process's file: ``role db``, ``role s3 METHOD``, bytes."""
    totals: Counter[str] = Counter()
    for path in directory.glob("*.log"):
        role = path.name.split("-", 1)[0]
        for line in path.read_text().splitlines():
            kind, *rest = line.split()
            if kind == "commit":
                totals[f"{role} commit"] += 1
            elif kind == "db":
                totals[f"{role} db"] += 1
                totals[f"{role} db {rest[0]}"] += 1
            elif kind == "s3":
                totals[f"{role} s3"] += 1
                totals[f"{role} s3 {rest[0]}"] += 1
                totals[f"{role} s3 bytes out"] += int(rest[1])
            elif kind == "s3-in":
                totals[f"{role} s3 bytes in"] += int(rest[1])
    return totals


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def redis_commands(client: redis.Redis) -> Counter[str]:
    stats = client.info("commandstats")
    return Counter(
        {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}  # type: ignore[union-attr]
    )


def wait_succeeded(dsn: str, ids: list[str], within: float = 300) -> None:
    deadline = time.monotonic() + within
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE status = 'succeeded'),"
                " count(*) FILTER (WHERE status = 'failed') FROM tasks WHERE id = ANY(%s)",
                (ids,),
            ).fetchone()
            assert row is not None
            if row[1]:
                raise RuntimeError(f"{row[1]} tasks failed")
            if row[0] == len(ids):
                return
            if time.monotonic() > deadline:
                raise TimeoutError("tasks unfinished")
            time.sleep(0.1)


async def direct_upload(client: httpx.AsyncClient, index: int, data: bytes) -> str:
    """POST /uploads, PUT the bytes where it says (S3 itself, or the API's own PUT on
    local files), POST the completion."""
    asked = {"filename": f"{index}.jpg", "size_bytes": len(data), "content_type": "image/jpeg"}
    created = (await client.post("/uploads", json=asked)).raise_for_status().json()
    target = created["upload"]
    put = await client.request(
        target["method"], target["url"], headers=target["headers"], content=data
    )
    put.raise_for_status()
    (await client.post(created["complete_url"])).raise_for_status()
    return str(created["task_id"])


async def upload(url: str, images: list[bytes], path: str, concurrency: int = 4) -> list[str]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        ids: list[str] = []
        for i in range(0, len(images), concurrency):
            batch = images[i : i + concurrency]
            if path == "direct":
                ids += await asyncio.gather(
                    *(direct_upload(client, i + j, data) for j, data in enumerate(batch))
                )
            else:
                ids += await upload_all(client, batch)
        return ids


def measure(
    backend: str, path: str, root: Path, redis_url: str, database: str, count: int
) -> dict[str, Any]:
    dsn = database.replace("postgresql+asyncpg://", "postgresql://")
    name = f"{backend}-{path}"
    counts = root / f"counts-{name}"
    counts.mkdir()
    broker = redis.Redis.from_url(redis_url)
    # Bytes of their own: an upload seen before would be a copy, not a render.
    photos = distinct_photos(count + 2, f"cost {name}")
    warm_up, images = photos[:2], photos[2:]
    (root / name).mkdir()
    with storage_env(backend, root / name) as extra:
        env = env_for(root / f"data-{name}", redis_url, database, **extra)
        with (
            api_server(counted(env, counts, "api"), root / f"api-{name}.log") as url,
            worker(counted(env, counts, "worker"), 1, root / f"worker-{name}.log"),
        ):
            # Warm: connections opened, modules imported, the worker's runtime built.
            wait_succeeded(dsn, asyncio.run(upload(url, warm_up, path)))
            broker.config_resetstat()
            quiet = 3.0
            time.sleep(quiet)
            idle = redis_commands(broker)
            idle_per_s = {k: v / quiet for k, v in idle.items() if k not in {"config", "info"}}

            n = len(images)
            hooks = hook_counts(counts)
            pid = API_PIDS[url]
            cpu = cpu_seconds(pid)
            broker.config_resetstat()
            started = time.monotonic()
            ids = asyncio.run(upload(url, images, path))
            api_cpu = cpu_seconds(pid) - cpu
            wait_succeeded(dsn, ids)
            elapsed = time.monotonic() - started
            commands = redis_commands(broker)
            hooks_after = hook_counts(counts)
    spent = hooks_after - hooks
    busy = {
        name: max(0.0, calls - idle_per_s.get(name, 0.0) * elapsed)
        for name, calls in commands.items()
        if name not in {"config", "info"}
    }
    per = {k: v / n for k, v in spent.items()}
    return {
        "backend": backend,
        "path": path,
        "mean_upload_bytes": sum(map(len, images)) / n,
        "tasks": n,
        "api_cpu_ms_per_upload": 1000 * api_cpu / n,
        "statements": {k.removesuffix(" db"): v for k, v in per.items() if k.endswith(" db")},
        "statements_by_kind": {k: v for k, v in per.items() if " db " in k},
        "transactions": {role: per.get(f"{role} commit", 0.0) for role in ("api", "worker")},
        "redis_commands": sum(busy.values()) / n,
        "redis_by_command": {k: round(v / n, 2) for k, v in sorted(busy.items()) if v / n >= 0.05},
        "redis_idle_per_s": sum(idle_per_s.values()),
        "s3_requests": {role: per.get(f"{role} s3", 0.0) for role in ("api", "worker")},
        "s3_by_method": {k: v for k, v in per.items() if " s3 " in k and "bytes" not in k},
        "s3_bytes_out": {role: per.get(f"{role} s3 bytes out", 0.0) for role in ("api", "worker")},
        "s3_bytes_in": {role: per.get(f"{role} s3 bytes in", 0.0) for role in ("api", "worker")},
    }


PATHS = ("proxied", "direct")


def run(quick: bool = False) -> dict[str, Any]:
    count = 10 if quick else 20
    results: dict[str, Any] = {"image_size": "4000x3000 JPEG", "rows": []}
    with (
        tempfile.TemporaryDirectory(prefix="imagepipe-cost-") as tmp,
        redis_server() as broker,
        postgres_database() as database,
    ):
        for backend in BACKENDS:
            for path in PATHS:
                row = measure(backend, path, Path(tmp), broker.url, database, count)
                results["rows"].append(row)
                print(json.dumps(row), flush=True)
    return results


def _mb(value: float) -> str:
    return f"{value / 1e6:.2f} MB" if value >= 1e5 else f"{value / 1e3:.1f} kB"


def markdown(results: dict[str, Any]) -> str:
    rows = {f"{r['backend']}, {r['path']}": r for r in results["rows"]}
    order = list(rows)
    first = rows[order[0]]
    mean_bytes = statistics.mean(r["mean_upload_bytes"] for r in rows.values())

    def line(label: str, cell: Any) -> str:
        return f"| {label} | " + " | ".join(cell(rows[b]) for b in order) + " |"

    return "\n".join(
        [
            f"Per task, {results['image_size']}s of {_mb(mean_bytes)} on average, "
            "PostgreSQL, counted over "
            f"{first['tasks']} tasks after a warm-up. *Proxied*: `POST /upload`. *Direct*: "
            "`POST /uploads`, the PUT (to S3 itself, or to the API's own PUT on local "
            "files), `POST /tasks/{id}/complete`; the client's PUT to S3 is not an API "
            "request and is not in the S3 rows.",
            "",
            "| per task | " + " | ".join(order) + " |",
            "| --- | " + " | ".join("---:" for _ in order) + " |",
            line("SQL statements, API", lambda r: f"{r['statements'].get('api', 0):.1f}"),
            line("SQL statements, worker", lambda r: f"{r['statements'].get('worker', 0):.1f}"),
            line(
                "PostgreSQL transactions (commits), API / worker",
                lambda r: "{api:.1f} / {worker:.1f}".format(**r["transactions"]),
            ),
            line("Redis commands (idle polling excluded)", lambda r: f"{r['redis_commands']:.1f}"),
            line(
                "S3 requests, API / worker",
                lambda r: f"{r['s3_requests']['api']:.1f} / {r['s3_requests']['worker']:.1f}",
            ),
            line(
                "S3 bytes sent, API / worker",
                lambda r: f"{_mb(r['s3_bytes_out']['api'])} / {_mb(r['s3_bytes_out']['worker'])}",
            ),
            line(
                "S3 bytes received, API / worker",
                lambda r: f"{_mb(r['s3_bytes_in']['api'])} / {_mb(r['s3_bytes_in']['worker'])}",
            ),
            line("API CPU per upload", lambda r: f"{r['api_cpu_ms_per_upload']:.1f} ms"),
            "",
            "SQL statements per task by kind: "
            + "; ".join(
                f"{b}: "
                + ", ".join(
                    f"{k.split()[0]} {k.split()[-1]} {v:g}"
                    for k, v in sorted(rows[b]["statements_by_kind"].items())
                )
                for b in order
            )
            + ".",
            "",
            "Redis commands per task, by command ("
            + "; ".join(
                f"{b}: " + ", ".join(f"{k} {v:g}" for k, v in rows[b]["redis_by_command"].items())
                for b in order
            )
            + f"); an idle worker adds {first['redis_idle_per_s']:.1f} commands/s.",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    results = run(parser.parse_args().quick)
    save("cost", results)
    print(markdown(results))


if __name__ == "__main__":
    main()
