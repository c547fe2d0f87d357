"""Signed links: ``/r/{signature}/{options}/{task_id}[.{ext}]``.

The signature is the unpadded base64url of HMAC-SHA256(key, ``/{options}/{task_id}[.{ext}]``)
under one of ``IMAGEPIPE_URL_SIGNING_KEYS``: the first signs, every one verifies, so a
key can be rotated in (put first) and out (dropped once old links may expire from
caches). No salt: the key alone is the secret. The signature is never part of the
cache key (re-signing a link under a new key serves the same rendition).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

from imagepipe.errors import InvalidSignature


def signed_path(options: str, target: str) -> str:
    """What is signed: ``target`` is the task id, with its ``.ext`` if the link has one."""
    return f"/{options}/{target}"


def sign(key: str, options: str, target: str) -> str:
    digest = hmac.new(key.encode(), signed_path(options, target).encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


def verify(keys: Sequence[str], signature: str, options: str, target: str) -> None:
    """InvalidSignature (403) unless ``signature`` is one of the keys' for this path.
    Every key is tried (no early exit on the first match either way): the time taken
    says nothing about which key, or how much of a signature, matched."""
    given = signature.encode("ascii", "replace")
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given, sign(key, options, target).encode())
    if not matched:
        raise InvalidSignature()


def link(keys: Sequence[str], options: str, target: str, *, base_url: str | None) -> str:
    """The link a client is given (absolute when the service knows its public URL)."""
    path = f"/r/{sign(keys[0], options, target)}{signed_path(options, target)}"
    return f"{base_url}{path}" if base_url else path
