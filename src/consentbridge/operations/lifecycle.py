"""Apply and delete an integration together with its Dataverse webhook.

`"bidirectional": true` in a document means "keep the CRM → Didomi webhook registered", so
applying such a document runs `bidirectional enable` (idempotent: a second apply changes
nothing in Dataverse), and applying one that turns the flow off runs `disable`. The document is
stored first either way: a registration that fails (missing System Administrator role, no
public URL) is reported next to the stored document, with its fix, and can be retried with
`bidirectional enable ID` — the configuration is never lost to a Dataverse problem. The other
way round, `bidirectional enable` and `disable` set `"bidirectional"` in the stored document, so
the document `show`, the API and the console hand out can be applied again unchanged without
undoing them.

Deleting an integration removes its webhook first, so Dataverse is not left calling an
endpoint that no longer exists. If that removal fails, the deletion is refused with the reason,
unless `force` is given (then the leftover endpoint is named so it can be removed by hand).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from consentbridge.config.integration import Integration
from consentbridge.context import AppContext
from consentbridge.operations import bidirectional, integrations
from consentbridge.operations.errors import Conflict, OperationError


@dataclass(frozen=True)
class Applied:
    integration: Integration
    created: bool
    flow: bidirectional.Report | None = None
    flow_error: str | None = None

    @property
    def flow_ok(self) -> bool:
        return self.flow_error is None

    def flow_json(self) -> dict[str, Any] | None:
        """The outcome of the webhook registration for API answers (None if untouched)."""
        if self.flow_error is not None:
            return {"ok": False, "error": self.flow_error}
        if self.flow is None:
            return None
        return {"ok": True, "action": self.flow.action, "lines": self.flow.lines}


async def apply(
    ctx: AppContext,
    raw: object,
    *,
    default_id: str | None = None,
    public_url: str | None = None,
) -> Applied:
    """Store the document, then bring the Dataverse webhook in line with `bidirectional`."""
    integration, created = await integrations.apply(ctx, raw, default_id=default_id)
    registered = await ctx.store.get_registration(integration.id) is not None
    try:
        if integration.bidirectional:
            report = await bidirectional.enable(ctx, integration.id, public_url=public_url)
        elif registered:
            report = await bidirectional.disable(ctx, integration.id)
        else:
            return Applied(integration, created)
    except OperationError as exc:
        action = "enable" if integration.bidirectional else "disable"
        return Applied(
            integration,
            created,
            flow_error=f"Stored, but `bidirectional {action}` failed: {exc.message}",
        )
    return Applied(integration, created, flow=report)


async def delete(ctx: AppContext, integration_id: str, *, force: bool = False) -> list[str]:
    """Remove the webhook (if one is recorded), then the integration; lines say what was done."""
    lines: list[str] = []
    if await ctx.store.get_registration(integration_id) is not None:
        try:
            report = await bidirectional.disable(ctx, integration_id)
            lines += report.lines[:-1]  # the role reminder makes no sense after a deletion
        except OperationError as exc:
            if not force:
                raise Conflict(
                    f"Deleting '{integration_id}' would leave its webhook registered in "
                    f"Dataverse ({exc.message.rstrip('.')}); fix that and retry, or delete "
                    "with --force (API: ?force=true) and remove the service endpoint by hand."
                ) from exc
            record = bidirectional.RegistrationRecord.from_stored(
                await ctx.store.get_registration(integration_id)
            )
            endpoint = record.endpoint_id if record is not None else None
            lines.append(
                f"The webhook could not be removed ({exc.message.rstrip('.')}): delete the "
                f"service endpoint {endpoint or '(unknown id)'} in Dataverse by hand."
            )
    await integrations.delete(ctx, integration_id)
    return lines
