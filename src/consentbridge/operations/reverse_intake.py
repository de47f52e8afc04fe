"""Receiving Dataverse webhooks (bidirectional mode): a contact change made in the CRM is
authenticated, parsed and merged into the user's `to_didomi` desired state in one store
transaction; the caller answers 202 once this returns. Workers send it on to Didomi. A change
of a Journeys consent row takes the same way in, then `consent_intake.py`.

Nothing here calls Dataverse: a slow Dataverse must neither slow intake down nor lose a change.
When the payload does not name the user (an Update carries only the changed columns, and a
truncated payload carries none), the change is stored under a placeholder key
`contact:<contactid>` and the reverse worker resolves it with one batched lookup.

Echo layer 1 lives here: a change initiated by our own application user (the one that wrote
Didomi's change into Dataverse) is logged as `ignored_echo` and stored nowhere else.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from consentbridge.config.errors import SecretDecryptionError
from consentbridge.config.integration import CONTACT
from consentbridge.context import AppContext
from consentbridge.dataverse.registration import CONSENT_ENTITY
from consentbridge.dataverse.remote_context import ContactChange, ContextError, parse_context
from consentbridge.operations.bidirectional import RegistrationRecord
from consentbridge.operations.consent_intake import consent_items
from consentbridge.operations.dataverse_log import ECHO_BY_USER, TO_DIDOMI, DataverseDelivery
from consentbridge.operations.errors import InvalidInput, Issue, Unauthorized, Unavailable
from consentbridge.operations.intake import (
    enqueue,
    log_accepted,
    log_accepted_as,
    require_integration,
)
from consentbridge.store.values import IntakeItem, Merge
from consentbridge.sync.merge import (
    EVENT_KEY,
    Stamp,
    dataverse_change_time,
    mark_from_create,
    merge_columns,
)
from consentbridge.sync.placeholders import (
    CONTACT_KEY,
    REREAD_CREATE_KEY,
    REREAD_KEY,
    placeholder_key,
)

SIZE_EXCEEDED_HEADER = "x-ms-dynamics-msg-size-exceeded"
REQUEST_ID_HEADER = "x-request-id"
SYNCED_MESSAGES = ("Create", "Update")


def _lookup(values: Any, name: str) -> str | None:
    """A header or query value, case-insensitively, from a mapping or a list of pairs."""
    if values is None:
        return None
    pairs = values.items() if isinstance(values, Mapping) else values
    for key, value in pairs:
        if str(key).lower() == name:
            return str(value)
    return None


def authenticate(
    ctx: AppContext, record: RegistrationRecord | None, headers: Any, query: Any
) -> None:
    """The key Dataverse sends (our header, or `?code=` for a WebhookKey endpoint) must equal
    the integration's secret; compared in constant time."""
    if record is None:
        raise Unauthorized(
            "The bidirectional flow is not enabled for this integration, so no Dataverse "
            "webhook is accepted."
        )
    provided = _lookup(headers, record.auth_header.lower()) or _lookup(query, "code")
    try:
        expected = ctx.secrets.decrypt(record.secret).get_secret_value()
    except SecretDecryptionError as exc:
        raise Unavailable(str(exc)) from None
    if provided is None or not hmac.compare_digest(provided.encode(), expected.encode()):
        raise Unauthorized("The Dataverse webhook key is missing or wrong.")


async def authenticate_delivery(
    ctx: AppContext, integration_id: str, *, headers: Any, query: Any
) -> None:
    """``authenticate`` from the request line and headers alone: the route calls this before
    it reads the body, so a sender without the key is refused (404/401) without its body
    being read or waited for."""
    await require_integration(ctx, integration_id)
    record = RegistrationRecord.from_stored(await ctx.store.get_registration(integration_id))
    authenticate(ctx, record, headers, query)


def delivery_key(change: ContactChange, headers: Any) -> str | None:
    """Dataverse's own identity of the delivery: operation + row + message, else x-request-id."""
    if change.operation_id:
        return f"dataverse:{change.operation_id}:{change.contact_id}:{change.message}"
    request_id = _lookup(headers, REQUEST_ID_HEADER)
    return f"dataverse:request:{request_id}" if request_id else None


