"""Every Pillow mode, alpha, CMYK (both conventions), ICC profiles -> sRGB previews."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageDraw

from imagepipe.imaging import RenderedVariant, RenderOptions, RenderResult, colour, render_variants
from tests.imaging import images

BOXES = {"small": 50, "large": 100}


def render(path: Path, **options: Any) -> RenderResult:
    return render_variants(path, RenderOptions(boxes=BOXES, **options))


def opened(preview: RenderedVariant) -> Image.Image:
    image = Image.open(io.BytesIO(preview.data))
    image.load()
    return image


def close(got: Any, expected: Any, tolerance: int = 12) -> bool:
    got = got if isinstance(got, tuple) else (got,)
    expected = expected if isinstance(expected, tuple) else (expected,)
    return all(abs(g - e) <= tolerance for g, e in zip(got, expected, strict=True))


# --------------------------------------------------------------------------- alpha


def half_transparent(mode: str = "RGBA") -> Image.Image:
    """Left half opaque red (or grey), right half fully transparent."""
    colour_value: Any = (255, 0, 0, 255) if mode == "RGBA" else (90, 255)
    image = Image.new(mode, (120, 80), (0, 0, 0, 0) if mode == "RGBA" else (0, 0))
    ImageDraw.Draw(image).rectangle((0, 0, 59, 79), fill=colour_value)
    return image


def test_rgba_keeps_alpha_as_png(tmp_path: Path) -> None:
    path = images.save(half_transparent(), tmp_path / "a.png")
    for preview in render(path).variants:
        assert (preview.format, preview.content_type) == ("PNG", "image/png")
        image = opened(preview)
        assert image.mode == "RGBA"
        width, height = image.size
        assert close(image.getpixel((2, height // 2)), (255, 0, 0, 255), 2)
        assert image.getpixel((width - 2, height // 2))[3] == 0


def test_opaque_alpha_channel_is_dropped_and_gives_jpeg(tmp_path: Path) -> None:
    path = images.save(images.photo((120, 80)).convert("RGBA"), tmp_path / "a.png")
    assert {p.format for p in render(path).variants} == {"JPEG"}


def test_configured_jpeg_flattens_alpha_onto_white(tmp_path: Path) -> None:
    path = images.save(half_transparent(), tmp_path / "a.png")
    for preview in render(path, output_format="JPEG").variants:
        image = opened(preview)
        assert (preview.format, image.mode) == ("JPEG", "RGB")
        assert close(image.getpixel((image.width - 3, 10)), images.WHITE, 3)
        assert close(image.getpixel((3, 10)), images.RED, 20)


def test_webp_keeps_alpha(tmp_path: Path) -> None:
    path = images.save(half_transparent(), tmp_path / "a.png")
    for preview in render(path, output_format="WEBP").variants:
        image = opened(preview)
        assert (preview.format, preview.content_type, image.mode) == ("WEBP", "image/webp", "RGBA")
        assert image.getpixel((image.width - 2, 10))[3] == 0
        assert image.getpixel((2, 10))[3] == 255


def test_configured_png_for_opaque_images(tmp_path: Path) -> None:
    path = images.save(images.photo((120, 80)), tmp_path / "a.jpg")
    assert {p.format for p in render(path, output_format="PNG").variants} == {"PNG"}


def test_palette_with_transparency(tmp_path: Path) -> None:
    path = images.save(half_transparent().convert("P"), tmp_path / "p.png")
    with Image.open(path) as source:
        assert source.mode == "P" and "transparency" in source.info
    for preview in render(path).variants:
        image = opened(preview)
        assert (preview.format, image.mode) == ("PNG", "RGBA")
        assert image.getpixel((image.width - 2, 10))[3] == 0
        assert close(image.getpixel((2, 10)), (255, 0, 0, 255), 2)


def test_gif_with_transparent_index(tmp_path: Path) -> None:
    image = Image.new("P", (120, 80), 1)  # index 1: transparent
    image.putpalette([255, 0, 0, 0, 255, 0])
    ImageDraw.Draw(image).rectangle((0, 0, 59, 79), fill=0)  # index 0: red
    path = images.save(image, tmp_path / "t.gif", transparency=1)
    preview = render(path).variants[-1]
    assert preview.format == "PNG"
    out = opened(preview)
    assert out.getpixel((98, 10))[3] == 0
    assert close(out.getpixel((5, 10)), (255, 0, 0, 255), 2)


def test_grey_with_alpha(tmp_path: Path) -> None:
    path = images.save(half_transparent("LA"), tmp_path / "la.png")
    for preview in render(path).variants:
        image = opened(preview)
        assert (preview.format, image.mode) == ("PNG", "LA")
        assert close(image.getpixel((2, 10)), (90, 255), 2)
        assert image.getpixel((image.width - 2, 10))[1] == 0


def test_transparent_edges_do_not_bleed_colour(tmp_path: Path) -> None:
    # Invisible pixels carry bright green: premultiplied resampling must ignore them.
    image = Image.new("RGBA", (400, 400), (0, 255, 0, 0))
    ImageDraw.Draw(image).rectangle((0, 0, 199, 399), fill=(255, 0, 0, 255))
    path = images.save(image, tmp_path / "a.png")
    for preview in render(path).variants:
        out = np.asarray(opened(preview)).astype(int)
        visible = out[..., 3] > 16
        assert (out[visible][:, 1] < 24).all(), preview.name  # no green where visible


# --------------------------------------------------------------------------- modes


def test_bilevel(tmp_path: Path) -> None:
    image = Image.new("1", (200, 100), 0)
    ImageDraw.Draw(image).rectangle((100, 0, 199, 99), fill=1)
    path = images.save(image, tmp_path / "b.png")
    for preview in render(path).variants:
        out = opened(preview)
        assert (preview.format, out.mode) == ("JPEG", "L")
        assert out.getpixel((2, 10)) < 10 and out.getpixel((out.width - 3, 10)) > 245


def test_greyscale(tmp_path: Path) -> None:
    path = images.save(images.photo((200, 100)).convert("L"), tmp_path / "l.png")
    for preview in render(path).variants:
        assert (preview.format, opened(preview).mode) == ("JPEG", "L")


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (64, 1))
    image = Image.fromarray(ramp)
    assert image.mode == "I;16"
    path = images.save(image, tmp_path / "16.png")
    with Image.open(path) as source:
        assert source.mode.startswith("I")
    preview = render(path).variants[-1]
    out = opened(preview)
    assert out.mode == "L" and out.size == (100, 25)
    row = [out.getpixel((x, 12)) for x in (1, 50, 98)]
    assert row[0] < 10 and close(row[1], 128, 10) and row[2] > 245, row


def test_cmyk_tiff(tmp_path: Path) -> None:
    path = images.save(images.cmyk_image((120, 80)), tmp_path / "c.tif")
    out = opened(render(path).variants[-1]).convert("RGB")
    assert close(out.getpixel((5, 20)), images.RED, 20)
    assert close(out.getpixel((95, 20)), images.WHITE, 3)


@pytest.mark.parametrize(
    ("mode", "value", "expected_mode"),
    [
        ("1", 1, "L"),
        ("L", 7, "L"),
        ("LA", (7, 128), "LA"),
        ("La", (7, 128), "LA"),
        ("P", 3, "RGB"),
        ("PA", (3, 128), "RGBA"),
        ("I", 40_000, "L"),
        ("I;16", 40_000, "L"),
        ("I;16B", 40_000, "L"),
        ("F", 0.5, "L"),
        ("RGB", (1, 2, 3), "RGB"),
        ("RGBA", (1, 2, 3, 128), "RGBA"),
        ("RGBa", (1, 2, 3, 128), "RGBA"),
        ("RGBX", (1, 2, 3, 0), "RGB"),
        ("CMYK", (0, 0, 0, 0), "CMYK"),
        ("YCbCr", (128, 128, 128), "RGB"),
        ("HSV", (0, 0, 128), "RGB"),
        ("LAB", (128, 128, 128), "RGB"),
    ],
)
def test_normalise_every_mode(mode: str, value: Any, expected_mode: str) -> None:
    # A second pixel value, so "transparency" checks see a non-constant image.
    image = Image.new(mode, (8, 4), value)
    assert colour.normalise(image).mode == expected_mode


def test_high_bit_depth_ranges() -> None:
    assert colour.normalise(Image.new("I;16", (2, 2), 65535)).getpixel((0, 0)) == 255
    assert colour.normalise(Image.new("I;16", (2, 2), 32896)).getpixel((0, 0)) == 128
    assert colour.normalise(Image.new("I", (2, 2), 200)).getpixel((0, 0)) == 200
    assert colour.normalise(Image.new("F", (2, 2), 0.5)).getpixel((0, 0)) in (127, 128)


# --------------------------------------------------------------------------- CMYK


@pytest.mark.parametrize(
    "make", [images.adobe_cmyk_jpeg, images.plain_cmyk_jpeg], ids=["adobe-inverted", "plain"]
)
def test_cmyk_jpeg_keeps_white_white_and_red_red(tmp_path: Path, make: Any) -> None:
    path = make(tmp_path / "cmyk.jpg")
    with Image.open(path) as source:
        assert source.mode == "CMYK"
    for preview in render(path).variants:
        out = opened(preview)
        assert (preview.format, out.mode) == ("JPEG", "RGB")
        width, height = out.size
        assert close(out.getpixel((width - 3, height // 2)), images.WHITE, 6), preview.name
        assert close(out.getpixel((3, height // 2)), images.RED, 30), preview.name


# --------------------------------------------------------------------------- ICC


def _srgb_of(rgb: tuple[int, int, int], profile: bytes) -> tuple[int, int, int]:
    source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
    srgb = ImageCms.createProfile("sRGB")
    converted = ImageCms.profileToProfile(Image.new("RGB", (1, 1), rgb), source, srgb)
    assert converted is not None
    value = converted.getpixel((0, 0))
    assert isinstance(value, tuple)
    return (int(value[0]), int(value[1]), int(value[2]))


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_embedded_profile_is_converted_to_srgb(tmp_path: Path, suffix: str) -> None:
    profile = images.adobe_rgb_like_profile()
    stored = (60, 200, 60)
    expected = _srgb_of(stored, profile)
    assert max(abs(a - b) for a, b in zip(stored, expected, strict=True)) > 20  # meaningful
    path = images.save(
        Image.new("RGB", (160, 120), stored), tmp_path / f"a{suffix}", icc_profile=profile
    )
    for preview in render(path).variants:
        out = opened(preview)
        assert "icc_profile" not in out.info  # sRGB by convention, not embedded
        assert close(out.getpixel((40, 30)), expected, 4), (out.getpixel((40, 30)), expected)


def test_rgba_with_profile_keeps_alpha(tmp_path: Path) -> None:
    profile = images.adobe_rgb_like_profile()
    image = half_transparent()
    ImageDraw.Draw(image).rectangle((0, 0, 59, 79), fill=(60, 200, 60, 255))
    path = images.save(image, tmp_path / "a.png", icc_profile=profile)
    out = opened(render(path).variants[-1])
    assert out.mode == "RGBA"
    assert close(out.getpixel((5, 40)), (*_srgb_of((60, 200, 60), profile), 255), 4)
    assert out.getpixel((95, 40))[3] == 0


def test_srgb_profile_is_a_no_op(tmp_path: Path) -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path = images.save(
        Image.new("RGB", (80, 60), (60, 200, 60)), tmp_path / "a.png", icc_profile=srgb
    )
    assert close(opened(render(path).variants[-1]).getpixel((5, 5)), (60, 200, 60), 4)


@pytest.mark.parametrize("profile", [b"garbage, not a profile", None], ids=["corrupt", "lab"])
def test_unusable_profiles_are_ignored(tmp_path: Path, profile: bytes | None) -> None:
    # A LAB profile cannot describe RGB pixels; a corrupt one cannot be read at all.
    data = profile or ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    path = images.save(
        Image.new("RGB", (80, 60), (60, 200, 60)), tmp_path / "a.png", icc_profile=data
    )
    assert close(opened(render(path).variants[-1]).getpixel((5, 5)), (60, 200, 60), 4)


def test_lab_tiff_is_converted(tmp_path: Path) -> None:
    srgb = ImageCms.createProfile("sRGB")
    lab = ImageCms.createProfile("LAB")
    to_lab = ImageCms.buildTransform(srgb, lab, "RGB", "LAB")
    red_lab = ImageCms.applyTransform(Image.new("RGB", (80, 60), images.RED), to_lab)
    assert red_lab is not None
    path = images.save(red_lab, tmp_path / "lab.tif")
    with Image.open(path) as source:
        assert source.mode == "LAB"
    assert close(opened(render(path).variants[-1]).getpixel((5, 5)), images.RED, 12)
