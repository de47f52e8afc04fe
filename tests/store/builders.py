"""Small builders of store inputs, so tests state only what they are about."""

from __future__ import annotations

from typing import Any

from consentbridge.store import (
    Direction,
    IntakeItem,
    IntakeResult,
    LogEntry,
    Merge,
    Outcome,
    OutcomeKind,
    Store,
)

ACME = "acme"
OTHER = "globex"
T0 = 1_700_000_000.0
FORWARD: Direction = "to_dataverse"


def entry(
    user: str = "u1",
    *,
    integration: str = ACME,
    event: str = "user.updated",
    outcome: str = "received",
    at: float = T0,
    columns: dict[str, Any] | None = None,
    direction: Direction = FORWARD,
) -> LogEntry:
    return LogEntry(
        integration_id=integration,
        organization_user_id=user,
        direction=direction,
        event=event,
        outcome=outcome,
        reason="",
        columns=columns or {},
        request_id=None,
        at=at,
    )


def replace_with(columns: dict[str, Any]) -> Merge:
    return lambda _old: dict(columns)


def item(
    user: str = "u1",
    columns: dict[str, Any] | None = None,
    *,
    integration: str = ACME,
    direction: Direction = FORWARD,
    delivery_key: str | None = None,
    merge: Merge | None = None,
    now: float = T0,
    log: LogEntry | None = None,
    log_unchanged: LogEntry | None = None,
) -> IntakeItem:
    return IntakeItem(
        integration_id=integration,
        direction=direction,
        organization_user_id=user,
        delivery_key=delivery_key,
        merge=merge or replace_with(columns or {"v": 1}),
        log=log,
        now=now,
        log_unchanged=log_unchanged,
    )


async def put(
    store: Store, user: str = "u1", columns: dict[str, Any] | None = None, **kwargs: Any
) -> IntakeResult:
    """Intake one replacing change."""
    return await store.intake(item(user, columns, **kwargs))


def outcome(
    claimed: Any,
    kind: OutcomeKind,
    *,
    next_attempt_at: float | None = None,
    error: str | None = None,
    log: LogEntry | None = None,
) -> Outcome:
    return Outcome(
        integration_id=claimed.integration_id,
        direction=claimed.direction,
        organization_user_id=claimed.organization_user_id,
        claimed_seq=claimed.seq,
        kind=kind,
        log=log,
        next_attempt_at=next_attempt_at,
        error=error,
    )
