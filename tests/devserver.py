"""A real ``imagepipe dev`` (API + worker + private Redis + SQLite): for the test of
``dev`` itself, and for the page and CLI tests, which share one per test run (the
session fixtures in tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.services import free_port, require_binary

START_TIMEOUT = 60.0
TEST_API_KEY = "test-key-1234"


@dataclass(frozen=True)
class DevServer:
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
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while True:
                body: dict[str, Any] = client.get(f"/tasks/{task_id}").json()
                if body["status"] in ("succeeded", "failed"):
                    return body
                assert time.monotonic() < deadline, (
                    f"{task_id} still {body['status']}\n{self.log()}"
                )
                time.sleep(0.1)


def dev_env(**extra: str) -> dict[str, str]:
    """The test process's environment without any IMAGEPIPE_ setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEPIPE_")}
    env.pop("FORCE_COLOR", None)
    env.update(NO_COLOR="1", MALLOC_ARENA_MAX="2", **extra)
    return env


@contextmanager
def run_dev_server(directory: Path, *, api_key: str | None = None) -> Iterator[DevServer]:
    require_binary("redis-server")
    port = free_port()
    env = dev_env(IMAGEPIPE_DATA_DIR=str(directory / "data"), IMAGEPIPE_LOG_FORMAT="text")
    if api_key:
        env["IMAGEPIPE_API_KEYS"] = json.dumps([api_key])
    server = DevServer(
        f"http://127.0.0.1:{port}", directory / "data", directory / "dev.log", api_key
    )
    with server.log_path.open("wb") as log:
        # No IMAGEPIPE_REDIS_URL: `dev` starts its own redis-server and a real worker.
        process = subprocess.Popen(
            [sys.executable, "-m", "imagepipe.cli", "dev", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_ready(server, process)
            yield server
        finally:
            _stop(process)


def _wait_ready(server: DevServer, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    with httpx.Client(base_url=server.url, timeout=5) as client:
        while True:
            try:
                if client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if process.poll() is not None:
                pytest.fail(f"imagepipe dev exited at start:\n{server.log()}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"imagepipe dev not ready after {START_TIMEOUT}s:\n{server.log()}")
            time.sleep(0.2)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does: dev stops its children
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
