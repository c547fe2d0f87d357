"""``imagepipe dev``: the whole service on one machine, without Docker.

SQLite and local storage under the data directory; Redis from IMAGEPIPE_REDIS_URL if
set, else a private ``redis-server`` on a free port if one is installed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import click

from imagepipe.config import Settings

# Bound on stopping the children: the worker finishes the renders it has started.
STOP_SECONDS = 30.0
_PR_SET_PDEATHSIG = 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def private_redis() -> Iterator[str]:
    """A throwaway redis-server on a free port; its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise click.ClickException(
            "No Redis: set IMAGEPIPE_REDIS_URL, or install redis-server "
            "(Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis)."
        )
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="imagepipe-redis-") as directory:
        process = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                directory,
            ],
            stdout=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        try:
            _wait_for_port(port, process)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(10)


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise click.ClickException("redis-server exited at start")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise click.ClickException("redis-server did not start")


def _exit_on_signal(signum: int, _frame: object) -> None:
    # SIGTERM (a process manager, `kill`, a container runtime) and SIGHUP (the terminal
    # went away) must unwind like Ctrl-C does, so that the ExitStack in run() stops
    # every child it started; by default they end this process and orphan them.
    raise SystemExit(128 + signum)


def run(*, host: str, port: int, concurrency: int) -> int:
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)
    env = dict(os.environ)
    env.setdefault("MALLOC_ARENA_MAX", "2")
    with ExitStack() as stack:
        if not env.get("IMAGEPIPE_REDIS_URL"):
            env["IMAGEPIPE_REDIS_URL"] = stack.enter_context(private_redis())
            click.echo(f"dev: private Redis at {env['IMAGEPIPE_REDIS_URL']}")
        settings = Settings(redis_url=env["IMAGEPIPE_REDIS_URL"])
        click.echo(f"dev: database {settings.resolved_database_url}")
        click.echo(f"dev: storage {settings.resolved_storage_url}")
        subprocess.run([sys.executable, "-m", "imagepipe.cli", "migrate"], env=env, check=True)
        command = [sys.executable, "-m", "imagepipe.cli"]
        # Each child leads its own process group, so that _stop_all() reaches the
        # worker's pool processes too, and the terminal's Ctrl-C reaches only this
        # process; and each is sent SIGTERM by the kernel if this process dies without
        # stopping it (SIGKILL), so none outlives it.
        worker = subprocess.Popen(
            [*command, "worker", "--concurrency", str(concurrency), "--beat"],
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        api = subprocess.Popen(
            [*command, "api", "--host", host, "--port", str(port)],
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        stack.callback(_stop_all, [api, worker])
        click.echo(f"dev: API on http://{host}:{port} (Swagger UI at /docs); Ctrl-C stops")
        try:
            while worker.poll() is None and api.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            return 0
        return 1  # one of the two died


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent (this dev process) dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to every child at once (a warm shutdown for the worker), so stopping
    takes as long as the slowest, not their sum; then SIGKILL to each whole group."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(max(0.0, deadline - time.monotonic()))
        # The group outlives its leader when pool processes are left behind.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
