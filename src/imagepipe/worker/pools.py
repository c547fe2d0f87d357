"""Which queues a worker serves, and the follow-up pool a plain ``imagepipe worker``
runs beside its render pool.

A plain ``imagepipe worker`` does all the work, so a one-worker deployment (and
``imagepipe dev``) needs nothing else; but follow-up work must never hold a render slot.
Celery gives a worker one pool for all its queues, so the follow-up queues get a Celery
worker of their own: a child process with one pool process, at a lower CPU priority,
started and stopped with the render worker, and started again if it dies. ``--queues``
narrows a worker to the queues named (compose and Kubernetes run the pools apart).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence

from imagepipe.queue import (
    FOLLOW_UP_POOL_QUEUES,
    FOLLOW_UP_QUEUE,
    LEGACY_RENDER_QUEUE,
    QUEUES,
    RENDER_QUEUE,
)

log = logging.getLogger(__name__)

FOLLOW_UP_CONCURRENCY = 1
# Added to the follow-up pool's niceness (the most there is): while renders keep the
# core busy the extras get about 1.5 % of it (10 would give them 10 %), so a burst's
# base renditions come first; they are never starved, and take the idle moments (a
# render waiting on the database) and whatever is left after the burst.
FOLLOW_UP_NICENESS = 19
# Between restarts of a follow-up pool that keeps dying.
RESTART_DELAY_SECONDS = 2.0
_PR_SET_PDEATHSIG = 1


def queue_names(names: str) -> list[str]:
    """The broker queues for ``--queues`` (short names, comma-separated). Serving the
    render queue also drains where earlier releases published renders."""
    chosen: list[str] = []
    for name in (part.strip() for part in names.split(",")):
        if name not in QUEUES:
            raise ValueError(f"unknown queue {name!r}: choose from {', '.join(QUEUES)}")
        chosen.append(QUEUES[name])
        if QUEUES[name] == RENDER_QUEUE:
            chosen.append(LEGACY_RENDER_QUEUE)
    return list(dict.fromkeys(chosen))


def keeps_pixels(served: list[str], narrowed: bool) -> bool:
    """Whether this worker's renders keep their resized pixels in the local spool for
    the extra formats: only when the extras are made on this host, by the follow-up
    pool of a plain worker or by this worker itself. Otherwise each render would write
    megabytes that nobody reads before the sweep removes them."""
    return not narrowed or FOLLOW_UP_QUEUE in served


# Set in the follow-up pool's environment: the render worker's pid.
PARENT_VARIABLE = "IMAGEPIPE_FOLLOW_UP_POOL_OF"


def become_follow_up_pool(parent: int) -> None:
    """In the follow-up pool's process, first thing: lower its CPU priority, and have
    the kernel send it SIGTERM when the render worker dies, however it dies, so it
    never outlives its worker. (Done here rather than between fork and exec: the render
    worker has threads by the time it restarts a pool.)"""
    os.nice(FOLLOW_UP_NICENESS)
    with contextlib.suppress(OSError, AttributeError):
        # SCHED_IDLE on top: a render that wakes (its database or Redis answered) takes
        # the core back at once. Niceness alone lets the pool finish its time slice
        # first, a wait at every round trip of every task of a burst.
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the line above took effect
        raise SystemExit(0)


class FollowUpPool:
    """The follow-up queues' Celery worker, as a child of the render worker."""

    def __init__(self, env: dict[str, str], *, log_level: str) -> None:
        short = [name for name, queue in QUEUES.items() if queue in FOLLOW_UP_POOL_QUEUES]
        self.argv: Sequence[str] = [
            sys.executable,
            "-m",
            "imagepipe.cli",
            "worker",
            "--queues",
            ",".join(short),
            "--concurrency",
            str(FOLLOW_UP_CONCURRENCY),
            "--hostname",
            "follow_up@%h",
        ]
        # Its samples go to the render worker's metrics directory, which serves them
        # all; it opens no port of its own.
        self.env = {
            **env,
            "IMAGEPIPE_WORKER_METRICS_PORT": "0",
            "IMAGEPIPE_LOG_LEVEL": log_level,
            PARENT_VARIABLE: str(os.getpid()),
        }
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._watcher = threading.Thread(target=self._watch, name="follow-up-pool", daemon=True)

    def start(self) -> None:
        self._spawn()
        self._watcher.start()

    def _spawn(self) -> None:
        with self._lock:
            if not self._stopping.is_set():
                self._process = subprocess.Popen(self.argv, env=self.env)

    def _watch(self) -> None:
        while not self._stopping.is_set():
            process = self._process
            code = process.wait() if process is not None else None
            if self._stopping.wait(RESTART_DELAY_SECONDS):
                return
            log.error("follow-up pool exited with %s; starting it again", code)
            self._spawn()

    def terminate(self) -> None:
        """Start its warm shutdown (SIGTERM) without waiting: called as the render
        worker's own begins, so that both pools wind down at once."""
        self._stopping.set()
        with self._lock:
            process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float) -> None:
        """SIGTERM (Celery's warm shutdown: running work finishes), then SIGKILL."""
        self.terminate()
        with self._lock:
            process = self._process
        if process is None:
            return
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
