"""``Idempotency-Key``: a retried request gets the first answer, never a second task.

A key is reserved (a row with no answer yet) once the request body has arrived, so
two requests racing with one key meet at the database's primary key: the loser gets
``409 idempotency_key_in_use`` while the winner runs, its answer once it has finished,
and ``422 idempotency_key_reused`` if its body differs. The answer is written in the
same transaction as the task row, so "task created" and "answer remembered" never
disagree. A request that fails gives its reservation back: the client may retry.

Keys are scoped per API key and expire after ``idempotency_ttl_seconds`` (24 h).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.db.models import IdempotencyKey, utcnow
from imagepipe.errors import IdempotencyKeyInUse, IdempotencyKeyReused, InvalidRequest

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_VALID_KEY = re.compile(r"[\x21-\x7e]{1,255}")
# A reservation this old belongs to a request whose process died: take it over.
ABANDONED_AFTER = timedelta(minutes=10)
_RACE_ROUNDS = 3


def parse_key(value: str | None) -> str | None:
    """The header's key, or None without one; 1-255 visible ASCII characters."""
    if value is None:
        return None
    if not _VALID_KEY.fullmatch(value):
        raise InvalidRequest(f"{HEADER} must be 1-255 visible ASCII characters.")
    return value


def fingerprint(*parts: object) -> str:
    """A digest of what makes two requests the same (file digest, fields, route)."""
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Replay:
    status_code: int
    body: str
    task_id: uuid.UUID | None


class Replayed(Exception):
    """Raised inside a request that found its answer already given."""

    def __init__(self, replay: Replay) -> None:
        super().__init__("replayed")
        self.replay = replay


class Reservation:
    """One request's hold on one key: ``reserve``, then ``record`` or ``release``."""

    def __init__(
        self, sessions: async_sessionmaker[Any], *, scope: str, key: str, ttl_seconds: int
    ) -> None:
        self.sessions = sessions
        self.scope = scope
        self.key = key
        self.ttl = timedelta(seconds=ttl_seconds)
        self.held = False
        self.recorded = False

    async def reserve(self, request_fingerprint: str) -> Replay | None:
        """Hold the key (None: go ahead), or the first answer to replay.

        Raises IdempotencyKeyInUse or IdempotencyKeyReused."""
        for _ in range(_RACE_ROUNDS):
            now = utcnow()
            async with self.sessions() as session:
                if await self._insert(session, request_fingerprint, now):
                    self.held = True
                    return None
                row = await session.get(IdempotencyKey, (self.scope, self.key))
                if row is None:
                    continue  # expired and removed by someone else meanwhile: try again
                stale = row.expires_at <= now or (
                    row.response_status is None and row.created_at <= now - ABANDONED_AFTER
                )
                if stale:
                    await self._remove(session, row.created_at)
                    continue
                if row.fingerprint != request_fingerprint:
                    raise IdempotencyKeyReused()
                if row.response_status is None or row.response_body is None:
                    raise IdempotencyKeyInUse()
                return Replay(row.response_status, row.response_body, row.task_id)
        raise IdempotencyKeyInUse()

    async def _insert(self, session: AsyncSession, request_fingerprint: str, now: datetime) -> bool:
        session.add(
            IdempotencyKey(
                scope=self.scope,
                key=self.key,
                fingerprint=request_fingerprint,
                created_at=now,
                expires_at=now + self.ttl,
            )
        )
        try:
            await session.commit()
        except IntegrityError:
            await session.rollback()
            return False
        return True

    async def _remove(self, session: AsyncSession, created_at: datetime) -> None:
        # Only the row we judged stale: a fresh reservation made meanwhile stays.
        await session.execute(
            delete(IdempotencyKey).where(
                and_(
                    IdempotencyKey.scope == self.scope,
                    IdempotencyKey.key == self.key,
                    IdempotencyKey.created_at == created_at,
                )
            )
        )
        await session.commit()

    async def record(
        self, session: AsyncSession, *, task_id: uuid.UUID, status_code: int, body: str
    ) -> None:
        """Remember the answer, in the caller's transaction (the one creating the task)."""
        await session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.scope == self.scope, IdempotencyKey.key == self.key)
            .values(task_id=task_id, response_status=status_code, response_body=body)
        )

    def committed(self) -> None:
        """The transaction that recorded the answer has committed."""
        self.recorded = True

    async def release(self) -> None:
        """Give the key back after a failed request (nothing was created)."""
        if not self.held or self.recorded:
            return
        async with self.sessions() as session:
            await session.execute(
                delete(IdempotencyKey).where(
                    IdempotencyKey.scope == self.scope,
                    IdempotencyKey.key == self.key,
                    IdempotencyKey.response_status.is_(None),
                )
            )
            await session.commit()
        self.held = False


async def commit_with_answer(
    session: AsyncSession,
    reservation: Reservation | None,
    *,
    task_id: uuid.UUID,
    status_code: int,
    body: Callable[[], str],
) -> None:
    """Commit the caller's transaction (the one creating the task) with, when the
    request holds a key, its answer ``body()`` remembered in it: "created" and "answer
    remembered" agree."""
    if reservation is not None:
        await reservation.record(session, task_id=task_id, status_code=status_code, body=body())
    await session.commit()
    if reservation is not None:
        reservation.committed()


def drop_expired(sessions: sessionmaker[Session], now: datetime | None = None) -> int:
    """Delete keys past their expiry (beat, worker/housekeeping.py); returns how many.

    An expired key is already ignored by ``reserve``: this only keeps the table from
    growing. One statement on the ``expires_at`` index; run every reconcile interval,
    each run finds about one interval's worth of keys."""
    with sessions.begin() as session:
        result = session.execute(
            delete(IdempotencyKey)
            .where(IdempotencyKey.expires_at <= (now or utcnow()))
            .execution_options(synchronize_session=False)
        )
    return int(result.rowcount)  # type: ignore[attr-defined]
