"""Open an upload with Pillow, header only, and apply the format allowlist and caps.

Shared by ``probe`` (in the HTTP request) and ``render_previews`` (in the worker, as
defence in depth), so both refuse exactly the same files with the same errors.

Caps, all checked from the header: width * height * frames <= max_pixels, frames <=
max_frames, one decoded frame <= max_decoded_bytes. Header parsing itself is bounded
too (``HeaderBudget``): Pillow's parsers loop over chunks, segments and pages in
Python, and a file made of a million empty chunks would hold a thread for seconds.
"""

from __future__ import annotations

import io
import struct
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, cast

from PIL import Image, ImageFile, UnidentifiedImageError

from imagepipe.errors import ImageTooLarge, InvalidImage, UnsupportedMediaType
from imagepipe.imaging import colour, frames, plugins, sniff

# Pillow only warns between MAX_IMAGE_PIXELS and twice that; our own cap is the rule,
# so any bomb signal means "too large", never "carry on". Configured once, here, for
# the whole process: warnings.catch_warnings() per call is not thread-safe, and a lock
# around it made every open wait for the slowest one.
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)

# What Pillow raises for hostile or damaged bytes (its fuzzers see all of these), plus
# warnings escalated to errors by a -W error filter. Deliberately not Exception: an
# exception from outside, such as a worker's soft time limit raised asynchronously
# inside Pillow, must propagate as itself, not turn into "invalid image".
BAD_BYTES_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # includes UnidentifiedImageError, "image file is truncated"
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    LookupError,
    ArithmeticError,
    TypeError,
    AttributeError,
    RuntimeError,
    Warning,
)

# Reads Pillow may make while parsing a header. A real header takes tens (JPEG
# segments, PNG chunks before IDAT, one TIFF directory); each PNG chunk costs three.
MAX_HEADER_READS = 30_000
DEFAULT_HEADER_CPU_SECONDS = 1.0
DEFAULT_MAX_FRAMES = 1000
_CHECK_CPU_EVERY = 64  # reads between two looks at the thread's CPU clock


class HeaderTooComplex(Exception):
    """Raised from inside Pillow's parser when the header budget is spent."""


class HeaderBudget(io.RawIOBase):
    """A read-only file that counts Pillow's reads and CPU time while armed.

    Pillow parses headers by calling ``read`` in Python loops, so counting calls bounds
    the work deterministically; the thread's CPU clock is a backstop for work between
    reads. Disarmed once the header is parsed: decoding reads freely.
    """

    def __init__(self, raw: BinaryIO, *, max_reads: int, cpu_seconds: float) -> None:
        super().__init__()
        self._raw = raw
        self._max_reads = max_reads
        self._cpu_seconds = cpu_seconds
        self._reads = 0
        self._cpu_start = time.thread_time()
        self.armed = True

    @property
    def reads(self) -> int:
        return self._reads

    def _charge(self) -> None:
        if not self.armed:
            return
        self._reads += 1
        if self._reads > self._max_reads:
            raise HeaderTooComplex(f"more than {self._max_reads} reads")
        if self._reads % _CHECK_CPU_EVERY == 0:
            spent = time.thread_time() - self._cpu_start
            if spent > self._cpu_seconds:
                raise HeaderTooComplex(f"more than {self._cpu_seconds} s of CPU")

    def read(self, size: int | None = -1) -> bytes:
        self._charge()
        return self._raw.read(-1 if size is None else size)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        self._charge()
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readline(self, size: int | None = -1) -> bytes:
        self._charge()
        return self._raw.readline(-1 if size is None else size)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def fileno(self) -> int:
        # libtiff decodes from the descriptor; positions are shared with _raw.
        return self._raw.fileno()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True


@dataclass(frozen=True)
class Limits:
    """What an upload may be: the format allowlist and the caps checked from its header."""

    allowed_formats: tuple[str, ...]
    max_pixels: int  # width * height * frames
    max_frames: int = DEFAULT_MAX_FRAMES
    max_decoded_bytes: int | None = None  # one decoded frame, in Pillow's memory
    header_cpu_seconds: float = DEFAULT_HEADER_CPU_SECONDS


@dataclass(frozen=True)
class Opened:
    image: ImageFile.ImageFile
    format: str
    frames: int


