"""One delivery attempt is bounded: in time as a whole (a receiver dripping its answer
cannot hold a worker), in what it reads (a receiver's huge body is never read), and in
number (an attempt killed mid-way still spends budget; after the last, the delivery
ends failed)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import anyio
import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.api.app import create_app
from imagepipe.config import Settings
from imagepipe.db.models import DeliveryAttempt, DeliveryState, WebhookDelivery, utcnow
from imagepipe.errors import InternalError
from imagepipe.services import lifecycle, webhooks
from tests.harness.app import make_settings, open_client, worker_sessions
from tests.webhooks.local import RawServer, deliver, options, raw_server, upload_with_callback

pytestmark = [pytest.mark.anyio]

SECRET = webhooks.new_secret()
MiB = 1024 * 1024


@dataclass
class Outbox:
    client: httpx.AsyncClient
    settings: Settings
    sessions: sessionmaker[Session]

    async def delivery_to(self, url: str) -> uuid.UUID:
        """A pending delivery of a failed task's event to ``url`` (its callback_url)."""
        task_id = await upload_with_callback(self.client, url)
        assert lifecycle.fail(self.sessions, task_id, InternalError("Stopped."))
        with self.sessions() as session:
            delivery: uuid.UUID = session.scalars(
                select(WebhookDelivery.id).where(WebhookDelivery.task_id == task_id)
            ).one()
        return delivery

    def row(self, delivery_id: uuid.UUID) -> WebhookDelivery:
        with self.sessions() as session:
            row = session.get(WebhookDelivery, delivery_id)
            assert row is not None
            return row

    def log(self, delivery_id: uuid.UUID) -> list[DeliveryAttempt]:
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(DeliveryAttempt)
                    .where(DeliveryAttempt.delivery_id == delivery_id)
                    .order_by(DeliveryAttempt.attempt)
                )
            )

    def make_due(self, delivery_id: uuid.UUID) -> None:
        """As if the delivery's lease (or backoff) had run out."""
        with self.sessions.begin() as session:
            session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery_id)
                .values(next_attempt_at=utcnow() - timedelta(seconds=1))
            )


@asynccontextmanager
async def outbox(tmp_path: Path, sqlite_url: str, redis_url: str) -> AsyncIterator[Outbox]:
    settings = make_settings(
        tmp_path, sqlite_url, redis_url, webhook_secret=SECRET, webhook_allow_private=True
    )
    async with open_client(create_app(settings)) as client:
        with worker_sessions(settings) as sessions:
            yield Outbox(client, settings, sessions)


def dripping(conn: socket.socket, server: RawServer) -> None:
    """A status line, then one header byte every 0.2 s for 30 s, then the end."""
    server.send(conn, b"HTTP/1.1 200 OK\r\nx-pad: ")
    for _ in range(150):
        time.sleep(0.2)
        server.send(conn, b"a")
    server.send(conn, b"\r\ncontent-length: 0\r\n\r\n")


async def test_a_dripping_receiver_is_cut_off_at_the_attempt_deadline(
    tmp_path: Path, sqlite_url: str, redis_url: str
) -> None:
    """Every byte comes well within the 2 s timeout, the whole answer takes 30 s: the
    attempt ends at its deadline, recorded as a timeout, and is retried later."""
    async with outbox(tmp_path, sqlite_url, redis_url) as box:
        with raw_server(dripping) as server:
            delivery_id = await box.delivery_to(server.url)
            state = await deliver(
                box.sessions, delivery_id, options(box.settings, timeout_seconds=2)
            )
            ended_before_the_server = not server.finished
    assert ended_before_the_server
    assert state == DeliveryState.pending
    [entry] = box.log(delivery_id)
    assert (entry.attempt, entry.status_code, entry.error) == (1, None, "timeout")
    assert entry.next_attempt_at is not None
    assert box.row(delivery_id).attempts == 1


