"""Tenants and their limits: whom a key speaks for, and whether it may do one more
thing now.

A **tenant** owns tasks, idempotency keys and webhook subscriptions. Its id (the
``owner_scope`` / ``scope`` columns) is its name when ``IMAGEPIPE_API_KEYS`` is a JSON
object ``{"tenant-a": ["key1", "key2"]}``, and the key's digest when it is a list (each
key its own tenant, as every release before tenants stored it). Without keys every
client is the one tenant ``anonymous``.

The limits, per tenant (``IMAGEPIPE_KEY_*``):

- active tasks (``awaiting_upload`` + ``queued`` + ``processing``): one indexed COUNT;
- a request rate, by GCRA in Redis, and slots for uploads in flight and for followers
  (event streams, ``?wait``), as sorted sets of expiring leases in Redis: both in one
  script, so admitting a request costs one round trip (and a slot one more to give it
  back). Shared by every API process; a lease whose process died expires on its own.
  Redis unreachable: the limits fail open (the request's own Redis needs still answer
  503), and Redis is left alone for a few seconds so no request waits on it.

Pure policy and small adapters; the HTTP side (which route has which limit, the
status codes and headers) is ``imagepipe.api.access``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError
from sqlalchemy import Select, delete, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, aliased

from imagepipe.config import KeySet, Settings
from imagepipe.db.models import IdempotencyKey, Task, TaskStatus, Webhook, utcnow
from imagepipe.errors import (
    RateLimited,
    TenantLimit,
    TooManyConcurrentUploads,
    TooManyFollowers,
)

log = logging.getLogger(__name__)

ANONYMOUS = "anonymous"
# What counts against IMAGEPIPE_KEY_MAX_ACTIVE_TASKS: every task not yet ended.
ACTIVE = (TaskStatus.awaiting_upload, TaskStatus.queued, TaskStatus.processing)


def key_digest(key: str) -> str:
    """The owner id of a list-form key (what every release before tenants stored)."""
    return hashlib.sha256(key.strip().encode()).hexdigest()[:32]


# --- keys and tenants -------------------------------------------------------------


@dataclass(frozen=True)
class Tenant:
    owner: str
    admin: bool


def _tenants(keys: KeySet) -> dict[str, str]:
    """key -> owner id, for one settings field."""
    if isinstance(keys, dict):
        return {key.strip(): name for name, tenant_keys in keys.items() for key in tenant_keys}
    return {key.strip(): key_digest(key) for key in keys}


class KeyRing:
    """Every configured key, by the SHA-256 of its bytes: a lookup is one hash and one
    dict access, however many keys there are, and says nothing of a key's prefix (an
    attacker cannot steer a SHA-256 digest)."""

    def __init__(self, api_keys: KeySet, admin_api_keys: KeySet) -> None:
        regular, admin = _tenants(api_keys), _tenants(admin_api_keys)
        self._by_hash: dict[bytes, Tenant] = {}
        for key, owner in {**admin, **regular}.items():
            # A key in both fields keeps its regular tenant and is an admin.
            self._by_hash[_hash(key.encode())] = Tenant(owner=owner, admin=key in admin)
        self._adoptions = {
            key_digest(key): name
            for field in (api_keys, admin_api_keys)
            if isinstance(field, dict)
            for name, tenant_keys in field.items()
            for key in tenant_keys
        }

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        return cls(settings.api_keys, settings.admin_api_keys)

    def __bool__(self) -> bool:
        return bool(self._by_hash)

    def lookup(self, supplied: bytes) -> Tenant | None:
        return self._by_hash.get(_hash(supplied.strip()))

    def adoptions(self) -> dict[str, str]:
        """Owner ids to rewrite: the digest of each key of a named tenant -> its name."""
        return dict(self._adoptions)


def _hash(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


def adopt_owners(session: Session, adoptions: Mapping[str, str]) -> int:
    """Give a named tenant what its keys owned before they were grouped: tasks,
    webhook subscriptions and idempotency keys whose owner is the digest of one of
    its keys become the tenant's. Idempotent (nothing matches a second time); run at
    every API start, so keys moved into a tenant later are adopted the same way.
    Returns the rows moved; the caller commits."""
    moved = 0
    for digest, name in adoptions.items():
        moved += _rowcount(
            session.execute(update(Task).where(Task.owner_scope == digest).values(owner_scope=name))
        )
        moved += _rowcount(
            session.execute(update(Webhook).where(Webhook.scope == digest).values(scope=name))
        )
        # (scope, key) is the primary key: a key the tenant already holds (two of its
        # keys used one Idempotency-Key) keeps the tenant's row; the other one goes.
        held = aliased(IdempotencyKey)
        taken = exists().where(held.scope == name, held.key == IdempotencyKey.key)
        moved += _rowcount(
            session.execute(
                update(IdempotencyKey)
                .where(IdempotencyKey.scope == digest, ~taken)
                .values(scope=name)
                .execution_options(synchronize_session=False)
            )
        )
        session.execute(
            delete(IdempotencyKey)
            .where(IdempotencyKey.scope == digest)
            .execution_options(synchronize_session=False)
        )
    return moved


def _rowcount(result: Any) -> int:
    return int(result.rowcount or 0)


# --- active tasks -------------------------------------------------------------------


def active_tasks_query(owner: str) -> Select[int]:
    """COUNT of the owner's tasks not yet ended: an index range scan on
    ``(owner_scope, status)`` that reads no table row."""
    return select(func.count()).where(Task.owner_scope == owner, Task.status.in_(ACTIVE))


async def active_tasks(session: AsyncSession, owner: str) -> int:
    """How many of the tenant's tasks are awaiting upload, queued or processing."""
    return int(await session.scalar(active_tasks_query(owner)) or 0)


