"""Retry timing with a fixed clock and a seeded random source."""

from __future__ import annotations

import random

from consentbridge.retry_after import parse_retry_after
from consentbridge.sync.retry import RetryPolicy


def test_delays_grow_exponentially_within_jitter_and_cap() -> None:
    policy = RetryPolicy(base_delay_s=2, max_delay_s=100, jitter=0.2)
    rng = random.Random(1)
    for attempt, nominal in [(0, 2), (1, 4), (2, 8), (5, 64), (6, 100), (30, 100)]:
        delay = policy.delay(attempt, rng)
        assert nominal * 0.8 <= delay <= nominal * 1.2


def test_gives_up_after_max_age() -> None:
    policy = RetryPolicy(max_age_s=72 * 3600)
    assert policy.next_attempt(attempt=3, first_failed_at=0.0, now=72 * 3600 - 1) is not None
    assert policy.next_attempt(attempt=3, first_failed_at=0.0, now=72 * 3600) is None


def test_retry_after_is_a_floor() -> None:
    policy = RetryPolicy(base_delay_s=1, jitter=0)
    when = policy.next_attempt(attempt=0, first_failed_at=None, now=1000.0, retry_after_s=30)
    assert when == 1030.0


def test_parse_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("12", 0.0) == 12.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470.0) == 10.0
    assert parse_retry_after("soon", 0.0) is None
    assert parse_retry_after(None, 0.0) is None
