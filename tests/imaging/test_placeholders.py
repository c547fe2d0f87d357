"""Placeholders: each one decodes back to something close to the preview it came from."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path

import blurhash
import numpy as np
import pytest
import thash
from PIL import Image, ImageDraw

from imagepipe.imaging import RenderOptions, placeholders, render_variants
from tests.imaging import images

BOXES = {"small": 150, "medium": 600, "large": 1200}


def _mean_error(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference per channel (0-255) of two RGB images of one size."""
    return float(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).mean())


def _blurhash_image(value: str, size: tuple[int, int]) -> Image.Image:
    rows = blurhash.decode(value, size[0], size[1])
    return Image.fromarray(np.clip(np.asarray(rows), 0, 255).astype(np.uint8), "RGB")


def _thumbhash_image(value: str) -> Image.Image:
    width, height, rgba = thash.thumb_hash_to_rgba(list(base64.b64decode(value)), base_size=32)
    return Image.frombytes("RGBA", (width, height), rgba)


def two_colours(size: tuple[int, int] = (150, 100)) -> Image.Image:
    """Seven tenths a brick red, three tenths a deep blue."""
    image = Image.new("RGB", size, (180, 50, 40))
    ImageDraw.Draw(image).rectangle((int(size[0] * 0.7), 0, size[0], size[1]), fill=(20, 40, 160))
    return image


PICTURES: dict[str, Callable[[], Image.Image]] = {
    "photo": lambda: images.photo((150, 113)),
    "two_colours": two_colours,
    "markers": lambda: images.with_markers((150, 100)),
}


@pytest.mark.parametrize("picture", PICTURES)
def test_blurhash_decodes_close_to_the_preview(picture: str) -> None:
    preview = PICTURES[picture]()
    value = placeholders.compute(preview).blurhash
    assert blurhash.components(value) == (4, 3)
    decoded = _blurhash_image(value, (30, 20))
    reference = preview.resize((30, 20), Image.Resampling.BOX)
    # Four by three cosines keep the layout and colours, not the edges.
    assert _mean_error(decoded, reference) < 25


@pytest.mark.parametrize("picture", PICTURES)
def test_thumbhash_decodes_close_to_the_preview(picture: str) -> None:
    preview = PICTURES[picture]()
    decoded = _thumbhash_image(placeholders.compute(preview).thumbhash)
    assert abs(decoded.width / decoded.height - preview.width / preview.height) < 0.25
    reference = preview.resize(decoded.size, Image.Resampling.BOX)
    assert _mean_error(decoded.convert("RGB"), reference) < 25


def test_thumbhash_keeps_transparency() -> None:
    preview = Image.new("RGBA", (150, 100), (0, 0, 0, 0))
    ImageDraw.Draw(preview).rectangle((0, 0, 74, 99), fill=(30, 160, 40, 255))
    decoded = _thumbhash_image(placeholders.compute(preview).thumbhash)
    alpha = np.asarray(decoded.getchannel("A"), dtype=np.float32)
    half = decoded.width // 2
    assert alpha[:, : half - 2].mean() > 180  # the opaque left half
    assert alpha[:, half + 2 :].mean() < 80  # the transparent right half


def test_dominant_colour_is_the_most_common_one() -> None:
    colour = placeholders.compute(two_colours()).dominant_color
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    assert abs(red - 180) <= 8 and abs(green - 50) <= 8 and abs(blue - 40) <= 8


def test_dominant_colour_ignores_transparent_pixels() -> None:
    preview = Image.new("RGBA", (150, 100), (255, 255, 255, 0))  # mostly transparent white
    ImageDraw.Draw(preview).rectangle((0, 0, 29, 99), fill=(20, 40, 160, 255))
    assert placeholders.compute(preview).dominant_color == "#1428a0"


def test_compute_leaves_the_preview_as_it_was() -> None:
    preview = images.photo((150, 113))
    before = preview.tobytes()
    placeholders.compute(preview)
    assert preview.tobytes() == before and preview.size == (150, 113)


def test_render_takes_the_placeholders_from_the_smallest_preview(tmp_path: Path) -> None:
    path = images.save(images.photo((1600, 1200)), tmp_path / "photo.jpg")
    result = render_variants(path, RenderOptions(boxes=BOXES))
    assert result.placeholder is not None
    small = next(p for p in result.variants if p.name == "small")
    stored = Image.open(io.BytesIO(small.data)).convert("RGB")
    decoded = _blurhash_image(result.placeholder.blurhash, (40, 30))
    assert _mean_error(decoded, stored.resize((40, 30), Image.Resampling.BOX)) < 25
    thumb = _thumbhash_image(result.placeholder.thumbhash).convert("RGB")
    assert _mean_error(thumb, stored.resize(thumb.size, Image.Resampling.BOX)) < 25
    assert result.placeholder.dominant_color.startswith("#")
    assert len(result.placeholder.dominant_color) == 7
