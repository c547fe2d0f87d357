"""Pure imaging: bytes or files in, header facts and previews out.

Knows nothing of FastAPI, Celery or the database; raises only imagepipe.errors.
"""

from imagepipe.imaging.probe import ImageInfo, probe
from imagepipe.imaging.render import RenderedVariant, RenderOptions, RenderResult, render_variants

__all__ = [
    "ImageInfo",
    "RenderOptions",
    "RenderResult",
    "RenderedVariant",
    "probe",
    "render_variants",
]
