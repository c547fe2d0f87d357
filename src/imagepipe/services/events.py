"""Status-change notifications over Redis pub/sub.

The database row stays the record: a notification only says "task X changed, read it
again". Whoever writes a status publishes one after the commit; whoever follows a task
(``GET /tasks/{id}/events``, ``?wait=N``) wakes on it and re-reads the row. A lost
notification (Redis restarting, a writer killed between commit and publish) costs a
follower at most one re-read interval, never a hang: followers also re-read on a timer.

Publishing is best effort and never fails the status change it reports.

``RecordingNotifier`` is the double of ``Publisher`` for tests that call the services
without Redis: it keeps the ids it was told of. ``LocalEvents`` is the double of the
pair (``Publisher`` + ``Listener``) for an API run in one process without Redis: its
``notify`` wakes what its ``follow`` handed out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Protocol

import redis
import redis.asyncio as aioredis

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "imagepipe:task-status:"
# How long the listener waits before reconnecting after Redis went away.
_RECONNECT_SECONDS = 1.0
_POLL_SECONDS = 0.5
_STOP_SECONDS = 5.0


def channel(task_id: uuid.UUID) -> str:
    return f"{CHANNEL_PREFIX}{task_id}"


class Notifier(Protocol):
    def notify(self, task_id: uuid.UUID) -> None:
        """Say the task's row changed; never raise (followers also re-read on a timer)."""

    def close(self) -> None: ...


class Publisher:
    """The writer's side (worker, reconciler, API): one short PUBLISH per change."""

    def __init__(self, redis_url: str, *, timeout: float = 1.0) -> None:
        self._redis = redis.Redis.from_url(
            redis_url, socket_timeout=timeout, socket_connect_timeout=timeout
        )

    def notify(self, task_id: uuid.UUID) -> None:
        try:
            self._redis.publish(channel(task_id), b"changed")
        except redis.RedisError as error:
            # Followers re-read on a timer; a missing notification only delays them.
            log.warning("status notification not sent: %s", error, extra={"task_id": str(task_id)})

    def close(self) -> None:
        self._redis.close()


class RecordingNotifier:
    """A Notifier that keeps, in order, the id of every task it was told of."""

    def __init__(self) -> None:
        self.notified: list[uuid.UUID] = []
        # Services notify from worker threads as well as the event loop's.
        self._lock = threading.Lock()

    def notify(self, task_id: uuid.UUID) -> None:
        with self._lock:
            self.notified.append(task_id)

    def close(self) -> None:
        return


class Follower(Protocol):
    """What a follower of a task waits on: ``Listener`` (Redis) or ``LocalEvents``."""

    def follow(self, task_id: uuid.UUID) -> AbstractContextManager[asyncio.Event]:
        """An event set whenever the task is reported changed (see ``Listener.follow``)."""


class _Waiters:
    """The events handed out by ``follow``, by task: what a notification wakes."""

    def __init__(self) -> None:
        self._waiters: dict[uuid.UUID, set[asyncio.Event]] = defaultdict(set)

    @contextlib.contextmanager
    def follow(self, task_id: uuid.UUID) -> Iterator[asyncio.Event]:
        """An event set whenever the task is reported changed. Clear it *before*
        reading the row: a change reported after the clear is then never missed."""
        signal = asyncio.Event()
        self._waiters[task_id].add(signal)
        try:
            yield signal
        finally:
            waiters = self._waiters.get(task_id)
            if waiters is not None:
                waiters.discard(signal)
                if not waiters:
                    del self._waiters[task_id]

    def _wake(self, task_id: uuid.UUID) -> None:
        for signal in tuple(self._waiters.get(task_id, ())):
            signal.set()

    def _wake_all(self) -> None:
        for waiters in tuple(self._waiters.values()):
            for signal in tuple(waiters):
                signal.set()


class LocalEvents(_Waiters):
    """Publisher and Listener in one, for an API run in one process (tests): ``notify``
    wakes the followers of that task, from any thread (services notify from worker
    threads as well as the event loop's). ``start`` binds it to the running loop, as
    the lifespan starts a ``Listener``; ``notified`` keeps every id, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.notified: list[uuid.UUID] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    async def stop(self) -> None:
        self._loop = None

    def notify(self, task_id: uuid.UUID) -> None:
        with self._lock:
            self.notified.append(task_id)
            loop = self._loop
        if loop is None or loop.is_closed():
            return  # nobody follows: as a publish nobody is subscribed to
        # asyncio.Event is not thread-safe: it is set on its own loop.
        loop.call_soon_threadsafe(self._wake, task_id)

    def close(self) -> None:
        return


class Listener(_Waiters):
    """The follower's side, one per API process: a single pattern subscription whose
    messages wake the coroutines waiting on that task. Fifty clients following one
    task cost one Redis connection, not fifty."""

    def __init__(self, redis_url: str) -> None:
        super().__init__()
        self._url = redis_url
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="imagepipe-status-listener")

    async def stop(self) -> None:
        """Stop by flag, not by cancel: redis-py can hang when cancelled mid-connect."""
        if self._task is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(self._task, timeout=_STOP_SECONDS)
        except TimeoutError:
            log.warning("status listener did not stop in %ss", _STOP_SECONDS)
        self._task = None

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._listen()
            except (aioredis.RedisError, OSError) as error:
                log.warning("status listener lost Redis, reconnecting: %s", error)
            # Whatever was missed meanwhile: wake every follower to re-read.
            self._wake_all()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=_RECONNECT_SECONDS)

    async def _listen(self) -> None:
        client = aioredis.Redis.from_url(self._url, socket_connect_timeout=3)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.psubscribe(f"{CHANNEL_PREFIX}*")
            while not self._stopping.is_set():
                # A short timeout, so a stop request is seen within it.
                message = await pubsub.get_message(timeout=_POLL_SECONDS)
                if message is None or message.get("type") != "pmessage":
                    continue
                name = message["channel"]
                name = name.decode() if isinstance(name, bytes) else str(name)
                try:
                    task_id = uuid.UUID(name.removeprefix(CHANNEL_PREFIX))
                except ValueError:
                    continue
                self._wake(task_id)
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
            await client.aclose()
