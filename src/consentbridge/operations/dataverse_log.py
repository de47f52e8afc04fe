"""The log lines of Dataverse webhook intake (contact and consent-row changes alike), and the
store item of a delivery that stores nothing but its key and one log line."""

from __future__ import annotations

from typing import Any, Final

from consentbridge.config.integration import CONTACT, Integration
from consentbridge.dataverse.remote_context import ContactChange
from consentbridge.store.values import Direction, IntakeItem, LogEntry

TO_DIDOMI: Final[Direction] = "to_didomi"


def log_line(
    integration: Integration,
    user: str,
    change: ContactChange,
    outcome: str,
    reason: str,
    columns: dict[str, Any],
    now: float,
    target: str = CONTACT,
) -> LogEntry:
    return LogEntry(
        integration_id=integration.id,
        organization_user_id=user,
        direction=TO_DIDOMI,
        event=f"dataverse.{change.message.lower()}",
        outcome=outcome,
        reason=reason,
        columns=columns,
        request_id=change.operation_id or None,
        at=now,
        target=target,
    )


def logged_only(
    integration: Integration, user: str, change: ContactChange, key: str | None, log: LogEntry
) -> IntakeItem:
    """An item that stores no state: the delivery key and one log line."""
    return IntakeItem(
        integration_id=integration.id,
        direction=TO_DIDOMI,
        organization_user_id=user,
        delivery_key=key,
        merge=lambda old: None,
        log=None,
        log_unchanged=log,
        now=log.at,
        target=log.target,
    )
