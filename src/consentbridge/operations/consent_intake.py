"""Receiving a Dataverse webhook on a Journeys consent row (`msdynmkt_contactpointconsent4`):
the pure step from a parsed change to store items (docs/bidirectional.md §2, "Consent rows").

Nothing here calls Dataverse. Our own writes are dropped first — by the initiating
application user (echo layer 1) and by the reason marker the message itself sets (layer 1b,
``sync/consent_changes.py``) — and a change to Not Set is logged as skipped: a value nobody
chose never becomes consent. Anything else waits under ``contactpointconsent:<row id>`` in a
slot of target ``contactpointconsent`` with the facts the payload carried; the reverse worker
completes them with one batched read, matches the mapping's rows and moves the change to the
Didomi user's slot of each regulation (``sync/consent_reverse.py``).
"""

from __future__ import annotations

from typing import Any

from consentbridge.config.integration import CONTACT_POINT_CONSENT, Integration, slot_regulation
from consentbridge.mapping.consent import NOT_SET
from consentbridge.operations.dataverse_log import ECHO_BY_USER, TO_DIDOMI, DataverseDelivery
from consentbridge.store.values import IntakeItem, Merge
from consentbridge.sync.consent_changes import (
    REREAD_KEY,
    ROW_KEY,
    change_facts,
    consent_rows,
    log_user,
    placeholder_key,
    sets_our_marker,
)
from consentbridge.sync.merge import EVENT_KEY, Stamp, dataverse_change_time, merge_columns

SYNCED_MESSAGES = ("Create", "Update")
ECHO_BY_MARKER = (
    "this change itself set msdynmkt_reason to ConsentBridge's marker: the echo of a sync write"
)
NOT_SET_REASON = (
    "nothing sent: the consent row was set to Not Set, and a value nobody chose never becomes "
    "consent in Didomi"
)


def placeholder_slot(integration: Integration) -> str:
    """The regulation part of the slot a consent change waits in until its rows are known:
    every regulation the consent rows serve."""
    config = integration.config
    return slot_regulation(
        sorted({r for row in consent_rows(integration) for r in config.regulations_of(row)})
    )


def consent_items(delivery: DataverseDelivery) -> list[IntakeItem]:
    """The store items for one consent-row change (pure): one log-only item for an echo, a
    Not Set or a message that is not synced; one placeholder item otherwise; none when the
    mapping has no consent rows or nothing consent-related changed."""
    integration, change, now = delivery.integration, delivery.change, delivery.now
    if not consent_rows(integration):
        return []
    facts = change_facts(change)
    user = log_user(integration, facts) or placeholder_key(change.contact_id)

    def only_logged(outcome: str, reason: str) -> list[IntakeItem]:
        line = delivery.log_line(
            user, outcome, reason, facts.as_columns(), target=CONTACT_POINT_CONSENT
        )
        return [delivery.logged_only(line)]

    if delivery.by_our_user:
        return only_logged("ignored_echo", ECHO_BY_USER)
    if sets_our_marker(change):
        return only_logged("ignored_echo", ECHO_BY_MARKER)
    if change.message not in SYNCED_MESSAGES:
        return only_logged("skipped", f"{change.message} of a consent row is not synced to Didomi")
    if facts.choice == NOT_SET:
        return only_logged("skipped", NOT_SET_REASON)
    if facts.choice is None and not delivery.truncated:
        return []  # the consent value did not change
    ts = dataverse_change_time(
        change.modified_on.timestamp() if change.modified_on is not None else None, now
    )
    slot = placeholder_slot(integration)
    unchanged = delivery.log_line(
        placeholder_key(change.contact_id),
        "unchanged",
        "already up to date: the stored state is as new as this change or newer",
        facts.as_columns(),
        target=CONTACT_POINT_CONSENT,
    )
    return [
        IntakeItem(
            integration_id=integration.id,
            direction=TO_DIDOMI,
            organization_user_id=placeholder_key(change.contact_id),
            delivery_key=delivery.key,
            merge=_merger(
                facts.as_columns(),
                ts,
                change.contact_id,
                delivery.truncated,
                change.message.lower(),
            ),
            log=None,
            log_unchanged=unchanged,
            now=now,
            target=CONTACT_POINT_CONSENT,
            regulation=slot,
        )
    ]


def _merger(
    columns: dict[str, Any], ts: float, row_id: str, truncated: bool, message: str
) -> Merge:
    def merge(old: dict[str, Any] | None) -> dict[str, Any] | None:
        result = merge_columns(old, columns, Stamp(None, ts, "dataverse"))
        merged, touched = result.columns, result.touched
        merged[ROW_KEY] = row_id.lower()
        if truncated and ts > float((old or {}).get(REREAD_KEY) or 0.0):
            merged[REREAD_KEY] = ts
            touched = True
        if not touched:
            return None
        merged[EVENT_KEY] = f"dataverse.{message}"
        return merged

    return merge
