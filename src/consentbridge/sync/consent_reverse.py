"""The reverse worker's first step for Journeys consent rows: resolving the changes that wait
under ``contactpointconsent:<row id>`` (docs/bidirectional.md §2, "Consent rows").

For one claimed batch: **one** read of every row whose payload lacked a fact (an Update carries
only the changed columns; a truncated payload none), by id and in any state (an inactive row
still holds its consent); the names of the mapping's purposes and topics resolved through the
runtime's catalog (cached, shared with the forward writer); then per change: the Didomi user
its contact point names, the property rows of the same purpose, topic, channel and consent
type, and a move of the consent value into that user's slot of each row's regulations. What
cannot be sent is a ``skipped`` outcome with one sentence.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from consentbridge.config.integration import CONTACT_POINT_CONSENT
from consentbridge.dataverse.tables import CONTACT_POINT_CONSENT_TABLE as CONSENTS
from consentbridge.mapping.consent import NOT_SET
from consentbridge.store.values import ClaimedState, IntakeItem, OutcomeKind
from consentbridge.sync.consent_changes import (
    FACT_COLUMNS,
    PLACEHOLDER_PREFIX,
    REREAD_KEY,
    ROW_KEY,
    VALUE,
    WEB_API_NAMES,
    IdOf,
    RowFacts,
    consent_rows,
    describe,
    facts_of,
    matching_rows,
    user_of,
)
from consentbridge.sync.merge import EVENT_KEY
from consentbridge.sync.placeholders import move_merge
from consentbridge.sync.runtime import IntegrationRuntime
from consentbridge.sync.targets.consent import catalog_of, consent_key

DIRECTION: Final = "to_didomi"
EVENT: Final = "dataverse.change"
NOT_SET_REASON: Final = (
    "nothing sent: the consent row holds Not Set, and a value nobody chose never becomes "
    "consent in Didomi"
)
SELECT: Final = (CONSENTS.primary_id, *(WEB_API_NAMES.get(c, c) for c in FACT_COLUMNS))


@dataclass
class Resolved:
    """The moves to store (before the placeholders' outcomes), and each placeholder's outcome."""

    moves: list[IntakeItem] = field(default_factory=list)
    outcomes: dict[str, tuple[OutcomeKind, str]] = field(default_factory=dict)


def row_id_of(claim: ClaimedState) -> str:
    row = claim.columns.get(ROW_KEY)
    return str(row) if row else claim.organization_user_id[len(PLACEHOLDER_PREFIX) :]


def _stamp(claim: ClaimedState, now: float) -> float:
    entry = claim.columns.get(VALUE)
    if isinstance(entry, dict) and entry.get("ts"):
        return float(entry["ts"])
    return float(claim.columns.get(REREAD_KEY) or now)


async def resolve_placeholders(
    runtime: IntegrationRuntime, claims: Sequence[ClaimedState], now: float
) -> Resolved:
    """Resolve consent placeholders (raises ``DataverseError`` for the caller to retry)."""
    integration = runtime.integration
    facts = {c.organization_user_id: facts_of(c.columns) for c in claims}
    unread = [
        c for c in claims if not facts[c.organization_user_id].complete or REREAD_KEY in c.columns
    ]
    resolved = Resolved()
    if unread:
        rows = await runtime.dataverse.find_by_column(
            CONSENTS.entity_set,
            CONSENTS.primary_id,
            sorted({row_id_of(c).lower() for c in unread}),
            list(SELECT),
        )
        by_id = {str(r.get(CONSENTS.primary_id, "")).lower(): r for r in rows}
        for claim in unread:
            row = by_id.get(row_id_of(claim).lower())
            if row is None:
                resolved.outcomes[claim.organization_user_id] = (
                    "skipped",
                    f"consent row {row_id_of(claim)} no longer exists in Dataverse, so its "
                    "change names no Didomi user",
                )
                continue
            # The payload's own facts first: the value it set is this change's value.
            facts[claim.organization_user_id] = facts[claim.organization_user_id].merged(
                facts_of(row)
            )
    catalog = catalog_of(runtime.forward.state)
    await catalog.load(runtime.dataverse, consent_rows(integration))
    for claim in claims:
        placeholder = claim.organization_user_id
        if placeholder in resolved.outcomes:
            continue
        resolved.outcomes[placeholder] = _resolve_one(
            runtime, claim, facts[placeholder], catalog.ids_of, now, resolved.moves
        )
    return resolved


def _resolve_one(
    runtime: IntegrationRuntime,
    claim: ClaimedState,
    facts: RowFacts,
    ids_of: IdOf,
    now: float,
    moves: list[IntakeItem],
) -> tuple[OutcomeKind, str]:
    integration = runtime.integration
    if facts.choice == NOT_SET:
        return "skipped", NOT_SET_REASON
    if facts.choice is None:
        return "skipped", f"{describe(facts)} holds no consent value, so nothing was sent"
    user, why = user_of(integration, facts)
    if user is None:
        return "skipped", f"{why} ({describe(facts)})"
    rows = matching_rows(integration, facts, ids_of)
    if not rows:
        return "skipped", (
            f"no property row maps {describe(facts)}, so its change is not sent to Didomi"
        )
    by_slot: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    ts = _stamp(claim, now)
    for row in rows:
        entry = {"v": facts.choice, "ts": ts, "src": "dataverse"}
        by_slot[integration.config.slot_of(row)][consent_key(row)] = entry
    event = claim.columns.get(EVENT_KEY)
    for slot, entries in sorted(by_slot.items()):
        moves.append(
            IntakeItem(
                integration_id=integration.id,
                direction=DIRECTION,
                organization_user_id=user,
                delivery_key=None,
                merge=move_merge(entries, {}, 0.0, event if isinstance(event, str) else EVENT),
                log=None,
                now=now,
                target=CONTACT_POINT_CONSENT,
                regulation=slot,
            )
        )
    return "unchanged", (
        f"{describe(facts)} is user {user}'s; the change continues under that user"
    )
