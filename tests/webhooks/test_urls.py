"""Where a webhook may point: malformed URLs are refused as such (never a 500), IPv6
forms that lead back inside are refused, and host look-ups that never answer hold
none of the threads uploads and downloads use."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio import to_thread

from imagepipe.api.app import create_app
from tests.harness.app import make_settings, open_client
from tests.images import photo

pytestmark = [pytest.mark.anyio]

REFUSED = [
    # A port that is not one.
    "http://example.com:99999/x",
    "http://example.com:0/x",
    "http://example.com:http/x",
    "http://example.com:-1/x",
    # Odd IPv6 literals.
    "http://[::1/x",
    "http://[v1.fe]/x",
    "http://[fe80::1%25eth0]/x",
    "http://[1.2.3.4]/x",
    "http://[::ffff:999.1.1.1]/x",
    "http://::1/x",
    # Inside, however spelled.
    "http://[2002:7f00:1::1]/x",  # 6to4 of 127.0.0.1
    "http://[2002:808:808::1]/x",  # 6to4 at all: a relay may deliver it anywhere
    "http://[fec0::1]/x",  # site-local
    "http://[64:ff9b::7f00:1]/x",  # NAT64 of 127.0.0.1
    "http://[64:ff9b::a9fe:a9fe]/x",  # NAT64 of the metadata address
    "http://[::ffff:10.0.0.1]/x",  # IPv4-mapped private
    "http://[::ffff:7f00:1]/x",
    "http://[::7f00:1]/x",  # IPv4-compatible
    "http://[::]/x",
    "http://0/x",
    "http://100.64.0.1/x",
]


async def test_malformed_and_inside_urls_are_422(
    tmp_path: Path, sqlite_url: str, redis_url: str
) -> None:
    settings = make_settings(tmp_path, sqlite_url, redis_url)
    async with open_client(create_app(settings)) as client:
        for url in REFUSED:
            refused = await client.post("/webhooks", json={"url": url})
            assert refused.status_code == 422, (url, refused.text)
            assert refused.json()["error"]["code"] == "invalid_callback_url", url
        # NAT64 of a public address is judged by that address.
        public = await client.post("/webhooks", json={"url": "http://[64:ff9b::808:808]/x"})
        assert public.status_code == 201, public.text


async def test_a_resolver_that_never_answers_holds_no_shared_thread(
    tmp_path: Path, sqlite_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """60 subscriptions to a host whose look-up hangs (more than the 40 threads of the
    shared pool): each is refused by its deadline, while other thread-pool work and an
    upload go on as usual, and the hung look-ups hold at most a few threads of their
    own."""
    released = threading.Event()
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "stuck.example":
            released.wait(40)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    settings = make_settings(tmp_path, sqlite_url, redis_url, webhook_resolve_timeout_seconds=1)
    answers: list[tuple[int, str]] = []
    try:
        async with open_client(create_app(settings)) as client:

            async def subscribe() -> None:
                response = await client.post("/webhooks", json={"url": "http://stuck.example/x"})
                answers.append((response.status_code, response.json()["error"]["code"]))

            with anyio.fail_after(20):
                async with anyio.create_task_group() as group:
                    for _ in range(60):
                        group.start_soon(subscribe)
                    await anyio.sleep(0.3)  # every request is waiting on its look-up
                    assert await to_thread.run_sync(lambda: "ran") == "ran"
                    upload = await client.post("/upload", files={"file": ("a.jpg", photo(80, 60))})
                    assert upload.status_code == 202, upload.text
            stuck = [t for t in threading.enumerate() if t.name.startswith("webhook-dns")]
    finally:
        released.set()
    assert answers == [(422, "invalid_callback_url")] * 60
    assert len(stuck) <= 4
