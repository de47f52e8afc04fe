"""Consent values of Customer Insights - Journeys consent rows (``msdynmkt_value``) — pure.

A consent row's value is one of three choices; a Didomi boolean maps to one of them:

- ``true`` → Opted In (534120001), ``false`` → Opted Out (534120002): a Didomi purpose or
  preference that is enabled is consent given, one that is disabled is consent withdrawn.
- ``null`` or absent → nothing is written: a value nobody chose never becomes consent, not even
  Not Set (534120000), which would reset a choice made in Journeys.

A transform may map other values (a v2 preference's ``values``, a metadata key): ``"not"``
(before the boolean rule) or a value map whose values are ``true`` / ``false`` / ``null`` or
one of the three choice values. docs/mapping.md and docs/journeys.md say the same.
"""

from __future__ import annotations

from typing import Final

from consentbridge.mapping.errors import MappingError, MappingValueError, show
from consentbridge.mapping.grammar import ValueKind, parse_path
from consentbridge.mapping.properties import Property, RawTransform
from consentbridge.mapping.transforms import Negation, ValueMap, parse_transform

NOT_SET: Final = 534120000
OPTED_IN: Final = 534120001
OPTED_OUT: Final = 534120002
CONSENT_VALUES: Final = frozenset({NOT_SET, OPTED_IN, OPTED_OUT})
LABELS: Final = {NOT_SET: "Not Set", OPTED_IN: "Opted In", OPTED_OUT: "Opted Out"}

VALUE_COLUMN: Final = "msdynmkt_value"
"""The column a consent row's mapping feeds (the name its projection errors carry)."""


def consent_value(value: object) -> int:
    """A projected value as a ``msdynmkt_value`` choice; ``MappingValueError`` if it is none."""
    if isinstance(value, bool):
        return OPTED_IN if value else OPTED_OUT
    if isinstance(value, int) and value in CONSENT_VALUES:
        return value
    raise MappingValueError(
        f"the consent row reads {show(value)}, which is not a consent value; map it to true, "
        "false or 534120000/534120001/534120002 with a value map."
    )


def _fits(target: object) -> bool:
    return target is None or isinstance(target, bool) or target in CONSENT_VALUES


def check_consent_property(value: str, transform: object) -> list[str]:
    """Problems of a consent row's ``value`` / ``transform``: what it produces must be a
    consent value (one sentence each); ``[]`` when fine or when the grammar refuses it (the
    grammar's own check reports that)."""
    try:
        parsed = parse_path(value)
        fitted = parse_transform(transform)
    except MappingError:  # reported by the grammar check
        return []
    if fitted is None or isinstance(fitted, Negation):
        # The preferred reading decides (an ambiguous `_values_<pref>_<value>` path reads the
        # value's true/false first, docs/mapping.md).
        if parsed.candidates[0].value_kind is not ValueKind.BOOLEAN:
            return [
                "a consent row needs true or false, but this path reads other values; add a "
                'value map such as {"weekly": 534120001, "never": 534120002}.'
            ]
        return []
    assert isinstance(fitted, ValueMap)
    wrong = [source for source, target in fitted.entries if not _fits(target)]
    if wrong:
        return [
            f"the transform maps {show(wrong[0])} to a value that is not consent; map each "
            "value to true, false, null or 534120000 (Not Set), 534120001 (Opted In) or "
            "534120002 (Opted Out)."
        ]
    return []


def consent_property(value: str, transform: RawTransform | None) -> Property:
    """The mapping ``Property`` of a consent row: it feeds ``msdynmkt_value``."""
    return Property(VALUE_COLUMN, value, transform)
