"""What tests look at from outside: stored files, queued messages, metric samples."""

from __future__ import annotations

from pathlib import Path

import redis
from prometheus_client.parser import text_string_to_metric_families

from imagepipe.config import Settings
from imagepipe.queue import RENDER_LISTS

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def stored_files(settings: Settings) -> list[str]:
    """Every file under the storage root, as sorted relative paths."""
    root = settings.resolved_storage_root
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def queue_length(redis_url: str) -> int:
    """Renders waiting: every list of the render queue."""
    client = redis.Redis.from_url(redis_url)
    try:
        return sum(int(client.llen(name)) for name in RENDER_LISTS)
    finally:
        client.close()


def metric_samples(text: str) -> Samples:
    """Prometheus text as {(name, sorted labels): value}."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def listening_addresses(port: int) -> set[str]:
    """The IPv4 addresses a socket on this machine listens on at ``port`` (from
    /proc/net/tcp: what the kernel says, not what the program logged)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, _, hex_port = local.partition(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
            found.add(".".join(str(b) for b in reversed(bytes.fromhex(address))))
    return found
