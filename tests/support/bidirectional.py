"""Builders for the unit tests of the bidirectional flow: an `AppContext` on a SQLite file with
one integration (and the checks `integrations test` runs on it), a recorded registration and
Dataverse webhook bodies."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from consentbridge.config.settings import Settings
from consentbridge.context import AppContext
from consentbridge.operations import diagnostics, integrations
from consentbridge.operations.bidirectional import RegistrationRecord
from consentbridge.operations.diagnostics import Check

INTEGRATION_ID = "acme-d365"
SECRET = "webhook-key-0123456789abcdef"
OUR_USER = "aaaaaaaa-0000-4000-8000-000000000001"
CRM_USER = "bbbbbbbb-0000-4000-8000-000000000002"
DIDOMI_BASE = "https://didomi.example/v1"
PROPERTIES: list[dict[str, Any]] = [
    {"id": "donotbulkemail", "value": "consents_purposes_newsletter_enabled", "transform": "not"},
    {"id": "donotemail", "value": "consents_purposes_email_enabled", "transform": "not"},
    {
        "id": "new_tier",
        "value": "consents_purposes_newsletter_enabled_li",
        "transform": {"true": 1, "false": 1},
    },
]
DOCUMENT: dict[str, Any] = {
    "id": INTEGRATION_ID,
    "organization_id": "acme",
    "config": {
        "client_id": "1b2c3d4e-0000-4000-8000-00000000abcd",
        "client_secret": "dv-client-secret",
        "tenant_id": "9f8e7d6c-1111-4222-8333-444455556666",
        "instance": "https://acme.crm4.dynamics.com",
        "properties": PROPERTIES,
    },
    "didomi": {"api_key": "key", "api_secret": "didomi-secret", "base_url": DIDOMI_BASE},
}


async def open_context(
    tmp_path: Path, document: dict[str, Any] | None = None, **settings: Any
) -> AppContext:
    """A context on a SQLite file holding one integration: `document`, else `DOCUMENT`."""
    values = {
        "db_url": f"sqlite:///{tmp_path / 'cb.db'}",
        "secret_key": Fernet.generate_key().decode(),
        **settings,
    }
    ctx = await AppContext.open(Settings.from_env({}, **values))
    await integrations.apply(ctx, json.loads(json.dumps(document or DOCUMENT)))
    return ctx


async def connection_checks(tmp_path: Path, document: dict[str, Any]) -> dict[str, Check]:
    """What `integrations test` finds for `document` on a fresh context, by check name."""
    ctx = await open_context(tmp_path, document)
    try:
        checks = await diagnostics.test_connection(ctx, document["id"])
    finally:
        await ctx.aclose()
    return {check.name: check for check in checks}


async def record_registration(ctx: AppContext, **fields: Any) -> RegistrationRecord:
    record = RegistrationRecord(
        url=f"https://cb.example/webhooks/dataverse/{INTEGRATION_ID}",
        public_url="https://cb.example",
        secret=ctx.secrets.encrypt(SECRET),
        application_user_id=OUR_USER,
        filtering_attributes="donotbulkemail,donotemail,emailaddress1",
        enabled_at="2025-01-01T00:00:00.000Z",
        **fields,
    )
    await ctx.store.set_registration(INTEGRATION_ID, record.stored())
    return record


def ms(at: dt.datetime) -> str:
    return f"/Date({int(at.timestamp() * 1000)})/"


def webhook_body(
    attributes: dict[str, Any],
    *,
    message: str = "Update",
    contact_id: str = "6d81597f-0f9f-e711-8122-000d3aa2331c",
    initiating_user: str = CRM_USER,
    modified: dt.datetime | None = None,
    post_image: dict[str, Any] | None = None,
    operation_id: str | None = None,
    entity: str = "contact",
    pre_image: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A RemoteExecutionContext as Dataverse posts it for an async post-operation step on
    ``entity`` (``contact_id``: the row's id)."""
    attrs = dict(attributes)
    attrs["modifiedon"] = ms(modified or dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    body: dict[str, Any] = {
        "MessageName": message,
        "PrimaryEntityId": contact_id,
        "PrimaryEntityName": entity,
        "InitiatingUserId": initiating_user,
        "UserId": initiating_user,
        "OperationId": operation_id or str(uuid.uuid4()),
        "Depth": 1,
        "Stage": 40,
        "InputParameters": [
            {
                "key": "Target",
                "value": {
                    "__type": "Entity:http://schemas.microsoft.com/xrm/2011/Contracts",
                    "Attributes": [{"key": k, "value": v} for k, v in attrs.items()],
                    "Id": contact_id,
                    "LogicalName": entity,
                },
            }
        ],
        "PostEntityImages": [],
    }
    for name, image in (("PostEntityImages", post_image), ("PreEntityImages", pre_image)):
        if image is not None:
            body[name] = [
                {
                    "key": name.removesuffix("EntityImages") + "Image",
                    "value": {"Attributes": [{"key": k, "value": v} for k, v in image.items()]},
                }
            ]
    return body
