"""The audit view's person: found by `organization_user_id` directly, or by a Dataverse contact
id through the contact's match column (``config.match_attribute``); and their audit entries."""

from __future__ import annotations

import uuid
from typing import Final

from consentbridge.context import AppContext
from consentbridge.dataverse.errors import DataverseError, NotFoundError
from consentbridge.operations.connection import dataverse_failure, one_off_runtime
from consentbridge.operations.errors import InvalidInput, Issue, NotFound
from consentbridge.operations.integrations import load_integration
from consentbridge.store.audit_chain import AuditEntry


async def user_of_contact(ctx: AppContext, integration_id: str, contact_id: str) -> str:
    """The `organization_user_id` held by the contact's match column."""
    try:
        contact_uuid = uuid.UUID(contact_id.strip())
    except ValueError:
        raise InvalidInput(
            [
                Issue(
                    "contact",
                    "A contact id is a GUID such as 00000000-0000-0000-0000-000000000000; "
                    "copy it from the contact's URL in Dynamics 365.",
                )
            ],
            status=400,
        ) from None
    integration = await load_integration(ctx, integration_id)
    match = integration.config.match_attribute
    runtime = await one_off_runtime(integration)
    try:
        body = await runtime.dataverse.get_json(
            f"contacts({contact_uuid})", what="the contact", params={"$select": match}
        )
    except DataverseError as exc:
        if isinstance(exc, NotFoundError):
            raise NotFound(f"Dataverse has no contact with the id {contact_uuid}.") from None
        raise dataverse_failure(exc) from exc
    finally:
        await runtime.aclose()
    value = body.get(match)
    if not isinstance(value, str) or not value:
        raise NotFound(f"Contact {contact_uuid} has no {match}, so no Didomi user is linked to it.")
    return value


PERSON_ENTRIES: Final = 1000
"""Most entries the audit view shows for one person (the export has them all)."""


async def person_entries(
    ctx: AppContext, integration_id: str, organization_user_id: str
) -> list[AuditEntry]:
    """The person's audit entries, oldest first, each with its seal (sealed now if new)."""
    await load_integration(ctx, integration_id)
    await ctx.store.seal_audit(integration_id)
    return await ctx.store.audit_entries(
        integration_id, organization_user_id=organization_user_id, limit=PERSON_ENTRIES
    )
