#!/usr/bin/env python3
"""Container healthchecks for imagepipe, in Python because slim images have no curl or wget.

    imagepipe-healthcheck http [URL]   GET URL (default: the local /healthz); healthy on 200
    imagepipe-healthcheck worker       healthy when this container's Celery worker answers a ping
    imagepipe-healthcheck broker       healthy when Redis (IMAGEPIPE_REDIS_URL) answers PING

Exit 0 means healthy and 1 unhealthy: the only codes Docker defines. Every check bounds
its own wait below the HEALTHCHECK --timeout, so Docker never has to kill it.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.request

DEFAULT_URL = "http://127.0.0.1:8000/healthz"
TIMEOUT = 3.0


def check_http(url: str = DEFAULT_URL) -> str:
    # No proxy: an HTTP(S)_PROXY in the container's environment must not route 127.0.0.1.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=TIMEOUT) as response:
        if response.status != 200:
            raise RuntimeError(f"{url} answered HTTP {response.status}")
    return f"{url} 200"


def _celery_app():  # type: ignore[no-untyped-def]
    # The application's own factory, so transport options (key prefixes, timeouts) match
    # the worker's; a bare app on the same broker if that module has moved.
    try:
        from imagepipe.config import Settings
        from imagepipe.worker.celery_app import create_celery

        return create_celery(Settings())
    except ImportError:
        from celery import Celery

        return Celery(broker=os.environ.get("IMAGEPIPE_REDIS_URL", "redis://127.0.0.1:6379/0"))


def check_worker() -> str:
    # The worker has no HTTP port: ask it over the broker's control channel, the way
    # `celery inspect ping` does, and accept only a reply from a node on this container
    # (node names end in "@<hostname>", the container id unless `hostname:` is set).
    app = _celery_app()
    host = socket.gethostname()
    # An explicit connection, closed on exit, deletes the temporary reply queue; a pooled
    # one would leave a binding behind in Redis on every check.
    with app.connection_for_write() as connection:
        replies = app.control.ping(timeout=TIMEOUT - 1, connection=connection)
    nodes = [name for reply in replies for name in reply]
    mine = [name for name in nodes if name.endswith("@" + host)]
    if not mine:
        raise RuntimeError(f"no worker on {host} answered the ping (answered: {nodes})")
    return f"{mine[0]} pong"


def check_broker() -> str:
    # Beat has neither a port nor a control channel; what it needs to do its job is a
    # broker that answers.
    import redis

    url = os.environ.get("IMAGEPIPE_REDIS_URL", "redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url(url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
    try:
        client.ping()
    finally:
        client.close()
    return "broker PONG"


def main(argv: list[str]) -> int:
    mode, args = (argv[0], argv[1:]) if argv else ("http", [])
    checks = {"http": check_http, "worker": check_worker, "broker": check_broker}
    if mode not in checks:
        print(f"usage: imagepipe-healthcheck {{{'|'.join(checks)}}} [URL]", file=sys.stderr)
        return 1
    try:
        print(checks[mode](*args))
    except Exception as exc:  # any failure is "unhealthy"; say why in `docker inspect`
        print(f"unhealthy: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
