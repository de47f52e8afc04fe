"""Target ``contactpointconsent``: Customer Insights - Journeys consent rows
(``msdynmkt_contactpointconsent4``), one per contact point value x channel x purpose (x topic).

Intake projects a user's Didomi state into the slot's columns: one entry per consent row the
mapping names (key ``consent_key``: channel, purpose, topic) holding the ``msdynmkt_value``
choice (``mapping/consent.py``: true → Opted In, false → Opted Out), plus the contact point of
each channel used (``~cp:<channel>``, read through ``config.contact_points``). Writing is in
``ConsentBatch`` below (docs/journeys.md).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from consentbridge.config.integration import (
    CONTACT_POINT_CONSENT,
    Channel,
    Integration,
    Property,
)
from consentbridge.mapping import ConsentSnapshot, apply_transform, lookup, read_path, resolve
from consentbridge.mapping import Property as MappingProperty
from consentbridge.mapping.consent import VALUE_COLUMN, consent_property, consent_value
from consentbridge.store.values import ClaimedState, Outcome
from consentbridge.sync.retry import RetryPolicy
from consentbridge.sync.targets.base import ForwardRuntime

CONTACT_POINT_KEY: Final = "~cp:"
"""Slot columns ``~cp:<channel>`` hold the contact point value of that channel."""

_PARSED: dict[int, tuple[Property, MappingProperty]] = {}
_MAX_PARSED = 1024


def consent_key(row: Property) -> str:
    """The slot column of a consent row: ``["email","<purpose>","<topic or null>"]``."""
    return json.dumps([row.consent_channel, row.id, row.topic], separators=(",", ":"))


def contact_point_key(channel: str) -> str:
    return f"{CONTACT_POINT_KEY}{channel}"


def _parsed(row: Property) -> MappingProperty:
    cached = _PARSED.get(id(row))
    if cached is not None and cached[0] is row:
        return cached[1]
    parsed = consent_property(row.value, row.transform)
    if len(_PARSED) >= _MAX_PARSED:
        _PARSED.clear()
    _PARSED[id(row)] = (row, parsed)
    return parsed


def _contact_point(value: object) -> str | None:
    if isinstance(value, str | int) and not isinstance(value, bool):
        text = str(value).strip()
        return text or None
    return None


class ConsentTarget:
    """Journeys consent rows of the user's contact points."""

    name: str = CONTACT_POINT_CONSENT

    def rows(self, integration: Integration) -> list[Property]:
        return [p for p in integration.config.properties if p.target == CONTACT_POINT_CONSENT]

    def project(
        self, integration: Integration, rows: Sequence[Property], snapshot: ConsentSnapshot
    ) -> dict[str, Any]:
        columns: dict[str, Any] = {}
        channels: set[Channel] = set()
        for row in rows:
            prop = _parsed(row)
            reading = resolve(prop.candidates, snapshot)
            _, value = lookup(reading, snapshot)
            if value is None:
                continue  # absent or null: a value nobody chose is never consent
            mapped = apply_transform(prop.transform, value, reading.value_kind, column=VALUE_COLUMN)
            if mapped is None:
                continue
            columns[consent_key(row)] = consent_value(mapped)
            channels.add(row.consent_channel)
        points = integration.config.contact_points
        for channel in sorted(channels):
            point = _contact_point(read_path(points[channel], snapshot))
            if point is not None:
                columns[contact_point_key(channel)] = point
        return columns

    async def write(
        self, runtime: ForwardRuntime, claims: Sequence[ClaimedState], policy: RetryPolicy
    ) -> list[Outcome]:
        from consentbridge.sync.targets.consent_write import ConsentBatch

        return await ConsentBatch(runtime, claims, policy).run()
