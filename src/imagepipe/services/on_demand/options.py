"""The option string of an on-demand rendition: ``w:640,h:480,fit:cover,g:smart,q:80``
or a named preset ``p:thumb``.

Parsing is strict (an unknown key, a bad value or a key given twice is refused, never
ignored): a lenient parser lets ``w:300``, ``w:0300`` and ``w:300,w:300`` each make a
rendition of their own, which is how an open image server is exhausted. What is
accepted is normalised to one canonical string (fixed key order, defaults spelled the
same way), and the cache key is made from that.

Semantics:
- ``w`` and/or ``h``: the box, in pixels, each at most ``max_side``. A side not given
  is ``max_side``: ``w:640`` alone is "640 wide, height by the aspect ratio".
- ``fit:contain`` (default): the whole image inside the box; ``fit:cover``: the box
  filled, the rest cropped (needs both sides).
- ``g``: what ``cover`` keeps: ``center`` (default), ``smart`` or ``focal`` (the task's
  focal point; ``center`` when it has none). ``contain`` crops nothing, so the
  canonical form drops ``g`` there.
- ``q``: the encoder quality, 1-100 (default: the format's configured quality).
- ``p:<name>``: a preset of ``IMAGEPIPE_ON_DEMAND_PRESETS``, alone (no overrides).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

from imagepipe.errors import InvalidOptions
from imagepipe.imaging.crop import FITS, GRAVITIES, Fit, Gravity

# Longer option strings are refused before any parsing (a URL path segment).
MAX_LENGTH = 128
_SIDE = re.compile(r"[1-9][0-9]{0,5}")
_QUALITY = re.compile(r"[1-9][0-9]?|100")
_PRESET = re.compile(r"[a-z0-9_-]{1,32}")


@dataclass(frozen=True)
class RenditionOptions:
    """What one option string asks for, resolved (a preset replaced by its options)."""

    width: int | None
    height: int | None
    fit: Fit = "contain"
    gravity: Gravity = "center"
    quality: int | None = None
    # The preset it was asked by, if any: its URLs keep saying p:<name>.
    preset: str | None = None

    @property
    def canonical(self) -> str:
        """The resolved options in one spelling: what the cache key is made of."""
        parts = [f"w:{self.width}"] if self.width else []
        parts += [f"h:{self.height}"] if self.height else []
        parts.append(f"fit:{self.fit}")
        if self.fit == "cover":
            parts.append(f"g:{self.gravity}")
        if self.quality is not None:
            parts.append(f"q:{self.quality}")
        return ",".join(parts)

    @property
    def in_url(self) -> str:
        """How a link spells these options: the preset's name, or the canonical form."""
        return f"p:{self.preset}" if self.preset else self.canonical

    def box(self, max_side: int) -> tuple[int, int]:
        """(width, height) of the box; an unset side is ``max_side`` (aspect decides)."""
        return self.width or max_side, self.height or max_side


def parse(
    text: str, *, max_side: int, presets: Mapping[str, str] | None = None
) -> RenditionOptions:
    """The options of ``text``; InvalidOptions (400) with the first problem found."""
    pairs = _pairs(text)
    if "p" in pairs:
        if len(pairs) > 1:
            raise InvalidOptions("A preset (p:<name>) takes no other options.")
        name = pairs["p"]
        if not _PRESET.fullmatch(name) or name not in (presets or {}):
            raise InvalidOptions(f"No preset named {name!r}.")
        resolved = parse((presets or {})[name], max_side=max_side)
        return RenditionOptions(
            resolved.width, resolved.height, resolved.fit, resolved.gravity, resolved.quality, name
        )
    width = _side(pairs, "w", max_side)
    height = _side(pairs, "h", max_side)
    if width is None and height is None:
        raise InvalidOptions("Give w:<px>, h:<px> or both.")
    fit = _choice(pairs, "fit", FITS)
    gravity = _choice(pairs, "g", GRAVITIES)
    if fit == "cover" and (width is None or height is None):
        raise InvalidOptions("fit:cover needs both w and h.")
    quality = None
    if "q" in pairs:
        if not _QUALITY.fullmatch(pairs["q"]):
            raise InvalidOptions("q is a whole number from 1 to 100.")
        quality = int(pairs["q"])
    return RenditionOptions(width, height, cast(Fit, fit), cast(Gravity, gravity), quality)


def check_presets(presets: Mapping[str, str], *, max_side: int) -> None:
    """Raise ValueError naming the first preset whose options do not parse: a service
    refuses to start with one, instead of answering 400 for it on every request."""
    for name, text in presets.items():
        try:
            parse(text, max_side=max_side)
        except InvalidOptions as error:
            raise ValueError(f"on-demand preset {name!r}: {error.message}") from None


def _pairs(text: str) -> dict[str, str]:
    if not text or len(text) > MAX_LENGTH:
        raise InvalidOptions(f"Options are 1 to {MAX_LENGTH} characters.")
    pairs: dict[str, str] = {}
    for item in text.split(","):
        key, colon, value = item.partition(":")
        if not colon or not value:
            raise InvalidOptions(f"Not key:value: {item[:20]!r}.")
        if key not in ("w", "h", "fit", "g", "q", "p"):
            raise InvalidOptions(f"Unknown option {key[:20]!r} (w, h, fit, g, q or p).")
        if key in pairs:
            raise InvalidOptions(f"Option {key!r} is given twice.")
        pairs[key] = value
    return pairs


def _side(pairs: dict[str, str], key: str, max_side: int) -> int | None:
    if key not in pairs:
        return None
    value = pairs[key]
    if not _SIDE.fullmatch(value):
        raise InvalidOptions(f"{key} is a whole number of pixels from 1 to {max_side}.")
    if int(value) > max_side:
        raise InvalidOptions(f"{key}:{value} is larger than the limit ({max_side}).")
    return int(value)


def _choice(pairs: dict[str, str], key: str, allowed: tuple[str, ...]) -> str:
    value = pairs.get(key, allowed[0])
    if value not in allowed:
        raise InvalidOptions(f"{key} is one of {', '.join(allowed)}.")
    return value
