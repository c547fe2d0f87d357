"""Stream a multipart upload straight into a storage temp file.

FastAPI's ``UploadFile`` would parse the whole body into a spooled temp file first and
we would copy it again; here the ``file`` part goes to disk once, in ~1 MiB writes made
in a worker thread (never on the event loop), with its sha256 computed on the way and
the byte limit enforced as the bytes arrive — ``Content-Length`` is only a shortcut
for refusing early, never trusted. A body that pauses longer than the idle deadline,
or takes longer than the total one, is refused with ``upload_timeout``: a client
trickling bytes must not hold a temp file and an upload slot for ever.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import unicodedata
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import BinaryIO

import anyio
from anyio import to_thread
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from imagepipe.api.admission import UploadDeadlines
from imagepipe.errors import FileTooLarge, InvalidRequest, UploadTimeout

FLUSH_BYTES = 1024 * 1024
MAX_PARTS = 16
# Headers and small form fields around the file part.
MULTIPART_OVERHEAD = 64 * 1024


@dataclass
class ReceivedFile:
    path: Path
    filename: str
    size_bytes: int
    sha256: str
    # Small text fields sent beside the file (FIELDS), by name.
    fields: dict[str, str] = field(default_factory=dict)


# Form fields read besides the file, each at most FIELD_BYTES; others are ignored.
FIELDS = frozenset({"callback_url"})
FIELD_BYTES = 4096


@dataclass
class _State:
    """What the parser callbacks learn; they run synchronously inside ``write()``."""

    header_field: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    headers: dict[bytes, bytes] = field(default_factory=dict)
    parts: int = 0
    in_file_part: bool = False
    file_parts: int = 0
    filename: str = ""
    field_name: str | None = None
    fields: dict[str, bytearray] = field(default_factory=dict)
    pending: list[bytes] = field(default_factory=list)
    pending_bytes: int = 0
    file_bytes: int = 0
    # The closing boundary was seen: without it the body was cut short (a client that
    # sent less than it meant to) and the file part may be truncated.
    ended: bool = False


def display_filename(raw: str) -> str:
    """The client's filename, for display only: base name, no control characters."""
    name = PureWindowsPath(PurePosixPath(raw).name).name
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    return unicodedata.normalize("NFC", name).strip()[:255] or "upload"


def _boundary(request: Request) -> bytes:
    content_type = request.headers.get("content-type", "")
    media_type, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if media_type != b"multipart/form-data" or not boundary:
        raise InvalidRequest("Expected multipart/form-data with one part named 'file'.")
    return boundary


def _parser(boundary: bytes, state: _State, max_file_bytes: int) -> MultipartParser:
    def on_part_begin() -> None:
        state.parts += 1
        if state.parts > MAX_PARTS:
            raise InvalidRequest(f"Too many parts in the form (at most {MAX_PARTS}).")
        state.headers = {}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state.header_field += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state.header_value += data[start:end]

    def on_header_end() -> None:
        state.headers[bytes(state.header_field).lower()] = bytes(state.header_value)
        state.header_field.clear()
        state.header_value.clear()

    def on_headers_finished() -> None:
        _, params = parse_options_header(state.headers.get(b"content-disposition", b""))
        state.in_file_part = params.get(b"name") == b"file"
        name = params.get(b"name", b"").decode("latin-1")
        state.field_name = name if name in FIELDS else None
        if state.field_name is not None:
            state.fields[state.field_name] = bytearray()
        if state.in_file_part:
            state.file_parts += 1
            if state.file_parts > 1:
                raise InvalidRequest("Send exactly one part named 'file'.")
            raw = params.get(b"filename", b"").decode("utf-8", "replace")
            state.filename = display_filename(raw)

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state.field_name is not None:
            value = state.fields[state.field_name]
            value += data[start:end]
            if len(value) > FIELD_BYTES:
                raise InvalidRequest(f"Form field {state.field_name!r} is too long.")
            return
        if not state.in_file_part:
            return
        chunk = data[start:end]
        state.file_bytes += len(chunk)
        if state.file_bytes > max_file_bytes:
            raise FileTooLarge(f"The file is larger than the limit of {max_file_bytes} bytes.")
        state.pending.append(chunk)
        state.pending_bytes += len(chunk)

    def on_part_end() -> None:
        state.in_file_part = False
        state.field_name = None

    def on_end() -> None:
        state.ended = True

    return MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_end": on_end,
        },
    )


def _write(handle: BinaryIO, digest: hashlib._Hash, chunks: list[bytes]) -> None:
    data = b"".join(chunks)
    digest.update(data)
    handle.write(data)


def _finish(handle: BinaryIO, digest: hashlib._Hash, chunks: list[bytes]) -> None:
    if chunks:
        _write(handle, digest, chunks)
    handle.flush()
    os.fsync(handle.fileno())


