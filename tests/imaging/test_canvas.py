"""A GIF frame may reach past the logical screen, and Pillow then grows the canvas to
hold it: every frame counts at the size it is held at, at the probe and at every seek
in the worker, and Pillow's own limit is the pixel cap while an image is open."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import BinaryIO

import pytest
from PIL import Image

from imagepipe.config import Settings
from imagepipe.errors import ImageTooLarge, InvalidImage
from imagepipe.imaging import RenderOptions, frames, probe, render_variants
from imagepipe.imaging.opening import Limits, open_image
from tests.imaging import images

ALLOWED = ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP")
BOXES = {"large": 1200, "medium": 600, "small": 150}


def _probe(data: bytes, **caps: int) -> object:
    return probe(
        io.BytesIO(data),
        allowed_formats=ALLOWED,
        max_pixels=caps.pop("cap", 50_000_000),
        **caps,
    )


def _render(data: bytes, **caps: int) -> object:
    return render_variants(io.BytesIO(data), RenderOptions(boxes=BOXES, **caps))  # type: ignore[arg-type]


# --- at the probe (and the worker's re-check, which opens the same way) ------------------


def test_a_second_frame_that_grows_the_canvas_past_the_default_caps_is_refused() -> None:
    # A 100x100 screen and a 9000x9000 second frame of one colour: 70 KB that Pillow
    # would hold as an 81 MP canvas (324 MB in RGBA) for each variant.
    data = images.gif_with_frames((100, 100), [(0, 0, 100, 100), (0, 0, 9000, 9000)])
    assert len(data) < 100_000
    defaults = Settings()
    with pytest.raises(ImageTooLarge, match="9000x9000"):
        _probe(data, cap=defaults.max_pixels, max_decoded_bytes=defaults.max_decoded_bytes)


def test_an_offset_frame_grows_the_canvas_too() -> None:
    # 50x50 at (8000, 8000): the canvas becomes 8050x8050 (65 MP).
    data = images.gif_with_frames((100, 100), [(0, 0, 100, 100), (8000, 8000, 50, 50)])
    with pytest.raises(ImageTooLarge, match="8050x8050"):
        _probe(data)


def test_every_frame_counts_at_the_canvas_it_is_held_on() -> None:
    # 10x10, then 100x100 (the canvas grows), then two 10x10 frames on that canvas.
    extents = [(0, 0, 10, 10), (0, 0, 100, 100), (0, 0, 10, 10), (0, 0, 10, 10)]
    data = images.gif_with_frames((10, 10), extents)
    pixels = 100 + 3 * 100 * 100
    assert _probe(data, cap=pixels).frames == 4
    with pytest.raises(ImageTooLarge, match=f"{pixels} pixels"):
        _probe(data, cap=pixels - 1)


def test_a_grown_later_frame_counts_in_rgba_against_the_decoded_bytes_cap() -> None:
    # Frame 0 is held in P (one byte a pixel); later frames in RGB(A): four.
    data = images.gif_with_frames((10, 10), [(0, 0, 10, 10), (0, 0, 100, 100)])
    assert _probe(data, max_decoded_bytes=100 * 100 * 4).frames == 2
    with pytest.raises(ImageTooLarge, match="bytes decoded"):
        _probe(data, max_decoded_bytes=100 * 100 * 4 - 1)


def test_the_worker_refuses_a_gif_that_grows_past_the_cap() -> None:
    data = images.gif_with_frames((100, 100), [(0, 0, 100, 100), (0, 0, 2000, 2000)])
    with pytest.raises(ImageTooLarge):
        _render(data, max_pixels=1_000_000)


def test_a_gif_that_grows_within_the_caps_renders_every_frame() -> None:
    data = images.gif_with_frames((100, 50), [(0, 0, 100, 50), (0, 0, 300, 150)])
    assert _probe(data).frames == 2
    result = render_variants(io.BytesIO(data), RenderOptions(boxes={"small": 150}))
    (animation,) = [r for r in result.variants[0].renditions if r.frames > 1]
    assert animation.frames == 2


# --- at every seek in the worker, should the header walk ever miss a frame ----------------


@pytest.fixture
def walk_sees_only_the_screen(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The header walk as it was: every frame at the first frame's size."""
    real = getattr(frames, "walk", None)

    def screen_only(image: Image.Image, fp: BinaryIO, **caps: object) -> frames.Walk:
        assert real is not None
        walked = real(image, fp, **caps)
        width, height = image.size
        return frames.Walk(walked.frames, walked.frames * width * height, image.size)

    monkeypatch.setattr(frames, "walk", screen_only, raising=False)
    yield


@pytest.mark.usefixtures("walk_sees_only_the_screen")
def test_a_seek_to_a_frame_over_the_pixel_cap_is_refused_before_it_is_decoded() -> None:
    data = images.gif_with_frames((100, 100), [(0, 0, 100, 100), (0, 0, 2000, 2000)])
    assert _probe(data, cap=1_000_000).frames == 2  # the walk missed it
    with pytest.raises(ImageTooLarge):
        _render(data, max_pixels=1_000_000)


@pytest.mark.usefixtures("walk_sees_only_the_screen")
def test_a_seek_to_a_frame_over_the_decoded_bytes_cap_is_refused_before_it_is_decoded() -> None:
    # 1000x1000 is under the pixel cap; in RGBA it is 4 MB, over a 1 MB decoded cap.
    data = images.gif_with_frames((100, 100), [(0, 0, 100, 100), (0, 0, 1000, 1000)])
    with pytest.raises(ImageTooLarge, match="bytes decoded"):
        _render(data, max_decoded_bytes=1_000_000)


# --- the other animated formats cannot grow their canvas --------------------------------


def test_an_animated_webp_frame_larger_than_its_canvas_is_refused_at_the_probe() -> None:
    # libwebp's demuxer refuses a frame that leaves the canvas when the file is opened.
    with pytest.raises(InvalidImage):
        _probe(images.webp_with_oversized_frame())


def test_an_apng_frame_larger_than_its_canvas_is_never_decoded() -> None:
    data = images.apng_with_oversized_frame()
    assert _probe(data).frames == 2  # the count is in the header; frames come later
    with Image.open(io.BytesIO(data)) as image, pytest.raises(SyntaxError, match="invalid"):
        image.seek(1)  # Pillow refuses it; and an APNG renders as a still of frame 0
    result = render_variants(io.BytesIO(data), RenderOptions(boxes={"small": 150}))
    assert (result.variants[0].width, result.variants[0].height) == (10, 10)
    assert all(r.frames == 1 for r in result.variants[0].renditions)


# --- Pillow's own limit -------------------------------------------------------------------


@pytest.mark.usefixtures("walk_sees_only_the_screen")
def test_pillow_itself_refuses_a_frame_over_the_cap_while_the_image_is_open() -> None:
    data = images.gif_with_frames((100, 100), [(0, 0, 100, 100), (0, 0, 2000, 2000)])
    limits = Limits(allowed_formats=ALLOWED, max_pixels=1_000_000)
    bomb = (Image.DecompressionBombError, Image.DecompressionBombWarning)
    with open_image(io.BytesIO(data), limits) as opened, pytest.raises(bomb):
        opened.image.seek(1)  # refused as the canvas grows, before any allocation
