"""What the per-key checks cost an upload: Redis round trips, database queries, µs.

An upload with API keys passes the tenant's checks before its body is read (the rate
and the concurrent-upload slot in one Redis script, the active-task quota as one
indexed COUNT) and gives its slot back at the end; it is published at the fair-share
level of that same count. A completed direct upload counts its owner's backlog once
more (one bounded COUNT). Each is called here as the API calls it, against a private
redis-server and PostgreSQL; the tenant holds 1 000 waiting and 10 000 finished tasks,
so the counts read a realistic index. Round trips are counted at the client (each
command sent is one), not assumed. Median of rounds, each the median of many calls;
the calling process on CPU 0, the servers on either core.

    python -m bench.tenancy [--quick] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncSession

from bench.pipeline import save
from bench.servers import postgres_database, redis_server
from imagepipe.config import Settings
from imagepipe.db.engine import async_session_factory, make_async_engine
from imagepipe.db.migrate import upgrade
from imagepipe.db.models import Task, TaskStatus, utcnow
from imagepipe.services import fairness, tenancy

OWNER = "tenant-a"
WAITING, FINISHED = 1_000, 10_000


def _rows(count: int, status: TaskStatus) -> list[dict[str, Any]]:
    now = utcnow()
    return [
        {
            "id": uuid.uuid4(),
            "filename": "a.jpg",
            "original_key": "originals/x",
            "original_format": "JPEG",
            "original_width": 10,
            "original_height": 10,
            "original_size_bytes": 1,
            "original_sha256": "0" * 64,
            "status": status,
            "created_at": now,
            "owner_scope": OWNER,
        }
        for _ in range(count)
    ]


class Counted:
    """Counts the commands a Redis client sends: each is one round trip (commands run
    inside a script are the server's business and cost none)."""

    def __init__(self, client: Any) -> None:
        self.sent: list[str] = []
        self._execute = client.execute_command

        async def execute_command(*args: Any, **options: Any) -> Any:
            self.sent.append(str(args[0]).lower())
            return await self._execute(*args, **options)

        client.execute_command = execute_command


async def _median_us(action: Callable[[], Awaitable[object]], calls: int) -> float:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        await action()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


async def measure(redis_url: str, database_url: str, calls: int, rounds: int) -> dict[str, Any]:
    # This process on CPU 0, as an API process; the servers, started before, stay free
    # to run on the other core.
    os.sched_setaffinity(0, {0})
    settings = Settings(
        data_dir=Path(tempfile.mkdtemp()), redis_url=redis_url, database_url=database_url
    )
    upgrade(settings.resolved_database_url)
    engine = make_async_engine(settings.resolved_database_url)
    sessions = async_session_factory(engine)
    async with sessions.begin() as session:
        await session.execute(insert(Task), _rows(WAITING, TaskStatus.queued))
        await session.execute(insert(Task), _rows(FINISHED, TaskStatus.succeeded))
    # As autovacuum leaves a table: statistics and the visibility map that lets the
    # counts scan the index alone.
    async with engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.execute(text("VACUUM ANALYZE tasks"))
    limiter = tenancy.Limiter(redis_url)
    rate = tenancy.Rate(10**9, 60)  # never refuses: the cost, not the refusal
    slots = tenancy.upload_slots(settings)
    reader: AsyncSession = sessions()

    async def admit_and_release() -> None:
        admission = await limiter.admit(OWNER, rate, slots)
        assert admission.lease is not None and admission.refused is None
        await limiter.release(admission.lease)

    async def quota() -> None:
        await tenancy.active_tasks(reader, OWNER)

    async def priority() -> None:
        await reader.run_sync(fairness.priority, OWNER)

    checks: dict[str, Callable[[], Awaitable[object]]] = {
        "rate + upload slot, and the slot given back (Redis)": admit_and_release,
        "active-task quota: COUNT (PostgreSQL)": quota,
        "fair-share level of a completed direct upload: bounded COUNT (PostgreSQL)": priority,
    }
    try:
        await admit_and_release()  # loads the script: once per process, not per upload
        counted = Counted(limiter._redis)
        await admit_and_release()
        round_trips = {name: counted.sent.count(name) for name in dict.fromkeys(counted.sent)}
        per_round: dict[str, list[float]] = {name: [] for name in checks}
        for _ in range(rounds):
            for name, check in checks.items():  # interleaved: drift hits each alike
                per_round[name].append(await _median_us(check, calls))
    finally:
        await reader.close()
        await limiter.close()
        await engine.dispose()
    medians = {name: statistics.median(values) for name, values in per_round.items()}
    return {
        "rounds": rounds,
        "calls_per_round": calls,
        "tenant_tasks": {"waiting": WAITING, "finished": FINISHED},
        "redis_commands_per_upload": {k: v for k, v in round_trips.items() if v},
        "median_us": medians,
        # POST /upload: the rate and slot, the quota; its fair-share level comes from
        # the quota's count (no query of its own).
        "upload_total_us": sum(list(medians.values())[:2]),
    }


def run(quick: bool, rounds: int) -> dict[str, Any]:
    with redis_server() as server, postgres_database() as database_url:
        return asyncio.run(measure(server.url, database_url, 50 if quick else 300, rounds))


def markdown(results: dict[str, Any]) -> str:
    sent = results["redis_commands_per_upload"]
    commands = ", ".join(f"{count} {name.upper()}" for name, count in sent.items())
    tasks = results["tenant_tasks"]
    lines = [
        f"Each check as the API makes it for one upload, against a private redis-server and "
        f"PostgreSQL; the key's tenant holds {tasks['waiting']:,} waiting and "
        f"{tasks['finished']:,} finished tasks. Median of {results['rounds']} rounds of "
        f"{results['calls_per_round']} calls, the caller pinned to CPU 0.",
        "",
        f"Redis commands an upload sends, counted at the client: {commands} "
        f"({sum(sent.values())} round trips).",
        "",
        "| check | µs |",
        "| --- | ---: |",
    ]
    lines += [f"| {name} | {us:.0f} |" for name, us in results["median_us"].items()]
    lines.append(f"| all per-key checks of `POST /upload` | {results['upload_total_us']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    save("tenancy", run(args.quick, args.rounds))


if __name__ == "__main__":
    main()
