"""Parsing of the HTTP `Retry-After` header (delta-seconds or an HTTP date), shared by the
Dataverse and Didomi clients and the sync retry policy."""

from __future__ import annotations

import datetime as dt
import email.utils


def parse_retry_after(value: str | None, now: float) -> float | None:
    """`Retry-After` as seconds from `now`, or None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, when.timestamp() - now)
