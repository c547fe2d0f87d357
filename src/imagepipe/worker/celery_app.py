"""The Celery app's configuration lives in ``imagepipe.queue`` (the API and the CLI
publish with it and must not import the worker); this name stays for callers that
import it from here."""

from __future__ import annotations

from imagepipe.queue import create_celery

__all__ = ["create_celery"]
