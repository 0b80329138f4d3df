"""Content negotiation for /explain: JSON by default, the PNG itself when the Accept header
prefers it (RFC 9110 section 12.5.1: q-values, and the most specific range decides)."""

from __future__ import annotations

PNG = "image/png"
JSON = "application/json"


def accepts_png(accept: str | None) -> bool:
    """True when `accept` ranks image/png above application/json. A tie goes to the type
    named by the more specific range, then to the one listed first; `*/*` alone, no header,
    or a header naming neither keeps JSON."""
    ranges = _media_ranges(accept or "")
    png, json = _preference(ranges, PNG), _preference(ranges, JSON)
    return png[0] > 0 and png > json


def _media_ranges(accept: str) -> list[tuple[str, float]]:
    """[(media range, q)] in header order; a malformed q counts as 0 (not acceptable)."""
    ranges = []
    for part in accept.split(","):
        media, *parameters = (piece.strip() for piece in part.split(";"))
        if not media:
            continue
        quality = 1.0
        for parameter in parameters:
            key, _, value = parameter.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    quality = 0.0
        ranges.append((media.lower(), quality))
    return ranges


def _preference(ranges: list[tuple[str, float]], media_type: str) -> tuple[float, int, int]:
    """(q, specificity, -position) of the most specific range matching `media_type`;
    (0, -1, 0) when none matches."""
    kind = media_type.split("/")[0]
    best = (0.0, -1, 0)
    best_specificity = -1
    for position, (media, quality) in enumerate(ranges):
        specificity = {media_type: 2, f"{kind}/*": 1, "*/*": 0}.get(media, -1)
        if specificity > best_specificity:
            best_specificity = specificity
            best = (quality, specificity, -position)
    return best
