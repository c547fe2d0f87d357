"""`imagepipe upload` and `imagepipe status` as a user runs them, against `imagepipe dev`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from tests.harness.processes import TEST_API_KEY, DevServer, base_env
from tests.harness.server import free_port
from tests.images import photo

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def imagepipe(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imagepipe.cli", *args],
        env=base_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def accepted(stdout: str) -> dict[str, str]:
    """file name -> task id, from the "PATH → TASK_ID" lines."""
    found = re.findall(rf"^(.+?) → ({UUID})$", stdout, re.M)
    return {Path(path).name: task for path, task in found}


def test_upload_folder_with_a_bad_file_and_wait(dev_server: DevServer, tmp_path: Path) -> None:
    folder = tmp_path / "pictures"
    (folder / "nested").mkdir(parents=True)
    (folder / "a.jpg").write_bytes(photo(1000, 800))
    (folder / "nested" / "b.png").write_bytes(photo(1200, 600, "PNG"))
    (folder / "bad.jpg").write_bytes(b"plain text wearing a .jpg name\n")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # hidden: skipped
    os.mkfifo(folder / "pipe")  # not a regular file: skipped

    result = imagepipe("upload", str(folder), "--wait", "--url", dev_server.url)

    assert result.returncode == 1, result.stdout + result.stderr
    ids = accepted(result.stdout)
    assert set(ids) == {"a.jpg", "b.png"}, result.stdout
    for name, task_id in ids.items():
        task = dev_server.wait(task_id)
        assert task["status"] == "succeeded"
        assert task["original"]["filename"] == name
        for variant in ("small", "medium", "large"):
            assert f"{dev_server.url}/tasks/{task_id}/variants/{variant}" in result.stdout
    bad = next(line for line in result.stdout.splitlines() if "bad.jpg" in line)
    assert "unsupported_media_type" in bad
    assert "DS_Store" not in result.stdout and "pipe" not in result.stdout
    assert "1 of 3" in result.stderr
    # Every preview URL printed is a real, absolute URL.
    with httpx.Client() as client:
        for url in re.findall(r"http://\S+/variants/\w+", result.stdout):
            assert client.head(url).status_code == 200


def test_upload_good_files_exits_0(dev_server: DevServer, tmp_path: Path) -> None:
    names = ["good-0.jpg", "good-1.png", "été à la mer [2].jpg"]
    files = []
    for i, name in enumerate(names):
        path = tmp_path / name
        path.write_bytes(photo(300 + i, 200, "PNG" if name.endswith(".png") else "JPEG"))
        files.append(str(path))

    # The URL comes from the environment this time.
    result = imagepipe(
        "upload", *files, "--wait", "--concurrency", "2", IMAGEPIPE_URL=dev_server.url
    )

    assert result.returncode == 0, result.stdout + result.stderr
    ids = accepted(result.stdout)
    assert set(ids) == set(names)
    for name, task_id in ids.items():  # names reach the service intact
        assert dev_server.wait(task_id)["original"]["filename"] == name
    assert result.stdout.count("succeeded") == 3
    assert len(set(re.findall(rf"/tasks/({UUID})/variants/small", result.stdout))) == 3


def test_upload_without_wait_prints_task_ids(dev_server: DevServer, tmp_path: Path) -> None:
    path = tmp_path / "quick.jpg"
    path.write_bytes(photo(200, 100))
    result = imagepipe("upload", str(path), "--url", dev_server.url)
    assert result.returncode == 0, result.stdout + result.stderr
    (task_id,) = accepted(result.stdout).values()
    assert dev_server.wait(task_id)["status"] == "succeeded"
    assert "/variants/" not in result.stdout


def test_status_of_a_known_task(dev_server: DevServer) -> None:
    task_id = dev_server.upload("known.jpg", photo(1000, 800)).json()["task_id"]
    expected = dev_server.wait(task_id)

    result = imagepipe("status", task_id, "--url", dev_server.url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^status\s+succeeded$", result.stdout, re.M)
    assert "known.jpg  JPEG 1000x800" in result.stdout
    assert re.search(
        rf"small\s+150x120 .* {dev_server.url}/tasks/{task_id}/variants/small$", result.stdout, re.M
    )

    raw = imagepipe("status", task_id, "--json", "--url", dev_server.url)
    assert raw.returncode == 0
    assert json.loads(raw.stdout) == expected


def test_status_of_an_unknown_task_exits_1(dev_server: DevServer) -> None:
    cases = {
        "00000000-0000-4000-8000-000000000000": "task_not_found",
        "not-a-uuid": "task_not_found",
        "../healthz": "not_found",  # sent escaped: no route, never /healthz
    }
    for task_id, code in cases.items():
        result = imagepipe("status", task_id, "--url", dev_server.url)
        assert result.returncode == 1
        assert f"✗ {code}:" in result.stderr
        assert result.stdout == ""


def test_api_key_from_option_and_environment(secured_dev_server: DevServer, tmp_path: Path) -> None:
    server = secured_dev_server
    path = tmp_path / "keyed.jpg"
    path.write_bytes(photo(300, 200))

    refused = imagepipe("upload", str(path), "--url", server.url)
    assert refused.returncode == 1
    assert "unauthorized" in refused.stdout

    result = imagepipe(
        "upload", str(path), "--wait", "--url", server.url, "--api-key", TEST_API_KEY
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (task_id,) = accepted(result.stdout).values()

    shown = imagepipe("status", task_id, "--url", server.url, IMAGEPIPE_API_KEY=TEST_API_KEY)
    assert shown.returncode == 0, shown.stderr
    assert "succeeded" in shown.stdout
    assert imagepipe("status", task_id, "--url", server.url).returncode == 1


def test_unreachable_service(tmp_path: Path) -> None:
    path = tmp_path / "lost.jpg"
    path.write_bytes(photo(100, 100))
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = imagepipe("upload", str(path), "--url", url)
    assert result.returncode == 1
    assert "connection_error" in result.stdout
    status = imagepipe("status", "00000000-0000-4000-8000-000000000000", "--url", url)
    assert status.returncode == 1
    assert "connection_error" in status.stderr


def test_upload_direct_with_wait(dev_server: DevServer, tmp_path: Path) -> None:
    # imagepipe dev keeps local files: the upload URL is the API's own PUT.
    path = tmp_path / "direct.jpg"
    path.write_bytes(photo(900, 600))
    bad = tmp_path / "fake.png"
    bad.write_bytes(b"<html>not an image</html>")
    result = imagepipe("upload", str(path), str(bad), "--direct", "--wait", "--url", dev_server.url)
    assert result.returncode == 1, result.stderr
    task_id = accepted(result.stdout)["direct.jpg"]
    task = dev_server.wait(task_id)
    assert task["status"] == "succeeded"
    assert task["original"]["size_bytes"] == path.stat().st_size
    assert "unsupported_media_type" in result.stdout + result.stderr
