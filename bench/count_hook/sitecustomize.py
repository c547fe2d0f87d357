"""Bench-only counters, loaded by the API and worker processes `bench.cost` starts.

`bench.cost` puts this directory on PYTHONPATH and sets IMAGEPIPE_BENCH_COUNT_DIR; the
interpreter then imports this module at start-up. Nothing in imagepipe knows about it.
Each process (each prefork child too: the file is chosen by pid at the first event)
appends one line per event, flushed at once, so a process killed at the end of a round
has already told everything:

    db <first word of the statement>          one per cursor execution (SQLAlchemy)
    commit                                    one per committed transaction
    s3 <method> <request body bytes>          one per HTTP request botocore sends
    s3-in <operation> <response body bytes>   one per answered call
"""

from __future__ import annotations

import os
from typing import Any, TextIO

_DIRECTORY = os.environ.get("IMAGEPIPE_BENCH_COUNT_DIR")
_ROLE = os.environ.get("IMAGEPIPE_BENCH_ROLE", "process")
_files: dict[int, TextIO] = {}


def _write(line: str) -> None:
    pid = os.getpid()
    out = _files.get(pid)
    if out is None:
        assert _DIRECTORY is not None
        out = _files[pid] = open(  # noqa: SIM115 - kept open for the process's life
            os.path.join(_DIRECTORY, f"{_ROLE}-{pid}.log"), "a", buffering=1
        )
    out.write(line + "\n")


def _on_statement(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
    word = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "?"
    _write(f"db {word}")


def _on_send(request: Any, **kwargs: Any) -> None:
    _write(f"s3 {request.method} {int(request.headers.get('Content-Length') or 0)}")


def _on_answer(http_response: Any, model: Any, **kwargs: Any) -> None:
    length = int(http_response.headers.get("content-length") or 0)
    _write(f"s3-in {model.name} {length if model.name == 'GetObject' else 0}")


def _install() -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    # On the Engine class: every engine, sync or async (asyncpg runs under a sync facade).
    event.listen(Engine, "before_cursor_execute", _on_statement)
    event.listen(Engine, "commit", lambda conn: _write("commit"))

    import botocore.session

    create = botocore.session.Session.create_client

    def create_client(self: Any, *args: Any, **kwargs: Any) -> Any:
        client = create(self, *args, **kwargs)
        client.meta.events.register("before-send", _on_send)
        client.meta.events.register("after-call", _on_answer)
        return client

    botocore.session.Session.create_client = create_client  # type: ignore[method-assign]


if _DIRECTORY:
    _install()
