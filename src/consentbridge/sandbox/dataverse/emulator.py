"""`DataverseEmulator`: the Dataverse Web API under `/api/data/v9.2/` over the shared sandbox
state — the `contact` table, alternate keys, metadata, bulk messages, `$batch`, `WhoAmI`, the
webhook registration tables and real webhook deliveries.

Module map: pipeline (HTTP, auth, limits, faults; caller.py for the app user and bypass
headers) → router → table_api / bulk_api / batch_api / metadata_api → payload (bodies) → writes
(rows, transactions) → rows / keys / tables (storage); query / represent (reading); webhooks /
remote_context (deliveries); registration (webhook tables); schema / values / metadata (types);
errors; options (the emulator's own tunables).

Operation names counted in `stats.dataverse_by_operation` are listed in router.py. Must be
driven from one event loop (the server's): handlers and webhook lanes share it.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from consentbridge.sandbox.dataverse import journeys, registration
from consentbridge.sandbox.dataverse import schema as s
from consentbridge.sandbox.dataverse.api import API_PATH
from consentbridge.sandbox.dataverse.limits import ServiceProtection
from consentbridge.sandbox.dataverse.options import DataverseOptions
from consentbridge.sandbox.dataverse.pipeline import Pipeline
from consentbridge.sandbox.dataverse.remote_context import Organization
from consentbridge.sandbox.dataverse.router import Router
from consentbridge.sandbox.dataverse.tables import Database
from consentbridge.sandbox.dataverse.webhooks import WebhookDispatcher
from consentbridge.sandbox.dataverse.writes import (
    REQUIRED_LEVELS,
    SYSTEM_REQUIRED_ONLY,
    Transactions,
    Writer,
)
from consentbridge.sandbox.state import SandboxState

METHODS = ["GET", "POST", "PATCH", "PUT", "DELETE"]
_IDS = uuid.UUID("0b7d8b0e-3b5c-4a53-9f0a-3f1c7b6d2e11")


class DataverseEmulator:
    def __init__(self, state: SandboxState) -> None:
        self._state = state
        self.options = DataverseOptions()
        tenant = state.principals.tenant_id
        self.organization = Organization(
            id=str(uuid.uuid5(_IDS, f"{tenant}/organization")),
            name=self.options.organization_name,
            business_unit_id=str(uuid.uuid5(_IDS, f"{tenant}/businessunit")),
        )
        self._custom: list[s.Column] = []
        self._protection = ServiceProtection()
        self.db = self._new_database()
        self.webhooks = WebhookDispatcher(self.db, state.stats, self.options, self.organization)
        self._pipeline = self._new_pipeline()

    # --- assembly ----------------------------------------------------------------------------

    def _new_database(self) -> Database:
        contact = s.contact_schema()
        for column in self._custom:
            contact.add_column(column)
        db = Database(
            [contact, *registration.schemas(), *journeys.schemas()], self.options.key_activation_s
        )
        registration.seed(db, [s.CONTACT])
        journeys.seed_filters(db)
        journeys.Catalog(db, self.organization.business_unit_id).seed()
        return db

    def _new_pipeline(self) -> Pipeline:
        writer = Writer(
            self.db,
            rules={
                registration.SERVICEENDPOINT: registration.check_endpoint,
                registration.STEP: registration.check_step,
                **journeys.rules(self.organization.business_unit_id),
            },
            delete_rules={registration.SERVICEENDPOINT: registration.check_endpoint_delete},
            required_levels=self._required_levels,
        )
        transactions = Transactions(self.db, self._state.stats, self.webhooks)
        router = Router(
            self.db,
            writer,
            transactions,
            self._state.stats,
            self.organization.id,
            self.organization.business_unit_id,
            self._state.principals.by_systemuserid,
        )
        return Pipeline(self._state, router, self._protection)

    def _required_levels(self) -> frozenset[str]:
        if self.options.enforce_application_required:
            return REQUIRED_LEVELS
        return SYSTEM_REQUIRED_ONLY

    def _rebuild(self) -> None:
        self.db = self._new_database()
        self.webhooks.reset()
        self.webhooks.db = self.db
        self._pipeline = self._new_pipeline()

    # --- interface ---------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        """Everything under `/api/data/v9.2/`."""

        async def endpoint(request: Request) -> Response:
            return await self._pipeline(request)

        return [
            Route(API_PATH, endpoint, methods=METHODS),
            Route(API_PATH + "/{path:path}", endpoint, methods=METHODS),
        ]

    def reset(self) -> None:
        """Drop all rows, custom columns, keys, registrations and queued deliveries."""
        self._custom.clear()
        self._protection.reset()
        self._rebuild()

    def add_column(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Add a custom contact column (the `/_sandbox/columns` body); ValueError if bad."""
        table = self.db.table(s.CONTACT)
        column = s.custom_column(spec, table.schema)
        table.schema.add_column(column)
        self._custom.append(column)
        if column.default is not None:  # existing rows take the default, as SQL fills them
            for row in list(table.store):
                table.store.put({**row, column.property_name: column.default})
        return {"table": s.CONTACT, **column.public()}

    @property
    def catalog(self) -> journeys.Catalog:
        """The Journeys purposes and topics (`/_sandbox/purposes`, `/_sandbox/topics`)."""
        return journeys.Catalog(self.db, self.organization.business_unit_id)

    def history(self, table: str, row_id: str) -> list[dict[str, Any]] | None:
        """Every write to a row, in order: at, systemuserid, app, operation, columns."""
        found = self.db.tables.get(table) or self.db.by_set.get(table)
        guid = str(uuid.UUID(row_id)) if _is_guid(row_id) else row_id
        if found is None:
            return None
        entries = self.db.history.get((found.name, guid))
        return None if entries is None else [entry.public() for entry in entries]

    def option_values(self) -> dict[str, Any]:
        """The current tunables (options.py), as `/_sandbox/options` shows them."""
        return dataclasses.asdict(self.options)

    def configure(self, **options: Any) -> None:
        """Change tunables (options.py); ValueError on an unknown option or a bad value."""
        self.options.update(**options)
        for table in self.db.tables.values():
            table.keys.activation_s = self.options.key_activation_s
        self.organization = Organization(
            self.organization.id, self.options.organization_name, self.organization.business_unit_id
        )
        self.webhooks.organization = self.organization
        self.webhooks.options_changed()

    async def wait_for_webhooks(self, timeout_s: float | None = None) -> None:
        """Until every queued async delivery finished (TimeoutError after `timeout_s`)."""
        await self.webhooks.wait_idle(timeout_s)

    def snapshot(self) -> dict[str, Any]:
        """Rows, keys, registrations, custom columns and history (queued deliveries are not
        saved). Endpoint secrets are included: the file is private to the state dir."""
        return {
            "custom_columns": [c.public() for c in self._custom],
            "database": self.db.snapshot(),
        }

    def restore(self, data: dict[str, Any]) -> None:
        self._custom.clear()
        contact = s.contact_schema()
        for spec in data.get("custom_columns", []):
            column = s.column_from_public(spec, contact)
            contact.add_column(column)
            self._custom.append(column)
        self._rebuild()
        self.db.restore(data.get("database", {}))

    async def aclose(self) -> None:
        """Stop background webhook deliveries and close their HTTP client."""
        await self.webhooks.aclose()


def _is_guid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
