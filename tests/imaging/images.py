"""Generated test images: every file the imaging tests need, made here, none checked in."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageCms, ImageDraw

RED = (255, 0, 0)
GREEN = (0, 255, 0)
WHITE = (255, 255, 255)

# --------------------------------------------------------------------------- pixels


def photo(size: tuple[int, int], *, seed: int = 0) -> Image.Image:
    """Smooth colour gradients plus grain: resampling behaves as on a photo."""
    width, height = size
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    rgb = np.stack([60 + 150 * x + 0 * y, 40 + 170 * y + 0 * x, 200 - 120 * x * y], axis=2)
    rgb += rng.normal(0, 6, rgb.shape).astype(np.float32)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def with_markers(size: tuple[int, int]) -> Image.Image:
    """White image, red square top-left and green square top-right, as displayed."""
    image = Image.new("RGB", size, WHITE)
    side = min(size) // 4
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, side - 1, side - 1), fill=RED)
    draw.rectangle((size[0] - side, 0, size[0] - 1, side - 1), fill=GREEN)
    return image


# Stored pixels = inverse of the transform a viewer applies for each EXIF orientation.
_STORE_FOR_ORIENTATION = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,  # viewer rotates 270 (90 clockwise)
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def oriented_jpeg(path: Path, orientation: int, displayed: tuple[int, int]) -> Path:
    """A JPEG that *displays* as ``with_markers(displayed)`` under its EXIF orientation."""
    image = with_markers(displayed)
    transpose = _STORE_FOR_ORIENTATION[orientation]
    stored = image if transpose is None else image.transpose(transpose)
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(path, "JPEG", quality=95, exif=exif.tobytes())
    return path


def jpeg_with_metadata(path: Path, size: tuple[int, int] = (320, 240)) -> Path:
    """A JPEG carrying EXIF (camera, GPS position), XMP, a comment and an sRGB profile."""
    exif = Image.Exif()
    exif[0x010F] = "TestCam"  # Make
    exif[0x0110] = "Model 1"  # Model
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (48.0, 51.0, 29.0)
    gps[3] = "E"
    gps[4] = (2.0, 17.0, 40.0)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><secret>xmp-payload</secret></x:xmpmeta>'
    photo(size).save(
        path, "JPEG", exif=exif.tobytes(), icc_profile=srgb, xmp=xmp, comment=b"secret comment"
    )
    return path


# --------------------------------------------------------------------------- colour


def cmyk_image(size: tuple[int, int] = (64, 48)) -> Image.Image:
    """White CMYK (no ink) with a red patch (magenta + yellow) on the left half."""
    image = Image.new("CMYK", size, (0, 0, 0, 0))
    ImageDraw.Draw(image).rectangle((0, 0, size[0] // 2 - 1, size[1] - 1), fill=(0, 255, 255, 0))
    return image


def adobe_cmyk_jpeg(path: Path) -> Path:
    """CMYK JPEG as Photoshop writes it: inverted values and an Adobe APP14 marker.

    (Pillow writes CMYK JPEGs this way too.)
    """
    cmyk_image().save(path, "JPEG", quality=95)
    assert _has_adobe_marker(path.read_bytes())
    return path


def plain_cmyk_jpeg(path: Path) -> Path:
    """CMYK JPEG without an Adobe marker, storing plain (non-inverted) ink values."""
    buffer = io.BytesIO()
    # Pillow inverts CMYK on save; saving the inverse stores the plain values.
    ImageChops.invert(cmyk_image()).save(buffer, "JPEG", quality=95)
    path.write_bytes(_without_adobe_marker(buffer.getvalue()))
    return path


def _has_adobe_marker(data: bytes) -> bool:
    return any(marker == 0xEE and body.startswith(b"Adobe") for marker, body in _segments(data))


def _without_adobe_marker(data: bytes) -> bytes:
    out = bytearray(b"\xff\xd8")
    position = 2
    for marker, body in _segments(data):
        length = len(body) + 2
        if not (marker == 0xEE and body.startswith(b"Adobe")):
            out += bytes([0xFF, marker]) + struct.pack(">H", length) + body
        position += 2 + length
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            break
    return bytes(out) + data[position:]


def _segments(data: bytes) -> list[tuple[int, bytes]]:
    """(marker, body) of each header segment of a JPEG, up to and including SOS."""
    segments = []
    position = 2
    while position < len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        segments.append((marker, data[position + 4 : position + 2 + length]))
        position += 2 + length
        if marker == 0xDA:
            break
    return segments


ADOBE_RGB_PRIMARIES = ((0.6097, 0.3111, 0.0195), (0.2053, 0.6257, 0.0609), (0.1492, 0.0632, 0.7446))
# Display P3 (what iPhones tag their photos with), D50-adapted colorants.
DISPLAY_P3_PRIMARIES = (
    (0.5151, 0.2412, -0.0011),
    (0.2920, 0.6922, 0.0419),
    (0.1571, 0.0666, 0.7841),
)


def display_p3_like_profile() -> bytes:
    """A matrix/TRC profile with Display P3 primaries (gamma 2.2 for the sRGB curve)."""
    return adobe_rgb_like_profile(name="Display P3-like", primaries=DISPLAY_P3_PRIMARIES)


def adobe_rgb_like_profile(
    *,
    padding: int = 0,
    name: str = "Adobe RGB-like",
    primaries: tuple[tuple[float, float, float], ...] = ADOBE_RGB_PRIMARIES,
) -> bytes:
    """A matrix/TRC ICC v2 profile with Adobe RGB (1998) primaries and gamma 2.2.

    ImageCms can only create sRGB, LAB and XYZ profiles; this one is built by hand.
    ``padding`` adds a private tag of that many bytes (colour management ignores it):
    a valid profile of any size.
    """
    d50 = (0.9642, 1.0, 0.8249)
    tags = {
        b"desc": _desc(f"{name} (imagepipe tests)"),
        b"cprt": b"text\0\0\0\0" + b"No copyright, test data\0",
        b"wtpt": _xyz(d50),
        b"rXYZ": _xyz(primaries[0]),
        b"gXYZ": _xyz(primaries[1]),
        b"bXYZ": _xyz(primaries[2]),
        b"rTRC": _gamma(2.2),
        b"gTRC": _gamma(2.2),
        b"bTRC": _gamma(2.2),
    }
    if padding:
        tags[b"zzzz"] = b"zzzz\0\0\0\0" + bytes(padding)
    table = b""
    data = b""
    offset = 128 + 4 + 12 * len(tags)
    for signature, body in tags.items():
        body += b"\0" * (-len(body) % 4)
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = (
        struct.pack(">I", size)
        + b"\0\0\0\0"  # preferred CMM
        + struct.pack(">I", 0x02100000)  # version 2.1
        + b"mntrRGB XYZ "
        + struct.pack(">6H", 2024, 1, 1, 0, 0, 0)
        + b"acsp"
        + b"\0" * 24  # platform, flags, manufacturer, model, attributes
        + struct.pack(">I", 0)  # rendering intent
        + _s15(d50)
        + b"\0" * 48  # creator, profile id, reserved
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + data


def _s15(values: tuple[float, float, float]) -> bytes:
    return b"".join(struct.pack(">i", round(v * 65536)) for v in values)


def _xyz(values: tuple[float, float, float]) -> bytes:
    return b"XYZ \0\0\0\0" + _s15(values)


def _gamma(value: float) -> bytes:
    return b"curv\0\0\0\0" + struct.pack(">IH", 1, round(value * 256)) + b"\0\0"


def _desc(text: str) -> bytes:
    ascii_text = text.encode("ascii") + b"\0"
    return (
        b"desc\0\0\0\0"
        + struct.pack(">I", len(ascii_text))
        + ascii_text
        + struct.pack(">II", 0, 0)  # Unicode language code, count
        + struct.pack(">HB", 0, 0)  # ScriptCode code, count
        + b"\0" * 67
    )


# --------------------------------------------------------------------------- files


def animated(
    path: Path, durations: list[int], size: tuple[int, int] = (320, 240), fmt: str = "GIF"
) -> Path:
    """An animation whose frame i shows a white square at a position of its own."""
    frames = []
    for index in range(len(durations)):
        frame = Image.new("RGB", size, (20 * index % 256, 80, 160))
        side = size[1] // 4
        left = index * side % (size[0] - side)
        ImageDraw.Draw(frame).rectangle((left, 0, left + side - 1, side - 1), fill=WHITE)
        frames.append(frame)
    extra = {"lossless": True} if fmt == "WEBP" else {}
    frames[0].save(
        path, fmt, save_all=True, append_images=frames[1:], duration=durations, loop=0, **extra
    )
    return path


def save(image: Image.Image, path: Path, **params: object) -> Path:
    image.save(path, **params)  # type: ignore[arg-type]
    return path


def animated_gif(path: Path, frames: int, size: tuple[int, int] = (40, 30)) -> Path:
    """An animated GIF: frame 0 is red, every later frame differs (so none is merged)."""
    images = [Image.new("RGB", size, RED)]
    for index in range(1, frames):
        frame = Image.new("RGB", size, (0, 0, 255))
        frame.putpixel((index % size[0], (index // size[0]) % size[1]), WHITE)
        images.append(frame)
    images[0].save(path, save_all=True, append_images=images[1:], duration=40, loop=0)
    return path


GIF_COLOURS = (WHITE, RED, GREEN, (0, 0, 255))  # the global colour table of gif_with_frames


def gif_with_frames(
    screen: tuple[int, int], frames: list[tuple[int, int, int, int]], *, loop: bool = True
) -> bytes:
    """An animated GIF of a ``screen`` logical screen whose frame i covers the rectangle
    (left, top, width, height) ``frames[i]`` in one colour, ``GIF_COLOURS[1 + i % 3]``.

    Written by hand, so a frame may reach past the screen (Pillow then grows the
    canvas), and a 9000x9000 frame of one colour takes about 70 KB and no memory.
    """
    out = bytearray(b"GIF89a" + struct.pack("<HH", *screen) + bytes([0x81, 0, 0]))
    out += b"".join(bytes(colour) for colour in GIF_COLOURS)  # 4 colours: flags & 7 == 1
    if loop:
        out += b"!\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    for index, (left, top, width, height) in enumerate(frames):
        out += b"!\xf9\x04\x00\x0a\x00\x00\x00"  # graphic control: 100 ms
        out += b"," + struct.pack("<HHHHB", left, top, width, height, 0)
        out += _lzw_one_colour(1 + index % 3, width * height, min_code_size=2)
    return bytes(out + b";")


def _lzw_one_colour(index: int, pixels: int, *, min_code_size: int) -> bytes:
    """GIF LZW data for ``pixels`` pixels of colour ``index``, in sub-blocks.

    One colour makes the table a chain: the n-th code after a clear stands for n
    pixels, so k codes cover k(k+1)/2 pixels. The table is cleared after 3000 codes,
    before it fills, so no decoder's full-table rule is involved.
    """
    clear = 1 << min_code_size
    end = clear + 1
    packed = bytearray()
    bits = width = 0
    pending = 0

    def emit(code: int) -> None:
        nonlocal bits, pending
        pending |= code << bits
        bits += width
        while bits >= 8:
            packed.append(pending & 0xFF)
            pending >>= 8
            bits -= 8

    width = min_code_size + 1
    emit(clear)
    codes = 0  # since the last clear
    left = pixels
    while left:
        run = min(codes + 1, left)
        emit(index if run == 1 else end + run - 1)
        left -= run
        codes += 1
        if end + codes >= 1 << width and width < 12:
            width += 1  # as the decoder widens on reading this code
        if codes == 3000 and left:
            emit(clear)
            width, codes = min_code_size + 1, 0
    emit(end)
    if bits:
        packed.append(pending & 0xFF)
    blocks = bytearray([min_code_size])
    for start in range(0, len(packed), 255):
        chunk = packed[start : start + 255]
        blocks += bytes([len(chunk)]) + chunk
    return bytes(blocks + b"\0")


def png_bytes(width: int, height: int, *, ihdr_crc_ok: bool = True) -> bytes:
    """A PNG with an arbitrary declared size and a tiny IDAT: the header is all that counts."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    crc = zlib.crc32(b"IHDR" + ihdr)
    if not ihdr_crc_ok:
        crc ^= 0xFFFFFFFF
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk_raw(b"IHDR", ihdr, crc)
        + _chunk(b"IDAT", zlib.compress(b"\0" * 4))
        + _chunk(b"IEND", b"")
    )


