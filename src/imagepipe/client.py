"""The command-line client: ``imagepipe upload`` and ``imagepipe status``.

It speaks only the HTTP API of docs/api-contract.md, so it works against any
deployment. Uploads are streamed from disk (never read whole into memory) so the
progress bar counts bytes actually handed to the connection.

Exit codes: 0 when every file was accepted (and, with ``--wait``, every task
succeeded); 1 otherwise, or when ``status`` cannot show the task; 2 for usage errors.
"""

from __future__ import annotations

import itertools
import json
import mimetypes
import os
import re
import secrets
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, cast
from urllib.parse import quote

import anyio
import click
import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

DEFAULT_URL = "http://127.0.0.1:8000"
CHUNK_BYTES = 64 * 1024
# A 503 (busy, a backend down) or a 429 (this key's limits) carries Retry-After: the
# service asks us to come back, so each call that creates work tries this often.
UPLOAD_ATTEMPTS = 3
COME_BACK = (429, 503)
MAX_RETRY_AFTER = 30.0
# Before opening a broken event stream again.
RETRY_DELAYS = (0.25, 0.5, 1.0, 2.0)
STREAM_IDLE_SECONDS = 45.0
DONE = ("succeeded", "failed")


class ErrorDetail(TypedDict):
    code: str
    message: str


class VariantBody(TypedDict):
    url: str
    width: int
    height: int
    size_bytes: int
    content_type: str


class OriginalBody(TypedDict):
    filename: str
    format: str
    width: int
    height: int
    size_bytes: int
    sha256: str


class TaskBody(TypedDict):
    task_id: str
    status: str
    created_at: str
    started_at: str | None
    finished_at: str | None
    original: OriginalBody
    variants: dict[str, VariantBody]
    error: ErrorDetail | None


class ServiceError(Exception):
    """An error answer of the service (its ``code``), or ``connection_error``."""

    def __init__(self, code: str, message: str, *, status: int = 0, retry_after: float = 0):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.retry_after = retry_after

    @property
    def come_back(self) -> bool:
        """The service asked to be asked again later (429 or 503)."""
        return self.status in COME_BACK

    async def wait(self) -> None:
        """Sleep as long as the service asked (at least a second, at most 30)."""
        await anyio.sleep(min(max(self.retry_after, 1.0), MAX_RETRY_AFTER))


def _error_from(response: httpx.Response) -> ServiceError:
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        # Not the service's error shape (a proxy's page, say): report the HTTP status.
        code, message = f"http_{response.status_code}", f"HTTP {response.status_code}"
    try:
        retry_after = float(response.headers.get("retry-after", 0))
    except ValueError:
        retry_after = 0
    return ServiceError(code, message, status=response.status_code, retry_after=retry_after)


def _normalise_url(url: str) -> str:
    return url if "://" in url else f"http://{url}"


# The same escaping browsers (and httpx) use for a multipart filename parameter.
_FORM_ESCAPES = {'"': "%22", "\\": "\\\\"} | {chr(c): f"%{c:02X}" for c in range(0x20) if c != 0x1B}
_FORM_ESCAPE_RE = re.compile("|".join(re.escape(c) for c in _FORM_ESCAPES))


def _multipart_frame(filename: str) -> tuple[bytes, bytes, str]:
    """Bytes before and after the file in a one-part body, and its Content-Type."""
    boundary = secrets.token_hex(16)
    quoted = _FORM_ESCAPE_RE.sub(lambda m: _FORM_ESCAPES[m.group(0)], filename)
    part_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{quoted}"\r\n'
        f"Content-Type: {part_type}\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head, tail, f"multipart/form-data; boundary={boundary}"


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
            base_url=_normalise_url(url), headers=headers, timeout=timeout, transport=transport
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
            error = _error_from(response)
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
            error = _error_from(response)
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
            raise _error_from(stored)
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
        head, tail, content_type = _multipart_frame(path.name)
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
            raise _error_from(response)
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
                raise _error_from(response)
            async for event, data in _server_sent_events(response):
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


async def _server_sent_events(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """(event, data) pairs of a ``text/event-stream`` body; comments are skipped."""
    event, data = "message", list[str]()
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)


