"""Extra Pillow plugins, registered once per process.

HEIF/HEIC comes from pillow-heif (libheif); AVIF is Pillow's own. Registration only
makes the format known to ``Image.open``: the allowlist, the caps and the sniffing in
opening.py apply to HEIF exactly as to every other format.
"""

from __future__ import annotations

import threading

import pillow_heif
from PIL import Image

_lock = threading.Lock()
_registered = False


def register() -> None:
    """Register the HEIF opener (idempotent, thread-safe) and every built-in plugin."""
    global _registered
    with _lock:
        if not _registered:
            # No thumbnails as extra frames; one decoding thread (a worker process
            # renders one image per core); no AVIF from here (Pillow's plugin has it).
            pillow_heif.register_heif_opener(thumbnails=False, decode_threads=1)
            _registered = True
    Image.init()
