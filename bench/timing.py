"""The one way the benchmarks time a call: the median of many, in milliseconds."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_ms(action: Callable[[], object], calls: int) -> float:
    """Median wall time of ``calls`` calls of ``action``, in ms (the median, never the
    best: this machine is shared and noisy)."""
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000
