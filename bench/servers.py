"""Start the real processes a benchmark measures: API, bare baseline, workers, Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from tests.harness.postgres import private_postgres
from tests.harness.redis import redis_server
from tests.harness.server import free_port, wait_for_port

__all__ = [
    "api_server",
    "bare_server",
    "env_for",
    "postgres_database",
    "redis_server",
    "worker",
]

# The pid of each API server a benchmark started, by its URL: bench.cost reads its CPU
# time from /proc.
API_PIDS: dict[str, int] = {}


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database on a private PostgreSQL server, dropped afterwards; its async URL."""
    with private_postgres() as server, server.database() as url:
        yield url


def env_for(data_dir: Path, redis_url: str, database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEPIPE_")}
    env.update(
        IMAGEPIPE_DATA_DIR=str(data_dir),
        IMAGEPIPE_REDIS_URL=redis_url,
        IMAGEPIPE_DATABASE_URL=database_url,
        IMAGEPIPE_LOG_LEVEL="WARNING",
        IMAGEPIPE_WORKER_METRICS_PORT="0",
        MALLOC_ARENA_MAX="2",
        **extra,
    )
    return env


def _proc_stats() -> dict[int, list[str]]:
    """The fields after the command name of every process's /proc stat, by pid."""
    stats: dict[int, list[str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            stats[int(stat.parent.name)] = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
    return stats


def process_tree(root: int, stats: dict[int, list[str]] | None = None) -> set[int]:
    """``root`` and every live process below it."""
    parents = {pid: int(fields[1]) for pid, fields in (stats or _proc_stats()).items()}
    tree, frontier = set(), {root}
    while frontier:
        tree |= frontier
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - tree
    return tree


def pin_tree(root: int, cpu: int, *, include_root: bool = True) -> None:
    """Every thread of ``root``'s process tree onto ``cpu``."""
    for pid in process_tree(root) - (set() if include_root else {root}):
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                os.sched_setaffinity(int(task.name), {cpu})
            except OSError:
                continue  # exited meanwhile


def pin_descendants(cpu: int) -> None:
    """Every thread of every process this one started (servers, their children) onto
    ``cpu``: a benchmark that gives another process a core to itself moves the rest
    off it. Processes started later inherit their parent's affinity."""
    pin_tree(os.getpid(), cpu, include_root=False)


def _all_cpus() -> None:
    # bench.pipeline pins its process to one CPU at import, and children inherit that:
    # give every server and worker the whole machine back (taskset narrows it after).
    os.sched_setaffinity(0, range(os.cpu_count() or 1))


def _pinned(cpu: int | None) -> list[str]:
    return ["taskset", "-c", str(cpu)] if cpu is not None else []


@contextmanager
def _serve(argv: list[str], env: dict[str, str], port: int, log: Path) -> Iterator[str]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_all_cpus
        )
    url = f"http://127.0.0.1:{port}"
    API_PIDS[url] = process.pid
    try:
        wait_for_port(port, timeout=30)
        deadline = time.monotonic() + 30
        while httpx.get(url + "/healthz").status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(log.read_text())
            time.sleep(0.1)
        yield url
    finally:
        API_PIDS.pop(url, None)
        process.terminate()
        process.wait(30)


@contextmanager
def api_server(env: dict[str, str], log: Path, cpu: int | None = None) -> Iterator[str]:
    subprocess.run(
        [sys.executable, "-m", "imagepipe.cli", "migrate"], env=env, check=True, capture_output=True
    )
    port = free_port()
    argv = [*_pinned(cpu), sys.executable, "-m", "imagepipe.cli", "api", "--port", str(port)]
    with _serve(argv, env, port, log) as url:
        yield url


@contextmanager
def bare_server(upload_dir: Path, log: Path, cpu: int | None = None) -> Iterator[str]:
    """Same server settings as `imagepipe api`: uvicorn, uvloop, httptools, one process."""
    port = free_port()
    env = {**os.environ, "BARE_UPLOAD_DIR": str(upload_dir)}
    argv = [
        *_pinned(cpu),
        sys.executable,
        "-m",
        "uvicorn",
        "bench.bare_app:app",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    with _serve(argv, env, port, log) as url:
        yield url


def tree_cpu_seconds(root: int) -> float:
    """utime + stime of ``root`` and every process below it, alive now."""
    stats = _proc_stats()
    tick = os.sysconf("SC_CLK_TCK")
    return sum(
        (int(stats[pid][11]) + int(stats[pid][12])) / tick
        for pid in process_tree(root, stats)
        if pid in stats
    )


def wait_worker_idle(root: int, within: float = 60) -> None:
    """Until a just-started worker has settled: both its pools booted, and its whole
    process tree using under 5 % of a core for a second. The follow-up pool boots beside
    the render pool and takes seconds of CPU, which a measurement that begins earlier
    would count as the work's."""
    deadline = time.monotonic() + within
    time.sleep(1.0)
    while time.monotonic() < deadline:
        before = tree_cpu_seconds(root)
        time.sleep(1.0)
        if tree_cpu_seconds(root) - before < 0.05:
            return
    raise RuntimeError(f"worker {root} still busy after {within} s")


@contextmanager
def worker(
    env: dict[str, str], concurrency: int, log: Path, cpu: int | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``cpu``: the worker and its pool pinned to that core (taskset)."""
    argv = [sys.executable, "-m", "imagepipe.cli", "worker", "--concurrency", str(concurrency)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*_pinned(cpu), *argv],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_all_cpus,
        )
    try:
        yield process
    finally:
        process.terminate()
        process.wait(30)
