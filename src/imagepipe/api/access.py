"""Pure ASGI access layer: who is asking and whether they may, decided before the
route runs and before one byte of the body is read.

FastAPI reads (and parses) a body before a route's dependencies run, so a 64 MiB body
sent with a wrong key to ``POST /webhooks`` used to be read whole before its ``401``.
Here, for each request that matches a route:

1. the key: a route of a keyed router (``app.py`` hands them over) gets ``401``
   without a configured bearer key; the tenant goes into the scope (``api.scope``),
   where ``deps.require_api_key`` finds it;
2. a body over ``MAX_JSON_BODY_BYTES`` by its Content-Length: ``413 request_too_large``
   (uploads, which stream their bodies under their own limits, excepted);
3. the tenant's limits of the route (``ROUTE_LIMITS``): rate and slots in one Redis
   round trip, the active-task quota in one COUNT: ``429`` + ``Retry-After``;
4. a small body is read here, counted as it arrives (a chunked one has no
   Content-Length) and under deadlines: ``413`` past the cap, ``408 request_timeout``
   past the idle or total deadline; the route then gets it from memory.

A refusal with a body still on its way says ``Connection: close``: uvicorn then
closes the connection instead of reading the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs

import anyio
from fastapi.routing import APIRoute
from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagepipe.api.route_limits import ACTIVE_TASKS_STATE, ROUTE_LIMITS, STREAMED_BODIES, Limits
from imagepipe.api.scope import ANONYMOUS, SCOPE_KEY, Caller
from imagepipe.api.state import app_state
from imagepipe.config import MAX_JSON_BODY_BYTES, Settings
from imagepipe.errors import (
    ImagepipeError,
    QuotaExceeded,
    RequestTimeout,
    RequestTooLarge,
    ServiceUnavailable,
    TenantLimit,
    Unauthorized,
)
from imagepipe.services import tenancy
from imagepipe.services.idempotency import HEADER as IDEMPOTENCY_HEADER
from imagepipe.services.tenancy import Admission, KeyRing, Limiter, Rate, Slots, TenantLimiter
from imagepipe.services.transient import MAYBE_TRANSIENT, is_transient


@dataclass(frozen=True)
class _Policy:
    route: BaseRoute
    bounded_body: bool
    limits: Limits | None


class AccessControl:
    """One per app: the keys (from the settings) and the Redis limiter (opened by the
    lifespan)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = KeyRing.from_settings(settings)
        self.rate = Rate.from_settings(settings)
        self.slots = {
            "uploads": tenancy.upload_slots(settings),
            "followers": tenancy.follower_slots(settings),
        }
        self.limiter: TenantLimiter | None = None

    async def start(self, limiter: TenantLimiter | None = None) -> None:
        """``limiter``: a stand-in for the Redis one (an app run in one process)."""
        self.limiter = limiter if limiter is not None else Limiter(self.settings.redis_url)

    async def stop(self) -> None:
        if self.limiter is not None:
            await self.limiter.close()
            self.limiter = None

    def caller(self, authorization: bytes | None) -> Caller | None:
        """The tenant of a bearer key; None when keys are on and it is not one. Keys
        off: every client is the one scope, whatever it sends."""
        if not self.settings.keys_required:
            return Caller(owner=ANONYMOUS, sees_all=True)
        scheme, _, token = (authorization or b"").partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            return None
        tenant = self.keys.lookup(token)
        return None if tenant is None else Caller(owner=tenant.owner, sees_all=tenant.admin)


