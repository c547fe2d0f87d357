"""`imagepipe dev` serves the API and processes an upload, with no Docker."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import pytest

from tests.harness.processes import DevProcess, base_env, run_dev_server
from tests.harness.wait import wait_until
from tests.images import photo

pytestmark = pytest.mark.integration


def test_dev_runs_the_whole_service(tmp_path: Path) -> None:
    # No IMAGEPIPE_REDIS_URL: dev starts a private redis-server; SQLite in the data dir.
    with run_dev_server(tmp_path) as server:
        response = server.upload("a.jpg", photo(1000, 800))
        assert response.status_code == 202
        status = server.wait(response.json()["task_id"])
        assert status["status"] == "succeeded", status
        assert {v["width"] for v in status["variants"].values()} == {150, 600, 1000}
        assert (server.data_dir / "imagepipe.db").exists()


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid``, from /proc's parent links."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigterm_stops_everything_dev_started(tmp_path: Path) -> None:
    env = base_env(IMAGEPIPE_DATA_DIR=str(tmp_path / "data"), IMAGEPIPE_LOG_FORMAT="text")
    dev = DevProcess(tmp_path / "dev.log", env)
    log = dev.log_path
    children: set[int] = set()
    try:
        dev.start()
        process = dev.process
        assert process is not None
        # API, worker (with its pool processes) and the private redis-server; the pool
        # may still be forking when the API first answers.
        children = wait_until(
            lambda: found if len(found := _descendants(process.pid)) >= 4 else None,
            within=30,
            what="dev's API, worker pool and redis-server",
            logs=dev.output,
        )
        process.send_signal(signal.SIGTERM)  # to dev alone, as `kill` would
        process.wait(60)
        left = {pid for pid in children if _alive(pid)}
        assert left == set(), f"still running after SIGTERM: {left}\n{log.read_text()[-3000:]}"
    finally:
        # dev's children run in sessions of their own: find them before dev goes.
        found = _descendants(dev.process.pid) if dev.process else set()
        for pid in found | {pid for pid in children if _alive(pid)}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        dev.kill()
