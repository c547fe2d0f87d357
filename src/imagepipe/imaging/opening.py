"""Open an upload with Pillow, header only, and apply the format allowlist and caps.

Shared by ``probe`` (in the HTTP request) and ``render_variants`` (in the worker, as
defence in depth), so both refuse exactly the same files with the same errors.

Caps, all checked from the header: the frames' pixels summed, each frame at the size
Pillow holds it at (a GIF frame can grow the canvas), <= max_pixels; frames <=
max_frames; the largest decoded frame <= max_decoded_bytes. While an image is open
here, Pillow's own limit (``Image.MAX_IMAGE_PIXELS``) is the pixel cap too, so Pillow
refuses a frame over it wherever it meets one, before allocating it. Header parsing
and the frame walk are bounded too (``HeaderBudget``): Pillow's parsers loop over
chunks, segments and pages in Python, and a file made of a million empty chunks would
hold a thread for seconds.
"""

from __future__ import annotations

import io
import struct
import threading
import time
import warnings
from collections import Counter
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
BOMB_ERRORS: tuple[type[BaseException], ...] = (
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)

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
        self._steps = 0
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
            self._check_cpu()

    def step(self) -> None:
        """One step of a frame walk (which reads the file directly): charged to the
        same CPU clock as the header, not to the reads, since a long animation
        legitimately takes more steps than a header takes reads."""
        self._steps += 1
        if self._steps % _CHECK_CPU_EVERY == 0:
            self._check_cpu()

    def _check_cpu(self) -> None:
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
    UnsupportedMediaType, ImageTooLarge or InvalidImage. Inside the block Pillow's own
    pixel limit is ``limits.max_pixels``: a seek or load that meets a larger frame
    raises one of ``BOMB_ERRORS`` (callers answer ImageTooLarge).
    """
    _check_allowlist(limits.allowed_formats)
    with _pillow_limit(limits.max_pixels), _binary(source) as raw:
        fp = HeaderBudget(raw, max_reads=MAX_HEADER_READS, cpu_seconds=limits.header_cpu_seconds)
        image = _open(fp, limits)
        with image:
            try:
                count = _check_caps(image, raw, limits, fp)
            except HeaderTooComplex as exc:
                raise InvalidImage(f"The frame structure is too complex ({exc}).") from exc
            fp.armed = False
            # An MPO (phone cameras) is a JPEG followed by extra stills (depth map,
            # preview) that are never decoded: a JPEG of one frame, for the cap too.
            name = "JPEG" if image.format == "MPO" else str(image.format)
            yield Opened(image=image, format=name, frames=count)


_PILLOWS_OWN_LIMIT = Image.MAX_IMAGE_PIXELS
_limit_lock = threading.Lock()
_limits_in_use: Counter[int] = Counter()


@contextmanager
def _pillow_limit(max_pixels: int) -> Iterator[None]:
    """Pillow's limit is the pixel cap while an image is open here.

    ``Image.MAX_IMAGE_PIXELS`` is one value for the process, read wherever Pillow
    allocates a frame (a GIF frame that grows the canvas included). A process applies
    one configured cap, so that is the value; should opens with different caps overlap,
    the largest applies, so Pillow never refuses what an open's own cap allows (its own
    checks still do). Held only to update the count, never around an open. Pillow's
    default comes back once no open is in flight.
    """
    with _limit_lock:
        _limits_in_use[max_pixels] += 1
        Image.MAX_IMAGE_PIXELS = max(_limits_in_use)
    try:
        yield
    finally:
        with _limit_lock:
            _limits_in_use[max_pixels] -= 1
            if not _limits_in_use[max_pixels]:
                del _limits_in_use[max_pixels]
            Image.MAX_IMAGE_PIXELS = max(_limits_in_use, default=_PILLOWS_OWN_LIMIT)


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


def _open(fp: HeaderBudget, limits: Limits) -> ImageFile.ImageFile:
    allowed_formats = limits.allowed_formats
    try:
        # HeaderBudget is a binary file; Pillow's stubs only name IO[bytes].
        return Image.open(cast("IO[bytes]", fp), formats=allowed_formats)
    except BOMB_ERRORS as exc:
        # Pillow's limit is the cap here: its signal is the cap speaking.
        raise ImageTooLarge(
            f"The image has more pixels than the cap of {limits.max_pixels}."
        ) from exc
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


def check_frame(size: tuple[int, int], mode: str, limits: Limits, *, first: bool = True) -> None:
    """Raise ImageTooLarge unless one frame of ``size``, held by Pillow in ``mode``, is
    within the pixel cap and the decoded-bytes cap."""
    width, height = size
    pixels = width * height
    what = "The image" if first else "A frame of the image"
    if pixels > limits.max_pixels:
        raise ImageTooLarge(
            f"{what} is {width}x{height} = {pixels} pixels; the cap is {limits.max_pixels}."
        )
    decoded = pixels * colour.bytes_per_pixel(mode)
    if limits.max_decoded_bytes is not None and decoded > limits.max_decoded_bytes:
        raise ImageTooLarge(
            f"{what} is {width}x{height} in mode {mode}: {decoded} bytes decoded; "
            f"the cap is {limits.max_decoded_bytes}."
        )


# Pillow holds every animation frame after the first in RGB or RGBA (four bytes a
# pixel): GIF frames are composited on the canvas as grown so far, WebP frames decoded so.
LATER_FRAME_MODE = "RGBA"


def _check_caps(
    image: ImageFile.ImageFile, raw: BinaryIO, limits: Limits, budget: HeaderBudget
) -> int:
    """Raise unless the pixel, frame and decoded-bytes caps hold; return the frames."""
    max_pixels, max_frames = limits.max_pixels, limits.max_frames
    width, height = image.size
    if width <= 0 or height <= 0:
        raise InvalidImage(f"The image declares an empty size ({width}x{height}).")
    check_frame(image.size, image.mode, limits)
    if image.format == "MPO":
        return 1
    try:
        walk = frames.walk(
            image, raw, max_frames=max_frames, max_pixels=max_pixels, step=budget.step
        )
    except BAD_BYTES_ERRORS as exc:
        raise InvalidImage("The frame structure cannot be parsed.") from exc
    if walk.frames > max_frames:
        raise ImageTooLarge(
            f"The image has more than {max_frames} frames or pages, the configured cap."
        )
    if image.format == "GIF" and walk.frames > 1:
        check_frame(walk.largest, LATER_FRAME_MODE, limits, first=False)
    if walk.pixels > max_pixels:
        largest = "x".join(map(str, walk.largest))
        raise ImageTooLarge(
            f"The image is {width}x{height} with at least {walk.frames} frames of up to "
            f"{largest}: {walk.pixels} pixels, more than the cap of {max_pixels}."
        )
    return walk.frames
