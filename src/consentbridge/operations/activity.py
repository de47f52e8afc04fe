"""An integration's activity over time (admin API ``GET …/activity``; the console's chart).

``since`` is ISO-8601 (a time without a zone is UTC) or unix seconds, default 24 hours ago;
``bucket_s`` is a multiple of 60 (minutes are the stored resolution), default 60. Buckets
without any activity are left out; ``at`` is each bucket's start.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, Final

from consentbridge.context import AppContext
from consentbridge.operations.errors import InvalidInput, Issue, NotFound
from consentbridge.store.activity import MINUTE, ActivityBucket
from consentbridge.store.values import iso_utc

DEFAULT_WINDOW_S: Final = 86_400
_SINCE_FORMS: Final = "must be a time: unix seconds ≥ 0 or ISO-8601 such as 2026-12-01T00:00Z"
MAX_BUCKETS: Final = 50_000
"""Most buckets one answer may span (30 days of minutes is 43,200)."""


def parse_since(text: str | None, now: float) -> float:
    """``since`` as unix seconds; ``InvalidInput`` naming the accepted forms."""
    if text is None or not text.strip():
        return now - DEFAULT_WINDOW_S
    text = text.strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(number) and number >= 0:
            return number
        raise _bad(
            "since", "must be a time: unix seconds ≥ 0 or ISO-8601 such as 2026-12-01T00:00Z"
        )
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _bad(
            "since", "must be a time: unix seconds or ISO-8601 such as 2026-12-01T00:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_bucket_s(text: str | None) -> int:
    """``bucket_s`` as whole seconds; ``InvalidInput`` unless a positive multiple of 60."""
    if text is None or not text.strip():
        return MINUTE
    try:
        value = int(text.strip())
    except ValueError:
        value = 0
    if value <= 0 or value % MINUTE:
        raise _bad("bucket_s", "must be a whole multiple of 60 seconds, such as 60 or 3600")
    return value


def _bad(path: str, message: str) -> InvalidInput:
    return InvalidInput([Issue(path, message)])


def bucket_json(bucket: ActivityBucket) -> dict[str, Any]:
    fields = asdict(bucket)
    fields["at"] = iso_utc(bucket.at)
    return fields


async def activity(
    ctx: AppContext, integration_id: str, *, since: str | None = None, bucket_s: str | None = None
) -> dict[str, Any]:
    """``{"since", "bucket_s", "buckets": [{"at", "written", "unchanged", "skipped", "failed",
    "retried", "ignored", "dataverse_requests", "dataverse_throttled"}]}``."""
    now = time.time()
    start = parse_since(since, now)
    size = parse_bucket_s(bucket_s)
    if (now - start) / size > MAX_BUCKETS:
        raise _bad(
            "bucket_s",
            f"spans more than {MAX_BUCKETS} buckets from since; use a larger bucket_s "
            "(such as 3600 for 30 days) or a later since",
        )
    if await ctx.integration(integration_id) is None:
        raise NotFound(f"No integration has the id '{integration_id}'.")
    buckets = await ctx.store.activity(integration_id, since=start, until=now, bucket_s=size)
    return {
        "since": iso_utc(start),
        "bucket_s": size,
        "buckets": [bucket_json(b) for b in buckets],
    }
