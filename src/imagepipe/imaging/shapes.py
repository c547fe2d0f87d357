"""What ``IMAGEPIPE_VARIANTS`` says of each variant, read into a ``Box``.

An entry is a number (the longest side: the variant fits inside that square, as every
release before crop modes had it) or an object ``{"width", "height", "fit",
"gravity"}``. Settings keep each entry in the form it was given (so they print and
travel to subprocesses as written); the render works on ``Box`` only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from imagepipe.imaging.crop import FITS, GRAVITIES, Box

Variant = int | Box
FIELDS = ("width", "height", "fit", "gravity")


def parse(name: str, value: object) -> Variant:
    """One entry of ``IMAGEPIPE_VARIANTS``; ValueError with a message naming the
    variant and what is wrong with it."""
    if not name.isidentifier():
        raise ValueError(f"variant {name!r}: the name must be an identifier")
    if isinstance(value, Box):
        value = {field: getattr(value, field) for field in FIELDS}
    if _is_int(value):
        assert isinstance(value, int)
        if value <= 0:
            raise ValueError(f"variant {name!r}: the box must be > 0, not {value}")
        return value
    if not isinstance(value, Mapping):
        raise ValueError(
            f"variant {name!r}: expected a number (longest side) or an object "
            f'{{"width", "height", "fit", "gravity"}}, not {value!r}'
        )
    if unknown := sorted(set(value) - set(FIELDS)):
        raise ValueError(f"variant {name!r}: unknown fields {unknown} (allowed: {list(FIELDS)})")
    sides: list[int] = []
    for side in ("width", "height"):
        number = value.get(side)
        if not isinstance(number, int) or isinstance(number, bool) or number <= 0:
            raise ValueError(f"variant {name!r}: {side} must be a whole number > 0")
        sides.append(number)
    fit = value.get("fit", "contain")
    gravity = value.get("gravity", "center")
    if fit not in FITS:
        raise ValueError(f"variant {name!r}: fit must be one of {list(FITS)}")
    if gravity not in GRAVITIES:
        raise ValueError(f"variant {name!r}: gravity must be one of {list(GRAVITIES)}")
    if fit == "contain" and gravity != "center":
        # A contained variant keeps the whole image: there is nothing to place.
        raise ValueError(f"variant {name!r}: gravity {gravity!r} needs fit 'cover'")
    return Box(sides[0], sides[1], fit, gravity)


def as_box(value: Variant) -> Box:
    return Box.square(value) if isinstance(value, int) else value


def boxes(variants: Mapping[str, Variant]) -> dict[str, Box]:
    """Every variant as a Box, in the order given."""
    return {name: as_box(value) for name, value in variants.items()}


def largest_first(variants: Mapping[str, Variant]) -> list[tuple[str, Box]]:
    """By longest side, largest first (the render orders its steps by the sizes each
    box gives the image in hand; this order is only a stable default)."""
    return sorted(boxes(variants).items(), key=lambda item: item[1].longest, reverse=True)


def follows_focal_point(box: Box) -> bool:
    """Whether a task's focal point decides this variant's pixels: a ``cover`` crop
    placed by ``gravity: focal``. Every other variant ignores the point."""
    return box.fit == "cover" and box.gravity == "focal"


def any_follow_focal_point(variants: Iterable[Box]) -> bool:
    return any(follows_focal_point(box) for box in variants)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
