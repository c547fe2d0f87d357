"""IMAGEPIPE_VARIANTS entries: a longest side or a box, validated for Settings.

A foundation module (beside ``config``, importing nothing of ours): ``imaging.shapes``
turns each validated entry into an imaging Box.
"""

from __future__ import annotations

import json

# A variant as IMAGEPIPE_VARIANTS gives it: the longest side (contain in that square),
# or a box {"width", "height", "fit", "gravity"} (every key present once validated).
# The names mirror imaging.crop's Fit and Gravity, which config may not import.
VariantSetting = int | dict[str, int | str]
VARIANT_FITS = ("contain", "cover")
VARIANT_GRAVITIES = ("center", "smart", "focal")
_VARIANT_FIELDS = ("width", "height", "fit", "gravity")


def parse_variant(name: str, value: object) -> VariantSetting:
    """One entry of IMAGEPIPE_VARIANTS; ValueError naming the variant and the fault."""
    if not name.isidentifier():
        raise ValueError(f"variant {name!r}: the name must be an identifier")
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"variant {name!r}: the box must be > 0, not {value}")
        return value
    if not isinstance(value, dict):
        raise ValueError(
            f"variant {name!r}: expected a number (longest side) or an object "
            f'{{"width", "height", "fit", "gravity"}}, not {value!r}'
        )
    if unknown := sorted(set(value) - set(_VARIANT_FIELDS)):
        raise ValueError(
            f"variant {name!r}: unknown fields {unknown} (allowed: width, height, fit, gravity)"
        )
    box: dict[str, int | str] = {}
    for side in ("width", "height"):
        number = value.get(side)
        if not isinstance(number, int) or isinstance(number, bool) or number <= 0:
            raise ValueError(f"variant {name!r}: {side} must be a whole number > 0")
        box[side] = number
    box["fit"] = fit = value.get("fit", "contain")
    box["gravity"] = gravity = value.get("gravity", "center")
    if fit not in VARIANT_FITS:
        raise ValueError(f"variant {name!r}: fit must be one of {list(VARIANT_FITS)}")
    if gravity not in VARIANT_GRAVITIES:
        raise ValueError(f"variant {name!r}: gravity must be one of {list(VARIANT_GRAVITIES)}")
    if fit == "contain" and gravity != "center":
        # A contained variant keeps the whole image: there is nothing to place.
        raise ValueError(f"variant {name!r}: gravity {gravity!r} needs fit 'cover'")
    return box


def parse_variants(value: object) -> dict[str, VariantSetting]:
    """IMAGEPIPE_VARIANTS as a whole: a non-empty map (JSON text from the environment)
    of name -> entry, each checked by ``parse_variant``."""
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, dict) or not value:
        raise ValueError("at least one variant is needed (a JSON object: name -> box)")
    return {str(name): parse_variant(str(name), entry) for name, entry in value.items()}
