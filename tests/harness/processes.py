"""imagepipe's own processes — api, worker, beat, dev — each configured from a
``Settings`` through ``Settings.to_env()``, so a subprocess sees every field the test
set, not a hand-picked few.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from imagepipe.config import Settings
from tests.harness.app import make_settings
from tests.harness.server import ManagedProcess, ServerProcess, require_binary
from tests.harness.wait import wait_finished_sync

TEST_API_KEY = "test-key-1234"


def base_env(**extra: str) -> dict[str, str]:
    """The test process's environment without any IMAGEPIPE_ setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEPIPE_")}
    env.pop("FORCE_COLOR", None)
    env.update(NO_COLOR="1", MALLOC_ARENA_MAX="2", **extra)
    return env


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that gives a subprocess exactly ``settings`` (plus ``extra``)."""
    return base_env(**settings.to_env(), **extra)


def imagepipe(*command: str) -> list[str]:
    return [sys.executable, "-m", "imagepipe.cli", *command]


def temp_log(prefix: str) -> Path:
    """A log file kept while the run lasts (a failing test quotes it), removed at its end."""
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=".log")
    os.close(fd)
    path = Path(name)
    atexit.register(path.unlink, missing_ok=True)
    return path


class WorkerProcess(ManagedProcess):
    """A real ``imagepipe worker`` (and its prefork pool) with the given environment."""

    name = "imagepipe worker"

    def __init__(
        self,
        env: dict[str, str],
        *,
        concurrency: int = 2,
        beat: bool = False,
        log_path: Path | None = None,
        queues: str | None = None,
    ) -> None:
        super().__init__(log_path or temp_log("imagepipe-worker-"), env)
        self.concurrency = concurrency
        self.beat = beat
        self.queues = queues  # None: every queue, as a plain ``imagepipe worker``

    def argv(self) -> list[str]:
        argv = imagepipe("worker", "--concurrency", str(self.concurrency))
        if self.queues:
            argv += ["--queues", self.queues]
        return [*argv, "--beat"] if self.beat else argv

    def ready(self) -> bool:
        # The render pool's node (celery@host), not the follow-up pool's it starts.
        return any("celery@" in line and " ready." in line for line in self.output().splitlines())


class BeatProcess(ManagedProcess):
    """A real ``imagepipe beat``: the reconciler as its own service, as in compose."""

    name = "imagepipe beat"
    stop_timeout = 15

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        super().__init__(log_path, env)

    def argv(self) -> list[str]:
        return imagepipe("beat")


class ApiProcess(ServerProcess):
    """A real ``imagepipe api`` (uvicorn, httptools, uvloop) on a free port."""

    name = "imagepipe api"
    stop_timeout = 25

    def __init__(
        self, env: dict[str, str], log_path: Path, *, settings: Settings | None = None
    ) -> None:
        super().__init__(log_path, env)
        self.settings = settings

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        return imagepipe("api", "--port", str(self.port))

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)


@contextmanager
def live_api(directory: Path, redis_url: str, **overrides: object) -> Iterator[ApiProcess]:
    """A real API server on SQLite in ``directory``; its settings are ``server.settings``."""
    settings = make_settings(
        directory, f"sqlite+aiosqlite:///{directory / 'imagepipe.db'}", redis_url, **overrides
    )
    server = ApiProcess(settings_env(settings), directory / "api.log", settings=settings)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class DevProcess(ServerProcess):
    """A real ``imagepipe dev``: API + worker + its own redis-server, on SQLite."""

    name = "imagepipe dev"
    start_timeout = 60
    stop_signal = signal.SIGINT  # what Ctrl-C does: dev stops its children
    stop_timeout = 30

    def argv(self) -> list[str]:
        return imagepipe("dev", "--port", str(self.port))

    def ready(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False


@dataclass(frozen=True)
class DevServer:
    """What a test sees of a running ``imagepipe dev``."""

    url: str
    data_dir: Path
    log_path: Path
    api_key: str | None = None

    def log(self, tail: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def upload(self, name: str, data: bytes) -> httpx.Response:
        with self.client() as client:
            return client.post("/upload", files={"file": (name, data)})

    def wait(self, task_id: str, timeout: float = 60) -> dict[str, Any]:
        """Poll the task until it succeeds or fails."""
        with self.client() as client:
            return wait_finished_sync(client, task_id, within=timeout, logs=self.log)


@contextmanager
def run_dev_server(directory: Path, *, api_key: str | None = None) -> Iterator[DevServer]:
    require_binary("redis-server")
    # No IMAGEPIPE_REDIS_URL: `dev` starts its own redis-server and a real worker.
    env = base_env(IMAGEPIPE_DATA_DIR=str(directory / "data"), IMAGEPIPE_LOG_FORMAT="text")
    if api_key:
        env["IMAGEPIPE_API_KEYS"] = json.dumps([api_key])
    process = DevProcess(directory / "dev.log", env)
    server = DevServer(
        f"http://127.0.0.1:{process.port}", directory / "data", process.log_path, api_key
    )
    try:
        process.start()
        yield server
    finally:
        process.stop()
