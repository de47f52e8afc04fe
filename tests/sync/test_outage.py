"""Backoff steps of an integration the worker cannot sync, and what becomes of its changes."""

from __future__ import annotations

import logging

import pytest

from consentbridge.logs import record_fields
from consentbridge.store.values import ClaimedState
from consentbridge.sync.outage import Outages, held_outcomes
from consentbridge.sync.retry import RetryPolicy

POLICY = RetryPolicy(base_delay_s=10.0, jitter=0.0, max_age_s=3600.0)
REASON = "config.ca_bundle does not exist: /etc/ca.pem."


def _said(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, object]]:
    return [record_fields(r) for r in caplog.records if r.getMessage() == event]


def test_the_log_says_it_once_per_backoff_step(caplog: pytest.LogCaptureFixture) -> None:
    outages = Outages(POLICY)
    with caplog.at_level(logging.INFO, logger="consentbridge"):
        assert outages.fail("acme", REASON, now=0.0) == 10.0
        for now in (1.0, 5.0, 9.9):  # every pass within the step
            assert not outages.ready("acme", now)
            assert outages.fail("acme", REASON, now=now) == 10.0
        assert outages.ready("acme", 10.0)
        assert outages.fail("acme", REASON, now=10.0) == 30.0  # the next step is twice as long
        assert outages.ready("other", 1.0), "another integration is never held back"
        outages.recover("acme")
        outages.recover("acme")
    said = _said(caplog, "integration.unavailable")
    assert said == [
        {"integration": "acme", "reason": REASON, "retry_in_s": 10.0},
        {"integration": "acme", "reason": REASON, "retry_in_s": 20.0},
    ]
    assert _said(caplog, "integration.available") == [{"integration": "acme"}]
    assert outages.ready("acme", 10.5), "recovered: no step left"


def test_a_new_reason_within_a_step_is_said_too(caplog: pytest.LogCaptureFixture) -> None:
    outages = Outages(POLICY)
    with caplog.at_level(logging.INFO, logger="consentbridge"):
        outages.fail("acme", REASON, now=0.0)
        outages.fail("acme", "its stored document cannot be read", now=1.0)
    assert [f["reason"] for f in _said(caplog, "integration.unavailable")] == [
        REASON,
        "its stored document cannot be read",
    ]


def _claim(user: str, attempts: int, first_failed_at: float | None) -> ClaimedState:
    columns = {"donotbulkemail": {"v": True}, "~event": "user.updated"}
    return ClaimedState("acme", "to_dataverse", user, columns, 7, attempts, first_failed_at)


def test_changes_are_retried_after_the_step_then_dead_past_the_horizon() -> None:
    now = 10_000.0
    fresh = _claim("a@example.com", 0, None)
    old = _claim("b@example.com", 9, now - 3600.0)
    retried, dead = held_outcomes([fresh, old], POLICY, REASON, now, not_before=now + 40.0)

    assert retried.kind == "retry"
    assert retried.next_attempt_at == now + 40.0, "not before the integration's step ends"
    assert retried.error == REASON
    assert retried.log is not None
    assert (retried.log.outcome, retried.log.reason) == (
        "retrying",
        f"will retry in 40 s: {REASON}",
    )
    assert (retried.claimed_seq, retried.log.event) == (7, "user.updated")

    assert dead.kind == "dead"
    assert dead.log is not None and dead.log.outcome == "dead_letter"
    assert REASON in dead.log.reason and dead.error == REASON
