"""Crop modes in the render: cover variants come out at their box's exact size, cut
from the whole image of their step (a crop never feeds the next step), contain ones
keep the sizes numbers always gave, QA knows a cover preview's shape, and the render
spec of a configuration of numbers is the one earlier releases recorded."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from imagepipe.imaging import RenderOptions, RenderResult, geometry, qa, render_variants, resample
from imagepipe.imaging.crop import Box, FocalPoint
from imagepipe.imaging.formats import FORMATS
from tests.imaging import images

AVATAR = Box(160, 160, "cover", "focal")
BANNER = Box(300, 100, "cover", "smart")
MIXED = {"large": Box.square(1200), "avatar": AVATAR, "banner": BANNER, "small": 150}


def sizes(result: RenderResult) -> dict[str, tuple[int, int]]:
    return {p.name: (p.width, p.height) for p in result.variants}


def shrinks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    seen: list[tuple[tuple[int, int], tuple[int, int]]] = []
    real = resample.cascade_shrink

    def spy(image: Image.Image, size: tuple[int, int]) -> Image.Image:
        seen.append((image.size, size))
        return real(image, size)

    monkeypatch.setattr(resample, "cascade_shrink", spy)
    return seen


@pytest.mark.parametrize("display", [(1600, 1200), (1200, 1600), (4000, 500), (500, 4000)])
def test_cover_variants_have_the_box_size_and_contain_ones_are_unchanged(
    tmp_path: Path, display: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = images.save(images.photo(display), tmp_path / "a.jpg")
    steps = shrinks(monkeypatch)
    result = render_variants(path, RenderOptions(boxes=MIXED))
    assert sizes(result) == {
        "large": geometry.fit(display, 1200),
        "avatar": (160, 160),
        "banner": (300, 100),
        "small": geometry.fit(display, 150),
    }
    # Every step shrinks the whole image (its aspect), from a larger one: the crops
    # are cut beside the cascade, never fed into it.
    for source, target in steps:
        assert qa.aspect_kept(source, display) and qa.aspect_kept(target, display)
        assert source[0] >= target[0] and source[1] >= target[1]
    # Configured order, whatever order the steps ran in.
    assert [p.name for p in result.variants] == list(MIXED)
    for preview in result.variants:
        with Image.open(io.BytesIO(preview.data)) as image:
            assert image.size == (preview.width, preview.height)


def test_a_panorama_covers_a_small_square_from_more_pixels_than_a_larger_contain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = images.save(images.photo((4000, 500)), tmp_path / "wide.png")
    steps = shrinks(monkeypatch)
    result = render_variants(path, RenderOptions(boxes={"medium": 600, "avatar": AVATAR}))
    assert sizes(result) == {"medium": (600, 75), "avatar": (160, 160)}
    # The avatar needs the whole image 160 high (1280 x 160): that step comes first.
    assert steps == [((1280, 160), (600, 75))]


def test_a_cover_box_larger_than_the_image_keeps_its_aspect(tmp_path: Path) -> None:
    path = images.save(images.photo((120, 90)), tmp_path / "small.png")
    result = render_variants(path, RenderOptions(boxes={"avatar": AVATAR, "banner": BANNER}))
    assert sizes(result) == {"avatar": (90, 90), "banner": (120, 40)}


def test_the_focal_point_places_a_focal_crop(tmp_path: Path) -> None:
    image = Image.new("RGB", (1200, 400), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 300, 400))
    path = images.save(image, tmp_path / "a.png")

    def centre(focal: FocalPoint | None) -> tuple[int, ...]:
        options = RenderOptions(boxes={"avatar": AVATAR}, output_format="PNG", focal=focal)
        preview = render_variants(path, options).variants[0]
        with Image.open(io.BytesIO(preview.data)) as made:
            return tuple(made.convert("RGB").getpixel((80, 80)))  # type: ignore[arg-type]

    assert centre(None)[2] > 200  # no point: the centre (blue)
    assert centre(FocalPoint(0.05, 0.5))[0] > 200  # the left end (red)


def test_placeholder_comes_from_the_smallest_contain_variant(tmp_path: Path) -> None:
    path = images.save(images.photo((1600, 1200)), tmp_path / "a.png")
    mixed = render_variants(path, RenderOptions(boxes={"medium": 600, "avatar": AVATAR}))
    contain = render_variants(path, RenderOptions(boxes={"medium": 600}))
    assert mixed.placeholder == contain.placeholder
    only_cover = render_variants(path, RenderOptions(boxes={"avatar": AVATAR, "banner": BANNER}))
    assert only_cover.placeholder is not None


def test_an_animation_s_cover_variant_is_cropped_on_every_frame(tmp_path: Path) -> None:
    path = images.animated_gif(tmp_path / "a.gif", frames=3, size=(120, 60))
    result = render_variants(path, RenderOptions(boxes={"square": Box(40, 40, "cover", "smart")}))
    animated = [r for r in result.variants[0].renditions if r.frames > 1]
    assert len(animated) == 1
    with Image.open(io.BytesIO(animated[0].data)) as webp:
        # (libwebp may merge frames the crop made equal: at least two remain.)
        assert webp.size == (40, 40) and webp.n_frames > 1


def test_qa_expects_the_box_s_shape_for_cover(tmp_path: Path) -> None:
    source = images.photo((800, 600))
    reference = qa.reference(
        source, display_size=(800, 600), orientation=1, undo_cmyk_inversion=False
    )
    whole = source.resize((213, 160))
    good = whole.crop((26, 0, 186, 160))
    assert qa.check(good, AVATAR, None, reference, whole=whole) == []
    squashed = whole.resize((160, 120))
    assert qa.check(squashed, AVATAR, None, reference, whole=whole) == ["dimensions", "aspect"]
    # The same 160 x 160 is wrong for a contain box of that side (the fit is 160 x 120).
    assert qa.check(good, Box.square(160), None, reference) == ["dimensions", "aspect"]


def test_qa_judges_a_cover_crop_s_colour_on_the_whole_image() -> None:
    """A flat corner of a busy image is a faithful crop, not a blank preview."""
    source = Image.new("RGB", (800, 600), (20, 20, 20))
    source.paste(images.photo((200, 600)), (600, 0))
    reference = qa.reference(
        source, display_size=(800, 600), orientation=1, undo_cmyk_inversion=False
    )
    whole = source.resize((213, 160))
    corner = whole.crop((0, 0, 160, 160))
    assert "not_blank" in qa.check(corner, AVATAR, None, reference)  # judged alone
    assert qa.check(corner, AVATAR, None, reference, whole=whole) == []


# The render specs releases before crop modes recorded for these settings: a task they
# made is still found as the duplicate of the same bytes.
EARLIER_RENDER_SPECS = {
    "7387210d4c32c78f9039163012f2efdf5dbbc6ca51c32afec65dac05007485c8": RenderOptions(
        boxes={"small": 150, "medium": 600, "large": 1200}
    ),
    "2de677eec231bfb13bf0183a8da11ea58c1276b69d030e64664f0c110da4f9c6": RenderOptions(
        boxes={"small": 150}, output_format="JPEG", extra_formats=("WEBP", "AVIF")
    ),
}


@pytest.mark.skipif(
    FORMATS["WEBP"].options != {"method": 4}, reason="the encoder options changed since"
)
def test_numbers_keep_the_render_spec_of_earlier_releases() -> None:
    for digest, options in EARLIER_RENDER_SPECS.items():
        assert options.render_spec == digest
    # Boxes this release adds, and a point, do change it.
    plain = RenderOptions(boxes={"avatar": AVATAR}).render_spec
    assert RenderOptions(boxes={"avatar": AVATAR}, focal=FocalPoint(0.2, 0.2)).render_spec != (
        plain
    )
    smart = RenderOptions(boxes={"avatar": BANNER}, focal=FocalPoint(0.2, 0.2)).render_spec
    assert smart == RenderOptions(boxes={"avatar": BANNER}).render_spec
