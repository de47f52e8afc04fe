"""Receiving webhooks: a change is authenticated by the route, parsed here, projected through
the mapping and merged into the user's desired state in one store transaction. The caller
answers 202 only after this returns — the change is then durable.

Nothing slow happens here (no Dataverse or Didomi call); workers do the writing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Final

from consentbridge.config.integration import CONTACT, Integration, Property, slot_regulation
from consentbridge.context import AppContext
from consentbridge.didomi.webhooks import (
    AnonymousUser,
    ConsentChange,
    PayloadError,
    parse_webhook,
)
from consentbridge.logs import get_logger, user_ref
from consentbridge.mapping import ConsentSnapshot, MappingError
from consentbridge.operations.errors import InvalidInput, Issue, NotFound
from consentbridge.store.values import (
    Direction,
    IgnoredDelivery,
    Intake,
    IntakeItem,
    IntakeResult,
    LogEntry,
    Merge,
)
from consentbridge.sync.merge import (
    EVENT_ID_KEY,
    EVENT_KEY,
    REGULATION_KEY,
    Stamp,
    merge_columns,
)
from consentbridge.sync.targets import target_named

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


def _log(
    integration: Integration,
    change: ConsentChange,
    outcome: str,
    reason: str,
    columns: dict[str, Any],
    now: float,
    target: str = CONTACT,
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
        target=target,
        regulation=change.regulation,
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


def _unserved_reason(integration: Integration, regulation: str) -> str:
    config = integration.config
    if all(p.regulations is None for p in config.properties):
        allowed = ", ".join(config.regulations)
        return f"regulation '{regulation}' is not in config.regulations ({allowed})"
    return f"regulation '{regulation}' is served by no property row; nothing is written"


def slots_of(integration: Integration, regulation: str) -> dict[tuple[str, str], list[Property]]:
    """The rows a change of ``regulation`` projects through, by slot (target, regulations the
    rows serve): a CPRA change never reaches a row that serves only GDPR."""
    config = integration.config
    slots: dict[tuple[str, str], list[Property]] = {}
    for prop in config.properties:
        regulations = config.regulations_of(prop)
        if regulation in regulations:
            slots.setdefault((prop.target, slot_regulation(regulations)), []).append(prop)
    return slots


def slot_delivery_key(key: str | None, regulation: str, target: str, slot: str) -> str | None:
    """The delivery key of one slot's item: the delivery's own for the contact slot of the
    change's regulation (so keys stored before targets existed still deduplicate), suffixed
    for the others (each slot of one delivery is applied once)."""
    if key is None or (target == CONTACT and slot == regulation):
        return key
    return f"{key}|{target}" + ("" if slot == regulation else f"|{slot}")


def didomi_items(integration: Integration, change: ConsentChange, now: float) -> list[IntakeItem]:
    """The store items of one parsed Didomi webhook (pure: no I/O): one per slot its
    regulation reaches, or one that records why nothing is written."""
    if change.snapshot is None:
        what = (
            "user deleted in Didomi: recorded, nothing written to the contact (documented choice)"
            if change.event_type == "user.deleted"
            else "recorded; the consent state it changes arrives as user.updated"
        )
        return [_recorded_only(integration, change, what, now)]
    slots = slots_of(integration, change.regulation)
    if not slots:
        return [
            _recorded_only(
                integration, change, _unserved_reason(integration, change.regulation), now
            )
        ]
    try:
        snapshot = ConsentSnapshot.from_user(change.snapshot)
        projected = {
            slot: target_named(slot[0]).project(integration, rows, snapshot)
            for slot, rows in slots.items()
        }
    except MappingError as exc:
        raise InvalidInput([Issue("parameters", str(exc))]) from exc
    stamp = Stamp(
        version=change.version,
        ts=change.timestamp.timestamp() if change.timestamp else now,
        source="didomi",
    )
    stale_reason = (
        "already up to date: the stored state is as new as this "
        + change.event_type
        + (f" (version {change.version})" if change.version is not None else "")
        + " or newer"
    )
    items = []
    for (target, slot), values in sorted(projected.items()):
        items.append(
            IntakeItem(
                integration_id=integration.id,
                direction=TO_DATAVERSE,
                organization_user_id=change.organization_user_id,
                delivery_key=slot_delivery_key(
                    change.delivery_key, change.regulation, target, slot
                ),
                merge=_merger(values, stamp, change),
                # The audit trail's first line for this change: what was received and when.
                log=_log(
                    integration,
                    change,
                    "received",
                    _received_reason(change),
                    {k: v for k, v in values.items() if not k.startswith("~")},
                    now,
                    target,
                ),
                log_unchanged=_log(
                    integration,
                    change,
                    "unchanged",
                    stale_reason
                    if values
                    else "nothing to write: the mapping reads nothing from it",
                    {k: v for k, v in values.items() if not k.startswith("~")},
                    now,
                    target,
                ),
                now=now,
                target=target,
                regulation=slot,
            )
        )
    return items


def _merger(values: dict[str, Any], stamp: Stamp, change: ConsentChange) -> Merge:
    def merge(old: dict[str, Any] | None) -> dict[str, Any] | None:
        result = merge_columns(old, values, stamp)
        if not result.touched:
            return None
        result.columns[EVENT_KEY] = change.event_type
        result.columns[REGULATION_KEY] = change.regulation
        if change.event_id is not None:
            result.columns[EVENT_ID_KEY] = change.event_id
        else:
            result.columns.pop(EVENT_ID_KEY, None)
        return result.columns

    return merge


def didomi_item(integration: Integration, change: ConsentChange, now: float) -> IntakeItem:
    """The first of ``didomi_items`` (a mapping of one target and one regulation has one)."""
    return didomi_items(integration, change, now)[0]


async def prepare_didomi(ctx: AppContext, integration_id: str, body: object) -> list[Intake]:
    """Everything intake does to one Didomi webhook before the store: find the integration,
    parse the payload, project it through the mapping (one item per slot it reaches). A user
    without an ``organization_user_id`` becomes an ``IgnoredDelivery``: answered 202 (so
    Didomi does not retry it for five minutes and park it) and only counted."""
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
        return [IgnoredDelivery(integration.id, TO_DATAVERSE)]
    return list(didomi_items(integration, change, time.time()))


async def enqueue(ctx: AppContext, items: Sequence[Intake]) -> list[IntakeResult]:
    """The one way into the queue: the Didomi webhook, the Dataverse webhook and backfill all
    store their items here, in one group-committed transaction per call, and wake this
    process's workers when something became pending."""
    results = await ctx.intake_all(items)
    if any(result.changed for result in results):
        ctx.wake()
    return results


async def receive_didomi(ctx: AppContext, integration_id: str, body: object) -> dict[str, Any]:
    """Merge one Didomi webhook into the store; returns what the 202 answer says."""
    items = await prepare_didomi(ctx, integration_id, body)
    results = await enqueue(ctx, items)
    for item, result in zip(items, results, strict=True):
        if isinstance(item, IntakeItem):
            log_accepted("didomi", item, result)
    answer: dict[str, Any] = {
        "accepted": True,
        "duplicate": all(result.duplicate for result in results),
        "queued": any(result.changed for result in results),
    }
    if any(isinstance(item, IgnoredDelivery) for item in items):
        answer["ignored"] = IGNORED_NO_USER
    return answer
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
