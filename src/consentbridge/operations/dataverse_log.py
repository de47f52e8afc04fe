"""One Dataverse webhook being taken in (contact and consent-row changes alike): what each of
its store items and log lines needs, the log lines themselves, and the store item of a
delivery that stores nothing but its key and one log line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from consentbridge.config.integration import CONTACT, Integration
from consentbridge.dataverse.remote_context import ContactChange
from consentbridge.operations.bidirectional import RegistrationRecord
from consentbridge.store.values import Direction, IntakeItem, LogEntry

TO_DIDOMI: Final[Direction] = "to_didomi"
ECHO_BY_USER: Final = "initiated by ConsentBridge's own application user: the echo of a sync write"


@dataclass(frozen=True, slots=True)
class DataverseDelivery:
    """One authenticated, parsed Dataverse webhook: the change, the integration and
    registration it arrived for, its delivery key, whether Dataverse truncated it, and when
    it arrived."""

    integration: Integration
    record: RegistrationRecord
    change: ContactChange
    key: str | None
    truncated: bool
    now: float

    @property
    def by_our_user(self) -> bool:
        """Initiated by our own application user: the echo of a sync write (echo layer 1)."""
        initiator = self.change.initiating_user_id or self.change.user_id
        return bool(initiator and initiator.lower() in self.record.our_user_ids)

    def log_line(
        self,
        user: str,
        outcome: str,
        reason: str,
        columns: dict[str, Any],
        target: str = CONTACT,
    ) -> LogEntry:
        return LogEntry(
            integration_id=self.integration.id,
            organization_user_id=user,
            direction=TO_DIDOMI,
            event=f"dataverse.{self.change.message.lower()}",
            outcome=outcome,
            reason=reason,
            columns=columns,
            request_id=self.change.operation_id or None,
            at=self.now,
            target=target,
        )

    def logged_only(self, log: LogEntry) -> IntakeItem:
        """An item that stores no state: the delivery key and one log line (of its user)."""
        return IntakeItem(
            integration_id=self.integration.id,
            direction=TO_DIDOMI,
            organization_user_id=log.organization_user_id,
            delivery_key=self.key,
            merge=lambda old: None,
            log=None,
            log_unchanged=log,
            now=log.at,
            target=log.target,
        )