async def receive_file(
    request: Request, temp_path: Path, max_file_bytes: int, deadlines: UploadDeadlines
) -> ReceivedFile:
    """Stream the ``file`` part of ``request`` into ``temp_path``.

    Raises InvalidRequest (not multipart, malformed, no or several ``file`` parts,
    too many parts) or FileTooLarge. The caller owns ``temp_path`` and removes it on
    any error.
    """
    boundary = _boundary(request)
    state = _State()
    parser = _parser(boundary, state, max_file_bytes)

    def feed(chunk: bytes) -> None:
        try:
            parser.write(chunk)
        except MultipartParseError as error:
            raise InvalidRequest(f"Malformed multipart body: {error}") from None

    def end() -> None:
        try:
            parser.finalize()
        except MultipartParseError as error:
            raise InvalidRequest(f"Malformed multipart body: {error}") from None
        if not state.ended:
            # python-multipart's finalize() does not complain about a missing closing
            # boundary: without this check a cut-short body was stored as a whole file.
            raise InvalidRequest("The multipart body is incomplete (no closing boundary).")

    limits = (max_file_bytes, max_file_bytes + MULTIPART_OVERHEAD)
    digest = await _spool(request, temp_path, state, feed, end, limits, deadlines)
    if state.file_parts != 1:
        raise InvalidRequest("Send exactly one part named 'file'.")
    return ReceivedFile(
        path=temp_path,
        filename=state.filename or "upload",
        size_bytes=state.file_bytes,
        sha256=digest.hexdigest(),
        fields={
            name: bytes(value).decode("utf-8", "replace") for name, value in state.fields.items()
        },
    )


async def receive_body(
    request: Request, temp_path: Path, max_bytes: int, deadlines: UploadDeadlines
) -> ReceivedFile:
    """Stream the raw request body (a direct upload's PUT) into ``temp_path``.

    Raises FileTooLarge as soon as more than ``max_bytes`` arrive. The caller owns
    ``temp_path`` and removes it on any error.
    """
    state = _State()

    def feed(chunk: bytes) -> None:
        state.file_bytes += len(chunk)
        if state.file_bytes > max_bytes:
            raise FileTooLarge(f"The body is larger than the {max_bytes} bytes allowed.")
        state.pending.append(chunk)
        state.pending_bytes += len(chunk)

    limits = (max_bytes, max_bytes)
    digest = await _spool(request, temp_path, state, feed, lambda: None, limits, deadlines)
    return ReceivedFile(
        path=temp_path, filename="", size_bytes=state.file_bytes, sha256=digest.hexdigest()
    )


async def _spool(
    request: Request,
    temp_path: Path,
    state: _State,
    feed: Callable[[bytes], None],
    end: Callable[[], None],
    limits: tuple[int, int],
    deadlines: UploadDeadlines,
) -> hashlib._Hash:
    """The one receive loop: the body in, ``feed`` parses it into ``state.pending``,
    which goes to ``temp_path`` in ~1 MiB writes off the event loop; the byte limit
    holds on the bytes that arrive, ``Content-Length`` only refuses early.
    ``limits`` is (file bytes, body bytes)."""
    max_file_bytes, max_body = limits
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_body:
        raise FileTooLarge(f"The file is larger than the limit of {max_file_bytes} bytes.")

    digest = hashlib.sha256()
    body_bytes = 0
    handle = await to_thread.run_sync(temp_path.open, "wb")
    try:
        async for chunk in _paced(request, deadlines):
            body_bytes += len(chunk)
            if body_bytes > max_body:
                raise FileTooLarge(f"The file is larger than the limit of {max_file_bytes} bytes.")
            feed(chunk)
            if state.pending_bytes >= FLUSH_BYTES:
                chunks, state.pending, state.pending_bytes = state.pending, [], 0
                await to_thread.run_sync(_write, handle, digest, chunks)
        end()
        # The last write also fsyncs: a 202 promises the original survives a crash.
        await to_thread.run_sync(_finish, handle, digest, state.pending)
    except ClientDisconnect:
        raise InvalidRequest("The client disconnected during the upload.") from None
    finally:
        with contextlib.suppress(OSError):
            await to_thread.run_sync(handle.close)
    return digest


async def _paced(request: Request, deadlines: UploadDeadlines) -> AsyncIterator[bytes]:
    """The body's chunks, each within the idle deadline and all within the total one."""
    stream = request.stream()
    give_up_at = anyio.current_time() + deadlines.total
    while True:
        left = give_up_at - anyio.current_time()
        with anyio.move_on_after(min(deadlines.idle, left)) as waiting:
            chunk = await anext(stream, None)
        if waiting.cancelled_caught:
            await stream.aclose()
            if left <= deadlines.idle:
                raise UploadTimeout(f"The upload took longer than {deadlines.total:g} s.")
            raise UploadTimeout(f"The upload sent nothing for {deadlines.idle:g} s.")
        if chunk is None:
            return
        yield chunk
