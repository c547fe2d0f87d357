"""The common shape of every process the tests start: its own process group, a log
file, a bounded start, and a stop that takes its children with it.

A server is a ``ServerProcess``: it says its ``argv()`` and, when "the port accepts" is
not enough, how to tell it answers (``ready()``). Adding a new server is a subclass.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.wait import wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_accepts(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for_port(port: int, timeout: float = 15) -> None:
    wait_until(lambda: port_accepts(port), within=timeout, what=f"a listener on port {port}")


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed: the tests need it (`make test` installs it, "
            "see scripts/bootstrap.sh)",
            pytrace=False,
        )
    return path


# Set by `make test-fast`: the tier that runs what is not marked ``servers``.
FAST_TIER = "IMAGEPIPE_TESTS_FAST"


def refuse_in_fast_tier(what: str) -> None:
    """Fail the test when the fast tier is asked for a server: the test lacks its
    ``servers`` mark (tests/conftest.py sets it from the fixtures it uses)."""
    if os.environ.get(FAST_TIER) == "1":
        pytest.fail(
            f"this test needs servers ({what}): mark it @pytest.mark.servers", pytrace=False
        )


# A process started with SIGINT ignored keeps ignoring it, and Python then installs no
# KeyboardInterrupt handler: pytest-xdist's workers ignore SIGINT, so an `imagepipe
# dev` they start would never hear Ctrl-C (and be killed after its stop timeout). This
# shim gives the program SIGINT's default, as a terminal would, then becomes it.
_SIGINT_RESTORED = [
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execvp(sys.argv[1], sys.argv[1:])",
]


class ManagedProcess:
    """A subprocess in its own session, logging to ``log_path``; stopped with its children."""

    name = "process"
    stop_signal = signal.SIGTERM
    stop_timeout: float = 20

    def __init__(self, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        # Once the group is swept its id may be reused: never signal it again.
        self.swept = False

    def argv(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        refuse_in_fast_tier(self.name)
        self.swept = False
        argv = self.argv()
        if self.stop_signal == signal.SIGINT:
            argv = [*_SIGINT_RESTORED, *argv]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def kill(self) -> None:
        """SIGKILL the whole process group: the process and every child it started,
        including children left behind by a process that has exited already."""
        if self.process is None or self.swept:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self.swept = True

    def stop(self) -> None:
        self.signal_stop(self.stop_signal)

    def signal_stop(self, signum: int) -> None:
        """Send ``signum`` to the group and wait ``stop_timeout`` for the process to end;
        then SIGKILL whatever of the group is still there."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signum)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(self.stop_timeout)
        self.kill()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class ServerProcess(ManagedProcess):
    """A process that serves on ``port``: ``start()`` returns once it answers."""

    start_timeout: float = 30

    def __init__(
        self, log_path: Path, env: dict[str, str] | None = None, *, port: int | None = None
    ) -> None:
        super().__init__(log_path, env)
        self.port = port or free_port()

    def ready(self) -> bool:
        return port_accepts(self.port)

    def start(self) -> None:
        super().start()
        wait_until(
            lambda: self.exited() or self.ready(),
            within=self.start_timeout,
            what=f"{self.name} to answer on port {self.port}",
            logs=self.output,
            every=0.05,
        )
        if self.exited():
            pytest.fail(f"{self.name} exited at start:\n{self.output()[-4000:]}", pytrace=False)
