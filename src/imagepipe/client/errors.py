"""What a failed call is: the service's error answer (its ``code``), or
``connection_error``; and whether and when the service asked to be asked again."""

from __future__ import annotations

import anyio
import httpx

# A 503 (busy, a backend down) or a 429 (this key's limits) carries Retry-After: the
# service asks us to come back.
COME_BACK = (429, 503)
MAX_RETRY_AFTER = 30.0


class ServiceError(Exception):
    """An error answer of the service (its ``code``), or ``connection_error``."""

    def __init__(self, code: str, message: str, *, status: int = 0, retry_after: float = 0):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.retry_after = retry_after

    @property
    def come_back(self) -> bool:
        """The service asked to be asked again later (429 or 503)."""
        return self.status in COME_BACK

    async def wait(self) -> None:
        """Sleep as long as the service asked (at least a second, at most 30)."""
        await anyio.sleep(min(max(self.retry_after, 1.0), MAX_RETRY_AFTER))


def error_from(response: httpx.Response) -> ServiceError:
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        # Not the service's error shape (a proxy's page, say): report the HTTP status.
        code, message = f"http_{response.status_code}", f"HTTP {response.status_code}"
    try:
        retry_after = float(response.headers.get("retry-after", 0))
    except ValueError:
        retry_after = 0
    return ServiceError(code, message, status=response.status_code, retry_after=retry_after)
