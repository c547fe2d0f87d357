"""Private redis-server instances: a test that stops its broker never touches another's."""

from __future__ import annotations

import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.harness.server import ServerProcess, require_binary


class RedisServer(ServerProcess):
    """A private redis-server; ``stop()``/``start()`` for fault tests (same port)."""

    name = "redis-server"
    stop_signal = signal.SIGKILL  # a broker that vanishes, as in an outage

    def __init__(self, directory: Path, *, appendonly: bool = False) -> None:
        super().__init__(directory / "redis.log")
        self.binary = require_binary("redis-server")
        self.directory = directory
        self.appendonly = appendonly

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def argv(self) -> list[str]:
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--dir", str(self.directory),
        ]  # fmt: skip


@contextmanager
def redis_server(*, appendonly: bool = False) -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory(prefix="imagepipe-test-redis-") as directory:
        server = RedisServer(Path(directory), appendonly=appendonly)
        server.start()
        try:
            yield server
        finally:
            server.stop()