def collect_files(paths: Iterable[Path]) -> list[Path]:
    """The files named, and every file under the folders named (hidden entries of a
    folder, such as .DS_Store, are skipped; a file named explicitly never is)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    candidate = Path(root) / name
                    if not name.startswith(".") and candidate.is_file():
                        found.append(candidate)
        elif path.is_file():
            found.append(path)
    return list(dict.fromkeys(found))  # a file named twice is uploaded once


@dataclass
class Outcome:
    path: Path
    task_id: str | None = None
    error: ServiceError | None = None
    task: TaskBody | None = None

    @property
    def ok(self) -> bool:
        if self.error is not None:
            return False
        return self.task is None or self.task["status"] == "succeeded"


def _error_line(prefix: str, code: str, message: str) -> Text:
    return Text.assemble(prefix, ("✗ ", "bold red"), (code, "red"), f": {message}")


def _variant_lines(base: httpx.URL, task: TaskBody) -> list[Text]:
    """One line per preview, smallest first, with its absolute URL."""
    ordered = sorted(task["variants"].items(), key=lambda kv: kv[1]["width"] * kv[1]["height"])
    return [
        Text.assemble(
            f"    {name:<7} ",
            (f"{v['width']}x{v['height']}".ljust(10), "cyan"),
            f" {_size(v['size_bytes']):>9}  ",
            str(base.join(v["url"])),
        )
        for name, v in ordered
    ]


def _size(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    if n < 1_000_000:
        return f"{n / 1000:.1f} kB"
    return f"{n / 1_000_000:.1f} MB"


async def _upload_all(
    api: Api, files: list[Path], *, concurrency: int, wait: bool, max_wait: float
) -> list[Outcome]:
    out = Console(soft_wrap=True, highlight=False)
    err = Console(stderr=True, highlight=False)
    outcomes = [Outcome(path) for path in files]
    sizes = {path: path.stat().st_size for path in files}
    limiter = anyio.CapacityLimiter(concurrency)
    progress = Progress(
        TextColumn("{task.description}", style="bold", markup=False),  # names are not markup
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=not err.is_terminal,
    )
    # Results go to stdout. When stdout and the bar share a terminal they must be drawn
    # by the bar's console, above the bar (a second Console would scribble over it).
    shown_on = err if out.is_terminal and err.is_terminal else out

    def print_(line: Text) -> None:
        shown_on.print(line, soft_wrap=True)  # a URL must stay on one line

    async def one(outcome: Outcome) -> None:
        async with limiter:
            bar = progress.add_task(outcome.path.name, total=sizes[outcome.path])

            def advance(n: int) -> None:
                progress.advance(bar, n)
                progress.advance(overall, n)

            try:
                outcome.task_id = await api.upload(outcome.path, advance)
            except ServiceError as error:
                outcome.error = error
            except OSError as error:  # the file vanished or became unreadable meanwhile
                outcome.error = ServiceError("read_error", str(error))
            finally:
                progress.remove_task(bar)
        if outcome.error is not None:
            print_(_error_line(f"{outcome.path} ", outcome.error.code, outcome.error.message))
            return
        assert outcome.task_id is not None
        print_(Text.assemble(f"{outcome.path} → ", (outcome.task_id, "bold")))
        if not wait:
            return
        try:
            outcome.task = await api.wait(outcome.task_id, max_wait)
        except ServiceError as error:
            outcome.error = error
            print_(_error_line(f"{outcome.path} {outcome.task_id} ", error.code, error.message))
            return
        _print_finished(print_, api, outcome)

    with progress:
        overall = progress.add_task("total", total=sum(sizes.values()))
        async with anyio.create_task_group() as group:
            for outcome in outcomes:
                group.start_soon(one, outcome)
    return outcomes


def _print_finished(print_: Callable[[Text], None], api: Api, outcome: Outcome) -> None:
    task = outcome.task
    assert task is not None
    prefix = f"{outcome.path} {task['task_id']} "
    if task["status"] == "succeeded":
        print_(Text.assemble(prefix, ("✓ succeeded", "bold green")))
        for line in _variant_lines(api.http.base_url, task):
            print_(line)
    else:
        error = task["error"] or {"code": "internal_error", "message": "no error recorded"}
        print_(_error_line(prefix + "failed ", error["code"], error["message"]))


_URL_OPTION = click.option(
    "--url",
    envvar="IMAGEPIPE_URL",
    default=DEFAULT_URL,
    show_default=True,
    show_envvar=True,
    help="Base URL of the imagepipe API.",
)
_KEY_OPTION = click.option(
    "--api-key",
    envvar="IMAGEPIPE_API_KEY",
    default=None,
    show_envvar=True,
    help="Sent as 'Authorization: Bearer KEY' (needed when the service sets IMAGEPIPE_API_KEYS).",
)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--wait", is_flag=True, help="Wait for the previews and print their URLs.")
@click.option(
    "--concurrency",
    "-j",
    default=4,
    show_default=True,
    type=click.IntRange(min=1),
    help="Uploads in flight at once.",
)
@click.option(
    "--timeout",
    default=300.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="With --wait: seconds to wait for each task.",
)
@click.option(
    "--direct",
    is_flag=True,
    help="Send the bytes straight to storage (POST /uploads, PUT, complete).",
)
@_URL_OPTION
@_KEY_OPTION
def upload(
    paths: tuple[Path, ...],
    wait: bool,
    concurrency: int,
    timeout: float,
    direct: bool,
    url: str,
    api_key: str | None,
) -> None:
    """Upload images (files, or folders searched recursively); print each task id.

    Exits 1 if any file was rejected or, with --wait, any task failed.
    """
    files = collect_files(paths)
    if not files:
        raise click.UsageError("no files found in the given paths")

    async def main() -> list[Outcome]:
        async with Api(url, api_key, direct=direct) as api:
            return await _upload_all(
                api, files, concurrency=concurrency, wait=wait, max_wait=timeout
            )

    outcomes = anyio.run(main)
    bad = [o for o in outcomes if not o.ok]
    if bad:
        click.echo(f"{len(bad)} of {len(outcomes)} file(s) did not go through.", err=True)
        raise SystemExit(1)


@click.command()
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True, help="Print the task as the API returns it.")
@_URL_OPTION
@_KEY_OPTION
def status(task_id: str, as_json: bool, url: str, api_key: str | None) -> None:
    """Show one task: status, original, previews, error. Exits 1 if it is unknown."""

    async def main() -> tuple[TaskBody, str]:
        async with Api(url, api_key) as api:
            return await api.task(task_id)

    try:
        task, raw = anyio.run(main)
    except ServiceError as error:
        Console(stderr=True, highlight=False, soft_wrap=True).print(
            _error_line("", error.code, error.message)
        )
        raise SystemExit(1) from None
    if as_json:
        click.echo(json.dumps(json.loads(raw), indent=2))
        return
    _print_task(Console(soft_wrap=True, highlight=False), _normalise_url(url), task)


@click.command()
@click.argument("task_id")
@click.argument("options")
@click.option(
    "--format",
    "extension",
    type=click.Choice(["jpg", "png", "webp", "avif"]),
    help="Fix the format in the link (otherwise the browser's Accept decides).",
)
@_URL_OPTION
@_KEY_OPTION
def sign(task_id: str, options: str, extension: str | None, url: str, api_key: str | None) -> None:
    """Print a signed link to an on-demand rendition, e.g. OPTIONS w:640,h:480,fit:cover.

    The service signs it (POST /tasks/{id}/links); no secret is needed here."""

    async def main() -> str:
        async with Api(url, api_key) as api:
            return await api.sign(task_id, options, extension)

    try:
        click.echo(anyio.run(main))
    except ServiceError as error:
        Console(stderr=True, highlight=False, soft_wrap=True).print(
            _error_line("", error.code, error.message)
        )
        raise SystemExit(1) from None


def _print_task(out: Console, base_url: str, task: TaskBody) -> None:
    colour = {"succeeded": "green", "failed": "red"}.get(task["status"], "yellow")
    original = task["original"]
    rows: list[tuple[str, Text | str]] = [
        ("task", task["task_id"]),
        ("status", Text(task["status"], style=f"bold {colour}")),
        ("created", task["created_at"]),
        ("started", task["started_at"] or "-"),
        ("finished", task["finished_at"] or "-"),
        (
            "original",
            f"{original['filename']}  {original['format']} "
            f"{original['width']}x{original['height']}  {_size(original['size_bytes'])}",
        ),
    ]
    error = task["error"]
    if error:
        rows.append(("error", Text(f"{error['code']}: {error['message']}", style="red")))
    for label, value in rows:
        out.print(Text.assemble(f"{label:<9} ", value))
    if task["variants"]:
        out.print("variants")
        for line in _variant_lines(httpx.URL(base_url), task):
            out.print(line)


__all__ = ["Api", "ServiceError", "collect_files", "sign", "status", "upload"]