def active_tasks_sync(session: Session, owner: str) -> int:
    """``active_tasks`` for synchronous callers (the worker side)."""
    return int(session.scalar(active_tasks_query(owner)) or 0)


async def holds_answer(session: AsyncSession, owner: str, idempotency_key: str) -> bool:
    """Whether the tenant's Idempotency-Key already has an answer to replay: such a
    request creates nothing, so it is never refused by the quota."""
    answered = await session.scalar(
        select(IdempotencyKey.response_status).where(
            IdempotencyKey.scope == owner,
            IdempotencyKey.key == idempotency_key,
            IdempotencyKey.expires_at > utcnow(),
        )
    )
    return answered is not None


# --- rate and slots -----------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    """``requests`` per ``seconds``; a burst of up to ``requests`` is allowed."""

    requests: int
    seconds: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Rate | None:
        rate = settings.key_rate
        return None if rate is None else cls(*rate)

    @property
    def policy(self) -> str:
        """The ``RateLimit-Policy`` field (draft-ietf-httpapi-ratelimit-headers)."""
        return f'"default";q={self.requests};w={self.seconds}'


@dataclass(frozen=True)
class Slots:
    """A bounded number of things a tenant may hold at once (uploads in flight, open
    followers). ``ttl_seconds`` bounds a lease whose holder died without giving it back:
    longer than any holder keeps one."""

    kind: str
    limit: int
    ttl_seconds: float
    refusal: type[TenantLimit]


def upload_slots(settings: Settings) -> Slots:
    # After its body, an upload still stores the original and commits: a margin.
    ttl = settings.upload_timeout_seconds + 300
    return Slots("uploads", settings.key_max_concurrent_uploads, ttl, TooManyConcurrentUploads)


def follower_slots(settings: Settings) -> Slots:
    # An event stream lasts at most events_max_stream_seconds, a ?wait at most 60 s.
    ttl = max(settings.events_max_stream_seconds, 60) + 60
    return Slots("followers", settings.key_max_followers, ttl, TooManyFollowers)


@dataclass(frozen=True)
class Lease:
    key: str
    member: str


@dataclass(frozen=True)
class Admission:
    """The answer for one request: ``refused`` is None when it may go on."""

    refused: type[TenantLimit] | None = None
    # Seconds before a retry can succeed (rate) or 0 when unknown (slots).
    retry_after: int = 0
    # For the RateLimit field: quota units left and seconds until it is whole again;
    # None when no rate applied (unset, or Redis unreachable).
    remaining: int | None = None
    reset: int = 0
    lease: Lease | None = None

    def rate_field(self) -> str | None:
        if self.remaining is None:
            return None
        return f'"default";r={self.remaining};t={self.reset}'


