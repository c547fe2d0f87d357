"""Slow, stalled and oversized clients against a real ``imagepipe api`` (uvicorn,
httptools, uvloop) over raw sockets: each is cut off or refused, and nothing they sent
is left on disk.

The deadlines are set short here (about a second); what is checked is that the server
closes the connection or answers, never how fast.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from imagepipe.config import Settings
from tests.harness.processes import ApiProcess, live_api
from tests.harness.rawhttp import read_response, read_rest, upload_head
from tests.harness.redis import RedisServer
from tests.harness.wait import wait_until
from tests.images import MULTIPART_TYPE, multipart, photo
from tests.observe import stored_files

# Long enough that a test waiting on a deadline of about a second never mistakes a
# server that does not cut off for a slow one.
NEVER = 20


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, shared_redis: RedisServer
) -> Iterator[tuple[ApiProcess, Settings]]:
    directory = tmp_path_factory.mktemp("slow-clients")
    with live_api(
        directory,
        shared_redis.url,
        request_head_timeout_seconds=1,
        upload_idle_timeout_seconds=1,
        upload_timeout_seconds=3,
    ) as api:
        assert api.settings is not None
        yield api, api.settings


def upload_body() -> bytes:
    return multipart([(b'form-data; name="file"; filename="a.jpg"', photo(300, 200))])


def assert_nothing_left(api: ApiProcess, settings: Settings) -> None:
    # A request whose connection was cut may still be removing its temp file.
    wait_until(lambda: stored_files(settings) == [], within=10, what="no file left behind")
    with api.client() as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/tasks").json()["tasks"] == []
    assert "Traceback" not in api.output()


def closed_by_server(sock: socket.socket) -> bytes:
    """What the server sends before it closes the connection; fails if it never does."""
    data = read_rest(sock, timeout=NEVER)
    sock.settimeout(0.5)
    try:
        assert sock.recv(1) == b"", "the server kept the connection open"
    except TimeoutError:
        pytest.fail("the server kept the connection open")
    except ConnectionResetError:
        pass
    return data


# --- the request head ---------------------------------------------------------------


def test_an_idle_connection_is_closed(server: tuple[ApiProcess, Settings]) -> None:
    api, settings = server
    with socket.create_connection(("127.0.0.1", api.port)) as sock:
        answer = closed_by_server(sock)  # never sends a byte
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert_nothing_left(api, settings)


def test_half_a_request_line_is_closed_with_408(server: tuple[ApiProcess, Settings]) -> None:
    api, settings = server
    with socket.create_connection(("127.0.0.1", api.port)) as sock:
        sock.sendall(b"POST /upl")
        answer = closed_by_server(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert_nothing_left(api, settings)


def test_headers_trickled_forever_are_cut_off(server: tuple[ApiProcess, Settings]) -> None:
    """A slowloris: a new header line every moment, the head never ending. The head
    deadline counts from its first byte, so trickling does not reset it."""
    api, settings = server
    stop = threading.Event()
    with socket.create_connection(("127.0.0.1", api.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n")

        def trickle() -> None:
            with contextlib.suppress(OSError):
                while not stop.wait(0.2):
                    sock.sendall(b"X-Slow: 1\r\n")

        sender = threading.Thread(target=trickle)
        sender.start()
        try:
            answer = closed_by_server(sock)
        finally:
            stop.set()
            sender.join(5)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert_nothing_left(api, settings)


def test_a_head_over_64_kib_is_431(server: tuple[ApiProcess, Settings]) -> None:
    api, settings = server
    for size in (70 * 1024, 4 * 1024 * 1024):
        with socket.create_connection(("127.0.0.1", api.port)) as sock:
            head = b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * size + b"\r\n\r\n"
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(head)
            answer = closed_by_server(sock)
        assert answer.startswith(b"HTTP/1.1 431"), (size, answer[:100])
    assert_nothing_left(api, settings)


def test_many_headers_over_64_kib_in_one_piece_are_431(
    server: tuple[ApiProcess, Settings],
) -> None:
    api, settings = server
    lines = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(1000))  # ~110 KiB
    with socket.create_connection(("127.0.0.1", api.port)) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n" + lines + b"\r\n")
        answer = closed_by_server(sock)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:100]
    assert_nothing_left(api, settings)


def test_a_head_under_the_limit_is_served(server: tuple[ApiProcess, Settings]) -> None:
    api, _ = server
    with api.client() as client:
        response = client.get("/healthz", headers={"X-Padding": "p" * 60_000})
    assert response.status_code == 200


# --- the upload body ------------------------------------------------------------------


def test_a_stalled_upload_body_is_408_and_leaves_nothing(
    server: tuple[ApiProcess, Settings],
) -> None:
    api, settings = server
    body = upload_body()
    with socket.create_connection(("127.0.0.1", api.port)) as sock:
        sock.sendall(upload_head(f"Content-Length: {len(body)}") + body[: len(body) // 2])
        status, headers, answer = read_response(sock, timeout=NEVER)
        assert status == 408, answer
        assert json.loads(answer)["error"]["code"] == "upload_timeout"
        assert headers["connection"] == "close"
        closed_by_server(sock)
    assert_nothing_left(api, settings)


def test_a_stalled_direct_upload_put_is_408_and_can_be_sent_again(
    server: tuple[ApiProcess, Settings],
) -> None:
    """The file:// upload URL of a direct upload is bounded the same way; the task
    stays awaiting_upload, so the client may PUT again."""
    api, settings = server
    data = photo(300, 200)
    with api.client() as client:
        created = client.post(
            "/uploads",
            json={"filename": "a.jpg", "size_bytes": len(data), "content_type": "image/jpeg"},
        ).json()
    target = urlsplit(created["upload"]["url"])
    head = (
        f"PUT {target.path}?{target.query} HTTP/1.1\r\nHost: test\r\n"
        f"Content-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", api.port)) as sock:
        sock.sendall(head + data[:100])
        status, _, answer = read_response(sock, timeout=NEVER)
    assert status == 408, answer
    assert json.loads(answer)["error"]["code"] == "upload_timeout"
    wait_until(lambda: stored_files(settings) == [], within=10, what="no file left behind")
    with api.client() as client:
        task = client.get(f"/tasks/{created['task_id']}").json()
        assert task["status"] == "awaiting_upload"
        again = client.put(
            f"{target.path}?{target.query}", content=data, headers={"Content-Type": "image/jpeg"}
        )
        assert again.status_code == 204, again.text
        client.delete(f"/tasks/{created['task_id']}")
    assert_nothing_left(api, settings)


def test_an_upload_trickled_past_the_total_deadline_is_408(
    server: tuple[ApiProcess, Settings],
) -> None:
    """One byte every 0.2 s never trips the idle deadline; the total one ends it."""
    api, settings = server
    body = upload_body()
    stop = threading.Event()
    with socket.create_connection(("127.0.0.1", api.port)) as sock:
        sock.sendall(upload_head(f"Content-Length: {len(body)}"))

        def trickle() -> None:
            with contextlib.suppress(OSError):
                for byte in body:
                    if stop.wait(0.2):
                        return
                    sock.sendall(bytes([byte]))

        sender = threading.Thread(target=trickle)
        sender.start()
        try:
            status, _, answer = read_response(sock, timeout=NEVER)
        finally:
            stop.set()
            sender.join(5)
    assert status == 408, answer
    assert "longer than" in json.loads(answer)["error"]["message"]
    assert_nothing_left(api, settings)


def test_uploads_over_the_concurrency_cap_get_503_with_retry_after(
    tmp_path_factory: pytest.TempPathFactory, shared_redis: RedisServer
) -> None:
    directory = tmp_path_factory.mktemp("upload-cap")
    with live_api(directory, shared_redis.url, max_concurrent_uploads=1) as api:
        assert api.settings is not None
        check_the_cap(api, api.settings)


def check_the_cap(api: ApiProcess, settings: Settings) -> None:
    body = upload_body()
    with socket.create_connection(("127.0.0.1", api.port)) as held:
        # The one slot: a body that has started and pauses (under the idle deadline).
        held.sendall(upload_head(f"Content-Length: {len(body)}") + body[:100])
        wait_until(
            lambda: any(settings.resolved_storage_root.joinpath("tmp").iterdir()),
            within=10,
            what="the first upload to be receiving",
        )
        with api.client() as client:
            refused = client.post("/upload", content=body, headers={"Content-Type": MULTIPART_TYPE})
        held.sendall(body[100:])
        status, _, first = read_response(held, timeout=NEVER)
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "too_many_uploads"
    assert refused.headers["retry-after"] == str(settings.retry_after_seconds)
    assert status in (202, 503), first  # the held one went through (503: no worker queue)
    # The slot is free again.
    with api.client() as client:
        again = client.post("/upload", content=body, headers={"Content-Type": MULTIPART_TYPE})
    assert again.status_code in (202, 503)
    assert again.json().get("error", {}).get("code") != "too_many_uploads"


def test_an_upload_is_refused_before_its_bytes_when_the_disk_is_low(
    tmp_path_factory: pytest.TempPathFactory, shared_redis: RedisServer
) -> None:
    directory = tmp_path_factory.mktemp("low-disk")
    # More free space than any test machine has: the check must refuse.
    with live_api(directory, shared_redis.url, min_free_disk_mb=1 << 40) as api:
        assert api.settings is not None
        body = upload_body()
        with api.client() as client:
            response = client.post(
                "/upload", content=body, headers={"Content-Type": MULTIPART_TYPE}
            )
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "insufficient_storage"
        assert "retry-after" in response.headers
        assert_nothing_left(api, api.settings)
