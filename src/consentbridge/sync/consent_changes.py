"""Journeys consent-row changes flowing back to Didomi (the `to_didomi` half of target
``contactpointconsent``) — pure, no I/O.

A Dataverse webhook on ``msdynmkt_contactpointconsent4`` names a row; what it means for Didomi
takes four facts about that row: its contact point value, channel, purpose (and topic, with its
consent type) and its consent value. ``RowFacts`` holds them, read from a webhook payload
(Target first, then the images) or from the row as the Web API returns it. The row is matched
to the mapping's property rows of the same (purpose, topic, channel, consent type), and its
contact point names the Didomi user when the channel's contact point is
``organization_user_id`` (``config.contact_points``).

Our own writes are recognised here too (echo layer 1b, docs/bidirectional.md §4): a message
that *itself* sets ``msdynmkt_reason`` to ConsentBridge's marker is ours. The marker left in a
row we created stays in its images when Journeys later unsubscribes the contact, so only the
Target counts, and not when a pre image shows the same marker already there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from consentbridge.config.integration import (
    CONTACT_POINT_CONSENT,
    Integration,
    Property,
)
from consentbridge.dataverse.remote_context import ContactChange
from consentbridge.mapping import Property as MappingProperty
from consentbridge.mapping.consent import NOT_SET, OPTED_IN, OPTED_OUT
from consentbridge.mapping.transforms import ValueMap, parse_transform
from consentbridge.sync.targets.consent import (
    CHANNEL_CODES,
    LEVEL_PURPOSE,
    LEVEL_TOPIC,
    MARKER,
    consent_key,
)

PLACEHOLDER_PREFIX: Final = "contactpointconsent:"
"""A consent-row change waits under ``contactpointconsent:<row id>`` until the reverse worker
knows whose it is."""
ROW_KEY: Final = "~row"
REREAD_KEY: Final = "~reread"
USER_PATH: Final = "organization_user_id"

VALUE: Final = "msdynmkt_value"
POINT: Final = "msdynmkt_contactpointvalue"
CHANNEL: Final = "msdynmkt_contactpointtype"
LEVEL: Final = "msdynmkt_contactpointconsenttype"
PURPOSE: Final = "msdynmkt_purposeid"
TOPIC: Final = "msdynmkt_topicid"
REASON: Final = "msdynmkt_reason"
FACT_COLUMNS: Final = (VALUE, POINT, CHANNEL, LEVEL, PURPOSE, TOPIC)
"""The columns a placeholder keeps (webhook logical names)."""
WEB_API_NAMES: Final = {PURPOSE: "_msdynmkt_purposeid_value", TOPIC: "_msdynmkt_topicid_value"}
CHANNEL_NAMES: Final = {code: name for name, code in CHANNEL_CODES.items()}
LABELS: Final = {NOT_SET: "Not Set", OPTED_IN: "Opted In", OPTED_OUT: "Opted Out"}


def placeholder_key(row_id: str) -> str:
    return f"{PLACEHOLDER_PREFIX}{row_id.lower()}"


def is_placeholder(organization_user_id: str) -> bool:
    return organization_user_id.startswith(PLACEHOLDER_PREFIX)


def _guid(value: object) -> str | None:
    return value.strip("{}").lower() if isinstance(value, str) and value.strip("{}") else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class RowFacts:
    """What a consent row says, as far as it is known (None: not known)."""

    value: str | None = None  # the contact point value, trimmed
    channel: int | None = None
    level: int | None = None
    purpose: str | None = None
    topic: str | None = None  # None also for a purpose row: ``complete`` asks the level
    choice: int | None = None

    @property
    def complete(self) -> bool:
        """Enough to match the mapping (a topic row must name its topic)."""
        known = None not in (self.value, self.channel, self.purpose, self.choice)
        return known and (self.level != LEVEL_TOPIC or self.topic is not None)

    def as_columns(self) -> dict[str, Any]:
        """The known facts under their webhook names (the placeholder's columns)."""
        values = (self.choice, self.value, self.channel, self.level, self.purpose, self.topic)
        return {c: v for c, v in zip(FACT_COLUMNS, values, strict=True) if v is not None}

    def merged(self, other: RowFacts) -> RowFacts:
        """These facts, completed by ``other`` where unknown."""
        return RowFacts(
            *(
                mine if mine is not None else theirs
                for mine, theirs in zip(_fields(self), _fields(other), strict=True)
            )
        )


def _fields(facts: RowFacts) -> tuple[Any, ...]:
    return (facts.value, facts.channel, facts.level, facts.purpose, facts.topic, facts.choice)


def facts_of(columns: Mapping[str, Any]) -> RowFacts:
    """Facts from webhook attributes or placeholder columns (logical names; an entry of a
    placeholder is ``{"v": value, ...}``) or from a Web API row (``_…_value`` lookups)."""

    def get(name: str) -> Any:
        value = columns.get(name, columns.get(WEB_API_NAMES.get(name, name)))
        return value.get("v") if isinstance(value, dict) else value

    point = get(POINT)
    return RowFacts(
        value=point.strip() or None if isinstance(point, str) else None,
        channel=_int(get(CHANNEL)),
        level=_int(get(LEVEL)),
        purpose=_guid(get(PURPOSE)),
        topic=_guid(get(TOPIC)),
        choice=_int(get(VALUE)),
    )


def change_facts(change: ContactChange) -> RowFacts:
    """The facts a webhook carries: the consent value from the Target only (images may be
    older), the identity columns from the Target, then the post and pre images."""
    target = facts_of(change.changed)
    images = facts_of(change.post_image).merged(facts_of(change.pre_image))
    return target.merged(
        RowFacts(images.value, images.channel, images.level, images.purpose, images.topic, None)
    )


def sets_our_marker(change: ContactChange) -> bool:
    """True when this message itself set ``msdynmkt_reason`` to ConsentBridge's marker: the
    Target carries it and no pre image shows the same text already there. A marker merely
    left in the row (a post image) is not a change of ours."""
    reason = change.changed.get(REASON)
    if not isinstance(reason, str) or not reason.startswith(MARKER):
        return False
    return change.pre_image.get(REASON) != reason


def consent_rows(integration: Integration) -> list[Property]:
    return integration.config.rows_of(CONTACT_POINT_CONSENT)


def user_of(integration: Integration, facts: RowFacts) -> tuple[str | None, str | None]:
    """``(organization_user_id, None)``, or ``(None, why the row names no Didomi user)``."""
    channel = CHANNEL_NAMES.get(facts.channel) if facts.channel is not None else None
    if channel is None or facts.value is None:
        return None, "the consent row has no contact point value or channel"
    path = integration.config.contact_points.get(channel)  # type: ignore[call-overload]
    if path == USER_PATH:
        return facts.value, None
    if path is None:
        return None, f"config.contact_points names no {channel} contact point"
    return None, (
        f"the {channel} contact point comes from {path}, and Didomi cannot find a user by "
        "that value, so a change of this row names no Didomi user"
    )


def log_user(integration: Integration, facts: RowFacts) -> str | None:
    """The user a log line about this row can be filed under without asking Dataverse: its
    contact point value, when that is the user's id on the row's channel (or, channel unknown,
    on every channel the mapping uses)."""
    if facts.value is None:
        return None
    if facts.channel is not None:
        return user_of(integration, facts)[0]
    paths = {
        integration.config.contact_points.get(r.consent_channel) for r in consent_rows(integration)
    }
    return facts.value if paths == {USER_PATH} else None


IdOf = Callable[[Property], tuple[str | None, str | None]]
"""A property row's (purpose id, topic id), names resolved (None: unknown)."""


def matching_rows(integration: Integration, facts: RowFacts, ids_of: IdOf) -> list[Property]:
    """The property rows that map this consent row: same purpose, topic, channel and type."""
    level = (
        facts.level if facts.level is not None else (LEVEL_TOPIC if facts.topic else LEVEL_PURPOSE)
    )
    found = []
    for row in consent_rows(integration):
        if CHANNEL_CODES[row.consent_channel] != facts.channel:
            continue
        if (LEVEL_TOPIC if row.topic is not None else LEVEL_PURPOSE) != level:
            continue
        purpose, topic = ids_of(row)
        if purpose is None or purpose != facts.purpose:
            continue
        if row.topic is not None and (topic is None or topic != facts.topic):
            continue
        found.append(row)
    return found


def reverse_projection(
    integration: Integration, slot: str
) -> tuple[list[MappingProperty], dict[str, str]]:
    """The consent rows of one slot (regulation part of its key) as mapping properties for the
    reverse projection, and slot column (``consent_key``) → property id. Property ids are
    ``consent_row_<n>`` (n: the row's place among the consent rows): a mapping property's id
    must look like a column name, which a ``consent_key`` does not."""
    properties: list[MappingProperty] = []
    ids: dict[str, str] = {}
    config = integration.config
    for index, row in enumerate(consent_rows(integration)):
        key = consent_key(row)
        if config.slot_of(row) != slot or key in ids:
            continue
        ids[key] = f"consent_row_{index}"
        properties.append(MappingProperty(ids[key], row.value, row.transform))
    return properties, ids


def column_value(choice: int, transform: object) -> object:
    """A consent value as the reverse projection reads it: Opted In → ``true``, Opted Out →
    ``false``, except where the row's value map names the choice itself (``534120002``), as
    forward a map may produce either. Not Set is never read back (the caller skips it)."""
    fitted = parse_transform(transform)
    if isinstance(fitted, ValueMap) and any(
        target == choice and not isinstance(target, bool) for _, target in fitted.entries
    ):
        return choice
    return choice == OPTED_IN


def describe(facts: RowFacts) -> str:
    """The row in a log line: ``email row of purpose <id> (topic <id>)``."""
    channel = CHANNEL_NAMES.get(facts.channel or -1, "unknown channel")
    topic = f" topic {facts.topic}" if facts.topic else ""
    return f"the {channel} consent row of purpose {facts.purpose}{topic}"
