"""Every real process the tests start, and the one way to wait for them.

- ``server``: the common base — a binary on a free port, waited for, stopped with its
  children. A new kind of server is a small subclass of ``ServerProcess``.
- ``redis``, ``postgres``: private servers in temp directories.
- ``processes``: imagepipe's own processes (api, worker, beat, dev), configured from a
  ``Settings`` through ``Settings.to_env()``.
- ``wait``: the deadline-bounded pollers.
"""
