"""Boxes and crops: sizes without pixels, and which window each gravity keeps."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageDraw

from imagepipe.imaging import geometry
from imagepipe.imaging.crop import Box, FocalPoint, crop, resize_size, target_size, window
from imagepipe.imaging.opening import Limits
from imagepipe.imaging.render import render_one


@pytest.mark.parametrize(
    "size", [(4000, 3000), (3000, 4000), (1, 5000), (5000, 1), (150, 113), (99, 100)]
)
@pytest.mark.parametrize("side", [1, 150, 800, 4096])
def test_a_square_contain_box_is_the_longest_side_rule(size: tuple[int, int], side: int) -> None:
    assert target_size(size, Box.square(side)) == geometry.fit(size, side)
    assert resize_size(size, Box.square(side)) == geometry.fit(size, side)


@pytest.mark.parametrize(
    ("size", "box", "expected"),
    [
        ((4000, 3000), Box(640, 480), (640, 480)),
        ((4000, 3000), Box(640, 100), (133, 100)),  # the height limits
        ((4000, 3000), Box(100, 640), (100, 75)),  # the width limits
        ((300, 200), Box(640, 480), (300, 200)),  # never upscaled
    ],
)
def test_contain_fits_inside_both_sides(
    size: tuple[int, int], box: Box, expected: tuple[int, int]
) -> None:
    assert target_size(size, box) == expected


@pytest.mark.parametrize(
    ("size", "box", "resized", "target"),
    [
        ((4000, 3000), Box(640, 480, "cover"), (640, 480), (640, 480)),
        ((4000, 3000), Box(160, 160, "cover"), (213, 160), (160, 160)),
        ((3000, 4000), Box(160, 160, "cover"), (160, 213), (160, 160)),
        ((4000, 3000), Box(900, 100, "cover"), (900, 675), (900, 100)),
        # A box larger than the image shrinks to the largest box of its aspect inside it.
        ((300, 200), Box(640, 640, "cover"), (300, 200), (200, 200)),
        ((300, 200), Box(640, 320, "cover"), (300, 200), (300, 150)),
    ],
)
def test_cover_fills_the_box_and_keeps_its_aspect(
    size: tuple[int, int], box: Box, resized: tuple[int, int], target: tuple[int, int]
) -> None:
    assert resize_size(size, box) == resized
    assert target_size(size, box) == target


def _subject_at(x: int, y: int, size: tuple[int, int] = (400, 200)) -> Image.Image:
    """A flat grey picture with one busy, saturated subject centred at (x, y)."""
    image = Image.new("RGB", size, (128, 128, 128))
    draw = ImageDraw.Draw(image)
    for ring in range(0, 30, 4):
        colour = (220, 40, 40) if ring % 8 == 0 else (30, 30, 200)
        draw.ellipse((x - 30 + ring, y - 30 + ring, x + 30 - ring, y + 30 - ring), fill=colour)
    return image


def test_the_smart_crop_keeps_an_off_centre_subject_a_centre_crop_cuts() -> None:
    image = _subject_at(340, 100)
    box = Box(200, 200, "cover", "smart")
    left, _, right, _ = window(image, box, None)
    assert left <= 310 and right >= 370  # the whole subject is inside
    _, _, centre_right, _ = window(image, Box(200, 200, "cover"), None)
    assert centre_right < 340  # the centre crop does not even reach its middle


def test_the_smart_crop_of_a_flat_image_is_the_centre() -> None:
    image = Image.new("RGB", (400, 200), (90, 90, 90))
    assert window(image, Box(200, 200, "cover", "smart"), None) == (100, 0, 300, 200)


def test_focal_gravity_centres_on_the_point_within_the_image() -> None:
    image = Image.new("RGB", (400, 200))
    box = Box(200, 200, "cover", "focal")
    assert window(image, box, FocalPoint(0.5, 0.5)) == (100, 0, 300, 200)
    assert window(image, box, FocalPoint(0.9, 0.5)) == (200, 0, 400, 200)  # clamped
    assert window(image, box, FocalPoint(0.3, 0.5)) == (20, 0, 220, 200)
    assert window(image, box, None) == (100, 0, 300, 200)  # no point: the centre


def test_contain_never_crops() -> None:
    image = Image.new("RGB", (400, 200))
    assert crop(image, Box(400, 400), None) is image


@pytest.mark.parametrize("bad", [{"width": 0, "height": 5}, {"width": 5, "height": 5, "fit": "x"}])
def test_a_bad_box_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Box(**bad)  # type: ignore[arg-type]


def test_a_focal_point_is_a_pair_of_fractions() -> None:
    with pytest.raises(ValueError):
        FocalPoint(1.2, 0.5)


def test_render_one_makes_the_box_exactly_from_a_jpeg() -> None:
    buffer = io.BytesIO()
    _subject_at(1500, 500, (2000, 1000)).save(buffer, "JPEG", quality=90)
    buffer.seek(0)
    made = render_one(
        buffer,
        Box(300, 300, "cover", "smart"),
        "WEBP",
        quality=80,
        focal=None,
        limits=Limits(allowed_formats=("JPEG",), max_pixels=50_000_000),
    )
    assert (made.width, made.height, made.format) == (300, 300, "WEBP")
    with Image.open(io.BytesIO(made.data)) as out:
        assert out.size == (300, 300)
        # The subject (red/blue rings at 3/4 of the width) is in the window: the crop
        # is not the flat grey centre.
        colours = out.convert("RGB").getcolors(300 * 300) or []
        assert any(abs(r - g) > 60 or abs(b - g) > 60 for _, (r, g, b) in colours)
