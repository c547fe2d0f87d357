"""The key is checked, and every JSON body bounded, before the body is read: against a
real ``imagepipe api`` (uvicorn, httptools) over raw sockets, a client announcing
64 MiB gets its 401 or 413 without sending them, and the connection is closed rather
than drained. Small bodies have deadlines, as uploads do."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.harness.processes import ApiProcess, live_api
from tests.harness.rawhttp import read_response, read_rest, upload_head
from tests.harness.redis import RedisServer
from tests.harness.wait import wait_until
from tests.images import multipart, photo

KEY = "the-only-key-0123456789abcdef"
BIG = 64 * 1024 * 1024
# Well under the 64 MiB announced: what the kernel's socket buffers may hold.
SMALL_SHARE = 16 * 1024 * 1024
# A server that waits for a body it should not read is still waiting after this.
PATIENCE = 8


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, shared_redis: RedisServer
) -> Iterator[ApiProcess]:
    with live_api(
        tmp_path_factory.mktemp("key-before-body"),
        shared_redis.url,
        api_keys=(KEY,),
        request_head_timeout_seconds=1,
        upload_idle_timeout_seconds=1,
        upload_timeout_seconds=3,
    ) as api:
        yield api


def json_head(path: str, length: str, key: str | None) -> bytes:
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"{auth}{length}\r\n\r\n"
    ).encode()


def answer_without_body(api: ApiProcess, head: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send the head only; the server must answer without waiting for the body."""
    with socket.create_connection(("127.0.0.1", api.port)) as sock:
        sock.sendall(head)
        try:
            status, headers, body = read_response(sock, timeout=PATIENCE)
        except TimeoutError:
            pytest.fail("the server waited for the body instead of answering")
        assert headers.get("connection") == "close", headers
        assert read_rest(sock, timeout=PATIENCE) == b"", "the connection stayed open"
    return status, headers, body


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def code(body: bytes) -> str:
    value: str = json.loads(body)["error"]["code"]
    return value


@pytest.mark.parametrize("path", ["/webhooks", "/uploads", "/upload"])
@pytest.mark.parametrize("key", [None, "a-wrong-key"])
def test_a_wrong_key_is_401_before_the_body(server: ApiProcess, path: str, key: str | None) -> None:
    head = json_head(path, f"Content-Length: {BIG}", key)
    if path == "/upload":
        extra = f"Authorization: Bearer {key}\r\n" if key else ""
        head = upload_head(f"Content-Length: {BIG}", extra=extra)
    status, headers, body = answer_without_body(server, head)
    assert status == 401 and code(body) == "unauthorized"
    assert headers["www-authenticate"] == "Bearer"


def test_a_wrong_key_streaming_64_mib_is_cut_off(server: ApiProcess) -> None:
    """The client keeps sending: the server answers and closes, having taken no more
    than its socket buffers hold."""
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(json_head("/webhooks", f"Content-Length: {BIG}", "a-wrong-key"))

        def push() -> None:
            nonlocal sent
            chunk = b" " * 65536
            with contextlib.suppress(OSError):
                while sent < BIG:
                    sock.sendall(chunk)
                    sent += len(chunk)

        sender = threading.Thread(target=push)
        sender.start()
        status, _, body = read_response(sock, timeout=PATIENCE)
        sender.join(PATIENCE)
    assert not sender.is_alive(), "the server kept reading the body"
    assert status == 401 and code(body) == "unauthorized"
    assert sent < SMALL_SHARE, f"{sent} bytes went in before the server closed"


@pytest.mark.parametrize("path", ["/webhooks", "/uploads"])
def test_a_json_body_over_the_cap_is_413_by_its_length(server: ApiProcess, path: str) -> None:
    status, _, body = answer_without_body(
        server, json_head(path, f"Content-Length: {1024 * 1024}", KEY)
    )
    assert status == 413 and code(body) == "request_too_large"


def test_a_chunked_json_body_is_counted_as_it_arrives(server: ApiProcess) -> None:
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(json_head("/webhooks", "Transfer-Encoding: chunked", KEY))

        def push() -> None:
            nonlocal sent
            chunk = b"4000\r\n" + b" " * 0x4000 + b"\r\n"  # 16 KiB chunks, never ending
            with contextlib.suppress(OSError):
                while sent < BIG:
                    sock.sendall(chunk)
                    sent += 0x4000

        sender = threading.Thread(target=push)
        sender.start()
        status, headers, body = read_response(sock, timeout=PATIENCE)
        sender.join(PATIENCE)
    assert not sender.is_alive(), "the server kept reading the body"
    assert status == 413 and code(body) == "request_too_large"
    assert headers["connection"] == "close"
    assert sent < SMALL_SHARE