def png_truncated_ihdr() -> bytes:
    """A PNG signature, then an IHDR chunk that declares 5 bytes instead of 13."""
    body = struct.pack(">IB", 64, 8)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", body) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, body: bytes) -> bytes:
    return _chunk_raw(kind, body, zlib.crc32(kind + body))


def _chunk_raw(kind: bytes, body: bytes, crc: int) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc & 0xFFFFFFFF)


def png_chunks(data: bytes) -> list[bytes]:
    """Chunk types of a PNG file, in order."""
    kinds = []
    position = 8
    while position + 8 <= len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kinds.append(data[position + 4 : position + 8])
        position += 12 + length
    return kinds


# --------------------------------------------------------------------------- hostile


def many_page_tiff(
    pages: int, *, size: tuple[int, int] = (1, 1), big: bool = False, loop: bool = False
) -> bytes:
    """A greyscale TIFF (or BigTIFF) of ``pages`` uncompressed pages sharing one strip.

    Written by hand: Pillow would take minutes to write tens of thousands of pages.
    ``loop`` points the last page back at the first.
    """
    width, height = size
    strip = bytes(range(256)) * (width * height // 256 + 1)
    strip = strip[: width * height]
    header_size = 16 if big else 8
    first = header_size + len(strip) + len(strip) % 2
    fields = [  # (tag, value); all unsigned integers
        (256, width),  # ImageWidth
        (257, height),  # ImageLength
        (258, 8),  # BitsPerSample
        (259, 1),  # Compression: none
        (262, 1),  # PhotometricInterpretation: BlackIsZero
        (273, header_size),  # StripOffsets
        (277, 1),  # SamplesPerPixel
        (278, height),  # RowsPerStrip
        (279, width * height),  # StripByteCounts
    ]
    if big:
        entries = b"".join(struct.pack("<HHQQ", tag, 16, 1, value) for tag, value in fields)
        ifd_size = 8 + len(entries) + 8
        header = b"II+\0" + struct.pack("<HHQ", 8, 0, first)
    else:
        entries = b"".join(struct.pack("<HHII", tag, 4, 1, value) for tag, value in fields)
        ifd_size = 2 + len(entries) + 4
        header = b"II*\0" + struct.pack("<I", first)
    out = bytearray(header + strip + bytes(first - header_size - len(strip)))
    for page in range(pages):
        offset = first + page * ifd_size
        following = offset + ifd_size if page + 1 < pages else (first if loop else 0)
        if big:
            out += struct.pack("<Q", len(fields)) + entries + struct.pack("<Q", following)
        else:
            out += struct.pack("<H", len(fields)) + entries + struct.pack("<I", following)
    return bytes(out)


def hopping_page_tiff(pages: int, *, regions: int, region_bytes: int) -> bytes:
    """A TIFF of ``pages`` 1x1 pages whose page chain hops between ``regions`` regions
    of ``region_bytes`` each: page i's directory is in region i % regions. Each hop is
    ``region_bytes`` or more from the last, so a reader that keeps one block of a
    smaller size fetches a block per page.
    """
    fields = [  # (tag, value): a 1x1 greyscale page, its one byte at offset 8
        (256, 1), (257, 1), (258, 8), (259, 1), (262, 1), (273, 8), (277, 1), (278, 1), (279, 1)
    ]  # fmt: skip
    entries = b"".join(struct.pack("<HHII", tag, 4, 1, value) for tag, value in fields)
    ifd_size = 2 + len(entries) + 4
    used = [0] * regions
    offsets = []
    for page in range(pages):
        region = page % regions
        offsets.append(region * region_bytes + 16 + used[region] * ifd_size)
        used[region] += 1
    if 16 + max(used) * ifd_size > region_bytes:
        raise ValueError("the regions are too small for the pages")
    out = bytearray(regions * region_bytes)
    out[:8] = b"II*\0" + struct.pack("<I", offsets[0])
    for page, offset in enumerate(offsets):
        following = offsets[page + 1] if page + 1 < pages else 0
        out[offset : offset + ifd_size] = (
            struct.pack("<H", len(fields)) + entries + struct.pack("<I", following)
        )
    return bytes(out)


def gif_of_one_byte_sub_blocks(sub_blocks: int) -> bytes:
    """A valid 1x1 GIF whose one frame's data is ``sub_blocks`` sub-blocks of one byte:
    a frame walk takes a step per sub-block (the first code is a clear, the rest is
    ignored after the end code)."""
    header = b"GIF89a" + struct.pack("<HH", 1, 1) + bytes([0x80, 0, 0]) + bytes(6)
    lzw = bytes([2, 1, 0x4C, 1, 0x01]) + b"\x01\x00" * (sub_blocks - 2) + b"\0"
    return header + b"," + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + lzw + b";"


def webp_with_oversized_frame() -> bytes:
    """A 10x10 animated WebP whose second frame (ANMF) holds a 1000x1000 image."""
    frames = [Image.new("RGB", (10, 10), colour) for colour in (RED, GREEN)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    chunks = _riff_chunks(buffer.getvalue())
    big = io.BytesIO()
    Image.new("RGB", (1000, 1000), WHITE).save(big, "WEBP", lossless=True)
    (bitstream,) = [body for kind, body in _riff_chunks(big.getvalue()) if kind == b"VP8L"]
    second = [index for index, (kind, _) in enumerate(chunks) if kind == b"ANMF"][1]
    header = bytearray(chunks[second][1][:16])  # x, y, width - 1, height - 1 (24 bits each)
    header[6:12] = (999).to_bytes(3, "little") * 2
    chunks[second] = (b"ANMF", bytes(header) + _riff_chunk(b"VP8L", bitstream))
    body = b"".join(_riff_chunk(kind, data) for kind, data in chunks)
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def _riff_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, position = [], 12
    while position + 8 <= len(data):
        kind = data[position : position + 4]
        (size,) = struct.unpack("<I", data[position + 4 : position + 8])
        chunks.append((kind, data[position + 8 : position + 8 + size]))
        position += 8 + size + (size & 1)
    return chunks


def _riff_chunk(kind: bytes, data: bytes) -> bytes:
    return kind + struct.pack("<I", len(data)) + data + b"\0" * (len(data) & 1)


def apng_with_oversized_frame() -> bytes:
    """A 10x10 APNG whose second frame control (fcTL) declares 1000x1000."""
    frames = [Image.new("RGB", (10, 10), colour) for colour in (RED, GREEN)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "PNG", save_all=True, append_images=frames[1:])
    data = buffer.getvalue()
    chunks, position = [], 8
    while position + 8 <= len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        body = data[position + 8 : position + 8 + length]
        chunks.append((data[position + 4 : position + 8], body))
        position += 12 + length
    second = [index for index, (kind, _) in enumerate(chunks) if kind == b"fcTL"][1]
    body = bytearray(chunks[second][1])
    body[4:12] = struct.pack(">II", 1000, 1000)  # width, height
    chunks[second] = (b"fcTL", bytes(body))
    return data[:8] + b"".join(_chunk(kind, body) for kind, body in chunks)


def png_with_private_chunks(count: int, size: tuple[int, int] = (1, 1)) -> bytes:
    """A valid greyscale PNG with ``count`` empty private chunks before its pixels."""
    width, height = size
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(bytes(width + 1) * height)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"prVt", b"") * count
        + _chunk(b"IDAT", pixels)
        + _chunk(b"IEND", b"")
    )