class AccessMiddleware:
    """``routes``: every route that needs a key, in the order the app matches them
    (the router's own matching picks the first that fits; so does this)."""

    def __init__(self, app: ASGIApp, control: AccessControl, routes: list[APIRoute]) -> None:
        self.app = app
        self.control = control
        self.routes = routes
        self._policies: dict[int, _Policy] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Routes that charge the rate limit themselves (charge_rate) find it here.
        scope[CONTROL_KEY] = self.control
        policy = self._policy(scope)
        if policy is None:
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        has_body = _has_body(headers)
        refuse = _Refusal(scope, receive, send, policy.route, close=has_body)
        control = self.control

        admission = Admission()
        caller = control.caller(headers.get(b"authorization"))
        if caller is None:
            await refuse(Unauthorized(), {"WWW-Authenticate": "Bearer"})
            return
        scope[SCOPE_KEY] = caller
        declared = headers.get(b"content-length", b"")
        if policy.bounded_body and declared.isdigit() and int(declared) > MAX_JSON_BODY_BYTES:
            await refuse(RequestTooLarge())
            return
        if policy.limits is not None:
            outcome = await self._limit(scope, headers, caller, policy.limits)
            if isinstance(outcome, Refused):
                await refuse(outcome.error, outcome.headers)
                return
            admission = outcome
        try:
            if policy.bounded_body and has_body:
                body = await _read_small_body(receive, control.settings)
                if isinstance(body, ImagepipeError):
                    await refuse(body)
                    return
                if body is None:
                    return  # the client went away
                receive = _replay(body, receive)
            if admission.remaining is not None and control.rate is not None:
                send = _with_rate_headers(send, control.rate, admission)
            await self.app(scope, receive, send)
        finally:
            if admission.lease is not None and control.limiter is not None:
                with anyio.CancelScope(shield=True):
                    await control.limiter.release(admission.lease)

    async def _limit(
        self, scope: Scope, headers: dict[bytes, bytes], caller: Caller, limits: Limits
    ) -> Admission | Refused:
        control, settings = self.control, self.control.settings
        slots: Slots | None = None
        if limits.slot == "uploads" or limits.slot == "followers":
            slots = control.slots[limits.slot]
        elif limits.slot == "followers_if_waiting" and _waits(scope):
            slots = control.slots["followers"]
        rate = control.rate if limits.rate else None
        admission = Admission()
        if control.limiter is not None:
            admission = await control.limiter.admit(caller.owner, rate, slots)
        if admission.refused is not None:
            extra = {"Retry-After": str(admission.retry_after or settings.retry_after_seconds)}
            if rate is not None and (field := admission.rate_field()):
                extra |= {"RateLimit-Policy": rate.policy, "RateLimit": field}
            return Refused(admission.refused(), extra)
        if limits.quota:
            try:
                over = await _over_quota(scope, headers, caller, settings)
            except BaseException:
                await self._give_back(admission)
                raise
            if over is not None:
                await self._give_back(admission)
                return over
        return admission

    async def _give_back(self, admission: Admission) -> None:
        if admission.lease is not None and self.control.limiter is not None:
            with anyio.CancelScope(shield=True):
                await self.control.limiter.release(admission.lease)

    def _policy(self, scope: Scope) -> _Policy | None:
        for route in self.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                break
        else:
            # Not a keyed route: the page, health, the direct-upload PUT (under its own
            # limits), or no route at all (404/405, no body read).
            return None
        policy = self._policies.get(id(route))
        if policy is None:
            policy = self._policies[id(route)] = _policy_of(route, scope["method"])
        return policy


@dataclass(frozen=True)
class Refused:
    error: ImagepipeError
    headers: dict[str, str]


# Where the middleware leaves its AccessControl in the ASGI scope.
CONTROL_KEY = "imagepipe.access"


async def charge_rate(scope: Scope, owner: str) -> Refused | None:
    """One unit of ``owner``'s rate limit for work a route starts on its own (a first
    on-demand render, of a signed link too: the task's owner pays); a refusal carries
    the headers of the middleware's own. No limit set, or Redis down: admitted."""
    control = scope.get(CONTROL_KEY)
    if not isinstance(control, AccessControl) or control.rate is None:
        return None
    if control.limiter is None:
        return None
    admission = await control.limiter.admit(owner, control.rate, None)
    if admission.refused is None:
        return None
    retry = admission.retry_after or control.settings.retry_after_seconds
    extra = {"Retry-After": str(retry), "RateLimit-Policy": control.rate.policy}
    if field := admission.rate_field():
        extra["RateLimit"] = field
    return Refused(admission.refused(), extra)


def _policy_of(route: APIRoute, method: str) -> _Policy:
    return _Policy(
        route,
        bounded_body=(method, route.path) not in STREAMED_BODIES,
        limits=ROUTE_LIMITS.get((method, route.path)),
    )