@contextmanager
def open_image(source: Path | BinaryIO, limits: Limits) -> Iterator[Opened]:
    """Yield the opened (not decoded) image; the file stays open inside the block.

    ``source`` is a path or a seekable binary file (left open). Raises
    UnsupportedMediaType, ImageTooLarge or InvalidImage.
    """
    _check_allowlist(limits.allowed_formats)
    with _binary(source) as raw:
        fp = HeaderBudget(raw, max_reads=MAX_HEADER_READS, cpu_seconds=limits.header_cpu_seconds)
        image = _open(fp, limits.allowed_formats)
        with image:
            try:
                count = _check_caps(image, raw, limits)
            except HeaderTooComplex as exc:
                raise InvalidImage(f"The frame structure is too complex ({exc}).") from exc
            fp.armed = False
            # An MPO (phone cameras) is a JPEG followed by extra stills (depth map,
            # preview) that are never decoded: a JPEG of one frame, for the cap too.
            name = "JPEG" if image.format == "MPO" else str(image.format)
            yield Opened(image=image, format=name, frames=count)


@contextmanager
def _binary(source: Path | BinaryIO) -> Iterator[BinaryIO]:
    if isinstance(source, Path):
        with source.open("rb") as fp:
            yield fp
    else:
        source.seek(0)
        yield source


def _check_allowlist(allowed_formats: tuple[str, ...]) -> None:
    """A name Pillow does not know is a configuration error, not a bad upload."""
    plugins.register()  # every plugin, once; cheap afterwards
    unknown = sorted(set(allowed_formats) - set(Image.OPEN))
    if unknown:
        raise ValueError(f"unknown image formats in the allowlist: {unknown}")


def _open(fp: HeaderBudget, allowed_formats: tuple[str, ...]) -> ImageFile.ImageFile:
    try:
        # HeaderBudget is a binary file; Pillow's stubs only name IO[bytes].
        return Image.open(cast("IO[bytes]", fp), formats=allowed_formats)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"The image has too many pixels ({exc}).") from exc
    except HeaderTooComplex as exc:
        raise InvalidImage(f"The image header is too complex to parse ({exc}).") from exc
    except UnidentifiedImageError as exc:
        raise _refusal(fp, allowed_formats) from exc
    except BAD_BYTES_ERRORS as exc:
        # Plugins raise ValueError, OSError, ... for headers they half-understood
        # (e.g. a PNG whose IHDR chunk is cut short): an allowed format, but broken.
        detected = _detect(fp)
        raise InvalidImage(f"The {detected or 'image'} header cannot be parsed.") from exc


def _refusal(fp: HeaderBudget, allowed_formats: tuple[str, ...]) -> Exception:
    """No allowed plugin accepted the file: say why, as precisely as the bytes allow."""
    detected = _detect(fp)
    allowed = ", ".join(allowed_formats)
    if detected in allowed_formats:
        # The magic bytes say PNG (say) but Pillow's PNG plugin refused the header.
        return InvalidImage(f"The {detected} header cannot be parsed.")
    if detected is None:
        return UnsupportedMediaType(f"Not a supported image (allowed: {allowed}).")
    return UnsupportedMediaType(
        f"Not a supported image (detected: {detected}; allowed: {allowed})."
    )


def _detect(fp: HeaderBudget) -> str | None:
    fp.armed = False  # naming a refusal is one read, even after the budget ran out
    fp.seek(0)
    return sniff.detect(fp.read(sniff.HEAD_BYTES))


def _check_caps(image: ImageFile.ImageFile, raw: BinaryIO, limits: Limits) -> int:
    """Raise unless the pixel, frame and decoded-bytes caps hold; return the frames."""
    max_pixels, max_frames = limits.max_pixels, limits.max_frames
    max_decoded_bytes = limits.max_decoded_bytes
    width, height = image.size
    if width <= 0 or height <= 0:
        raise InvalidImage(f"The image declares an empty size ({width}x{height}).")
    pixels = width * height
    if pixels > max_pixels:
        raise ImageTooLarge(
            f"The image is {width}x{height} = {pixels} pixels; the cap is {max_pixels}."
        )
    decoded = pixels * colour.bytes_per_pixel(image.mode)
    if max_decoded_bytes is not None and decoded > max_decoded_bytes:
        raise ImageTooLarge(
            f"The image is {width}x{height} in mode {image.mode}: {decoded} bytes decoded; "
            f"the cap is {max_decoded_bytes}."
        )
    if image.format == "MPO":
        return 1
    limit = min(max_frames, max_pixels // pixels)
    try:
        count = frames.count_frames(image, raw, limit=limit)
    except BAD_BYTES_ERRORS as exc:
        raise InvalidImage("The frame structure cannot be parsed.") from exc
    if count > max_frames:
        raise ImageTooLarge(
            f"The image has more than {max_frames} frames or pages, the configured cap."
        )
    if count * pixels > max_pixels:
        raise ImageTooLarge(
            f"The image is {width}x{height} with at least {count} frames, more than the cap "
            f"of {max_pixels} pixels."
        )
    return count
