"""Hostile and broken uploads and ids: a clear 4xx with the error shape, never a 5xx,
never a stack trace, never a byte stored for a refused upload.

tests/api/test_upload.py already covers the basic cases (empty file, text, HTML, PDF,
SVG and EPS named .jpg, missing ``file`` part, byte limit through the ASGI app); this
file covers the rest, partly against a real uvicorn server over raw sockets, where a
client can lie about Content-Length.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import random
import socket
import struct
import threading
import time
import unicodedata
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from PIL import Image

from imagepipe.api.parts import Parts
from imagepipe.config import Settings
from imagepipe.imaging.limits import probe_limiter
from tests.harness.app import run_inline
from tests.harness.processes import ApiProcess
from tests.harness.processes import live_api as live_api_server
from tests.harness.rawhttp import read_response, read_rest, upload_head
from tests.harness.redis import RedisServer
from tests.harness.wait import wait_until
from tests.images import MULTIPART_TYPE, multipart, photo
from tests.imaging import images as hostile
from tests.observe import stored_files

pytestmark = pytest.mark.anyio


# --- crafted files ------------------------------------------------------------------


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_header_only(width: int, height: int, *, extra: bytes = b"") -> bytes:
    """A PNG whose IHDR declares ``width`` x ``height``; no pixel data at all."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + extra + _chunk(b"IEND", b"")


def uniform_png(width: int, height: int) -> bytes:
    """A real, complete greyscale PNG of one colour, streamed (never held decoded)."""
    compressor = zlib.compressobj(6)
    row = bytes(width + 1)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def animated_gif(width: int, height: int, frames: int) -> bytes:
    """A GIF with ``frames`` copies of one frame, written block by block (Pillow's
    encoder would merge identical frames)."""
    buffer = io.BytesIO()
    Image.new("P", (width, height), 1).save(buffer, "GIF")
    data = buffer.getvalue()
    flags = data[10]
    start = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    assert data.endswith(b"\x3b")
    return data[:start] + data[start:-1] * frames + b"\x3b"


def apng_declaring(frames: int, width: int = 100, height: int = 100) -> bytes:
    """An APNG header (acTL) claiming ``frames`` frames; one real image follows."""
    raw = Image.new("RGB", (width, height))
    buffer = io.BytesIO()
    raw.save(buffer, "PNG")
    png = buffer.getvalue()
    actl = _chunk(b"acTL", struct.pack(">II", frames, 0))
    ihdr_end = 8 + 25
    return png[:ihdr_end] + actl + png[ihdr_end:]


def polyglot_jpeg(html: bytes) -> bytes:
    """A valid JPEG carrying an HTML page in a COM (comment) segment."""
    jpeg = photo(400, 300)
    comment = b"\xff\xfe" + struct.pack(">H", len(html) + 2) + html
    return jpeg[:2] + comment + jpeg[2:]


HTML = b"<html><body><script>alert(document.cookie)</script></body></html>"


# --- helpers ------------------------------------------------------------------------


def assert_clean_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text and 'File "' not in response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code and error["message"]
    return error


def assert_refused_and_nothing_kept(
    response: httpx.Response, settings: Settings, parts: Parts, status: int, code: str
) -> dict[str, Any]:
    error = assert_clean_error(response, status, code)
    assert stored_files(settings) == []
    assert parts.queue.depth() == 0
    return error


# --- file contents ------------------------------------------------------------------


NOT_IMAGES = {
    "text": b"hello, world\n",
    "html-bom": b"\xef\xbb\xbf  <!DOCTYPE html><html><script>alert(1)</script></html>",
    "pdf": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<</Type/Catalog>>endobj\ntrailer<<>>\n%%EOF\n",
    "eps": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto\n",
    "eps-dos-binary": b"\xc5\xd0\xd3\xc6" + bytes(26) + b"%!PS-Adobe-3.0 EPSF-3.0\n",
    "svg-xml-prolog": (
        b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)">'
        b"<script>alert(2)</script></svg>"
    ),
    "html-then-jpeg": HTML + photo(40, 30),
    "zip": b"PK\x03\x04" + bytes(40),
}


@pytest.mark.parametrize("kind", sorted(NOT_IMAGES))
@pytest.mark.parametrize(("name", "ctype"), [("x.png", "image/png"), ("x.jpg", "image/jpeg")])
async def test_non_images_renamed_are_415(
    parts: Parts,
    fast_client: httpx.AsyncClient,
    fast_settings: Settings,
    kind: str,
    name: str,
    ctype: str,
) -> None:
    response = await fast_client.post("/upload", files={"file": (name, NOT_IMAGES[kind], ctype)})
    assert_refused_and_nothing_kept(response, fast_settings, parts, 415, "unsupported_media_type")


