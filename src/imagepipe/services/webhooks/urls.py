"""Where a webhook may be sent: the URL's form, the addresses its host resolves to, and
the look-up itself.

Look-ups run on a few threads of this module's own, never in the thread pool uploads
and downloads use, and each caller waits at most its timeout: a resolver that never
answers holds at most ``_THREADS`` threads, look-ups queued behind them give up at
their deadline, and past ``_WAITING`` queued ones more are refused at once.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import anyio

from imagepipe.errors import InvalidCallbackUrl

MAX_URL_LENGTH = 2048
_THREADS = 4
_WAITING = 16

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT, inside a provider
# An IPv4 address tunnelled in IPv6: a relay may deliver it anywhere, inside included.
_6TO4 = ipaddress.ip_network("2002::/16")
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")  # deprecated, still routed inside sites
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d
# NAT64: the well-known prefix reaches the IPv4 address it embeds, judged as such;
# the local-use prefix translates to whatever the site chose.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


def refused(address: Address) -> bool:
    """Whether webhooks may not go to ``address`` (anything not on the public
    internet, or that may lead back inside)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return refused(address.ipv4_mapped)
        if address in _NAT64:
            return refused(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if any(address in net for net in (_6TO4, _SITE_LOCAL, _IPV4_COMPATIBLE, _NAT64_LOCAL)):
            return True
    elif address in _SHARED:
        return True
    return (
        not address.is_global
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


@dataclass(frozen=True)
class Target:
    """A webhook URL, taken apart."""

    scheme: str
    host: str  # a name, or an IP address without brackets
    port: int
    netloc: str  # for the Host header, as the URL spells it
    path: str  # path and query

    def pinned(self, address: Address) -> str:
        """The URL with its host replaced by ``address`` (the one that was checked)."""
        host = f"[{address}]" if address.version == 6 else str(address)
        return urlunsplit((self.scheme, f"{host}:{self.port}", self.path, "", ""))


def parse(url: str) -> Target:
    """``url`` taken apart, or InvalidCallbackUrl if it cannot be a webhook URL."""
    if len(url) > MAX_URL_LENGTH:
        raise InvalidCallbackUrl(f"The webhook URL is longer than {MAX_URL_LENGTH} characters.")
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:  # a port out of range or not a number, a broken [IPv6] literal
        raise InvalidCallbackUrl("The webhook URL's host or port is not valid.") from None
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidCallbackUrl("The webhook URL must be an absolute http(s) URL.")
    if parts.username is not None or parts.password is not None:
        raise InvalidCallbackUrl("The webhook URL must not carry credentials.")
    if port == 0:
        raise InvalidCallbackUrl("The webhook URL's port must be between 1 and 65535.")
    netloc = parts.netloc
    if netloc.startswith("["):
        # Only a plain IPv6 address: no zone (it names an interface of ours), no
        # IPvFuture form.
        literal = _literal(host)
        if literal is None or literal.version != 6:
            raise InvalidCallbackUrl("The webhook URL's host is not a valid IPv6 address.")
    elif "%" in host or any(ord(c) < 0x21 for c in host):
        raise InvalidCallbackUrl("The webhook URL's host is not valid.")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    default_port = 443 if parts.scheme == "https" else 80
    return Target(parts.scheme, host, port or default_port, netloc, path)


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


# --- the look-up ------------------------------------------------------------------


def _lookup(host: str, port: int) -> list[Address]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


class _Resolver:
    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(_THREADS, thread_name_prefix="webhook-dns")
        # Held from submission until the look-up ends or is cancelled while queued.
        self._slots = threading.BoundedSemaphore(_THREADS + _WAITING)

    def submit(self, host: str, port: int) -> Future[list[Address]]:
        if not self._slots.acquire(blocking=False):
            raise InvalidCallbackUrl("Too many webhook host look-ups are waiting; try later.")
        try:
            future = self._pool.submit(_lookup, host, port)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _: self._slots.release())
        return future


_resolver: _Resolver | None = None
_resolver_lock = threading.Lock()


def _forget_resolver() -> None:
    # A forked child (a Celery pool process) has none of its parent's threads.
    global _resolver, _resolver_lock
    _resolver, _resolver_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_resolver)


def _current() -> _Resolver:
    global _resolver
    with _resolver_lock:
        if _resolver is None:
            _resolver = _Resolver()
        return _resolver


async def _addresses(target: Target, lookup_seconds: float) -> list[Address]:
    literal = _literal(target.host)
    if literal is not None:
        return [literal]
    future = _current().submit(target.host, target.port)
    try:
        with anyio.fail_after(lookup_seconds):
            return await asyncio.wrap_future(future)
    except TimeoutError:
        raise InvalidCallbackUrl(
            f"The host {target.host!r} did not resolve within {lookup_seconds:g} s."
        ) from None
    except (OSError, UnicodeError, ValueError):
        raise InvalidCallbackUrl(f"The host {target.host!r} does not resolve.") from None
    finally:
        future.cancel()  # still queued: never run it


async def resolve(target: Target, *, allow_private: bool, lookup_seconds: float) -> Address:
    """The address to connect to for ``target``, after checking every address its host
    resolves to. Raises InvalidCallbackUrl."""
    addresses = await _addresses(target, lookup_seconds)
    if not addresses:
        raise InvalidCallbackUrl(f"The host {target.host!r} does not resolve.")
    if not allow_private and any(refused(address) for address in addresses):
        raise InvalidCallbackUrl(
            "The webhook URL resolves to a loopback, private, link-local or metadata address."
        )
    return addresses[0]


async def check_url(url: str, *, allow_private: bool, lookup_seconds: float) -> str:
    """``url`` if webhooks may be sent to it now; raises InvalidCallbackUrl."""
    await resolve(parse(url), allow_private=allow_private, lookup_seconds=lookup_seconds)
    return url
