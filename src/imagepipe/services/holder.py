"""Who holds a claim: ``host/pid-namespace:pid`` of the worker process rendering it.

When a pool process dies mid-render (out-of-memory kill, segfault), Celery delivers
the task again at once (``reject_on_worker_lost``), but the dead process's lease would
keep the task for the whole hard time limit. A delivery on the same host can see that
the holder is gone and take the task over immediately. Across hosts (or containers:
each has its own hostname and PID namespace) nothing is assumed; the lease decides.
"""

from __future__ import annotations

import os
import socket


def _namespace() -> str:
    """This host and PID namespace: containers with the host's network (and so its
    hostname) still have PID namespaces of their own."""
    try:
        pid_namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:  # no /proc (not Linux): the hostname alone
        pid_namespace = 0
    return f"{socket.gethostname()}/{pid_namespace}"


def current_holder() -> str:
    return f"{_namespace()}:{os.getpid()}"


def holder_is_dead(holder: str | None) -> bool:
    """True only when the holder ran on this host and its process no longer exists.

    A recycled pid reads as alive: the safe side, the lease still ends it.
    """
    if not holder:
        return False
    namespace, _, pid = holder.rpartition(":")
    if namespace != _namespace() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, owned by someone else
        return False
    return False