async def test_zero_byte_png_without_type_is_415(
    parts: Parts, fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    body = multipart([(b'form-data; name="file"; filename="empty.png"', b"")])
    response = await fast_client.post(
        "/upload", content=body, headers={"content-type": MULTIPART_TYPE}
    )
    error = assert_refused_and_nothing_kept(
        response, fast_settings, parts, 415, "unsupported_media_type"
    )
    assert "empty" in error["message"]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (png_header_only(100_000, 100_000), "image_too_large"),  # 10^10 pixels declared
        (png_header_only(1, 100_000_000), "image_too_large"),
        (png_header_only(0, 10), "invalid_image"),
        (uniform_png(12_000, 12_000), "image_too_large"),  # a real 144 MP image, 150 KB
        (animated_gif(1000, 1000, 60), "image_too_large"),  # 60 MP in frames
        (animated_gif(100, 100, 5_001), "image_too_large"),  # 50.01 MP in tiny frames
        (apng_declaring(1_000_000), "image_too_large"),
    ],
    ids=["png-100000x100000", "png-1x10^8", "png-0x10", "png-144MP", "gif-60x1MP",
         "gif-5001-frames", "apng-10^6-frames"],
)  # fmt: skip
async def test_pixel_bombs_are_refused_from_the_header(
    parts: Parts, fast_client: httpx.AsyncClient, fast_settings: Settings, data: bytes, code: str
) -> None:
    response = await fast_client.post("/upload", files={"file": ("bomb.png", data, "image/png")})
    assert_refused_and_nothing_kept(response, fast_settings, parts, 422, code)


def _animated_webp(frames: int) -> bytes:
    # Lossless and all different: libwebp merges frames that encode the same.
    images = [Image.new("RGB", (4, 4), (i % 256, i // 256 * 60, 0)) for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(
        buffer, "WEBP", save_all=True, append_images=images[1:], duration=20, lossless=True
    )
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (hostile.many_page_tiff(30_000), "image_too_large"),  # 30 000 pixels, Pillow: seconds
        (hostile.many_page_tiff(30_000, big=True), "image_too_large"),
        (hostile.many_page_tiff(1_001, size=(10, 10)), "image_too_large"),
        (animated_gif(4, 4, 1_001), "image_too_large"),  # 16 016 pixels
        (apng_declaring(1_001, 4, 4), "image_too_large"),
        (_animated_webp(1_001), "image_too_large"),
        (hostile.png_with_private_chunks(1_000_000), "invalid_image"),  # Pillow: seconds
    ],
    ids=["tiff-30000-pages", "bigtiff-30000-pages", "tiff-1001-pages", "gif-1001-frames",
         "apng-1001-frames", "webp-1001-frames", "png-10^6-chunks"],
)  # fmt: skip
async def test_huge_frame_page_and_chunk_counts_are_refused_from_the_header(
    parts: Parts, fast_client: httpx.AsyncClient, fast_settings: Settings, data: bytes, code: str
) -> None:
    # Each is far under the pixel cap; each would hold a thread while its header is
    # walked. The frame cap and the header budget refuse them after bounded work.
    response = await fast_client.post("/upload", files={"file": ("x.bin", data)})
    assert_refused_and_nothing_kept(response, fast_settings, parts, 422, code)


def _encoded(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "name",
    ["grey16-png", "grey16-tiff", "rgb16-png", "rgba16-png", "cmyk-jpeg", "huge-icc-jpeg",
     "tiff-1000-pages"],
)  # fmt: skip
async def test_memory_heavy_pixel_formats_render(
    fast_client: httpx.AsyncClient, fast_settings: Settings, name: str
) -> None:
    # Deep or wide pixels: each decodes to more bytes per pixel than a JPEG; the worker
    # shrinks before widening and ignores absurd profiles (bench/memory.py: peaks).
    size = (1500, 1000)
    make = {
        "grey16-png": lambda: _encoded(hostile.grey16(size), "PNG"),
        "grey16-tiff": lambda: _encoded(hostile.grey16(size), "TIFF"),
        "rgb16-png": lambda: hostile.png16(size, alpha=False),
        "rgba16-png": lambda: hostile.png16(size, alpha=True),
        "cmyk-jpeg": lambda: _encoded(hostile.photo(size).convert("CMYK"), "JPEG"),
        "huge-icc-jpeg": lambda: _encoded(
            hostile.photo(size),
            "JPEG",
            icc_profile=hostile.adobe_rgb_like_profile(padding=8 * 2**20),
        ),
        "tiff-1000-pages": lambda: hostile.many_page_tiff(1_000, size=(100, 80)),
    }
    response = await fast_client.post("/upload", files={"file": ("x.bin", make[name]())})
    assert response.status_code == 202, response.text
    task_id = response.json()["task_id"]
    assert run_inline(fast_settings, task_id).value == "succeeded"
    variants = (await fast_client.get(f"/tasks/{task_id}")).json()["variants"]
    assert sorted(variants) == ["large", "medium", "small"]


