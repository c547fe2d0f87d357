"""Private instances of the real services the tests talk to.

A test that stops or restarts a service gets its own instance, never the machine's.
A missing binary or an unreachable PostgreSQL fails the run loudly: integration tests
are never skipped in silence.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: the tests need it (see .ci/run)", pytrace=False)
    return path


class RedisServer:
    """A private redis-server; ``stop()``/``start()`` for fault tests (same port)."""

    def __init__(self, directory: Path, *, appendonly: bool = False) -> None:
        self.binary = require_binary("redis-server")
        self.directory = directory
        self.port = free_port()
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes" if self.appendonly else "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None


@contextmanager
def redis_server(**kwargs: bool) -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory(prefix="imagepipe-test-redis-") as directory:
        server = RedisServer(Path(directory), **kwargs)
        server.start()
        try:
            yield server
        finally:
            server.stop()


POSTGRES_ADMIN_URL = os.environ.get(
    "IMAGEPIPE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database on the machine's PostgreSQL, dropped afterwards; its async URL."""
    import psycopg
    from sqlalchemy.engine import make_url

    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        pytest.fail(
            f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL} ({error}); "
            "start it (see .ci/run) or set IMAGEPIPE_TEST_POSTGRES_URL",
            pytrace=False,
        )
    name = f"imagepipe_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url = make_url(POSTGRES_ADMIN_URL).set(drivername="postgresql+asyncpg", database=name)
            yield url.render_as_string(hide_password=False)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class WorkerProcess:
    """A real ``imagepipe worker`` subprocess with the given environment."""

    def __init__(self, env: dict[str, str], *, concurrency: int = 2, beat: bool = False) -> None:
        self.env = env
        self.concurrency = concurrency
        self.beat = beat
        self.process: subprocess.Popen[bytes] | None = None
        fd, name = tempfile.mkstemp(prefix="imagepipe-worker-", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)
        # Kept while the run lasts (a failing test quotes it), removed at its end.
        atexit.register(self.log_path.unlink, missing_ok=True)

    def start(self) -> None:
        argv = [
            sys.executable,
            "-m",
            "imagepipe.cli",
            "worker",
            "--concurrency",
            str(self.concurrency),
        ]
        if self.beat:
            argv.append("--beat")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def kill(self) -> None:
        """SIGKILL the whole worker: the main process and its pool children."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, 9)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")
