"""What the render result says about the source and what was done to it (the report)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from imagepipe.imaging import RenderOptions, RenderResult, render_variants
from tests.imaging import images

BOXES = {"small": 150, "medium": 600, "large": 1200}


def run(path: Path) -> RenderResult:
    return render_variants(path, RenderOptions(boxes=BOXES))


def test_jpeg_with_every_kind_of_metadata(tmp_path: Path) -> None:
    result = run(images.jpeg_with_metadata(tmp_path / "meta.jpg"))
    assert result.source is not None
    assert result.source.as_dict() == {
        "format": "JPEG",
        "mode": "RGB",
        "bit_depth": 8,
        "frames": 1,
        "has_alpha": False,
        "orientation": 1,
        "icc_profile": "sRGB built-in",
    }
    assert result.source.metadata == ("exif", "gps", "xmp", "icc", "comment")
    # An sRGB profile needs no transform.
    assert result.applied == ("resize",)


def test_oriented_jpeg(tmp_path: Path) -> None:
    result = run(images.oriented_jpeg(tmp_path / "six.jpg", 6, (1600, 1200)))
    assert result.source is not None and result.source.orientation == 6
    assert result.applied == ("resize", "exif_orientation")
    assert result.source.metadata == ("exif",)


def test_cmyk_jpeg(tmp_path: Path) -> None:
    plain = run(images.plain_cmyk_jpeg(tmp_path / "plain.jpg"))
    assert plain.source is not None and plain.source.mode == "CMYK"
    assert plain.applied == ("cmyk_uninvert", "cmyk_to_srgb")  # 64x48: no resize
    adobe = run(images.adobe_cmyk_jpeg(tmp_path / "adobe.jpg"))
    assert adobe.applied == ("cmyk_to_srgb",)


def test_wide_gamut_profile_is_described_and_applied(tmp_path: Path) -> None:
    path = images.save(
        images.photo((800, 600)), tmp_path / "p3.png", icc_profile=images.display_p3_like_profile()
    )
    result = run(path)
    assert result.source is not None
    assert result.source.icc_profile == "Display P3-like (imagepipe tests)"
    assert result.source.metadata == ("icc",)
    assert result.applied == ("resize", "icc_to_srgb")


def test_deep_grey_and_alpha(tmp_path: Path) -> None:
    deep = run(images.save(images.grey16((900, 700)), tmp_path / "deep.png"))
    assert deep.source is not None
    assert (deep.source.mode, deep.source.bit_depth) == ("I;16", 16)
    assert deep.applied == ("resize", "deep_to_8bit")
    rgba = Image.new("RGBA", (200, 100), (10, 20, 30, 255))
    rgba.putpixel((5, 5), (0, 0, 0, 0))
    alpha = run(images.save(rgba, tmp_path / "alpha.png"))
    assert alpha.source is not None and alpha.source.has_alpha
    opaque = run(images.save(Image.new("RGBA", (200, 100), "red"), tmp_path / "opaque.png"))
    assert opaque.source is not None and not opaque.source.has_alpha  # no pixel is see-through


def test_animation(tmp_path: Path) -> None:
    result = run(images.animated(tmp_path / "anim.gif", [100, 100, 100]))
    assert result.source is not None and result.source.frames == 3
    assert result.applied[0] == "animated_webp"