# KEYS[1]: the tenant's theoretical arrival time (ms), KEYS[2]: its lease set.
# ARGV: emission interval ms (0: no rate), period ms, slot limit (0: no slot), lease
# ttl ms, lease member. Slots are checked first and taken last, so a request refused
# by either limit consumes neither. Redis's own clock: every API host agrees.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval, period = tonumber(ARGV[1]), tonumber(ARGV[2])
local slots, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
if slots > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= slots then return {2, -1, 0, 0} end
end
local remaining, reset = -1, 0
if interval > 0 then
  local tat = tonumber(redis.call('GET', KEYS[1]) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - period
  if now < allow_at then return {1, 0, tat - now, allow_at - now} end
  redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', new_tat - now)
  remaining = math.floor((period - (new_tat - now)) / interval)
  reset = new_tat - now
end
if slots > 0 then
  redis.call('ZADD', KEYS[2], string.format('%d', now + ttl), ARGV[5])
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return {0, remaining, reset, 0}
"""


def _key(owner: str, what: str) -> str:
    # The braces make one hash slot of a tenant's keys (Redis Cluster): one script.
    return f"imagepipe:tenant:{{{owner}}}:{what}"


def _seconds(milliseconds: int) -> int:
    return max(1, math.ceil(milliseconds / 1000))


def admission_of(
    owner: str, rate: Rate | None, slots: Slots | None, member: str, verdict: tuple[Any, ...]
) -> Admission:
    """The Admission of a verdict of ``_ADMIT`` (verdict, remaining, reset ms, retry
    ms): one reading for the Redis limiter and its double."""
    outcome, remaining, reset, retry = verdict
    left = int(remaining) if rate else None
    until = _seconds(int(reset)) if rate else 0
    if outcome == 1:
        return Admission(RateLimited, retry_after=_seconds(int(retry)), remaining=left, reset=until)
    if outcome == 2:
        assert slots is not None
        return Admission(slots.refusal)
    lease = Lease(_key(owner, slots.kind), member) if slots else None
    return Admission(lease=lease, remaining=left, reset=until)


class TenantLimiter(Protocol):
    """What the access layer asks: ``Limiter`` (Redis) or ``memory_limiter.MemoryLimiter``."""

    async def admit(self, owner: str, rate: Rate | None, slots: Slots | None) -> Admission:
        """Take one unit of the tenant's rate and one of its slots, or say which refused."""

    async def release(self, lease: Lease) -> None:
        """Give a slot back; never raise."""

    async def close(self) -> None: ...


class Limiter:
    """The rate and the slots of every tenant, in Redis; one per API process."""

    # After Redis failed, requests go unlimited this long without trying it.
    PAUSE_SECONDS = 5.0

    def __init__(self, redis_url: str, *, timeout: float = 0.5) -> None:
        self._redis = aioredis.Redis.from_url(
            redis_url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._admit = self._redis.register_script(_ADMIT)
        self._paused_until = 0.0

    async def admit(self, owner: str, rate: Rate | None, slots: Slots | None) -> Admission:
        """One round trip: take one unit of the tenant's rate and one of its slots."""
        if rate is None and slots is None:
            return Admission()
        if time.monotonic() < self._paused_until:
            return Admission()
        member = secrets.token_hex(8)
        interval = math.ceil(rate.seconds * 1000 / rate.requests) if rate else 0
        try:
            verdict, remaining, reset, retry = await self._admit(
                keys=[_key(owner, "rate"), _key(owner, slots.kind if slots else "none")],
                args=[
                    interval,
                    rate.seconds * 1000 if rate else 0,
                    slots.limit if slots else 0,
                    math.ceil(slots.ttl_seconds * 1000) if slots else 0,
                    member,
                ],
            )
        except (RedisError, OSError) as error:
            self._fail_open(error)
            return Admission()
        return admission_of(owner, rate, slots, member, (verdict, remaining, reset, retry))

    async def release(self, lease: Lease) -> None:
        """Give a slot back (if Redis is gone, the lease expires by itself)."""
        try:
            await self._redis.zrem(lease.key, lease.member)
        except (RedisError, OSError) as error:
            log.warning("tenant slot not given back (it expires by itself): %r", error)

    def _fail_open(self, error: BaseException) -> None:
        if isinstance(error, ResponseError):
            log.error("tenant limits script failed; limits off for now: %r", error)
        else:
            log.warning("Redis unreachable: tenant limits off for a few seconds: %r", error)
        self._paused_until = time.monotonic() + self.PAUSE_SECONDS

    async def close(self) -> None:
        await self._redis.aclose()