def grey16(size: tuple[int, int]) -> Image.Image:
    """16-bit grey (mode I;16): a diagonal ramp over the whole 0..65535 range."""
    width, height = size
    ramp = np.arange(width, dtype=np.uint32)[None, :] + np.arange(height, dtype=np.uint32)[:, None]
    values = (ramp * 65535 // max(1, width + height - 2)).astype(np.uint16)
    return Image.fromarray(values)


def png16(size: tuple[int, int], *, alpha: bool, rows_per_block: int = 256) -> bytes:
    """A 16-bit-per-channel RGB or RGBA PNG (Pillow cannot write one): smooth ramps,
    alpha fading left to right. Made block by block, never whole in memory as pixels."""
    width, height = size
    channels = 4 if alpha else 3
    compressor = zlib.compressobj(1)
    out = [
        b"\x89PNG\r\n\x1a\n",
        _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 6 if alpha else 2, 0, 0, 0)),
    ]
    x = np.linspace(0, 65535, width, dtype=np.float32)[None, :]
    data = []
    for top in range(0, height, rows_per_block):
        rows = min(rows_per_block, height - top)
        y = np.linspace(top, top + rows - 1, rows, dtype=np.float32)[:, None] * (
            65535 / max(1, height - 1)
        )
        planes = [x + 0 * y, y + 0 * x, (x + y) / 2]
        if alpha:
            planes.append(65535 - x * 0.9 + 0 * y)
        pixels = (
            np.clip(np.stack(planes, axis=2), 0, 65535)
            .astype(">u2")
            .reshape(rows, width * channels)
        )
        block = np.zeros((rows, width * channels * 2 + 1), np.uint8)
        block[:, 1:] = pixels.view(np.uint8).reshape(rows, -1)
        data.append(compressor.compress(block.tobytes()))
    data.append(compressor.flush())
    out.append(_chunk(b"IDAT", b"".join(data)))
    out.append(_chunk(b"IEND", b""))
    return b"".join(out)


SVG_WITH_SCRIPT = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">'
    b"<script>alert(document.cookie)</script><rect width='100' height='100'/></svg>\n"
)
HTML = b"<!DOCTYPE html>\n<html><head><title>x</title></head><body>hi</body></html>\n"
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n%%EOF\n"
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\nnewpath 0 0 moveto showpage\n"
EPS_DOS_BINARY = b"\xc5\xd0\xd3\xc6" + b"\x1e\x00\x00\x00" + b"\x00" * 40
TEXT = b"Just some text, certainly not an image.\n"
