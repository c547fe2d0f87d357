"""How Settings reads its text values: durations, rates, lists and key sets from the
environment, and the checks of the URLs and secrets it is given.

A foundation module (beside ``config``, importing nothing of ours): every function
raises ValueError with the message Settings reports, and never echoes a secret.
"""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import urlsplit

# API keys: a list (each key its own tenant) or tenant name -> that tenant's keys.
KeySet = tuple[str, ...] | dict[str, tuple[str, ...]]
# A tenant's name is its owner id in the database (at most 64 characters there).
TENANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

_RATE = re.compile(r"(\d+)\s*/\s*(\d*)\s*(second|minute|hour|day|s|m|h|d)")
_RATE_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_rate(text: str) -> tuple[int, int]:
    """(requests, seconds) of "600/minute", "10/second", "1000/hour", "50/30s"."""
    match = _RATE.fullmatch(text.strip().lower())
    if match is None or int(match.group(1)) < 1 or match.group(2) == "0":
        raise ValueError(f"not a rate: {text!r} (e.g. 600/minute, 10/second, 50/30s)")
    unit = _RATE_UNIT_SECONDS[match.group(3)[0]]
    return int(match.group(1)), int(match.group(2) or 1) * unit


def parse_duration(text: str) -> float:
    """Seconds in "30d", "12h", "90m", "45s", "2w" or plain seconds; ValueError if not."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(f"not a duration: {text!r} (e.g. 30d, 12h, 90m, 3600)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def list_from_env(value: object) -> object:
    """A list or map given as JSON, or comma-separated items; anything but text as is."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith(("[", "{")):
        return json.loads(text)
    return tuple(item.strip() for item in text.split(",") if item.strip())


def signing_keys_from_env(value: object) -> object:
    """Raw strings, comma-separated; a JSON list of strings (what to_env writes) too."""
    if not isinstance(value, str):
        return value
    try:
        listed = json.loads(value) if value.startswith("[") else None
    except ValueError:
        listed = None
    if isinstance(listed, list) and all(isinstance(key, str) for key in listed):
        return tuple(key for key in listed if key.strip())
    return tuple(key.strip() for key in value.split(",") if key.strip())


def schedule_from_env(value: object) -> object:
    """Durations, comma-separated ("5s,30s,2m"), or JSON seconds."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        return json.loads(text)
    return tuple(parse_duration(item) for item in text.split(",") if item.strip())


def check_keys(value: KeySet) -> KeySet:
    """API keys: none blank, none listed twice, every tenant named and given a key."""
    keys = [k for ks in value.values() for k in ks] if isinstance(value, dict) else value
    # An unset variable pasted into the list ('[""]') must not make the empty
    # bearer token a valid key.
    if any(not key.strip() for key in keys):
        raise ValueError("API keys must not be empty or blank")
    if isinstance(value, dict):
        for name, tenant_keys in value.items():
            # Not a 32-hex digest nor "anonymous": those are the owners of list-form
            # keys and of a service without keys, and must never name a tenant.
            if (
                not TENANT_NAME.fullmatch(name)
                or name == "anonymous"
                or re.fullmatch(r"[0-9a-f]{32}", name)
            ):
                raise ValueError(f"tenant name {name!r}: 1-64 of A-Z a-z 0-9 . _ -")
            if not tenant_keys:
                raise ValueError(f"tenant {name!r} has no key")
    if len({key.strip() for key in keys}) != len(keys):
        raise ValueError("an API key is listed twice")
    return value


def check_webhook_secret(value: str | None) -> str | None:
    """whsec_ + base64 of at least 24 bytes; blank is unset. Refused here, not by every
    delivery failing (and retrying) for ever."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    body = value.removeprefix("whsec_")
    try:
        raw = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except ValueError:
        raw = b""
    if not value.startswith("whsec_") or len(raw) < 24:
        raise ValueError(
            "IMAGEPIPE_WEBHOOK_SECRET must be whsec_ followed by the base64 of at "
            "least 24 random bytes, e.g. whsec_$(openssl rand -base64 32)"
        )
    return value


def check_storage_url(value: str | None) -> str | None:
    """file:///absolute/path or s3://BUCKET[/PREFIX]; empty is unset."""
    if not value:
        return None
    url = urlsplit(value)
    if url.scheme == "file" and (url.netloc not in ("", "localhost") or not url.path):
        raise ValueError("a file storage URL is file:///absolute/path")
    if url.scheme == "s3" and not url.netloc:
        raise ValueError("an S3 storage URL is s3://BUCKET[/PREFIX]")
    if url.scheme not in ("file", "s3"):
        raise ValueError("the storage URL starts with file:// or s3://")
    return value


def check_base_url(value: str | None) -> str | None:
    """An http(s) base URL without its trailing slash; blank is unset."""
    if not value or not value.strip():
        return None
    if urlsplit(value).scheme not in ("http", "https"):
        raise ValueError("IMAGEPIPE_PUBLIC_BASE_URL starts with http:// or https://")
    return value.strip().rstrip("/")


def check_schedule(value: tuple[float, ...]) -> tuple[float, ...]:
    if not value or any(seconds <= 0 for seconds in value):
        raise ValueError("the retry schedule is one or more positive durations")
    return value


def optional_rate(value: object) -> object:
    """A rate in lower case (checked by ``parse_rate``); blank is unset."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    parse_rate(str(value))
    return str(value).strip().lower()


def optional_duration(value: object) -> object:
    """A duration in lower case (checked by ``parse_duration``); blank is unset."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    parse_duration(str(value))
    return str(value).strip().lower()


def check_keep_originals(value: str) -> str:
    """ "always", "never" or a duration, in lower case."""
    value = value.strip().lower()
    if value not in ("always", "never"):
        parse_duration(value)
    return value


def check_preset_names(value: dict[str, str]) -> dict[str, str]:
    # The option strings themselves are parsed when the app starts (on_demand.options).
    for name in value:
        if not re.fullmatch(r"[a-z0-9_-]{1,32}", name):
            raise ValueError(f"preset name {name!r}: 1-32 of a-z 0-9 _ -")
    return value
