"""What a stored rendition was made with, and its digest: the one place that decides
whether a preview on disk still matches the settings.

A spec is the box, the format, the quality, the encoder options of the format table
and the pipeline version. Its digest is stored beside each rendition, goes into the
rendition's ETag, and is what ``imagepipe backfill`` compares with the current settings.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from imagepipe.imaging.formats import FORMATS, FormatName

# Bump when a change to the pipeline (resampling, colour handling, orientation…) makes
# stored previews differ from what it makes now: every rendition then becomes stale.
PIPELINE_VERSION = 1


@dataclass(frozen=True)
class VariantSpec:
    box: int  # longest side in pixels
    format: FormatName
    quality: int | None  # None for formats without one (PNG)
    options: tuple[tuple[str, Any], ...]  # the encoder options of the format table
    pipeline: int = PIPELINE_VERSION

    def as_json(self) -> str:
        """Canonical JSON: the digest is taken over exactly this text."""
        fields = asdict(self)
        fields["options"] = dict(self.options)
        return json.dumps(fields, sort_keys=True, separators=(",", ":"))

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.as_json().encode()).hexdigest()[:16]


def make_spec(box: int, output_format: FormatName, quality: int) -> VariantSpec:
    """The spec of one rendition made now with this box, format and configured quality."""
    table = FORMATS[output_format]
    return VariantSpec(
        box=box,
        format=output_format,
        quality=quality if table.quality_option is not None else None,
        options=tuple(sorted(table.options.items())),
    )
