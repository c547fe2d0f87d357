"""Damaged files: whatever the bytes, only imagepipe's errors come out, never Pillow's."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from PIL import ImageFile

from imagepipe.errors import ImagepipeError, ImageTooLarge, InvalidImage, UnsupportedMediaType
from imagepipe.imaging import RenderOptions, probe, render_variants, scaled_jpeg
from tests.imaging import images

EXPECTED = (InvalidImage, UnsupportedMediaType, ImageTooLarge)
OPTIONS = RenderOptions(boxes={"small": 40, "large": 120})


def _sources(tmp_path: Path) -> dict[str, bytes]:
    photo = images.photo((200, 150))
    out = {}
    for suffix, params in {
        "jpg": {"quality": 90},
        "png": {},
        "gif": {},
        "webp": {},
        "tif": {},
        "bmp": {},
    }.items():
        path = images.save(photo, tmp_path / f"source.{suffix}", **params)
        out[suffix] = path.read_bytes()
    out["anim.gif"] = images.animated_gif(tmp_path / "anim.gif", frames=4).read_bytes()
    return out


def _mutations(data: bytes, rng: random.Random) -> list[bytes]:
    cuts = [data[:n] for n in (0, 1, 8, 16, 32, 64, 100, len(data) // 3, len(data) - 1)]
    flips = []
    for _ in range(12):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            position = rng.randrange(min(len(damaged), 400))  # headers live up front
            damaged[position] = rng.randrange(256)
        flips.append(bytes(damaged))
    return cuts + flips


@pytest.mark.filterwarnings("ignore")  # Pillow warns about some damaged files; fine here
def test_damaged_files_raise_only_domain_errors(tmp_path: Path) -> None:
    rng = random.Random(1234)
    outcomes: dict[str, int] = {}
    for name, data in _sources(tmp_path).items():
        for index, damaged in enumerate(_mutations(data, rng)):
            path = tmp_path / f"damaged-{index}-{name}"
            path.write_bytes(damaged)
            for step in ("probe", "render"):
                try:
                    if step == "probe":
                        probe(path, allowed_formats=OPTIONS.allowed_formats, max_pixels=10**7)
                    else:
                        render_variants(path, OPTIONS)
                except ImagepipeError as exc:
                    assert isinstance(exc, EXPECTED), (name, index, step, exc)
                    outcome = type(exc).__name__
                else:
                    outcome = "ok"
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
    # The sweep must really exercise both paths.
    assert outcomes.get("ok", 0) > 10 and outcomes.get("InvalidImage", 0) > 10, outcomes


class SoftTimeLimit(Exception):
    """Stands in for Celery's SoftTimeLimitExceeded, raised asynchronously mid-decode."""


@pytest.mark.parametrize("name", ["a.jpg", "a.png"])  # libjpeg-turbo, Pillow
def test_foreign_exceptions_during_decode_are_not_disguised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    path = images.save(images.photo((64, 48)), tmp_path / name)

    def interrupted(*_: object, **__: object) -> None:
        raise SoftTimeLimit

    monkeypatch.setattr(ImageFile.ImageFile, "load", interrupted)
    monkeypatch.setattr(scaled_jpeg.simplejpeg, "decode_jpeg", interrupted)
    with pytest.raises(SoftTimeLimit):
        render_variants(path, OPTIONS)