async def _over_quota(
    scope: Scope, headers: dict[bytes, bytes], caller: Caller, settings: Settings
) -> Refused | None:
    """429 quota_exceeded when the tenant has its maximum of unfinished tasks, unless
    the request is the replay of an answered Idempotency-Key (it creates nothing)."""
    sessions = app_state(scope["app"]).services.sessions
    try:
        async with sessions() as session:
            active = await tenancy.active_tasks(session, caller.owner)
            # The route publishes at the fair-share level of this same count.
            scope.setdefault("state", {})[ACTIVE_TASKS_STATE] = active
            if active < settings.key_max_active_tasks:
                return None
            key = headers.get(IDEMPOTENCY_HEADER.lower().encode())
            if key and await tenancy.holds_answer(session, caller.owner, key.decode("latin-1")):
                return None
    except MAYBE_TRANSIENT as error:
        if not is_transient(error):
            raise
        retry = {"Retry-After": str(settings.retry_after_seconds)}
        return Refused(ServiceUnavailable("The database is unavailable; try again shortly."), retry)
    limit = settings.key_max_active_tasks
    message = f"This key has {active} unfinished tasks (the limit is {limit})."
    return Refused(QuotaExceeded(message), {"Retry-After": str(settings.retry_after_seconds)})


def _waits(scope: Scope) -> bool:
    """GET /tasks/{id}?wait=N with N > 0 follows the task (a bad N: the route says 422)."""
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("wait", [])
    try:
        return any(float(value) > 0 for value in values)
    except ValueError:
        return False


def _headers(scope: Scope) -> dict[bytes, bytes]:
    # The first of each name, as Starlette's Headers.get answers.
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        found.setdefault(name.lower(), value)
    return found


def _has_body(headers: dict[bytes, bytes]) -> bool:
    if b"transfer-encoding" in headers:
        return True
    length = headers.get(b"content-length")
    if length is None:
        return False
    return not length.isdigit() or int(length) > 0


async def _read_small_body(receive: Receive, settings: Settings) -> bytes | ImagepipeError | None:
    """The whole body, at most MAX_JSON_BODY_BYTES: each chunk within the idle deadline,
    all within the head deadline (a body this small arrives as fast as a head); None
    if the client disconnected."""
    idle = settings.upload_idle_timeout_seconds
    total = settings.request_head_timeout_seconds
    give_up_at = anyio.current_time() + total
    chunks: list[bytes] = []
    size = 0
    while True:
        left = give_up_at - anyio.current_time()
        with anyio.move_on_after(min(idle, max(left, 0))) as waiting:
            message = await receive()
        if waiting.cancelled_caught:
            if left <= idle:
                return RequestTimeout(f"The request body took longer than {total:g} s.")
            return RequestTimeout(f"The request body sent nothing for {idle:g} s.")
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_JSON_BODY_BYTES:
            return RequestTooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the body read already, then the client's own messages (a
    disconnect)."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def _with_rate_headers(send: Send, rate: Rate, admission: Admission) -> Send:
    field = admission.rate_field()

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start" and field is not None:
            headers = MutableHeaders(scope=message)
            headers["RateLimit-Policy"] = rate.policy
            headers["RateLimit"] = field
        await send(message)

    return sending


class _Refusal:
    """Answers a refused request with the error's JSON body."""

    def __init__(
        self, scope: Scope, receive: Receive, send: Send, route: BaseRoute, *, close: bool
    ) -> None:
        self.scope, self.receive, self.send = scope, receive, send
        self.route = route
        self.close = close

    async def __call__(self, error: ImagepipeError, headers: dict[str, str] | None = None) -> None:
        answer = dict(headers or {})
        if isinstance(error, TenantLimit | ServiceUnavailable):
            answer.setdefault("Retry-After", "1")
        if self.close or isinstance(error, RequestTimeout | RequestTooLarge):
            # The body was not read (or not all of it): this connection is done.
            answer["Connection"] = "close"
        # The metrics label the refusal with the route it was for.
        self.scope["route"] = self.route
        body = {"error": {"code": error.code, "message": error.message}}
        response = JSONResponse(body, status_code=error.status_code, headers=answer)
        await response(self.scope, self.receive, self.send)
