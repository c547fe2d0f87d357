"""A private PostgreSQL in a temp directory: the test session's database server.

Nothing here talks to a server someone else started: ``initdb`` makes a cluster in a
temp dir and ``postgres`` serves it on a free port of 127.0.0.1 (and on a unix socket
in the same dir). PostgreSQL refuses to run as root; as root it runs as ``postgres``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from tests.harness.server import ServerProcess, require_binary

# How the server stops: "fast" ends sessions cleanly, "immediate" dies like a crash
# (it recovers at the next start).
STOP_SIGNALS = {"fast": signal.SIGINT, "immediate": signal.SIGQUIT}


def postgres_binary(name: str) -> str:
    """``name`` from PATH, else from Debian's versioned directory (newest first)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
        reverse=True,
    )
    if candidates:
        return str(candidates[0])
    return require_binary(name)  # fails the test, loudly


class PrivatePostgres(ServerProcess):
    """initdb once, then ``start()``/``stop(mode)`` as often as a test needs."""

    name = "postgres"
    stop_signal = STOP_SIGNALS["fast"]
    start_timeout = 60

    def __init__(self, directory: Path) -> None:
        super().__init__(directory / "postgres.log")
        self.initdb = postgres_binary("initdb")
        self.postgres = postgres_binary("postgres")
        self.directory = directory
        self.data = directory / "data"
        self.runas: list[str] = []
        if os.geteuid() == 0:
            setpriv = require_binary("setpriv")
            self.runas = [setpriv, "--reuid=postgres", "--regid=postgres", "--init-groups"]
            shutil.chown(directory, "postgres", "postgres")

    def init(self) -> None:
        result = subprocess.run(
            [
                *self.runas,
                self.initdb,
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-N",
            ],
            capture_output=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed: {result.stdout.decode()}{result.stderr.decode()}")

    def argv(self) -> list[str]:
        # Speed over durability: a test cluster is thrown away.
        return [
            *self.runas, self.postgres, "-D", str(self.data),
            "-c", "listen_addresses=127.0.0.1", "-c", f"port={self.port}",
            "-c", f"unix_socket_directories={self.directory}",
            "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=off",
            "-c", "max_connections=200",
        ]  # fmt: skip

    def ready(self) -> bool:
        # The port opens before recovery ends; only a real login says it serves.
        try:
            psycopg.connect(self.admin_url, connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def stop(self, mode: str = "fast") -> None:  # type: ignore[override]
        """``immediate``: the server dies at once, like a crash."""
        self.signal_stop(STOP_SIGNALS[mode])

    def log(self) -> str:
        return self.output()

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    @contextmanager
    def database(self) -> Iterator[str]:
        """A fresh database on this server, dropped afterwards; its async URL."""
        name = f"imagepipe_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
            try:
                yield f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{name}"
            finally:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    directory = Path(tempfile.mkdtemp(prefix="imagepipe-test-pg-"))
    server = PrivatePostgres(directory)
    try:
        server.init()
        server.start()
        yield server
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.stop()  # it may be stopped already
        shutil.rmtree(directory, ignore_errors=True)
