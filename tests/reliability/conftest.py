"""Fixtures for fault-injection tests: a whole imagepipe (API server, workers, beat) made
of real processes, on a private Redis that the test may stop, and a database.

Every process a test starts is stopped at teardown, even when the test failed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from imagepipe.config import Settings
from tests.conftest import make_settings
from tests.reliability.stack import FAST_LIMITS, ApiProcess, Records, stack_env, wait_until
from tests.services import RedisServer, WorkerProcess, postgres_database, redis_server


class BeatProcess:
    """A real ``imagepipe beat``: the reconciler as its own service, as in compose."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "imagepipe.cli", "beat"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Stack:
    """One imagepipe deployment made of real processes; the test drives its faults."""

    settings: Settings
    env: dict[str, str]
    directory: Path
    records: Records
    api: ApiProcess
    workers: list[WorkerProcess] = field(default_factory=list)
    beats: list[BeatProcess] = field(default_factory=list)

    def start_worker(
        self, *, beat: bool = False, concurrency: int = 2, ready: bool = True
    ) -> WorkerProcess:
        worker = WorkerProcess(self.env, concurrency=concurrency, beat=beat)
        worker.log_path.unlink(missing_ok=True)  # keep the log with the test's files
        worker.log_path = self.directory / f"worker-{len(self.workers)}.log"
        self.workers.append(worker)
        worker.start()
        if ready:
            wait_until(
                lambda: " ready." in worker.output() or _exited(worker),
                within=30,
                what="the worker to be ready",
                logs=worker.output,
            )
            assert not _exited(worker), worker.output()
        return worker

    def start_beat(self) -> BeatProcess:
        beat = BeatProcess(self.env, self.directory / f"beat-{len(self.beats)}.log")
        self.beats.append(beat)
        beat.start()
        return beat

    def logs(self) -> str:
        parts = [f"--- api\n{self.api.output()[-3000:]}"]
        parts += [f"--- {w.log_path.name}\n{w.output()[-3000:]}" for w in self.workers]
        parts += [f"--- {b.log_path.name}\n{b.output()[-2000:]}" for b in self.beats]
        return "\n".join(parts)

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()
        for beat in self.beats:
            beat.stop()
        self.api.stop()
        self.records.close()


def _exited(worker: WorkerProcess) -> bool:
    return worker.process is not None and worker.process.poll() is not None


StackFactory = Callable[..., Stack]


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[StackFactory]:
    """Build a Stack: ``make_stack(database_url, redis_url, **setting_overrides)``.

    The API server is started; workers and beat are started by the test. Request it
    after the Redis and database fixtures, so its processes stop before those do.
    """
    stacks: list[Stack] = []

    def build(database_url: str, redis_url: str, **overrides: object) -> Stack:
        directory = tmp_path / f"stack-{len(stacks)}"
        directory.mkdir()
        settings = make_settings(directory, database_url, redis_url, **{**FAST_LIMITS, **overrides})
        env = stack_env(settings)
        stack = Stack(
            settings=settings,
            env=env,
            directory=directory,
            records=Records(settings),
            api=ApiProcess(env, directory / "api.log"),
        )
        stacks.append(stack)
        stack.api.start()
        return stack

    yield build
    for stack in stacks:
        stack.close()


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of this test alone (no persistence): it may be stopped and started."""
    with redis_server() as server:
        yield server


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A throwaway database on the machine's PostgreSQL (production's database)."""
    with postgres_database() as url:
        yield url
