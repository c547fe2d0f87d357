"""The process-wide Celery app for ``celery -A imagepipe.worker.app`` and the CLI.

Settings are read here, at import, because Celery needs its app object at import;
building it does not connect to anything.
"""

from __future__ import annotations

from celery.signals import setup_logging

from imagepipe import logs
from imagepipe.config import Settings
from imagepipe.queue import create_celery

# The one Settings of a worker or beat process: everything in it reads this one.
settings = Settings()
celery_app = create_celery(settings)
app = celery_app


@setup_logging.connect
def _configure_logging(**_: object) -> None:
    # Connecting this signal stops Celery from installing its own handlers.
    logs.configure(settings)
