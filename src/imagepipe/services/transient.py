"""What is transient: a backing service failed, not the request or our code.

The one definition, for every boundary that meets the database, the broker, Redis or
the storage: the API answers these with 503 ``service_unavailable``, the worker gives
such a claim back without spending an attempt, and anything else is either a refusal
with its own code or a bug (500, logged). It lives here, above the adapters, so the
error table (``imagepipe.errors``) imports no driver.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeout
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from imagepipe.config import Settings
from imagepipe.errors import ServiceUnavailable
from imagepipe.storage.base import ObjectNotFound, StorageError

log = logging.getLogger(__name__)

# Network-level failures: a peer (database, broker, S3) did not answer or hung up.
_NETWORK = (ConnectionError, TimeoutError, RedisConnectionError, RedisTimeout, BrokerError)
# The database did not answer, dropped the connection, or the pool had none to give.
_DATABASE = (OperationalError, InterfaceError, PoolTimeout)
# A local disk that is full, read-only or failing is an outage, not a bug.
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS})


# Every type ``is_transient`` may say yes to: for ``except`` clauses and handler
# registration, always followed by the ``is_transient`` check.
MAYBE_TRANSIENT: Final = (
    OSError,
    DBAPIError,
    PoolTimeout,
    RedisConnectionError,
    RedisTimeout,
    BrokerError,
)


def is_transient(error: BaseException) -> bool:
    """True when a backing service failed, not the request or our code: the same work
    may succeed later, and it says nothing about the image.

    The one definition: the API answers these with 503 ``service_unavailable``, the
    worker gives such a claim back without spending an attempt, and anything else
    is either a refusal with its own code or a bug (500, logged).
    """
    if isinstance(error, ServiceUnavailable):
        return True
    if isinstance(error, ObjectNotFound):
        return False  # no retry makes a missing object appear
    if isinstance(error, StorageError):
        return True
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, _DATABASE + _NETWORK):
        return True
    return isinstance(error, OSError) and error.errno in _DISK_ERRNOS


@contextmanager
def unavailable(backend: str) -> Iterator[None]:
    """A transient failure of ``backend`` inside the block becomes ServiceUnavailable
    (503) with a fixed message (the detail is logged); anything else passes through
    unchanged."""
    try:
        yield
    except MAYBE_TRANSIENT as error:
        if not is_transient(error):
            raise
        log.warning("%s unavailable: %r", backend, error)
        raise ServiceUnavailable(f"The {backend} is unavailable; try again shortly.") from None


@dataclass(frozen=True)
class RetryPolicy:
    """How a worker retries work that met a transient error: the one policy for every
    Celery task that retries (render, re-render, extra formats), from Settings.

    Waits double from ``first_delay`` up to ``max_delay`` (2, 4, 8… s, at most 60 s):
    long enough for a restarted database or S3 to come back, short enough that a
    task is not held for minutes after it has."""

    retries: int
    first_delay: float = 2.0
    max_delay: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(retries=settings.transient_retries)

    def exhausted(self, retries_done: int) -> bool:
        """True once ``retries_done`` retries have been spent: give up now."""
        return retries_done >= self.retries

    def delay(self, retries_done: int) -> float:
        """Seconds before the next retry, after ``retries_done`` retries."""
        return float(min(self.first_delay * 2**retries_done, self.max_delay))
