"""A small, separate thread pool for header probes in async code.

Probing is bounded work, but a hostile header can still cost up to its CPU budget. In
the shared thread pool (anyio's default limiter, 40 threads) a few dozen such uploads
would hold every thread that file writes, database calls and ``/readyz`` also need.
Probes run under their own limiter instead: at most ``total`` at a time, the rest wait
their turn without taking a thread from anyone else.
"""

from __future__ import annotations

from anyio import CapacityLimiter
from anyio.lowlevel import RunVar

# One limiter per event loop (a RunVar), created on first use with the first size asked.
_PROBE_LIMITER: RunVar[CapacityLimiter] = RunVar("imagepipe_probe_limiter")


def probe_limiter(total: int) -> CapacityLimiter:
    """The event loop's probe limiter (``IMAGEPIPE_PROBE_CONCURRENCY`` tokens).

    Pass it to ``anyio.to_thread.run_sync(..., limiter=...)``.
    """
    try:
        return _PROBE_LIMITER.get()
    except LookupError:
        limiter = CapacityLimiter(total)
        _PROBE_LIMITER.set(limiter)
        return limiter
