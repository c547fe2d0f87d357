"""The database's clock, for leases: every worker compares against the same clock.

Each worker's own clock may be off by seconds (or more, on a host without NTP); a
lease written by one worker and judged by another must use one clock, so leases are
set and compared with the database's ``now()``.

SQLite has no ``now()``; its ``strftime(..., 'now')`` is UTC, and the format below is
the one SQLAlchemy stores datetimes in on SQLite, so stored and computed times
compare as text in the right order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import literal_column
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from imagepipe.db.types import UtcDateTime

_SQLITE_FORMAT = "'%Y-%m-%d %H:%M:%f000'"


class db_now(FunctionElement[datetime]):
    """The database's current time."""

    type = UtcDateTime()
    inherit_cache = True
    name = "db_now"


class db_now_plus(FunctionElement[datetime]):
    """The database's current time plus a number of seconds (negative: minus)."""

    type = UtcDateTime()
    inherit_cache = True
    name = "db_now_plus"

    def __init__(self, seconds: float) -> None:
        # A literal, not a bind: the statement is cached per distinct offset, and the
        # offset comes from settings, never from a request.
        super().__init__(literal_column(repr(float(seconds))))


@compiles(db_now)
def _now(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    return "now()"


@compiles(db_now, "sqlite")
def _now_sqlite(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    return f"strftime({_SQLITE_FORMAT}, 'now')"


@compiles(db_now_plus)
def _plus(element: db_now_plus, compiler: SQLCompiler, **kw: Any) -> str:
    return f"(now() + make_interval(secs => {compiler.process(element.clauses, **kw)}))"


@compiles(db_now_plus, "sqlite")
def _plus_sqlite(element: db_now_plus, compiler: SQLCompiler, **kw: Any) -> str:
    seconds = compiler.process(element.clauses, **kw)
    return f"strftime({_SQLITE_FORMAT}, 'now', printf('%+f seconds', {seconds}))"
