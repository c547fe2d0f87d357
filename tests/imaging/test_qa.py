"""The output gate: each check tripped by a deliberately broken step, and every real
input of the suite passing it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageDraw

from imagepipe.errors import QualityCheckFailed
from imagepipe.imaging import RenderOptions, RenderResult, cascade, colour, qa, render_variants
from imagepipe.imaging import resample as resample_module
from tests.imaging import images

BOXES = {"small": 150, "medium": 600, "large": 1200}
ToSrgb = Callable[..., Image.Image]


def run(path: Path, **options: object) -> RenderResult:
    return render_variants(path, RenderOptions(boxes=BOXES, **options))  # type: ignore[arg-type]


def failures(path: Path) -> dict[str, list[str]]:
    with pytest.raises(QualityCheckFailed) as caught:
        run(path)
    assert caught.value.code == "quality_check_failed"
    return caught.value.failures


def break_colour(monkeypatch: pytest.MonkeyPatch, broken: Callable[[ToSrgb], ToSrgb]) -> None:
    """Replace the sRGB conversion the renderer calls with a broken one."""
    monkeypatch.setattr(cascade.colour, "to_srgb", broken(colour.to_srgb))


def rgba_png(path: Path) -> Path:
    image = images.photo((800, 600)).convert("RGBA")
    ImageDraw.Draw(image).rectangle((0, 0, 399, 599), fill=(0, 0, 0, 0))
    return images.save(image, path)


# --------------------------------------------------------------------------- passing


@pytest.mark.parametrize(
    "make",
    [
        lambda p: images.save(images.photo((1600, 1200)), p / "a.jpg"),
        lambda p: images.adobe_cmyk_jpeg(p / "adobe.jpg"),
        lambda p: images.plain_cmyk_jpeg(p / "plain.jpg"),
        lambda p: images.oriented_jpeg(p / "six.jpg", 6, (300, 200)),
        lambda p: images.jpeg_with_metadata(p / "meta.jpg"),
        lambda p: rgba_png(p / "alpha.png"),
        lambda p: images.save(Image.new("RGB", (500, 400), (12, 200, 90)), p / "flat.png"),
        lambda p: images.save(images.grey16((900, 700)), p / "deep.png"),
    ],
    ids=["photo", "adobe-cmyk", "plain-cmyk", "oriented", "metadata", "rgba", "flat", "deep"],
)
def test_real_inputs_pass_every_check(tmp_path: Path, make: Callable[[Path], Path]) -> None:
    assert run(make(tmp_path)).qa_checks == qa.CHECKS


# --------------------------------------------------------------------------- tripped


def test_inverting_conversion_fails_not_inverted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = images.save(images.photo((1600, 1200)), tmp_path / "a.jpg")
    break_colour(monkeypatch, lambda real: lambda image, **kw: ImageChops.invert(real(image, **kw)))
    assert all("not_inverted" in checks for checks in failures(path).values())


def test_cmyk_read_without_undoing_the_inversion_fails_the_gate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The classic bug: a CMYK JPEG without the Adobe marker converted as if it had one.
    path = images.plain_cmyk_jpeg(tmp_path / "plain.jpg")

    def ignores_the_marker(real: ToSrgb) -> ToSrgb:
        return lambda image, **kw: real(image, **{**kw, "undo_cmyk_inversion": False})

    break_colour(monkeypatch, ignores_the_marker)
    # White paper read as full ink everywhere, the red patch too (K inverted to 255):
    # a black rectangle where a white and red image was.
    assert failures(path) == {name: ["not_blank"] for name in BOXES}


def test_flat_source_inverted_fails_not_inverted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = images.save(Image.new("RGB", (500, 400), (230, 220, 210)), tmp_path / "flat.png")
    break_colour(monkeypatch, lambda real: lambda image, **kw: ImageChops.invert(real(image, **kw)))
    assert failures(path)["small"] == ["not_inverted"]


def test_blank_conversion_fails_not_blank(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = images.save(images.with_markers((1600, 1200)), tmp_path / "markers.png")
    break_colour(
        monkeypatch, lambda real: lambda image, **kw: Image.new("RGB", image.size, (128, 128, 128))
    )
    assert failures(path)["large"] == ["not_blank"]


def test_flat_source_may_give_a_flat_preview(tmp_path: Path) -> None:
    path = images.save(Image.new("RGB", (500, 400), (40, 40, 40)), tmp_path / "flat.png")
    assert "not_blank" in run(path).qa_checks


def test_wrong_size_fails_dimensions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = images.save(images.photo((1600, 1200)), tmp_path / "a.jpg")
    real = resample_module.cascade_shrink

    def off_by_some(image: Image.Image, target: tuple[int, int]) -> Image.Image:
        return real(image, (target[0] - 5, target[1] - 4))  # aspect kept, size wrong

    monkeypatch.setattr(cascade.resample, "cascade_shrink", off_by_some)
    found = failures(path)
    assert found["small"] == ["dimensions"] and found["medium"] == ["dimensions"]
    assert "large" not in found  # made by the first step, which is not broken


def test_squashed_preview_fails_aspect(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = images.save(images.photo((1600, 1200)), tmp_path / "a.jpg")
    real = resample_module.cascade_shrink

    def squash(image: Image.Image, target: tuple[int, int]) -> Image.Image:
        return real(image, (target[0], target[1] // 2))

    monkeypatch.setattr(cascade.resample, "cascade_shrink", squash)
    assert failures(path)["small"] == ["dimensions", "aspect"]


def test_dropped_alpha_fails_alpha_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = rgba_png(tmp_path / "alpha.png")
    break_colour(monkeypatch, lambda real: lambda image, **kw: real(image, **kw).convert("RGB"))
    assert all(checks == ["alpha_kept"] for checks in failures(path).values())


def test_configured_jpeg_output_may_flatten_alpha(tmp_path: Path) -> None:
    result = run(rgba_png(tmp_path / "alpha.png"), output_format="JPEG")
    assert result.qa_checks == qa.CHECKS


# --------------------------------------------------------------------------- arithmetic


@pytest.mark.parametrize(
    ("size", "source", "kept"),
    [
        ((150, 113), (4000, 3000), True),  # rounded half up
        ((150, 1), (5000, 1), True),
        ((1, 150), (1, 5000), True),
        ((150, 112), (4000, 3000), True),  # one pixel off: still rounding
        ((150, 110), (4000, 3000), False),
        ((150, 150), (4000, 3000), False),
    ],
)
def test_aspect_within_rounding(size: tuple[int, int], source: tuple[int, int], kept: bool) -> None:
    assert qa.aspect_kept(size, source) is kept


def test_the_reference_sample_serves_the_image_it_was_taken_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image = images.photo((320, 240))
    upright = qa.reference(image, display_size=(320, 240), orientation=1, undo_cmyk_inversion=False)
    turned = qa.reference(image, display_size=(240, 320), orientation=6, undo_cmyk_inversion=False)
    calls: list[Image.Image] = []
    real = qa.sample
    monkeypatch.setattr(qa, "sample", lambda subject: calls.append(subject) or real(subject))
    assert upright.sample_of(image) is upright.sample  # the same pixels: not sampled again
    assert calls == []
    other = image.copy()  # equal pixels, another image: sampled
    assert upright.sample_of(other).luma.tolist() == upright.sample.luma.tolist()
    assert calls == [other]
    turned.sample_of(image)  # its sample is of the turned image, not of this one
    assert calls == [other, image]
