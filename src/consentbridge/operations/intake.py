"""Receiving webhooks: a change is authenticated by the route, parsed here, projected through
the mapping and merged into the user's desired state in one store transaction. The caller
answers 202 only after this returns — the change is then durable.

Nothing slow happens here (no Dataverse or Didomi call); workers do the writing.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final

from consentbridge.config.integration import Integration
from consentbridge.context import AppContext
from consentbridge.didomi.webhooks import (
    AnonymousUser,
    ConsentChange,
    PayloadError,
    parse_webhook,
)
from consentbridge.logs import get_logger, user_ref
from consentbridge.mapping import ConsentSnapshot, MappingError, Property, project
from consentbridge.operations.errors import InvalidInput, Issue, NotFound
from consentbridge.store.values import (
    Direction,
    IgnoredDelivery,
    Intake,
    IntakeItem,
    IntakeResult,
    LogEntry,
)
from consentbridge.sync.merge import EVENT_KEY, Stamp, merge_columns

log = get_logger("consentbridge.intake")

TO_DATAVERSE: Final[Direction] = "to_dataverse"
# One `webhook.accepted` line per stored webhook, at INFO: ~21 µs of a webhook's ~540 µs of CPU,
# about 4 % (measured in docs/operations.md, "Logs"); LOG_LEVEL=WARNING drops the line and the
# hashing of the user id with it.
ACCEPTED_LEVEL: Final = logging.INFO
IGNORED_NO_USER: Final = "no organization_user_id"
"""Why a Didomi delivery was ignored (the 202 answer's ``ignored``, a metrics label)."""
UNSTORED_INTAKE_ENV: Final = "CONSENTBRIDGE_BENCH_UNSTORED_INTAKE"
"""Set to 1 only by benchmarks/intake.py: ``serve`` then answers Didomi webhooks 202 without
storing them (``receive_didomi_unstored``) and says so loudly at start-up."""


async def require_integration(ctx: AppContext, integration_id: str) -> Integration:
    integration = await ctx.integration(integration_id)
    if integration is None:
        raise NotFound(f"No integration has the id '{integration_id}'; check the webhook URL.")
    return integration


# Parsed mappings by the identity of the integration's property list (held, so the id cannot
# be reused while cached): parsing the path grammar for every webhook was ~10 % of intake.
_PARSED: dict[int, tuple[object, list[Property]]] = {}
_MAX_PARSED = 256


def _properties(integration: Integration) -> list[Property]:
    raw = integration.config.properties
    cached = _PARSED.get(id(raw))
    if cached is not None and cached[0] is raw:
        return cached[1]
    parsed = [Property(p.id, p.value, p.transform) for p in raw]
    if len(_PARSED) >= _MAX_PARSED:
        _PARSED.clear()
    _PARSED[id(raw)] = (raw, parsed)
    return parsed


def _log(
    integration: Integration,
    change: ConsentChange,
    outcome: str,
    reason: str,
    columns: dict[str, Any],
    now: float,
) -> LogEntry:
    return LogEntry(
        integration_id=integration.id,
        organization_user_id=change.organization_user_id,
        direction=TO_DATAVERSE,
        event=change.event_type,
        outcome=outcome,
        reason=reason,
        columns=columns,
        request_id=None,
        at=now,
        event_id=change.event_id,
    )


def _received_reason(change: ConsentChange) -> str:
    version = f", version {change.version}" if change.version is not None else ""
    event = f", Didomi event {change.event_id}" if change.event_id else ""
    return f"received from Didomi ({change.event_type}{version}{event}); queued for Dataverse"


def _recorded_only(
    integration: Integration,
    change: ConsentChange,
    reason: str,
    now: float,
    outcome: str = "skipped",
) -> IntakeItem:
    """An item that changes no state but records the delivery and one log line."""
    return IntakeItem(
        integration_id=integration.id,
        direction=TO_DATAVERSE,
        organization_user_id=change.organization_user_id,
        delivery_key=change.delivery_key,
        merge=lambda old: None,
        log=None,
        log_unchanged=_log(integration, change, outcome, reason, {}, now),
        now=now,
    )


def didomi_item(integration: Integration, change: ConsentChange, now: float) -> IntakeItem:
    """The store item for one parsed Didomi webhook (pure: no I/O)."""
    if change.regulation not in integration.config.regulations:
        allowed = ", ".join(integration.config.regulations)
        return _recorded_only(
            integration,
            change,
            f"regulation '{change.regulation}' is not in config.regulations ({allowed})",
            now,
        )
    if change.snapshot is None:
        what = (
            "user deleted in Didomi: recorded, nothing written to the contact (documented choice)"
            if change.event_type == "user.deleted"
            else "recorded; the consent state it changes arrives as user.updated"
        )
        return _recorded_only(integration, change, what, now)
    try:
        snapshot = ConsentSnapshot.from_user(change.snapshot)
        values = project(_properties(integration), snapshot)
    except MappingError as exc:
        raise InvalidInput([Issue("parameters", str(exc))]) from exc
    stamp = Stamp(
        version=change.version,
        ts=change.timestamp.timestamp() if change.timestamp else now,
        source="didomi",
    )

    def merge(old: dict[str, Any] | None) -> dict[str, Any] | None:
        result = merge_columns(old, values, stamp)
        if not result.touched:
            return None
        result.columns[EVENT_KEY] = change.event_type
        return result.columns

    stale_reason = (
        "already up to date: the stored state is as new as this "
        + change.event_type
        + (f" (version {change.version})" if change.version is not None else "")
        + " or newer"
    )
    return IntakeItem(
        integration_id=integration.id,
        direction=TO_DATAVERSE,
        organization_user_id=change.organization_user_id,
        delivery_key=change.delivery_key,
        merge=merge,
        # The audit trail's first line for this change: what was received and when.
        log=_log(integration, change, "received", _received_reason(change), values, now),
        log_unchanged=_log(
            integration,
            change,
            "unchanged",
            stale_reason if values else "nothing to write: the mapping reads nothing from it",
            values,
            now,
        ),
        now=now,
    )


async def prepare_didomi(ctx: AppContext, integration_id: str, body: object) -> Intake:
    """Everything intake does to one Didomi webhook before the store: find the integration,
    parse the payload, project it through the mapping. A user without an
    ``organization_user_id`` becomes an ``IgnoredDelivery``: answered 202 (so Didomi does not
    retry it for five minutes and park it) and only counted."""
    integration = await require_integration(ctx, integration_id)
    try:
        change = parse_webhook(body)
    except PayloadError as exc:
        raise InvalidInput([Issue(exc.path, exc.message)]) from exc
    if isinstance(change, AnonymousUser):
        log.debug(
            "webhook.ignored",
            integration=integration.id,
            type=change.event_type,
            reason=IGNORED_NO_USER,
        )
        return IgnoredDelivery(integration.id, TO_DATAVERSE)
    return didomi_item(integration, change, time.time())


async def receive_didomi(ctx: AppContext, integration_id: str, body: object) -> dict[str, Any]:
    """Merge one Didomi webhook into the store; returns what the 202 answer says."""
    item = await prepare_didomi(ctx, integration_id, body)
    result = await ctx.intake(item)
    if result.changed:
        ctx.wake()
    if isinstance(item, IntakeItem):
        log_accepted("didomi", item, result)
    answer: dict[str, Any] = {
        "accepted": True,
        "duplicate": result.duplicate,
        "queued": result.changed,
    }
    if isinstance(item, IgnoredDelivery):
        answer["ignored"] = IGNORED_NO_USER
    return answer


def log_accepted(source: str, item: IntakeItem, result: IntakeResult) -> None:
    """The `webhook.accepted` line of one stored webhook: ``outcome`` is ``queued`` (the desired
    state changed), ``duplicate``, or what the item records when it changes nothing
    (``unchanged``, ``skipped``)."""
    if not log.enabled_for(ACCEPTED_LEVEL):
        return
    recorded = item.log_unchanged
    if result.duplicate:
        outcome = "duplicate"
    elif result.changed:
        outcome = "queued"
    else:
        outcome = recorded.outcome if recorded is not None else "unchanged"
    event_type = recorded.event if recorded is not None else None
    log_accepted_as(source, item.integration_id, event_type, outcome, item.organization_user_id)


def log_accepted_as(
    source: str, integration_id: str, event_type: str | None, outcome: str, user: str | None
) -> None:
    if log.enabled_for(ACCEPTED_LEVEL):
        log.log(
            ACCEPTED_LEVEL,
            "webhook.accepted",
            integration=integration_id,
            source=source,
            type=event_type,
            outcome=outcome,
            user=user_ref(user),
        )


async def receive_didomi_unstored(
    ctx: AppContext, integration_id: str, body: object
) -> dict[str, Any]:
    """Benchmarks only: ``receive_didomi`` without the store write, so that
    ``benchmarks/intake.py`` can measure the HTTP stack's ceiling (same app, middleware, token
    check, parsing and projection). ``serve`` uses it only when ``UNSTORED_INTAKE_ENV`` is set;
    nothing it answers is durable."""
    await prepare_didomi(ctx, integration_id, body)
    return {"accepted": True, "duplicate": False, "queued": False}


async def receive_dataverse(
    ctx: AppContext, integration_id: str, body: object, *, headers: Any, query: Any
) -> dict[str, Any]:
    """Dataverse webhooks (bidirectional mode) — see operations/bidirectional.py."""
    from consentbridge.operations.reverse_intake import receive_contact_change

    result: dict[str, Any] = await receive_contact_change(
        ctx, integration_id, body, headers=headers, query=query
    )
    return result
