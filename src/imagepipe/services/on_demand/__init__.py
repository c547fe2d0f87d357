"""On-demand renditions: signed links, option strings, single-flight rendering and the
derived store (see docs/api-contract.md, "On-demand renditions").

``options`` and ``signing`` are pure; ``records`` is the table and the byte budget;
``flight`` the single-render lock; ``serving`` the API's side; ``making`` the worker's.
"""