BODY = 64 * MiB


def huge_body(conn: socket.socket, server: RawServer) -> None:
    """A 200 announcing 64 MiB of body, then sending it as fast as it is taken."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    server.send(conn, f"HTTP/1.1 200 OK\r\ncontent-length: {BODY}\r\n\r\n".encode())
    chunk = b"x" * (64 * 1024)
    for _ in range(BODY // len(chunk)):
        server.send(conn, chunk)


async def test_a_huge_answer_body_is_not_read(
    tmp_path: Path, sqlite_url: str, redis_url: str
) -> None:
    """The status is the answer: the body is left unread and the connection closed,
    so the receiver gets to send no more than the socket buffers hold."""
    async with outbox(tmp_path, sqlite_url, redis_url) as box:
        with raw_server(huge_body) as server:
            delivery_id = await box.delivery_to(server.url)
            state = await deliver(
                box.sessions, delivery_id, options(box.settings, timeout_seconds=20)
            )
            for thread in server.threads:
                thread.join(10)
    assert state == DeliveryState.delivered
    [entry] = box.log(delivery_id)
    assert (entry.status_code, entry.error) == (200, None)
    assert not server.finished
    assert server.sent < 16 * MiB, f"{server.sent / MiB:.1f} MiB of the body were taken"


# --- killed attempts ---------------------------------------------------------------

_ATTEMPT = """
import sys, uuid
from imagepipe.db.engine import make_sync_engine, sync_session_factory
from imagepipe.services import webhooks
sessions = sync_session_factory(make_sync_engine(sys.argv[1]))
options = webhooks.DeliverySettings(
    default_secret=sys.argv[3], allow_private=True, timeout_seconds=600
)
webhooks.deliver(sessions, uuid.UUID(sys.argv[2]), options, payload_for=lambda *_: "{}")
"""


def hanging(conn: socket.socket, server: RawServer) -> None:
    """Takes the request and never answers."""
    time.sleep(600)


@contextmanager
def attempt_process(
    settings: Settings, delivery_id: uuid.UUID
) -> Iterator[subprocess.Popen[bytes]]:
    argv = [
        sys.executable,
        "-c",
        _ATTEMPT,
        settings.resolved_database_url,
        str(delivery_id),
        SECRET,
    ]
    process = subprocess.Popen(argv, start_new_session=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


async def test_attempts_killed_mid_way_spend_the_budget_and_end_failed(
    tmp_path: Path, sqlite_url: str, redis_url: str
) -> None:
    """Each attempt is killed while the receiver holds it (as a time limit or the OOM
    killer would): each one is counted and logged as interrupted, and once they are all
    spent the delivery ends failed without another request."""
    async with outbox(tmp_path, sqlite_url, redis_url) as box:
        with raw_server(hanging) as server:
            delivery_id = await box.delivery_to(server.url)
            for attempt in range(1, webhooks.MAX_ATTEMPTS + 1):
                with attempt_process(box.settings, delivery_id) as process:
                    with anyio.fail_after(60):
                        while server.requests < attempt:
                            assert process.poll() is None, "the attempt ended by itself"
                            await anyio.sleep(0.05)
                box.make_due(delivery_id)
            state = await deliver(
                box.sessions, delivery_id, options(box.settings, timeout_seconds=1)
            )
            requests = server.requests
    assert requests == webhooks.MAX_ATTEMPTS
    assert state == DeliveryState.failed
    row = box.row(delivery_id)
    assert (row.state, row.attempts, row.next_attempt_at) == (
        DeliveryState.failed,
        webhooks.MAX_ATTEMPTS,
        None,
    )
    log = box.log(delivery_id)
    assert [entry.attempt for entry in log] == list(range(1, webhooks.MAX_ATTEMPTS + 1))
    assert all(entry.error and entry.error.startswith("interrupted") for entry in log)
    assert log[-1].next_attempt_at is None