def test_a_small_body_under_the_cap_is_served(server: ApiProcess) -> None:
    body = json.dumps({"filename": "a.jpg", "size_bytes": 10, "content_type": "image/jpeg"})
    with server.client(headers={"Authorization": f"Bearer {KEY}"}) as client:
        created = client.post("/uploads", content=body, headers={"Content-Type": "text/plain"})
        assert created.status_code == 201, created.text
        padded = client.post("/uploads", content=body + " " * 60_000)
        assert padded.status_code == 201, padded.text


@pytest.mark.parametrize("stall", ["idle", "trickle"])
def test_a_slow_json_body_is_408(server: ApiProcess, stall: str) -> None:
    body = json.dumps({"filename": "a.jpg", "size_bytes": 10, "content_type": "image/jpeg"})
    stop = threading.Event()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(json_head("/uploads", f"Content-Length: {len(body)}", KEY) + b"{")

        def trickle() -> None:  # a byte every 0.3 s: never idle for 1 s
            with contextlib.suppress(OSError):
                for byte in body.encode()[1:]:
                    if stop.wait(0.3):
                        return
                    sock.sendall(bytes([byte]))

        sender = threading.Thread(target=trickle)
        if stall == "trickle":
            sender.start()
        try:
            status, headers, answer = read_response(sock, timeout=PATIENCE)
        finally:
            stop.set()
            if sender.is_alive():
                sender.join(5)
    assert status == 408 and code(answer) == "request_timeout", answer
    assert headers["connection"] == "close"


def test_uploads_over_the_per_key_cap_are_429(
    tmp_path_factory: pytest.TempPathFactory, shared_redis: RedisServer
) -> None:
    other = "another-key-0123456789abcdef"
    with live_api(
        tmp_path_factory.mktemp("key-upload-cap"),
        shared_redis.url,
        api_keys=(KEY, other),
        key_max_concurrent_uploads=1,
    ) as api:
        settings = api.settings
        assert settings is not None
        body = multipart([(b'form-data; name="file"; filename="a.jpg"', photo(300, 200))])
        held = socket.create_connection(("127.0.0.1", api.port))
        with held:
            extra = f"Authorization: Bearer {KEY}\r\n"
            held.sendall(upload_head(f"Content-Length: {len(body)}", extra=extra) + body[:100])
            wait_until(
                lambda: any(settings.resolved_storage_root.joinpath("tmp").iterdir()),
                within=10,
                what="the first upload to be receiving",
            )
            files = {"file": ("a.jpg", photo(300, 200))}
            with api.client() as client:
                mine = client.post("/upload", files=files, headers=bearer(KEY))
                theirs = client.post("/upload", files=files, headers=bearer(other))
            held.sendall(body[100:])
            status, _, first = read_response(held, timeout=PATIENCE * 2)
        assert mine.status_code == 429, mine.text
        assert mine.json()["error"]["code"] == "too_many_concurrent_uploads"
        assert "retry-after" in mine.headers
        assert theirs.status_code != 429, theirs.text
        assert status in (202, 503), first  # 503: no worker queue in this test
        with api.client() as client:
            again = client.post("/upload", files=files, headers=bearer(KEY))
        assert again.status_code != 429, again.text


@pytest.mark.parametrize("size", [300_000, 1_500_000])
def test_a_client_still_sending_reads_the_early_answer(server: ApiProcess, size: int) -> None:
    """The answer came before the body was read, while the client was still sending
    it (as httpx and browsers do: they read only once the body is sent). The client
    must be able to finish and read the answer, not meet a reset: the server shuts its
    side and drops the rest (a lingering close) before it closes."""
    body = multipart([(b'form-data; name="file"; filename="a.jpg"', b"\xff" * size)])
    head = (
        f"POST /upload HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer a-wrong-key\r\n"
        f"Content-Type: multipart/form-data; boundary=imagepipe-test\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head)
        time.sleep(0.5)  # the server has answered and closed its side by now
        for start in range(0, len(body), 64 * 1024):
            sock.sendall(body[start : start + 64 * 1024])
        status, headers, answer = read_response(sock, timeout=PATIENCE)
        assert read_rest(sock, timeout=PATIENCE) == b""
    assert status == 401 and code(answer) == "unauthorized"
    assert headers.get("connection") == "close"
