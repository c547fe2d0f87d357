"""What a stored rendition was made with, and its digest: the one place that decides
whether a preview on disk still matches the settings.

A spec is the box (width, height, fit, gravity), the focal point where it decides the
pixels (a ``cover`` crop with ``gravity: focal``), the format, the quality, the encoder
options of the format table and the pipeline version. Its digest is stored beside each
rendition, goes into the rendition's ETag, and is what ``imagepipe backfill`` compares
with the current settings.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from imagepipe.imaging.crop import Box, Fit, FocalPoint, Gravity
from imagepipe.imaging.formats import FORMATS, FormatName
from imagepipe.imaging.shapes import follows_focal_point

# Bump when a change to the pipeline (resampling, colour handling, orientation…) makes
# stored previews differ from what it makes now: every rendition then becomes stale.
PIPELINE_VERSION = 1


@dataclass(frozen=True)
class VariantSpec:
    # The box. Specs written before crop modes had only ``box`` (the longest side);
    # migration 0019 rewrote them as width = height = box, contain, center.
    width: int
    height: int
    fit: Fit
    gravity: Gravity
    format: FormatName
    quality: int | None  # None for formats without one (PNG)
    options: tuple[tuple[str, Any], ...]  # the encoder options of the format table
    # (x, y) of the task's focal point, only for a box that follows it (None otherwise,
    # so moving the point leaves every other variant's spec, and digest, as it was).
    focal: tuple[float, float] | None = None
    pipeline: int = PIPELINE_VERSION

    def as_json(self) -> str:
        """Canonical JSON: the digest is taken over exactly this text."""
        fields = asdict(self)
        fields["options"] = dict(self.options)
        return json.dumps(fields, sort_keys=True, separators=(",", ":"))

    def render_key(self) -> str:
        """What ``RenderOptions.render_spec`` hashes for this spec: ``as_json``, except
        that a square ``contain`` box is spelled as releases before crop modes spelled
        it (``"box": n``). A task's render spec depends on settings the database does
        not hold, so no migration can recompute it: this way the tasks earlier releases
        made still match their duplicates."""
        if not (self.fit == "contain" and self.width == self.height and self.focal is None):
            return self.as_json()
        fields = asdict(self)
        for name in ("width", "height", "fit", "gravity", "focal"):
            del fields[name]
        fields |= {"box": self.width, "options": dict(self.options)}
        return json.dumps(fields, sort_keys=True, separators=(",", ":"))

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.as_json().encode()).hexdigest()[:16]


def make_spec(
    box: Box | int, output_format: FormatName, quality: int, focal: FocalPoint | None = None
) -> VariantSpec:
    """The spec of one rendition made now with this box (a number: contain in that
    square), format, configured quality and the task's focal point (kept only where it
    decides the pixels)."""
    if isinstance(box, int):
        box = Box.square(box)
    table = FORMATS[output_format]
    return VariantSpec(
        width=box.width,
        height=box.height,
        fit=box.fit,
        gravity=box.gravity,
        format=output_format,
        quality=quality if table.quality_option is not None else None,
        options=tuple(sorted(table.options.items())),
        focal=(focal.x, focal.y) if focal is not None and follows_focal_point(box) else None,
    )
