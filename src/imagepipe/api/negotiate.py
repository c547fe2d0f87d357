"""Which stored format of a variant to send, from the request's ``Accept`` header.

AVIF, then WebP, then the base format, among what the client accepts (q-values
respected, ``q=0`` refuses). A modern format is sent only to a client that names it:
``*/*`` or ``image/*`` alone get the base format, which every client can show.
"""

from __future__ import annotations

from collections.abc import Sequence

from imagepipe.imaging.formats import FormatName, OutputFormat

# Smallest files first: the order among formats the client accepts equally.
PREFERENCE: tuple[FormatName, ...] = ("AVIF", "WEBP")


def parse_accept(header: str) -> dict[str, float]:
    """Media range -> q-value (a malformed q counts as 0: refused, never preferred)."""
    ranges: dict[str, float] = {}
    for item in header.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        if not media:
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        media = media.lower()
        ranges[media] = max(q, ranges.get(media, q))  # listed twice: the higher q
    return ranges


def choose(accept: str | None, formats: Sequence[OutputFormat]) -> int | None:
    """The index in ``formats`` (the base first) to send, or None if the client
    accepts none of them. No ``Accept`` header at all means the base format."""
    if not accept or not accept.strip():
        return 0
    ranges = parse_accept(accept)
    best: tuple[float, int] | None = None
    chosen: int | None = None
    for index, spec in enumerate(formats):
        if index == 0:
            kind = spec.content_type.split("/")[0]
            q = _first(ranges, spec.content_type, f"{kind}/*", "*/*")
        elif spec.name in PREFERENCE:
            q = _first(ranges, spec.content_type)  # named explicitly, or not at all
        else:
            continue
        if q is None or q <= 0:
            continue
        rank = len(PREFERENCE) - PREFERENCE.index(spec.name) if spec.name in PREFERENCE else 0
        if best is None or (q, rank) > best:
            best, chosen = (q, rank), index
    return chosen


def choose_stored(
    accept: str | None, stored: Sequence[OutputFormat], due: Sequence[OutputFormat] = ()
) -> tuple[int | None, bool]:
    """``choose`` among the ``stored`` formats, and whether the client would rather
    have one of the ``due`` ones (extra formats not made yet): then what is sent is an
    interim answer, which caches may keep only briefly."""
    index = choose(accept, stored)
    if not due:
        return index, False
    best = choose(accept, [*stored, *due])
    return index, best is not None and best >= len(stored)


def _first(ranges: dict[str, float], *media: str) -> float | None:
    """The q of the most specific range present (RFC 9110: specific beats wildcard)."""
    for name in media:
        if name in ranges:
            return ranges[name]
    return None
