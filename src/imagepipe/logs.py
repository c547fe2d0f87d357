"""Logging: JSON lines in containers, plain lines in a terminal; ``task_id`` carried
as a field from the request to the worker."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

from imagepipe.config import Settings

_HANDLER_NAME = "imagepipe"
_TEXT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class _TaskIdText(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        task_id = getattr(record, "task_id", None)
        return f"{line} [task_id={task_id}]" if task_id else line


def configure(settings: Settings) -> None:
    use_json = settings.log_format == "json" or (
        settings.log_format == "auto" and not sys.stderr.isatty()
    )
    handler = logging.StreamHandler(sys.stderr)
    if use_json:
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"levelname": "level", "asctime": "time", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(_TaskIdText(_TEXT))
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    # Idempotent (the CLI and the app factory both call it) and polite: only our own
    # earlier handler is replaced; handlers others installed (pytest's) stay.
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
