"""`imagepipe dev` serves the API and processes an upload, with no Docker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.images import photo
from tests.services import free_port

pytestmark = pytest.mark.integration


def test_dev_runs_the_whole_service(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEPIPE_")}
    env["IMAGEPIPE_DATA_DIR"] = str(tmp_path / "data")  # no Redis URL: a private one
    with (tmp_path / "dev.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "imagepipe.cli", "dev", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None, (tmp_path / "dev.log").read_text()
                assert time.monotonic() < deadline, (tmp_path / "dev.log").read_text()
                time.sleep(0.2)
            response = client.post("/upload", files={"file": ("a.jpg", photo(1000, 800))})
            assert response.status_code == 202
            task_id = response.json()["task_id"]
            while (status := client.get(f"/tasks/{task_id}").json())["status"] not in (
                "succeeded",
                "failed",
            ):
                assert time.monotonic() < deadline + 60, (tmp_path / "dev.log").read_text()
                time.sleep(0.2)
            assert status["status"] == "succeeded", status
            assert (tmp_path / "data" / "imagepipe.db").exists()
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