async def test_header_probes_wait_for_their_own_limiter(
    fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    # Every probe token is taken: an upload waits for one (not for the shared thread
    # pool), and goes through once a token is given back.
    limiter = probe_limiter(fast_settings.probe_concurrency)
    assert limiter.total_tokens == fast_settings.probe_concurrency
    holders = [object() for _ in range(fast_settings.probe_concurrency)]
    for holder in holders:
        await limiter.acquire_on_behalf_of(holder)
    responses: list[httpx.Response] = []

    async def upload() -> None:
        responses.append(
            await fast_client.post("/upload", files={"file": ("a.jpg", photo(64, 48))})
        )

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(upload)
            with anyio.fail_after(30):
                while limiter.statistics().tasks_waiting < 1:  # noqa: ASYNC110 (no event to wait on)
                    await anyio.sleep(0.01)
            assert responses == []
            for holder in holders:
                limiter.release_on_behalf_of(holder)
            holders = []
    finally:
        for holder in holders:
            limiter.release_on_behalf_of(holder)
    assert responses[0].status_code == 202, responses[0].text


async def test_frames_up_to_the_cap_are_accepted(
    fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    response = await fast_client.post(
        "/upload", files={"file": ("ok.gif", animated_gif(1000, 1000, 50))}
    )
    assert response.status_code == 202, response.text
    assert run_inline(fast_settings, response.json()["task_id"]).value == "succeeded"


DECODE_FAILURES = {
    "The image could not be decoded.",
    "The animation could not be decoded.",
    "The frame structure cannot be parsed.",
}


@pytest.mark.parametrize(
    "data",
    [
        photo(1200, 900, "PNG")[:5000],
        photo(1200, 900, "GIF")[:3000],
        photo(1200, 900, "WEBP")[:2000],
        photo(1200, 900)[:800],  # cut inside the entropy-coded data of the first rows
    ],
    ids=["png", "gif", "webp", "jpeg"],
)
async def test_truncated_images_fail_invalid_image(
    parts: Parts, fast_client: httpx.AsyncClient, fast_settings: Settings, data: bytes
) -> None:
    """Refused at upload when the header alone shows it (WebP's decoder wants the whole
    file to open), otherwise accepted and failed by the worker: invalid_image either way."""
    response = await fast_client.post("/upload", files={"file": ("cut", data)})
    if response.status_code == 422:
        assert_refused_and_nothing_kept(response, fast_settings, parts, 422, "invalid_image")
        return
    assert response.status_code == 202, response.text
    task_id = response.json()["task_id"]
    assert run_inline(fast_settings, task_id).value == "failed"
    status = (await fast_client.get(f"/tasks/{task_id}")).json()
    assert status["status"] == "failed" and status["variants"] == {}
    assert status["error"]["code"] == "invalid_image"
    # Our fixed words, never the decoder's ("image file is truncated (5 bytes not
    # processed)", "broken data stream when reading image file", ...).
    assert status["error"]["message"] in DECODE_FAILURES, status


async def test_polyglot_jpeg_is_served_only_as_an_image(
    fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    data = polyglot_jpeg(HTML)
    response = await fast_client.post("/upload", files={"file": ("page.html", data, "text/html")})
    assert response.status_code == 202, response.text
    task_id = response.json()["task_id"]
    assert run_inline(fast_settings, task_id).value == "succeeded"
    status = (await fast_client.get(f"/tasks/{task_id}")).json()
    assert status["original"]["format"] == "JPEG"
    for variant in status["variants"].values():
        served = await fast_client.get(variant["url"])
        assert served.status_code == 200
        assert served.headers["content-type"] == "image/jpeg"
        assert served.headers["x-content-type-options"] == "nosniff"
        assert served.content.startswith(b"\xff\xd8")
        assert b"<script" not in served.content and b"<html" not in served.content
        assert b"\xff\xfe" not in served.content[:200]  # no comment segment at all
    # The original (HTML inside) is never served by any route.
    assert (await fast_client.get(f"/tasks/{task_id}/variants/original")).status_code == 404


FILENAMES = [
    b"../../../../etc/passwd.jpg",
    b"/absolute/path/cat.jpg",
    b"C:\\Windows\\System32\\cat.jpg",
    b"..%2F..%2Fcat.jpg",
    b"..",
    b".",
    b"",
    "\u202egpj.exe".encode(),  # right-to-left override: shows as "exe.jpg"
    "e\u0301\u00e9 \U0001f431 \u732b.jpg".encode(),
    b"a\x00b\r\nX-Injected: 1.jpg",
    b"\xff\xfe\xfd.jpg",  # not UTF-8
    ("\u00e9" * 2000 + ".jpg").encode(),
]


@pytest.mark.parametrize("raw", FILENAMES, ids=range(len(FILENAMES)))
async def test_hostile_filenames_are_display_only(
    fast_client: httpx.AsyncClient, fast_settings: Settings, raw: bytes
) -> None:
    body = multipart([(b'form-data; name="file"; filename="' + raw + b'"', photo(40, 30))])
    response = await fast_client.post(
        "/upload", content=body, headers={"content-type": MULTIPART_TYPE}
    )
    assert response.status_code == 202, response.text
    task_id = response.json()["task_id"]
    shown = (await fast_client.get(f"/tasks/{task_id}")).json()["original"]["filename"]
    assert shown and len(shown) <= 255
    assert "/" not in shown and "\\" not in shown
    assert not any(unicodedata.category(ch).startswith("C") for ch in shown)
    assert shown == unicodedata.normalize("NFC", shown)
    assert stored_files(fast_settings) == [f"originals/{task_id}"]


async def test_rfc5987_filename_is_accepted(
    fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    disposition = b"form-data; name=\"file\"; filename*=UTF-8''%E2%82%AC%2F..%2Fx.jpg"
    body = multipart([(disposition, photo(40, 30))])
    response = await fast_client.post(
        "/upload", content=body, headers={"content-type": MULTIPART_TYPE}
    )
    assert response.status_code == 202, response.text
    assert len(stored_files(fast_settings)) == 1


# --- the multipart envelope -------------------------------------------------------


def _part(name: bytes, data: bytes, filename: bytes | None = None) -> tuple[bytes, bytes]:
    disposition = b'form-data; name="' + name + b'"'
    if filename is not None:
        disposition += b'; filename="' + filename + b'"'
    return disposition, data


ENVELOPES: dict[str, tuple[bytes, str]] = {
    "thousands-of-parts": (
        multipart([_part(b"f%d" % i, b"x") for i in range(5000)] + [_part(b"file", b"x", b"a")]),
        MULTIPART_TYPE,
    ),
    "thousands-of-file-parts": (
        multipart([_part(b"file", photo(8, 8), b"a.jpg")] * 2000),
        MULTIPART_TYPE,
    ),
    "two-file-parts": (
        multipart([_part(b"file", photo(8, 8), b"a.jpg")] * 2),
        MULTIPART_TYPE,
    ),
    "empty-form": (b"--imagepipe-test--\r\n", MULTIPART_TYPE),
    "empty-body": (b"", MULTIPART_TYPE),
    "no-boundary-param": (multipart([_part(b"file", b"x", b"a")]), "multipart/form-data"),
    "wrong-boundary": (multipart([_part(b"file", b"x", b"a")]), MULTIPART_TYPE + "-other"),
    "multipart-mixed": (
        multipart([_part(b"file", b"x", b"a")]),
        "multipart/mixed; boundary=imagepipe-test",
    ),
    "urlencoded": (b"file=abc", "application/x-www-form-urlencoded"),
    "json": (b'{"file": "abc"}', "application/json"),
    "no-closing-boundary": (
        multipart([_part(b"file", photo(200, 150), b"a.jpg")])[: -len("--imagepipe-test--\r\n")],
        MULTIPART_TYPE,
    ),
    "cut-inside-the-file": (
        multipart([_part(b"file", photo(200, 150), b"a.jpg")])[:3000],
        MULTIPART_TYPE,
    ),
}


@pytest.mark.parametrize("case", sorted(ENVELOPES))
async def test_malformed_multipart_is_400(
    parts: Parts, fast_client: httpx.AsyncClient, fast_settings: Settings, case: str
) -> None:
    body, content_type = ENVELOPES[case]
    response = await fast_client.post(
        "/upload", content=body, headers={"content-type": content_type}
    )
    assert_refused_and_nothing_kept(response, fast_settings, parts, 400, "invalid_request")


async def test_no_content_type_is_400(
    parts: Parts, fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    request = fast_client.build_request("POST", "/upload", content=b"abc")
    assert "content-type" not in request.headers
    response = await fast_client.send(request)
    assert_refused_and_nothing_kept(response, fast_settings, parts, 400, "invalid_request")


# --- ids and query strings ------------------------------------------------------------


BAD_IDS = [
    "x" * 10_000,
    "\u732b",
    "..%2F..%2Foriginals",
    "{" + str(uuid.uuid4()) + "}",
    "urn:uuid:" + str(uuid.uuid4()),
    str(uuid.uuid4()).upper(),
    "00000000-0000-0000-0000-000000000000",
    "%ff%fe",
    " ",
]


@pytest.mark.parametrize("task_id", BAD_IDS, ids=range(len(BAD_IDS)))
async def test_unknown_and_malformed_ids_never_5xx(
    fast_client: httpx.AsyncClient, task_id: str
) -> None:
    for method, path in [
        ("GET", f"/tasks/{task_id}"),
        ("HEAD", f"/tasks/{task_id}/variants/small"),
        ("DELETE", f"/tasks/{task_id}"),
        ("GET", f"/tasks/{task_id}/variants/small"),
    ]:
        response = await fast_client.request(method, path)
        assert response.status_code in (404, 422), (method, path, response.status_code)
        if method != "HEAD":
            assert_clean_error(response, response.status_code, response.json()["error"]["code"])


async def test_variant_names_cannot_reach_other_files(
    fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    response = await fast_client.post("/upload", files={"file": ("a.jpg", photo(300, 200))})
    task_id = response.json()["task_id"]
    assert run_inline(fast_settings, task_id).value == "succeeded"
    for name in [
        f"..%2F..%2Foriginals%2F{task_id}",
        "%2e%2e",
        "small.gif",  # small.jpg is the JPEG of small; .gif is no stored format
        "small.jpg%2F..",
        "small%00",
        "SMALL",
        "__class__",
        "x" * 5000,
    ]:
        response = await fast_client.get(f"/tasks/{task_id}/variants/{name}")
        assert response.status_code == 404, (name, response.status_code)
        assert_clean_error(response, 404, response.json()["error"]["code"])


@pytest.mark.parametrize(
    "params",
    [
        {"status": "bogus"},
        {"limit": "-1"},
        {"limit": "1" + "0" * 40},
        {"limit": "NaN"},
        {"cursor": "!!!"},
        {"cursor": "A" * 10_000},
        {"cursor": "bm90IGEgY3Vyc29y"},  # base64 of "not a cursor"
    ],
)
async def test_bad_list_parameters_are_4xx(
    fast_any_db_client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    response = await fast_any_db_client.get("/tasks", params=params)
    assert response.status_code in (400, 422), response.text
    assert_clean_error(response, response.status_code, "invalid_request")


@pytest.mark.parametrize(
    "created",
    ["2020-01-01T00:00:00", "2020-01-01T00:00:00+14:00", "0001-01-01T00:00:00+00:00",
     "9999-12-31T23:59:59.999999-23:59"],
)  # fmt: skip
async def test_odd_cursors_never_5xx(
    fast_any_db_client: httpx.AsyncClient, created: str, request: pytest.FixtureRequest
) -> None:
    raw = f"{created}|{uuid.uuid4()}".encode()
    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    response = await fast_any_db_client.get("/tasks", params={"cursor": cursor})
    assert response.status_code in (200, 400), response.text
    assert "Traceback" not in response.text


# --- over a real socket: lying Content-Length, chunked bodies --------------------------

LIVE_LIMIT = 100_000


@pytest.fixture(scope="module")
def live_api(
    tmp_path_factory: pytest.TempPathFactory, shared_redis: RedisServer
) -> Iterator[tuple[ApiProcess, Settings]]:
    directory = tmp_path_factory.mktemp("live-api")
    with live_api_server(directory, shared_redis.url, max_upload_bytes=LIVE_LIMIT) as server:
        assert server.settings is not None
        yield server, server.settings


def check_live_server_clean(server: ApiProcess, settings: Settings) -> None:
    # A request whose connection was cut may still be cleaning up its temp file.
    wait_until(lambda: stored_files(settings) == [], within=10, what="nothing stored")
    with server.client() as client:
        assert client.get("/healthz").status_code == 200  # still serving
    assert "Traceback" not in server.output()


def noise_png(width: int, height: int) -> bytes:
    """An incompressible (so large) but valid PNG: its header is intact in any prefix."""
    pixels = random.Random(0).randbytes(width * height * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (width, height), pixels).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


BIG_UPLOAD = multipart([_part(b"file", noise_png(400, 400), b"big.png")])  # ~480 KB


def test_false_small_content_length_is_never_accepted(
    live_api: tuple[ApiProcess, Settings],
) -> None:
    server, settings = live_api
    assert len(BIG_UPLOAD) > 3 * LIVE_LIMIT
    declared = 40_000  # the server reads this much and takes it for the whole body
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(upload_head(f"Content-Length: {declared}") + BIG_UPLOAD[:declared])
        status, headers, body = read_response(sock)
        # A cut-short body is refused, never stored as if whole.
        assert status == 400, body
        assert json.loads(body)["error"]["code"] == "invalid_request"
        assert headers["x-content-type-options"] == "nosniff"
        # The rest of the body arrives as garbage "requests": the server answers 4xx
        # (or just closes); nothing from it reaches the app.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(BIG_UPLOAD[declared:])
        rest = read_rest(sock)
    assert not rest or rest.startswith(b"HTTP/1.1 4"), rest[:200]
    check_live_server_clean(server, settings)


def test_false_content_length_in_one_send_never_5xx(
    live_api: tuple[ApiProcess, Settings],
) -> None:
    server, settings = live_api
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(upload_head("Content-Length: 300") + BIG_UPLOAD)
        answer = read_rest(sock)
    statuses = [int(line.split()[1]) for line in answer.split(b"\r\n") if line[:9] == b"HTTP/1.1 "]
    assert statuses and all(400 <= s < 500 for s in statuses), answer[:500]
    check_live_server_clean(server, settings)


def test_chunked_body_over_the_limit_is_413_while_streaming(
    live_api: tuple[ApiProcess, Settings],
) -> None:
    server, settings = live_api
    failures: list[BaseException] = []
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(upload_head("Transfer-Encoding: chunked"))

        def send_chunks() -> None:
            try:
                for start in range(0, len(BIG_UPLOAD), 16_384):
                    piece = BIG_UPLOAD[start : start + 16_384]
                    sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
                sock.sendall(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server stopped listening: that is the point
            except BaseException as error:
                failures.append(error)

        sender = threading.Thread(target=send_chunks)
        sender.start()
        status, _, body = read_response(sock)
        sender.join(30)
    assert not failures and not sender.is_alive()
    assert status == 413, body
    assert json.loads(body)["error"]["code"] == "file_too_large"
    check_live_server_clean(server, settings)


def test_huge_declared_length_is_refused_before_the_body(
    live_api: tuple[ApiProcess, Settings],
) -> None:
    server, settings = live_api
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(upload_head("Content-Length: 10000000000"))  # 10 GB, never sent
        status, _, body = read_response(sock, timeout=5)
    assert status == 413
    assert json.loads(body)["error"]["code"] == "file_too_large"
    check_live_server_clean(server, settings)


def test_slow_partial_upload_then_disconnect_leaves_nothing(
    live_api: tuple[ApiProcess, Settings],
) -> None:
    server, settings = live_api
    small = multipart([_part(b"file", photo(300, 200), b"a.jpg")])
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(upload_head(f"Content-Length: {len(small)}") + small[: len(small) // 2])
        time.sleep(0.3)  # the server has started streaming it into a temp file
        # The client goes away mid-body.
    time.sleep(0.3)
    check_live_server_clean(server, settings)


def test_binary_garbage_request_never_5xx(live_api: tuple[ApiProcess, Settings]) -> None:
    server, settings = live_api
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(os.urandom(4096))
        answer = read_rest(sock)
    assert not answer or answer.startswith(b"HTTP/1.1 4"), answer[:200]
    check_live_server_clean(server, settings)


def test_paths_outside_the_api_are_404_with_the_error_shape(
    live_api: tuple[ApiProcess, Settings],
) -> None:
    server, _ = live_api
    with server.client() as client:
        for path in ["/../../etc/passwd", "/static/../../config.py", "/%2e%2e/%2e%2e/etc/passwd"]:
            response = client.get(path)
            assert response.status_code == 404, (path, response.status_code)
            assert "root:" not in response.text
