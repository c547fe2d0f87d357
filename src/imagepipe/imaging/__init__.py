"""Pure imaging: bytes or files in, header facts and previews out.

Knows nothing of FastAPI, Celery or the database; raises only imagepipe.errors.
"""

from imagepipe.imaging.probe import ImageInfo, probe
from imagepipe.imaging.render import Preview, RenderOptions, RenderResult, render_previews

__all__ = ["ImageInfo", "Preview", "RenderOptions", "RenderResult", "probe", "render_previews"]
