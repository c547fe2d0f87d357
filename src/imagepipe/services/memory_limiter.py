"""The double of ``tenancy.Limiter`` for an API run in one process without Redis.

The same arithmetic as the Redis script (``tenancy._ADMIT``), step for step, on this
process's monotonic clock: a GCRA theoretical arrival time per tenant and a set of
expiring leases per tenant and kind. Its answers go through the same
``tenancy.admission_of`` as the real one's, and ``tests/services/test_limiter_contract.py``
runs the same assertions on both. ``outage`` makes it fail open, as the real one does
when Redis does not answer.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import Callable

from imagepipe.services.tenancy import Admission, Lease, Rate, Slots, admission_of


def _milliseconds() -> int:
    return time.monotonic_ns() // 1_000_000


class MemoryLimiter:
    def __init__(self, *, clock: Callable[[], int] = _milliseconds) -> None:
        # ``clock``: milliseconds, as Redis's TIME is read by the script.
        self._clock = clock
        self._arrivals: dict[str, int] = {}
        # (owner, kind) -> member -> expiry (ms).
        self._leases: dict[tuple[str, str], dict[str, int]] = {}
        self._lock = asyncio.Lock()
        self.outage = False

    async def admit(self, owner: str, rate: Rate | None, slots: Slots | None) -> Admission:
        if rate is None and slots is None:
            return Admission()
        if self.outage:
            return Admission()  # fail open, as the real one with Redis down
        member = secrets.token_hex(8)
        async with self._lock:
            verdict = self._verdict(owner, rate, slots, member)
        return admission_of(owner, rate, slots, member, verdict)

    def _verdict(
        self, owner: str, rate: Rate | None, slots: Slots | None, member: str
    ) -> tuple[int, int, int, int]:
        """The script's answer: (verdict, remaining, reset ms, retry ms)."""
        now = self._clock()
        held: dict[str, int] = {}
        if slots is not None and slots.limit > 0:
            held = self._leases.setdefault((owner, slots.kind), {})
            for expired in [name for name, expiry in held.items() if expiry <= now]:
                del held[expired]
            if len(held) >= slots.limit:
                return 2, -1, 0, 0
        remaining, reset = -1, 0
        if rate is not None:
            interval = math.ceil(rate.seconds * 1000 / rate.requests)
            period = rate.seconds * 1000
            tat = max(self._arrivals.get(owner, now), now)
            new_tat = tat + interval
            allow_at = new_tat - period
            if now < allow_at:
                return 1, 0, tat - now, allow_at - now
            self._arrivals[owner] = new_tat
            remaining = (period - (new_tat - now)) // interval
            reset = new_tat - now
        if slots is not None and slots.limit > 0:
            held[member] = now + math.ceil(slots.ttl_seconds * 1000)
        return 0, remaining, reset, 0

    async def release(self, lease: Lease) -> None:
        # A member is 64 random bits, never shared between sets: found by itself.
        async with self._lock:
            for held in self._leases.values():
                held.pop(lease.member, None)

    async def close(self) -> None:
        return
