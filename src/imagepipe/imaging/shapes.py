"""Settings' variants as imaging Boxes.

``IMAGEPIPE_VARIANTS`` entries are validated by ``config_variants.parse_variant`` and
kept in the form they were given: a number (the longest side: the variant fits inside
that square, as every release before crop modes had it) or a box ``{"width",
"height", "fit", "gravity"}``. The render works on ``Box`` only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, cast

from imagepipe.imaging.crop import Box, Fit, Gravity

if TYPE_CHECKING:  # config imports imaging (its plugins): no import back at run time
    from imagepipe.config import VariantSetting


def as_box(value: VariantSetting | Box) -> Box:
    """A number n is contain in n x n; a box setting becomes the Box it names."""
    if isinstance(value, Box):
        return value
    if isinstance(value, int):
        return Box.square(value)
    return Box(
        int(value["width"]),
        int(value["height"]),
        cast(Fit, value["fit"]),
        cast(Gravity, value["gravity"]),
    )


def boxes(variants: Mapping[str, VariantSetting | Box]) -> dict[str, Box]:
    """Every variant as a Box, in the order given."""
    return {name: as_box(value) for name, value in variants.items()}


def largest_first(variants: Mapping[str, VariantSetting | Box]) -> list[tuple[str, Box]]:
    """By longest side, largest first (the render orders its steps by the sizes each
    box gives the image in hand; this order is only a stable default)."""
    return sorted(boxes(variants).items(), key=lambda item: item[1].longest, reverse=True)


def follows_focal_point(box: Box) -> bool:
    """Whether a task's focal point decides this variant's pixels: a ``cover`` crop
    placed by ``gravity: focal``. Every other variant ignores the point."""
    return box.fit == "cover" and box.gravity == "focal"


def any_follow_focal_point(variants: Iterable[Box]) -> bool:
    return any(follows_focal_point(box) for box in variants)
