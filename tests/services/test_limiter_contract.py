"""The tenant limiter's contract: the Redis limiter (GCRA and leases in one script) and
its in-process double give the same answers to the same requests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from imagepipe.errors import RateLimited, TooManyConcurrentUploads, TooManyFollowers
from imagepipe.services.memory_limiter import MemoryLimiter
from imagepipe.services.tenancy import Admission, Limiter, Rate, Slots, TenantLimiter

pytestmark = pytest.mark.anyio

# Long enough that no unit comes back while a test runs.
RATE = Rate(requests=3, seconds=60)
UPLOADS = Slots("uploads", limit=2, ttl_seconds=600, refusal=TooManyConcurrentUploads)
FOLLOWERS = Slots("followers", limit=1, ttl_seconds=600, refusal=TooManyFollowers)


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.servers), "memory"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[TenantLimiter]:
    real: TenantLimiter
    if request.param == "memory":
        real = MemoryLimiter()
    else:
        real = Limiter(request.getfixturevalue("redis_url"))
    try:
        yield real
    finally:
        await real.close()


async def test_nothing_to_limit_admits_without_a_rate_field(limiter: TenantLimiter) -> None:
    assert await limiter.admit("a", None, None) == Admission()


async def test_a_burst_of_the_rate_then_a_refusal_with_its_wait(limiter: TenantLimiter) -> None:
    answers = [await limiter.admit("a", RATE, None) for _ in range(RATE.requests)]
    assert [a.refused for a in answers] == [None, None, None]
    assert [a.remaining for a in answers] == [2, 1, 0]
    # Each unit comes back 20 s after the one before: whole again a window later.
    assert [a.reset for a in answers] == [20, 40, 60]
    refused = await limiter.admit("a", RATE, None)
    assert refused.refused is RateLimited
    assert refused.remaining == 0
    # One unit comes back every 20 s.
    assert refused.retry_after == 20
    assert refused.rate_field() == f'"default";r=0;t={refused.reset}'
    # Another tenant has a quota of its own.
    other = await limiter.admit("b", RATE, None)
    assert other.refused is None and other.remaining == 2


async def test_slots_are_taken_given_back_and_per_kind(limiter: TenantLimiter) -> None:
    first = await limiter.admit("a", None, UPLOADS)
    second = await limiter.admit("a", None, UPLOADS)
    assert first.lease is not None and second.lease is not None
    assert first.lease.member != second.lease.member
    # No rate applied: no RateLimit field.
    assert first.remaining is None and first.rate_field() is None
    full = await limiter.admit("a", None, UPLOADS)
    assert full.refused is TooManyConcurrentUploads and full.lease is None
    assert full.retry_after == 0
    # Another kind and another tenant are counted apart.
    assert (await limiter.admit("a", None, FOLLOWERS)).refused is None
    assert (await limiter.admit("b", None, UPLOADS)).refused is None
    await limiter.release(first.lease)
    again = await limiter.admit("a", None, UPLOADS)
    assert again.refused is None
    # Giving back a lease twice, or one already gone, is harmless.
    await limiter.release(first.lease)
    assert (await limiter.admit("a", None, UPLOADS)).refused is TooManyConcurrentUploads


async def test_a_refusal_consumes_neither_limit(limiter: TenantLimiter) -> None:
    # Slots full: the rate is not charged.
    one = await limiter.admit("a", None, FOLLOWERS)
    assert one.lease is not None
    for _ in range(5):
        assert (await limiter.admit("a", RATE, FOLLOWERS)).refused is TooManyFollowers
    await limiter.release(one.lease)
    taken = await limiter.admit("a", RATE, FOLLOWERS)
    assert taken.refused is None and taken.remaining == 2 and taken.lease is not None
    await limiter.release(taken.lease)
    # Rate spent: no slot is taken by the refused requests.
    for _ in range(2):
        assert (await limiter.admit("a", RATE, None)).refused is None
    assert (await limiter.admit("a", RATE, FOLLOWERS)).refused is RateLimited
    assert (await limiter.admit("a", None, FOLLOWERS)).refused is None


async def test_an_unreachable_limiter_fails_open() -> None:
    # The double's ``outage`` stands for this.
    real = Limiter("redis://127.0.0.1:9", timeout=0.2)
    double = MemoryLimiter()
    double.outage = True
    try:
        for limiter in (real, double):
            assert await limiter.admit("a", RATE, UPLOADS) == Admission()
    finally:
        await real.close()


async def test_the_double_runs_on_its_clock() -> None:
    # What the Redis script does as time passes (too slow to wait for on Redis),
    # shown on the double's clock.
    now = [1_000_000]
    double = MemoryLimiter(clock=lambda: now[0])
    short = Slots("uploads", limit=1, ttl_seconds=1, refusal=TooManyConcurrentUploads)
    for _ in range(3):
        assert (await double.admit("a", RATE, None)).refused is None
    assert (await double.admit("a", RATE, None)).refused is RateLimited
    now[0] += 20_000  # one unit back
    assert (await double.admit("a", RATE, None)).refused is None
    assert (await double.admit("a", None, short)).refused is None
    assert (await double.admit("a", None, short)).refused is TooManyConcurrentUploads
    now[0] += 1_000  # a lease whose holder died expires
    assert (await double.admit("a", None, short)).refused is None
