"""The calls the CLI makes to the service: uploads (a multipart POST, or a direct
upload: POST /uploads, PUT, complete), a task, its event stream and the wait for it to
finish, signed links. Each call that creates work is asked again while the service
answers 429 or 503, after its Retry-After."""

from __future__ import annotations

import itertools
import json
import mimetypes
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import anyio
import httpx

from imagepipe.client.bodies import TaskBody
from imagepipe.client.errors import ServiceError, error_from
from imagepipe.client.wire import multipart_frame, normalise_url, server_sent_events

CHUNK_BYTES = 64 * 1024
# How often each call that creates work is tried while the service asks us to come
# back (429, 503).
UPLOAD_ATTEMPTS = 3
# Before opening a broken event stream again.
RETRY_DELAYS = (0.25, 0.5, 1.0, 2.0)
STREAM_IDLE_SECONDS = 45.0
DONE = ("succeeded", "failed")


class Api:
    """The few calls the CLI makes, each raising ServiceError on any failure."""

    def __init__(
        self,
        url: str,
        api_key: str | None,
        *,
        direct: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """``transport``: where requests go instead of the network (an app in-process,
        a test's scripted server)."""
        self.direct = direct
        headers = {"Accept": "application/json", "User-Agent": "imagepipe-cli"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        timeout = httpx.Timeout(30.0, connect=10.0)
        self.http = httpx.AsyncClient(
            base_url=normalise_url(url), headers=headers, timeout=timeout, transport=transport
        )
        # The upload URL of a direct upload carries its own credential: it gets no API
        # key (a presigned S3 URL refuses a second Authorization).
        self.bare = httpx.AsyncClient(
            timeout=timeout, headers={"User-Agent": "imagepipe-cli"}, transport=transport
        )

    async def __aenter__(self) -> Api:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.http.aclose()
        await self.bare.aclose()

    async def _send(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self.http.send(request)
        except httpx.TransportError as error:
            reason = str(error) or type(error).__name__
            raise ServiceError(
                "connection_error", f"{request.method} {request.url} failed: {reason}"
            ) from None

    async def upload(self, path: Path, advance: Callable[[int], None]) -> str:
        """POST the file; its task id. ``advance`` is told of every chunk sent (and of
        a rewind, as a negative number, before a retry)."""
        if self.direct:
            return await self.upload_direct(path, advance)
        for attempt in range(1, UPLOAD_ATTEMPTS + 1):
            sent = 0

            def counted(n: int) -> None:
                nonlocal sent
                sent += n
                advance(n)

            request = self._upload_request(path, counted)
            response = await self._send(request)
            if response.status_code == 202:
                task_id: str = response.json()["task_id"]
                return task_id
            error = error_from(response)
            if not error.come_back or attempt == UPLOAD_ATTEMPTS:
                raise error
            advance(-sent)
            await error.wait()
        raise AssertionError("unreachable")

    async def _call(self, method: str, url: str, expected: int, **kwargs: Any) -> httpx.Response:
        """One request without a streamed body, asked again while the service answers
        429 or 503 (up to UPLOAD_ATTEMPTS times, after its Retry-After)."""
        for attempt in range(1, UPLOAD_ATTEMPTS + 1):
            response = await self._send(self.http.build_request(method, url, **kwargs))
            if response.status_code == expected:
                return response
            error = error_from(response)
            if not error.come_back or attempt == UPLOAD_ATTEMPTS:
                raise error
            await error.wait()
        raise AssertionError("unreachable")

    async def upload_direct(self, path: Path, advance: Callable[[int], None]) -> str:
        """POST /uploads, PUT the bytes where the answer says, complete; the task id."""
        size = (await anyio.Path(path).stat()).st_size
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        payload = {"filename": path.name, "size_bytes": size, "content_type": content_type}
        created = await self._call("POST", "/uploads", 201, json=payload)
        body = created.json()
        upload = body["upload"]

        async def content() -> AsyncIterator[bytes]:
            async with await anyio.open_file(path, "rb") as file:
                while chunk := await file.read(CHUNK_BYTES):
                    yield chunk
                    advance(len(chunk))

        headers = {**upload["headers"], "Content-Length": str(size)}
        put = self.bare.build_request(
            upload["method"], upload["url"], content=content(), headers=headers
        )
        stored = await self._send_bare(put)
        if stored.status_code >= 300:
            raise error_from(stored)
        completed = await self._call("POST", body["complete_url"], 202)
        task_id: str = completed.json()["task_id"]
        return task_id

    async def _send_bare(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self.bare.send(request)
        except httpx.TransportError as error:
            reason = str(error) or type(error).__name__
            raise ServiceError("connection_error", f"PUT {request.url} failed: {reason}") from None

    def _upload_request(self, path: Path, advance: Callable[[int], None]) -> httpx.Request:
        head, tail, content_type = multipart_frame(path.name)
        size = path.stat().st_size

        async def body() -> AsyncIterator[bytes]:
            yield head
            async with await anyio.open_file(path, "rb") as file:
                while chunk := await file.read(CHUNK_BYTES):
                    yield chunk
                    advance(len(chunk))
            yield tail

        headers = {
            "Content-Type": content_type,
            "Content-Length": str(len(head) + size + len(tail)),
        }
        return self.http.build_request("POST", "/upload", content=body(), headers=headers)

    async def sign(self, task_id: str, options: str, extension: str | None = None) -> str:
        """A signed /r/ link from POST /tasks/{id}/links: the service holds the key."""
        payload = {"options": options} | ({"extension": extension} if extension else {})
        path = f"/tasks/{quote(task_id, safe='')}/links"
        response = await self._call("POST", path, 201, json=payload)
        url: str = response.json()["url"]
        # A path unless the service knows its public URL: make it one to click.
        return url if "://" in url else str(self.http.base_url.join(url))

    async def task(self, task_id: str) -> tuple[TaskBody, str]:
        """The task and the raw JSON text of the answer."""
        path = f"/tasks/{quote(task_id, safe='')}"  # an id is never a path of its own
        response = await self._send(self.http.build_request("GET", path))
        if response.status_code != 200:
            raise error_from(response)
        return cast(TaskBody, response.json()), response.text

    async def follow(self, task_id: str) -> AsyncIterator[TaskBody]:
        """The task from ``GET /tasks/{id}/events``: now, then at each status change."""
        path = f"/tasks/{quote(task_id, safe='')}/events"
        # The service sends a comment at least every 15 s; silence past this is a loss.
        timeout = httpx.Timeout(30.0, connect=10.0, read=STREAM_IDLE_SECONDS)
        headers = {"Accept": "text/event-stream"}
        request = self.http.build_request("GET", path, headers=headers, timeout=timeout)
        try:
            response = await self.http.send(request, stream=True)
        except httpx.TransportError as error:
            raise ServiceError("connection_error", f"GET {path} failed: {error}") from None
        try:
            if response.status_code != 200:
                await response.aread()
                raise error_from(response)
            async for event, data in server_sent_events(response):
                if event == "status":
                    yield cast(TaskBody, json.loads(data))
        except httpx.TransportError as error:
            raise ServiceError("connection_error", f"GET {path} broke off: {error}") from None
        finally:
            await response.aclose()

    async def wait(self, task_id: str, max_wait: float) -> TaskBody:
        """Follow the task's event stream until it succeeds or fails; ``wait_timeout``
        past ``max_wait``. A stream that breaks (network, 5xx) is opened again."""
        state = "not seen"
        with anyio.move_on_after(max_wait):
            for attempt in itertools.count():
                try:
                    async for task in self.follow(task_id):
                        if task["status"] in DONE:
                            return task
                        state = task["status"]
                except ServiceError as error:
                    if error.status and error.status < 500 and not error.come_back:
                        raise
                    state = f"last try: {error.code}"
                    if error.come_back:  # too many followers of this key: as it asks
                        await error.wait()
                        continue
                await anyio.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
        raise ServiceError("wait_timeout", f"not finished after {max_wait:g} s ({state})")