def _user_of(change: ContactChange, match: str) -> str | None:
    for source in (change.changed, change.post_image, change.pre_image):
        value = source.get(match)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def contact_items(delivery: DataverseDelivery) -> list[IntakeItem]:
    """The store items for one parsed contact change (pure): one per slot a changed column
    belongs to; empty when nothing mapped changed."""
    integration, change, now = delivery.integration, delivery.change, delivery.now
    truncated, key = delivery.truncated, delivery.key
    user = _user_of(change, integration.config.match_attribute)
    if delivery.by_our_user:
        log = delivery.log_line(
            user or placeholder_key(change.contact_id), "ignored_echo", ECHO_BY_USER, {}
        )
        return [delivery.logged_only(log)]
    if change.message not in SYNCED_MESSAGES:
        reason = f"{change.message} of a contact is not synced to Didomi"
        log = delivery.log_line(user or placeholder_key(change.contact_id), "skipped", reason, {})
        return [delivery.logged_only(log)]
    config = integration.config
    # Each changed column goes to the slot of the rows that feed it (their regulations), so a
    # rep's change reaches Didomi under the regulation its row serves, never another's.
    slots: dict[str, set[str]] = {}
    for prop in config.properties:
        if prop.target == CONTACT:
            slots.setdefault(config.slot_of(prop), set()).add(prop.id)
    changed = {
        slot: {c: v for c, v in change.changed.items() if c in columns}
        for slot, columns in slots.items()
    }
    if not any(changed.values()) and not truncated:
        return []
    ts = dataverse_change_time(
        change.modified_on.timestamp() if change.modified_on is not None else None, now
    )
    stamp = Stamp(None, ts, "dataverse")
    placeholder = truncated or user is None
    event = f"dataverse.{change.message.lower()}"
    contact_id = change.contact_id
    # A Create carries every column the form posted, defaults nobody touched included.
    created = change.message == "Create"
    target = placeholder_key(contact_id) if placeholder else user
    assert target is not None
    items: list[IntakeItem] = []
    for position, slot in enumerate(sorted(slots)):
        values = changed[slot]
        if not values and not truncated:
            continue
        log_unchanged = delivery.log_line(
            target,
            "unchanged",
            "already up to date: the stored state is as new as this change "
            f"(modifiedon {stamp.describe()}) or newer",
            values,
        )
        items.append(
            IntakeItem(
                integration_id=integration.id,
                direction=TO_DIDOMI,
                organization_user_id=target,
                delivery_key=key if key is None or position == 0 else f"{key}|{slot}",
                merge=_merger(
                    values, stamp, created, placeholder, contact_id, truncated, ts, event
                ),
                log=None,
                log_unchanged=replace(log_unchanged, regulation=slot),
                now=now,
                target=CONTACT,
                regulation=slot,
            )
        )
    return items


def _merger(
    values: dict[str, Any],
    stamp: Stamp,
    created: bool,
    placeholder: bool,
    contact_id: str,
    truncated: bool,
    ts: float,
    event: str,
) -> Merge:
    def merge(old: dict[str, Any] | None) -> dict[str, Any] | None:
        result = merge_columns(old, values, stamp)
        columns, touched = result.columns, result.touched
        if created:
            mark_from_create(columns, values, result)
        if placeholder:
            columns[CONTACT_KEY] = contact_id
        if truncated and ts > float((old or {}).get(REREAD_KEY) or 0.0):
            columns[REREAD_KEY] = ts
            columns[REREAD_CREATE_KEY] = created
            touched = True
        if not touched:
            return None
        columns[EVENT_KEY] = event
        return columns

    return merge


async def receive_contact_change(
    ctx: AppContext, integration_id: str, body: object, *, headers: Any, query: Any
) -> dict[str, Any]:
    """Authenticate, parse and store one Dataverse webhook; returns what the 202 answer says."""
    integration = await require_integration(ctx, integration_id)
    record = RegistrationRecord.from_stored(await ctx.store.get_registration(integration_id))
    authenticate(ctx, record, headers, query)
    assert record is not None
    try:
        change = parse_context(body)
    except ContextError as exc:
        raise InvalidInput([Issue(exc.path, str(exc))]) from exc
    truncated = _lookup(headers, SIZE_EXCEEDED_HEADER) is not None
    now = time.time()
    # A consent row's change has its own path (operations/consent_intake.py).
    items_of = consent_items if change.entity == CONSENT_ENTITY else contact_items
    items = items_of(
        DataverseDelivery(
            integration,
            record,
            change,
            key=delivery_key(change, headers),
            truncated=truncated,
            now=now,
        )
    )
    if not items:
        event_type = f"dataverse.{change.message.lower()}"
        log_accepted_as("dataverse", integration.id, event_type, "nothing_mapped", None)
        return {"accepted": True, "duplicate": False, "queued": False, "outcome": "nothing mapped"}
    # The same group-committed path as Didomi's webhooks and backfill (operations/intake.py).
    results = await enqueue(ctx, items)
    for item, result in zip(items, results, strict=True):
        log_accepted("dataverse", item, result)
    queued = any(result.changed for result in results)
    first = items[0].log_unchanged
    outcome = first.outcome if first is not None else "unchanged"
    return {
        "accepted": True,
        "duplicate": all(result.duplicate for result in results),
        "queued": queued,
        "outcome": "queued" if queued else outcome,
    }
