"""Small generated images for API and integration tests."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib

from PIL import Image


def photo(width: int, height: int, fmt: str = "JPEG", mode: str = "RGB") -> bytes:
    """A smooth gradient with some structure: cheap to make, realistic enough to encode."""
    gradient = Image.linear_gradient("L").resize((width, height))
    red = gradient
    green = gradient.transpose(Image.Transpose.ROTATE_90).resize((width, height))
    blue = Image.radial_gradient("L").resize((width, height))
    image = Image.merge("RGB", (red, green, blue))
    if mode == "RGBA":
        image.putalpha(gradient)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def multipart(parts: list[tuple[bytes, bytes]], boundary: bytes = b"imagepipe-test") -> bytes:
    """A raw multipart body from (Content-Disposition value, data) pairs, byte for byte
    as given — httpx would escape the odd filenames some tests need to send."""
    body = b""
    for disposition, data in parts:
        body += b"--" + boundary + b"\r\nContent-Disposition: " + disposition + b"\r\n\r\n"
        body += data + b"\r\n"
    return body + b"--" + boundary + b"--\r\n"


MULTIPART_TYPE = "multipart/form-data; boundary=imagepipe-test"


def original_of(data: bytes, filename: str, width: int, height: int) -> dict[str, object]:
    """The task JSON's ``original`` for a one-frame JPEG upload of ``data``."""
    return {
        "filename": filename,
        "format": "JPEG",
        "width": width,
        "height": height,
        "frames": 1,
        "size_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def tagged_png(png: bytes, tag: str) -> bytes:
    """The same PNG with a text chunk of its own: the same pixels, other bytes (so
    content dedup sees another image), without encoding the pixels again."""
    data = b"imagepipe\0" + tag.encode()
    chunk = struct.pack(">I", len(data)) + b"tEXt" + data
    chunk += struct.pack(">I", zlib.crc32(b"tEXt" + data))
    after_header = 8 + 25  # the signature, then IHDR (13 bytes of data + 12)
    return png[:after_header] + chunk + png[after_header:]
