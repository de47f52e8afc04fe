"""An integration the worker cannot sync at all — its clients cannot be built (an unusable CA
bundle), its secrets no longer decrypt, or its engine failed unexpectedly — is this integration's
problem alone.

The worker keeps one backoff step per such integration (``Outages``): within a step it does not
try the integration again, and it says so in the log once per step
(``integration.unavailable`` with ``integration``, ``reason`` and ``retry_in_s``). The changes
it claimed are retried like any failed write (``held_outcomes``): ``retrying`` with the reason in
the sync log, not before the step ends, and dead letters once they have failed for longer than
the retry horizon. Every other integration keeps flowing, whatever order the ids sort in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from consentbridge.logs import get_logger
from consentbridge.store.values import ClaimedState, LogEntry, Outcome, OutcomeKind
from consentbridge.sync.merge import last_event, last_regulation
from consentbridge.sync.retry import RetryPolicy

log = get_logger("consentbridge.worker")

EVENT = "sync"


@dataclass
class _Step:
    reason: str
    attempt: int
    until: float


class Outages:
    """Backoff steps of the integrations this worker cannot sync, by integration id."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy
        self._steps: dict[str, _Step] = {}

    def ready(self, integration_id: str, now: float) -> bool:
        """False while the integration is within a backoff step: leave it alone until then."""
        step = self._steps.get(integration_id)
        return step is None or now >= step.until

    def fail(self, integration_id: str, reason: str, now: float, *, trace: bool = False) -> float:
        """Note a failure; the end of its backoff step. A new step (or a new reason) is logged,
        with the exception's traceback when ``trace`` (an unexpected failure)."""
        step = self._steps.get(integration_id)
        if step is not None and now < step.until and reason == step.reason:
            return step.until
        attempt = 0 if step is None else step.attempt + 1
        until = now + self._policy.delay(attempt)
        self._steps[integration_id] = _Step(reason, attempt, until)
        log.warning(
            "integration.unavailable",
            exc_info=trace,
            integration=integration_id,
            reason=reason,
            retry_in_s=round(until - now, 1),
        )
        return until

    def recover(self, integration_id: str) -> None:
        """The integration works again; the log says so if it had said it did not."""
        if self._steps.pop(integration_id, None) is not None:
            log.info("integration.available", integration=integration_id)


def held_outcomes(
    claims: Sequence[ClaimedState],
    policy: RetryPolicy,
    reason: str,
    now: float,
    not_before: float,
) -> list[Outcome]:
    """The claimed changes of an integration that cannot be synced: each retried (not before
    ``not_before``, the end of the integration's backoff step) with ``reason``, or a dead letter
    once it has failed for longer than the policy's horizon."""
    outcomes: list[Outcome] = []
    for claim in claims:
        kind: OutcomeKind
        when = policy.next_attempt(
            attempt=claim.attempts, first_failed_at=claim.first_failed_at, now=now
        )
        if when is None:
            kind, log_outcome = "dead", "dead_letter"
            text = f"gave up after retrying for the maximum age: {reason}"
        else:
            when = max(when, not_before)
            kind, log_outcome = "retry", "retrying"
            text = f"will retry in {when - now:.0f} s: {reason}"
        outcomes.append(
            Outcome(
                integration_id=claim.integration_id,
                direction=claim.direction,
                organization_user_id=claim.organization_user_id,
                claimed_seq=claim.seq,
                kind=kind,
                log=LogEntry(
                    integration_id=claim.integration_id,
                    organization_user_id=claim.organization_user_id,
                    direction=claim.direction,
                    event=last_event(claim.columns) or EVENT,
                    outcome=log_outcome,
                    reason=text,
                    columns={},
                    request_id=None,
                    at=now,
                    target=claim.target,
                    regulation=last_regulation(claim.columns) or claim.regulation,
                ),
                next_attempt_at=when,
                error=reason,
                target=claim.target,
                regulation=claim.regulation,
            )
        )
    return outcomes
