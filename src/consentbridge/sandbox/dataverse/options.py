"""Tunables of the Dataverse emulator (not part of Dataverse's own surface), with the values the
real service has where it has one. Change them with `DataverseEmulator.configure(**options)`."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

WEBHOOK_TIMEOUT_S = 60.0  # Dataverse gives a webhook receiver 60 s (MS Learn use-webhooks)
WEBHOOK_LANES = 8
KEY_ACTIVATION_S = 0.2
ORGANIZATION_NAME = "sandbox"


@dataclass
class DataverseOptions:
    # POST timeout of a webhook delivery.
    webhook_timeout_s: float = WEBHOOK_TIMEOUT_S
    # TLS verification of https receivers: True (system CAs), False, or a CA bundle path.
    webhook_verify: bool | str = True
    # Async deliveries run in this many ordered lanes (a row's deliveries share one lane).
    webhook_lanes: int = WEBHOOK_LANES
    # How long a new alternate key stays Pending before its index is Active (or Failed).
    key_activation_s: float = KEY_ACTIVATION_S
    # `OrganizationName` in webhook contexts.
    organization_name: str = ORGANIZATION_NAME
    # Refuse creates that leave an ApplicationRequired column (contact.lastname) empty. Real
    # Dataverse enforces only SystemRequired on API writes; the sandbox is stricter by default
    # so that code which must supply a last name is caught. False behaves like the service.
    enforce_application_required: bool = True

    def update(self, **changes: Any) -> None:
        """Apply changes (ValueError, nothing changed, on an unknown name or a bad value)."""
        known = {f.name: f for f in fields(self)}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"Unknown Dataverse emulator option '{name}'.")
            if name == "enforce_application_required":
                if not isinstance(value, bool):
                    raise ValueError("Option 'enforce_application_required' is true or false.")
            elif name == "webhook_verify":
                if not isinstance(value, bool | str):
                    raise ValueError("Option 'webhook_verify' is true, false or a CA bundle path.")
            elif name == "organization_name":
                if not isinstance(value, str) or not value:
                    raise ValueError("Option 'organization_name' must be a non-empty string.")
            elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"Option '{name}' must be a non-negative number.")
            elif name == "webhook_lanes" and (not isinstance(value, int) or value < 1):
                raise ValueError("Option 'webhook_lanes' must be a positive integer.")
        for name, value in changes.items():
            setattr(self, name, value)
