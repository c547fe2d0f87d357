"""Receivers in the test's own process (threads on real sockets), and deliveries made
by calling the worker's service directly."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio
import httpx
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.config import Settings
from imagepipe.db.models import DeliveryState
from imagepipe.services import webhooks
from tests.images import photo


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@contextmanager
def recording_receiver() -> Iterator[tuple[str, list[Received]]]:
    """An HTTP server answering 200 to every POST; its URL and what it received."""
    calls: list[Received] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            calls.append(Received({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", calls
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class RawServer:
    """One listening socket; each connection is handed to ``serve`` on its own thread
    after the request head has been read. Counts requests and bytes it managed to send."""

    serve: Callable[[socket.socket, RawServer], None]
    requests: int = 0
    sent: int = 0
    finished: bool = False  # ``serve`` ran to its end without the client leaving
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)
    _listener: socket.socket | None = None

    @property
    def url(self) -> str:
        assert self._listener is not None
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}/hook"

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        with self.lock:
            self.sent += len(data)

    def start(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        accept = threading.Thread(target=self._accept, daemon=True)
        accept.start()

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                head += chunk
            with self.lock:
                self.requests += 1
            try:
                self.serve(conn, self)
                self.finished = True
            except OSError:
                pass  # the client went away

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()


@contextmanager
def raw_server(serve: Callable[[socket.socket, RawServer], None]) -> Iterator[RawServer]:
    server = RawServer(serve)
    server.start()
    try:
        yield server
    finally:
        server.close()


async def upload_with_callback(
    client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> uuid.UUID:
    response = await client.post(
        "/upload",
        files={"file": ("a.jpg", photo(300, 200))},
        data={"callback_url": url},
        headers=headers or {},
    )
    assert response.status_code == 202, response.text
    return uuid.UUID(response.json()["task_id"])


def options(settings: Settings, **overrides: Any) -> webhooks.DeliverySettings:
    values: dict[str, Any] = {
        "default_secret": settings.webhook_secret,
        "allow_private": settings.webhook_allow_private,
        "timeout_seconds": settings.webhook_timeout_seconds,
        **overrides,
    }
    return webhooks.DeliverySettings(**values)


async def deliver(
    sessions: sessionmaker[Session],
    delivery_id: uuid.UUID,
    delivery_options: webhooks.DeliverySettings,
) -> DeliveryState | None:
    """One attempt, as the worker makes it (in a thread: it runs its own event loop)."""
    attempt = partial(
        webhooks.deliver,
        sessions,
        delivery_id,
        delivery_options,
        payload_for=lambda _session, task_id, event: webhooks.event_body(
            event, {"task_id": str(task_id)}
        ),
    )
    return await anyio.to_thread.run_sync(attempt)
